"""``torch.compile`` (CPU inductor) of a SpatialTransformer equals eager, forward and backward.

Compiling is slow on a small CPU, so there are only a few small cases; each also covers one more
option (heads, fill, align_corners) so the compiled paths differ.
"""

from __future__ import annotations

import pytest
import torch

CASES = [
    ("affine", {}),
    ("projective", {"heads": 2, "align_corners": True}),
    ("tps", {"fill": 0.5, "mode": "bicubic"}),
    # a field family: separable resize (4x4 field -> 8x8) and scaling and squaring
    ("velocity", {"transform_options": {"field_size": 4, "steps": 3}, "padding": "border"}),
    ("piecewise_affine", {"transform_options": {"grid_size": 3}}),  # one GEMM against a barycentric basis
    ("bspline", {"transform_options": {"grid_size": 4}, "fill": 0.25}),  # cached 1-D bases, one axis at a time
]


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("name,options", CASES, ids=[c[0] for c in CASES])
def test_compiled_transformer_equals_eager(name, options, helpers):
    st = helpers.make_st(name, (2, 8, 8), seed=3, weight_scale=0.2, **options)
    x = helpers.smooth_image((3, 2, 8, 8), torch.float32)

    def run(module):
        st.zero_grad(set_to_none=True)
        inp = x.clone().requires_grad_()
        out, theta = module(inp, return_theta=True)
        (out.square().sum() + theta.sum()).backward()
        grads = [p.grad.clone() for p in st.parameters()]
        return out.detach(), theta.detach(), inp.grad, grads

    eager = run(st)
    compiled = run(torch.compile(st, backend="inductor"))
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # it really was compiled
    assert (eager[1] - st.transform.identity()).abs().max() > 1e-2  # a non-trivial warp
    torch.testing.assert_close(compiled[0], eager[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(compiled[1], eager[1], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(compiled[2], eager[2], atol=1e-5, rtol=1e-5)
    for got, expected in zip(compiled[3], eager[3]):
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
