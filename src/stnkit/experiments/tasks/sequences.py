"""Multi-digit recognition tasks (the paper's SVHN experiment, Table 2) and their metric.

The models (:mod:`stnkit.experiments.models.multidigit`) give logits ``(N, P, 11)``: one 11-way
head per position (digit 0-9, or 10 = "none"). Labels are ``(N, P)`` int64 with 10 for the empty
positions. The loss is the sum of the positions' cross-entropies (summed over the batch).

**Sequence error**: a sample is right only if all ``P`` positions are right, "none"s included.
Per-position accuracy is reported too (``acc_1`` ... ``acc_5``).

**Length head** (Goodfellow et al., optional): the model's extra row ``P`` holds ``P + 2`` logits
(length 0..P, then "more"). Its cross-entropy is added to the loss; a sample longer than ``P`` digits
(length label ``P + 1``) has its digit positions ignored (label ``-100``) and counts as right when the
predicted length is "more".

Tasks: ``mnist-sequences`` (64x64) and ``mnist-sequences-128`` (the loose 128x128 canvas, same pixel
scale), offline on MNIST (or the embedded sample).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Batch, Metric, StepResult, Task, register_task

#: Label of an empty position.
NONE = 10
#: Ignored position label (numbers longer than the heads, with the length head on).
IGNORE = -100
#: The models of Table 2 we implement.
SEQUENCE_MODELS = ("multidigit-cnn", "st-cnn-single", "st-cnn-multi")


def lengths_of(labels: Tensor) -> Tensor:
    """Number of digits of each label row ``(N, P)`` -> ``(N,)``; rows of ``IGNORE`` are "more" (``P + 1``)."""
    more = (labels == IGNORE).all(dim=1)
    return torch.where(more, labels.shape[1] + 1, (labels != NONE).sum(dim=1))


def split_logits(logits: Tensor, positions: int) -> tuple[Tensor, Tensor | None]:
    """``(N, P[+1], 11)`` -> digit logits ``(N, P, 11)`` and length logits ``(N, P + 2)`` or ``None``."""
    if logits.dim() != 3 or logits.shape[1] not in (positions, positions + 1):
        raise ValueError(
            f"logits: expected (N, {positions}, 11) or (N, {positions + 1}, 11) with the length head, "
            f"got shape {tuple(logits.shape)}"
        )
    if logits.shape[1] == positions:
        return logits, None
    return logits[:, :positions], logits[:, positions, : positions + 2]


def sequence_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy summed over positions and samples (+ the length head's, if the model has one).

    Args:
        logits: ``(N, P, 11)`` or ``(N, P + 1, 11)``.
        labels: ``(N, P)`` int64, 0-9 digits, 10 none, -100 ignored.
    """
    digits, length = split_logits(logits, labels.shape[1])
    loss = F.cross_entropy(
        digits.reshape(-1, digits.shape[-1]), labels.reshape(-1), reduction="sum", ignore_index=IGNORE
    )  # over (N*P,)
    if length is not None:
        loss = loss + F.cross_entropy(length, lengths_of(labels), reduction="sum")
    return loss


def sequence_counts(logits: Tensor, labels: Tensor) -> dict[str, float]:
    """Sums for the metrics: ``{"correct": whole sequences right, "pos_k": position k right}``."""
    digits, length = split_logits(logits, labels.shape[1])
    right = digits.argmax(-1) == labels  # (N, P)
    whole = right.all(dim=1)
    if length is not None:
        true_length = lengths_of(labels)
        more = true_length == labels.shape[1] + 1
        whole = torch.where(more, length.argmax(-1) == true_length, whole)
        right = right | more[:, None]  # a "more" sample's positions are not scored
    sums = {"correct": float(whole.sum())}
    sums.update({f"pos_{k + 1}": float(right[:, k].sum()) for k in range(labels.shape[1])})
    return sums


def sequence_metrics(sums: dict[str, float], count: float) -> dict[str, float]:
    """``{"error": sequence error %, "acc_k": accuracy % of position k}`` from summed counts."""
    count = max(count, 1)
    metrics = {"error": 100 * (1 - sums.get("correct", 0.0) / count)}
    metrics.update({f"acc_{k[4:]}": 100 * v / count for k, v in sums.items() if k.startswith("pos_")})
    return metrics


