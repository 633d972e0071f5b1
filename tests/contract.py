"""The one contract checker: what every member of every registry owes (families, distortions,
models, tasks, ...). In the manner of torchvision's ``check_kernel`` / ``check_transform``.

A registry's test builds a :class:`Case` per member and calls :func:`check_contract`; a new family,
distortion, model or task then inherits every check. Later work extends this file rather than
writing its own checker: add a check with ``@check("name")`` (it receives the :class:`Case`), and
name it in :data:`DEFAULT_CHECKS` if every member owes it.

Checks:
    ``inplace``: no input (nor the member's parameters and buffers) is written in place
        (``Tensor._version``) or changed;
    ``dtype_device``: floating outputs have the expected dtype and the inputs' device;
    ``batched``: the batched call equals the calls on one sample at a time (batch dimension 0);
    ``empty``: a batch of zero samples gives outputs with zero samples;
    ``pickle``: the member survives ``pickle`` and computes the same;
    ``determinism``: inputs drawn twice from a generator seeded alike are equal, and so are the
        outputs of two calls;
    ``cuda``: CPU and CUDA agree (skipped without a GPU);
    ``export`` (not a default: run it with ``check_contract(case, ("export",))``): the member, in
        float32, exported by :mod:`stnkit.export` with a dynamic batch, then run at another batch
        size than the traced one (fresh inputs) through ``torch.export.save/load`` and through ONNX in
        ``onnxruntime``, is within ``EXPORT_ATOL`` of the eager call (which takes the fast paths).
    ``additive`` (not a default; for members whose outputs are sums over the batch, such as a
        task's training step): the batched call equals the SUM of the calls on one sample at a time.

Example::

    case = Case("affine", member=family, call=lambda f, theta: f.grid(theta, (5, 6)),
                make_inputs=lambda g: (torch.rand(3, 6, generator=g, dtype=torch.float64),))
    check_contract(case)
"""

from __future__ import annotations

import copy
import pickle
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest
import torch
from torch import Tensor, nn
from torch.utils import _pytree as pytree

# (atol, rtol) per dtype, in one place (kornia's tolerance table)
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float64: (1e-10, 1e-8),
    torch.float32: (2e-5, 1e-5),
    torch.bfloat16: (3e-2, 2e-2),
    torch.float16: (3e-3, 3e-3),
}


#: Largest difference allowed between an exported graph (torch.export or ONNX) and the eager call.
EXPORT_ATOL = 1e-4


@dataclass
class Case:
    """One registry member and how to call it.

    Attributes:
        name: For messages.
        member: The object under test (a family, a module, a distortion, a task, ...).
        call: ``call(member, *inputs) -> output``; the output is a tensor or any nesting of
            tuples, lists and dicts of tensors (and other values, compared with ``==``).
        make_inputs: ``make_inputs(generator) -> tuple``: fresh inputs; every randomness comes
            from the generator. Tensors in batched inputs have the batch first.
        batched: Indices of the inputs that carry the batch (default: every input).
        out_dtype: The floating dtype outputs must have (default: that of the first floating
            tensor among the inputs; ``None`` there means "not checked").
        tol: ``(atol, rtol)`` for the comparisons (default: by ``out_dtype`` from TOLERANCES).
        skip: Names of checks that do not apply, each with the reason (e.g. ``{"pickle": "..."}``).
    """

    name: str
    member: Any
    call: Callable[..., Any]
    make_inputs: Callable[[torch.Generator], tuple]
    batched: tuple[int, ...] | None = None
    out_dtype: torch.dtype | None = None
    tol: tuple[float, float] | None = None
    skip: dict[str, str] = field(default_factory=dict)

    def inputs(self, seed: int = 0) -> tuple:
        return tuple(self.make_inputs(torch.Generator().manual_seed(seed)))

    def run(self, member: Any = None, inputs: tuple | None = None) -> Any:
        return self.call(self.member if member is None else member, *(self.inputs() if inputs is None else inputs))

    def is_batched(self, index: int) -> bool:
        return self.batched is None or index in self.batched

    def dtype(self, inputs: tuple) -> torch.dtype | None:
        if self.out_dtype is not None:
            return self.out_dtype
        floats = [t for t in pytree.tree_leaves(inputs) if isinstance(t, Tensor) and t.is_floating_point()]
        return floats[0].dtype if floats else None

    def tolerance(self, inputs: tuple) -> tuple[float, float]:
        return self.tol or TOLERANCES.get(self.dtype(inputs) or torch.float32, TOLERANCES[torch.float32])


