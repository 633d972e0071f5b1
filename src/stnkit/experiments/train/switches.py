"""Helpers of the training speed switches (``--amp``; ``--compile`` and ``--channels-last`` live in the trainer)."""

from __future__ import annotations

import torch


def amp_dtype(device: torch.device) -> torch.dtype:
    """The autocast dtype of ``--amp``: bfloat16 (no loss scaling needed); refused where unsupported."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("amp: expected a GPU with bfloat16 support, got one without (use --no-amp)")
    if device.type == "cpu" and "avx512_bf16" not in _cpu_flags() and "amx_bf16" not in _cpu_flags():
        raise ValueError(
            "amp: expected a CPU with bfloat16 instructions (avx512_bf16 or amx_bf16), got one without (use --no-amp)"
        )
    return torch.bfloat16


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set())
    except OSError:
        return set()
