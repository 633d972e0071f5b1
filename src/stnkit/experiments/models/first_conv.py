"""A first convolution whose *input* gradient is cheap when it has one input channel.

Behind a spatial transformer the classifier's input needs a gradient (the sampler passes it on to
theta). For a 1-channel input oneDNN computes that gradient (its backward-data of a 1 -> C_out
``k x k`` convolution) pathologically slowly: about 50-70 ms for 32 9x9 filters on 256 images of
21x21 on one CPU thread, where the forward pass takes 5-11 ms (docs/performance.md). Here it is
one ``C_out -> kh`` convolution with ``1 x kw`` kernels (one output channel per kernel row) and
``kh`` shifted slice-adds (:func:`input_grad_single_channel`), about 10 ms. (One GEMM to the
``kh*kw`` kernel-offset planes followed by ``kh*kw`` slice-adds was measured too: 26-29 ms.) The
weight and bias gradients stay PyTorch's (``aten.convolution_backward`` with only those outputs
requested).

:class:`FirstConv2d` is an ``nn.Conv2d`` (same parameters, same state dict) that takes this path only
when it pays and is exact: one input channel, ``groups == 1``, stride 1, dilation 1, zero padding,
an input that requires a gradient, grad mode on, and not while exporting or under
``torch.compile`` (those see plain ``F.conv2d``). Anything else is ``nn.Conv2d.forward``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable


def _tracing() -> bool:
    """True while exporting (torch.export / ONNX) or compiling, where only plain ops may appear."""
    compiler = getattr(torch, "compiler", None)
    if compiler is not None:
        if getattr(compiler, "is_compiling", lambda: False)():
            return True
        if getattr(compiler, "is_exporting", lambda: False)():
            return True
    onnx_export = getattr(getattr(torch, "onnx", None), "is_in_onnx_export", None)
    return bool(onnx_export and onnx_export())


def input_grad_single_channel(
    grad_out: Tensor, weight: Tensor, in_hw: tuple[int, int], padding: tuple[int, int]
) -> Tensor:
    """The input gradient of a stride-1, dilation-1 convolution with one input channel.

    Split along the kernel rows: ``A[:, i]`` (one output channel per kernel row ``i``) is the
    gradient's full 1-D correlation along x with row ``i`` of every filter, summed over the
    ``C_out`` filters, which is one ordinary convolution ``C_out -> kh`` channels with ``1 x kw``
    kernels (oneDNN runs it fast); then ``kh`` shifted slice-adds along y. In formulas, with
    ``x_p`` the padded input,
    ``dL/dx_p[n, y, x] = sum_i A[n, i, y - i, x]``,
    ``A[n, i, y', x] = sum_c sum_j W[c, 0, i, j] grad_out[n, c, y', x - j]``.

    Args:
        grad_out: ``(N, C_out, H', W')`` gradient of the convolution's output.
        weight: ``(C_out, 1, kh, kw)`` filters.
        in_hw: ``(H, W)`` of the input.
        padding: ``(ph, pw)`` zero padding of the input.

    Returns:
        ``(N, 1, H, W)`` gradient of the input.
    """
    n, _, ho, wo = grad_out.shape
    kh, kw = weight.shape[-2:]
    ph, pw = padding
    h, w = in_hw
    rows = weight[:, 0].flip(-1).transpose(0, 1).unsqueeze(2)  # (kh, C_out, 1, kw): row i of every filter, flipped
    # Only the columns [pw, pw + W) of the padded input are wanted: pad grad_out by kw - 1 - pw.
    extra = kw - 1 - pw
    a = F.conv2d(grad_out, rows, padding=(0, max(extra, 0)))  # (N, kh, H', W) if extra >= 0
    if extra < 0:  # padding wider than the kernel: a holds columns [kw - 1, pw + W + pw - kw + 1)
        a = a[..., -extra : -extra + w]  # (N, kh, H', W)
    grad_x = grad_out.new_zeros(n, 1, h, w)  # (N, 1, H, W)
    for i in range(kh):  # padded row y gets A[:, i, y - i]; keep y in [ph, ph + H)
        lo, hi = max(i, ph), min(i + ho, ph + h)
        if lo < hi:
            grad_x[:, 0, lo - ph : hi - ph] += a[:, i, lo - i : hi - i]
    return grad_x


class _SingleChannelConv(torch.autograd.Function):
    """``F.conv2d`` (stride 1, dilation 1, zero padding) with the fast input gradient for C_in == 1."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, padding: tuple[int, int]) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.padding, ctx.has_bias = padding, bias is not None
        return F.conv2d(x, weight, bias, padding=padding)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        x, weight = ctx.saved_tensors
        grad_out = grad_out.to(weight.dtype).contiguous()  # under autocast the output was bfloat16/float16
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = input_grad_single_channel(grad_out, weight, tuple(x.shape[-2:]), ctx.padding).to(x.dtype)
        if ctx.needs_input_grad[1] or (ctx.has_bias and ctx.needs_input_grad[2]):
            bias_sizes = [weight.shape[0]] if ctx.has_bias else None
            _, grad_w, grad_b = torch.ops.aten.convolution_backward(
                grad_out,
                x.to(weight.dtype),
                weight,
                bias_sizes,
                [1, 1],
                list(ctx.padding),
                [1, 1],
                False,
                [0, 0],
                1,
                [False, bool(ctx.needs_input_grad[1]), bool(ctx.has_bias and ctx.needs_input_grad[2])],
            )
        return grad_x, grad_w, grad_b, None


class FirstConv2d(nn.Conv2d):
    """``nn.Conv2d`` with a fast input gradient for a single input channel (see the module docs).

    Shape:
        - input: ``(N, C_in, H, W)``.
        - output: ``(N, C_out, H', W')``, as ``nn.Conv2d``.
    """

    def fast_path_applies(self, x: Tensor) -> bool:
        """Whether ``forward(x)`` takes the custom input gradient (else plain ``nn.Conv2d``)."""
        return (
            self.in_channels == 1
            and self.groups == 1
            and self.stride == (1, 1)
            and self.dilation == (1, 1)
            and self.padding_mode == "zeros"
            and not isinstance(self.padding, str)
            and x.dim() == 4
            and x.requires_grad
            and torch.is_grad_enabled()
            and not _tracing()
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.fast_path_applies(x):
            return _SingleChannelConv.apply(x, self.weight, self.bias, tuple(self.padding))
        return super().forward(x)