CHECKS: dict[str, Callable[[Case], None]] = {}
DEFAULT_CHECKS = ("inplace", "dtype_device", "batched", "empty", "pickle", "determinism", "cuda")


def check(name: str) -> Callable[[Callable[[Case], None]], Callable[[Case], None]]:
    """Registers a contract check under ``name`` (refusing duplicates)."""

    def decorator(fn: Callable[[Case], None]) -> Callable[[Case], None]:
        if name in CHECKS:
            raise ValueError(f"contract check {name!r} is already registered")
        CHECKS[name] = fn
        return fn

    return decorator


def check_contract(case: Case, checks: tuple[str, ...] = DEFAULT_CHECKS) -> None:
    """Runs ``checks`` on ``case``; a failure names the member and the check."""
    for name in checks:
        if name in case.skip:
            continue
        try:
            CHECKS[name](case)
        except pytest.skip.Exception:
            continue
        except AssertionError as err:
            raise AssertionError(f"{case.name}: contract check {name!r} failed: {err}") from err


# -- helpers ---------------------------------------------------------------------------------------
def assert_same(actual: Any, expected: Any, tol: tuple[float, float] = (0.0, 0.0), what: str = "") -> None:
    """Compares two nestings of tensors and plain values (tensors within ``tol``)."""
    a_leaves, a_spec = pytree.tree_flatten(actual)
    e_leaves, e_spec = pytree.tree_flatten(expected)
    assert a_spec == e_spec, f"{what}: output structure differs: {a_spec} vs {e_spec}"
    for a, e in zip(a_leaves, e_leaves):
        if isinstance(e, Tensor):
            assert isinstance(a, Tensor), f"{what}: expected a tensor, got {type(a).__name__}"
            torch.testing.assert_close(a.detach().cpu(), e.detach().cpu(), atol=tol[0], rtol=tol[1],
                                       equal_nan=True, msg=lambda m: f"{what}: {m}")
        else:
            assert a == e, f"{what}: {a!r} != {e!r}"


def _slice(case: Case, inputs: tuple, index: slice) -> tuple:
    def cut(t: Any) -> Any:
        return t[index] if isinstance(t, Tensor) and t.dim() > 0 else t

    return tuple(pytree.tree_map(cut, x) if case.is_batched(i) else x for i, x in enumerate(inputs))


def _state(member: Any) -> list[Tensor]:
    return list(member.state_dict().values()) if hasattr(member, "state_dict") else []


# -- the checks --------------------------------------------------------------------------------------
@check("inplace")
def _inplace(case: Case) -> None:
    inputs = case.inputs()
    tensors = [t for t in pytree.tree_leaves(inputs) + _state(case.member) if isinstance(t, Tensor)]
    before = [(t._version, t.detach().clone()) for t in tensors]
    case.run(inputs=inputs)
    for t, (version, saved) in zip(tensors, before):
        assert t._version == version, f"an input of shape {tuple(t.shape)} was written in place"
        assert torch.equal(t.detach(), saved) or (saved.isnan() == t.isnan()).all(), "an input changed"


@check("dtype_device")
def _dtype_device(case: Case) -> None:
    inputs = case.inputs()
    dtype = case.dtype(inputs)
    devices = {t.device for t in pytree.tree_leaves(inputs) if isinstance(t, Tensor)}
    for t in pytree.tree_leaves(case.run(inputs=inputs)):
        if isinstance(t, Tensor) and t.is_floating_point():
            assert dtype is None or t.dtype == dtype, f"output dtype {t.dtype}, expected {dtype}"
            assert not devices or t.device in devices, f"output on {t.device}, inputs on {devices}"


@check("batched")
def _batched(case: Case) -> None:
    inputs = case.inputs()
    n = _batch_size(case, inputs)
    assert n >= 2, "make_inputs should give a batch of at least 2 for this check"
    whole = case.run(inputs=inputs)
    tol = case.tolerance(inputs)
    for i in range(n):
        one = case.run(inputs=_slice(case, inputs, slice(i, i + 1)))
        part = pytree.tree_map(lambda t: t[i:i + 1] if isinstance(t, Tensor) and t.dim() > 0 else t, whole)
        assert_same(one, part, tol, f"sample {i} alone vs in the batch")


@check("empty")
def _empty(case: Case) -> None:
    out = case.run(inputs=_slice(case, case.inputs(), slice(0, 0)))
    for t in pytree.tree_leaves(out):
        if isinstance(t, Tensor) and t.dim() > 0:
            assert t.shape[0] == 0, f"an empty batch gave an output of shape {tuple(t.shape)}"


