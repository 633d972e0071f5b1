"""The contract checker itself catches each kind of violation (so a passing contract means something)."""

from __future__ import annotations

import pytest
import torch

from contract import Case, check_contract


def _inputs(g):
    return (torch.rand(3, 4, generator=g, dtype=torch.float64),)


class Scale:
    def __init__(self, factor):
        self.factor = factor


def _case(call, **kw):
    return Case("mutant", Scale(2.0), call, kw.pop("make_inputs", _inputs), **kw)


def test_a_good_member_passes():
    check_contract(_case(lambda m, x: x * m.factor))


@pytest.mark.parametrize("call, make_inputs, check", [
    (lambda m, x: x.mul_(m.factor), _inputs, "inplace"),
    (lambda m, x: (x * m.factor).float(), _inputs, "dtype_device"),
    (lambda m, x: x - x.mean(0), _inputs, "batched"),
    (lambda m, x: x.sum().reshape(1) if len(x) == 0 else x, _inputs, "empty"),
    (lambda m, x: x * id(m) % 7, _inputs, "pickle"),
    (lambda m, x: x, lambda g: (torch.rand(3, 4, dtype=torch.float64),), "determinism"),
    (lambda m, x: x + torch.rand(()), _inputs, "determinism"),
])
def test_each_violation_is_caught(call, make_inputs, check):
    with pytest.raises(AssertionError, match=f"contract check '{check}' failed"):
        check_contract(_case(call, make_inputs=make_inputs), checks=(check,))


def test_export_check_passes_a_good_member_and_catches_a_graph_that_differs():
    check_contract(_case(lambda m, x: x * m.factor), checks=("export",))
    # exported graph computes something else than the eager call (as a broken fallback would)
    differs = _case(lambda m, x: x * (3.0 if torch.compiler.is_exporting() else m.factor))
    with pytest.raises(AssertionError, match="contract check 'export' failed.*torch.export"):
        check_contract(differs, checks=("export",))
    # batch size baked into the graph: runs at the traced size only
    fixed = _case(lambda m, x: x.reshape(3, 4) * m.factor)
    with pytest.raises(Exception):
        check_contract(fixed, checks=("export",))