@torch.no_grad()
def sequence_error(
    model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], device: torch.device | str | None = None
) -> dict[str, Any]:
    """Sequence error and per-position accuracy of ``model`` (eval mode) over ``batches``.

    Returns:
        ``{"error": %, "acc_1": %, ..., "n": samples}``.

    Raises:
        ValueError: ``batches`` holds no sample.
    """
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    n = 0
    try:
        for x, y in batches:
            logits = model(x.to(device) if device is not None else x)
            for key, value in sequence_counts(logits.cpu(), y.cpu()).items():
                sums[key] = sums.get(key, 0.0) + value
            n += len(y)
    finally:
        model.train(was_training)
    if n == 0:
        raise ValueError("batches: expected at least one sample to evaluate, got none")
    return {**sequence_metrics(sums, n), "n": n}


class SequenceTask(Task):
    """Multi-digit recognition: ``P`` 11-way heads, scored by the sequence error."""

    positions: ClassVar[int] = 5
    metrics: ClassVar[tuple[Metric, ...]] = (Metric("error"),) + tuple(
        Metric(f"acc_{k}", lower_is_better=False) for k in range(1, 6)
    )
    models: ClassVar[tuple[str, ...]] = SEQUENCE_MODELS
    pictures: ClassVar[str] = (
        "test images, the first transformer's output, and where each transformer of the "
        "series reads, mapped back onto the input"
    )
    paper_source: ClassVar[str] = "Table 2"

    @property
    def num_outputs(self) -> int:
        return NONE + 1  # classes per position

    def step(self, model: nn.Module, batch: Batch) -> StepResult:
        x, y = batch
        logits = model(x)  # (n, P[+1], 11)
        return StepResult(sequence_loss(logits, y), len(y), sequence_counts(logits.detach(), y))

    def train_metrics(self, sums: dict[str, float], count: float) -> dict[str, float]:
        return sequence_metrics(sums, count)

    def evaluate(
        self, model: nn.Module, batches: Iterable[Batch], device: torch.device | str | None = None
    ) -> dict[str, Any]:
        return sequence_error(model, batches, device)  # type: ignore[arg-type]

    @classmethod
    def paper_value(cls, model: str, transform: str | None, digits: str = "mnist") -> float | None:
        if digits != "mnist":
            return None  # the default source; other digits are not the paper's experiment
        return cls.paper.get((model, transform if model.startswith("st-") else None))


# The CPU recipe (docs/results.md, "Multi-digit recognition"): Adam 2e-3 with a 100-step warm-up and
# a cosine decay to 0, batch 64, a quarter-width network with batch norm after the convs AND the FC
# hidden layers, the heads' biases starting at the log label frequencies (the length prior from step
# 0), no dropout, the paper's 0.1x localisation lr. Length: 15 epochs of 12,800 fresh sequences
# (192,000 images, 3,000 steps), ~18 CPU-minutes for the CNN at 1 thread on the project's CPU. The
# old recipe (Adam 1e-3 constant, no FC batch norm, 60,000 sequences an epoch) left all three models
# on the length-prior plateau after one epoch.
_RECIPE = {
    "model": "st-cnn-multi",
    "optimizer": "adam",
    "lr": 2e-3,
    "batch_size": 64,
    "epochs": 15,
    "limit": 12800,
    "schedule": "cosine",
    "warmup_iterations": 100,
    "loc_lr_mult": 0.1,
    "model_options": {"width": 0.25, "dropout": 0.0, "batch_norm": True, "fc_batch_norm": True, "prior_bias": True},
}


@register_task
class MnistSequences(SequenceTask):
    """1-5 MNIST digits side by side, the strip rotated/scaled/placed on a 64x64 canvas."""

    name = "mnist-sequences"
    title = "MNIST sequences: 1-5 digits on a 64x64 canvas"
    canvas: ClassVar[int] = 64
    recipe: ClassVar[dict[str, Any]] = _RECIPE

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._data: dict[str, Any] = {}

    @property
    def in_shape(self) -> tuple[int, int, int]:
        return (1, self.canvas, self.canvas)

    def _split(self, split: str, limit: int | None) -> Any:
        from ..data.sequences import DigitSequences

        if split not in self._data:
            self._data[split] = DigitSequences(
                split,
                self.digits,
                data_dir=self.data_dir,
                download=self.download,
                seed=self.seed,
                limit=limit,
                canvas=self.canvas,
                positions=self.positions,
            )
        return self._data[split]

    def train_data(self) -> Any:
        return self._split("train", self.limit)

    def eval_data(self) -> Any:
        return self._split("test", self.test_limit or self.limit)

    def data_info(self) -> dict[str, Any]:
        digits = self.train_data().digits
        return {"data_source": digits.source, "embedded": bool(digits.embedded)}


@register_task
class MnistSequencesLoose(MnistSequences):
    """The loose setting: a 128x128 canvas, the strip at the same pixel scale (more context)."""

    name = "mnist-sequences-128"
    title = "MNIST sequences, loose: 1-5 digits on a 128x128 canvas"
    canvas = 128