@check("pickle")
def _pickle(case: Case) -> None:
    clone = pickle.loads(pickle.dumps(case.member))
    inputs = case.inputs()
    assert_same(case.run(member=clone, inputs=inputs), case.run(inputs=inputs), (0.0, 0.0), "after pickling")


@check("determinism")
def _determinism(case: Case) -> None:
    first, second = case.inputs(seed=7), case.inputs(seed=7)
    assert_same(first, second, (0.0, 0.0), "inputs drawn twice from the same seed")
    assert_same(case.run(inputs=first), case.run(inputs=second), (0.0, 0.0), "two calls")


@check("cuda")
def _cuda(case: Case) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    inputs = case.inputs()
    member = copy.deepcopy(case.member)
    member = member.to("cuda") if hasattr(member, "to") else member
    on_gpu = pytree.tree_map(lambda t: t.to("cuda") if isinstance(t, Tensor) else t, inputs)
    atol, rtol = case.tolerance(inputs)
    assert_same(case.run(member=member, inputs=on_gpu), case.run(inputs=inputs), (max(atol, 1e-4), max(rtol, 1e-4)),
                "CUDA vs CPU")


class _Called(nn.Module):
    """``case.call`` bound to its member, as a module to export (inputs in ``make_inputs`` order)."""

    def __init__(self, case: Case, member: Any) -> None:
        super().__init__()
        self.member, self.call = member, case.call

    def forward(self, *inputs: Tensor) -> Any:
        return self.call(self.member, *inputs)


def _float32(x: Any) -> Any:
    return pytree.tree_map(lambda t: t.float() if isinstance(t, Tensor) and t.is_floating_point() else t, x)


@check("export")
def _export(case: Case) -> None:
    from stnkit.export import export_onnx, export_program, load_program

    ort = pytest.importorskip("onnxruntime")  # in the test extra; a bare install skips, visibly
    traced = _float32(case.inputs(seed=0))
    # another batch size than the traced one, with fresh values: two draws concatenated
    fresh = tuple(torch.cat([a, b]) if case.is_batched(i) else a
                  for i, (a, b) in enumerate(zip(_float32(case.inputs(seed=1)), _float32(case.inputs(seed=2)))))
    assert all(isinstance(t, Tensor) for t in traced), "export needs tensor inputs only"
    assert _batch_size(case, fresh) != _batch_size(case, traced)
    member = copy.deepcopy(case.member)
    member = member.float() if isinstance(member, nn.Module) else member
    module = _Called(case, member).eval()
    with torch.no_grad():
        expected = module(*fresh)  # eager: the fast paths
    with tempfile.TemporaryDirectory() as tmp:
        program = export_program(module, traced, f"{tmp}/model.pt2")
        targets = " ".join(str(n.target) for n in program.graph.nodes)
        assert "autograd_function" not in targets, "a custom autograd function was exported"
        loaded = load_program(f"{tmp}/model.pt2").module()
        assert_same(loaded(*fresh), expected, (EXPORT_ATOL, 0.0), "torch.export save/load vs eager")
        export_onnx(module, traced, f"{tmp}/model.onnx")
        session = ort.InferenceSession(f"{tmp}/model.onnx", providers=["CPUExecutionProvider"])
        got = session.run(None, {f"input{i}": t.numpy() for i, t in enumerate(fresh)})
    want = [t for t in pytree.tree_leaves(expected) if isinstance(t, Tensor)]
    assert len(got) == len(want), f"ONNX gives {len(got)} outputs, eager {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        assert_same(torch.from_numpy(g), w, (EXPORT_ATOL, 0.0), f"ONNX (onnxruntime) output {i} vs eager")


@check("additive")
def _additive(case: Case) -> None:
    inputs = case.inputs()
    n = _batch_size(case, inputs)
    assert n >= 2, "make_inputs should give a batch of at least 2 for this check"
    parts = [case.run(inputs=_slice(case, inputs, slice(i, i + 1))) for i in range(n)]
    total = pytree.tree_map(lambda *leaves: sum(leaves[1:], leaves[0]), *parts)
    assert_same(total, case.run(inputs=inputs), case.tolerance(inputs), "sum of one-by-one vs batched")


def _batch_size(case: Case, inputs: tuple) -> int:
    sizes = {t.shape[0] for i, x in enumerate(inputs) if case.is_batched(i)
             for t in pytree.tree_leaves(x) if isinstance(t, Tensor) and t.dim() > 0}
    assert len(sizes) == 1, f"batched inputs disagree on the batch size: {sorted(sizes)}"
    return sizes.pop()
