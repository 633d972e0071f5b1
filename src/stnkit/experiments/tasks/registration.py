"""Unsupervised 2-D registration of same-class MNIST digits (issue 13 item 6).

``registration``: each sample is a moving and a fixed digit of the same class
(:class:`~stnkit.experiments.data.pairs.DigitPairs`; fresh partners every epoch, fixed test pairs).
The model ``reg-unet`` (:mod:`stnkit.experiments.models.registration`) reads both and warps the
moving digit by a dense ``displacement`` or ``velocity`` field (``--transform``). No labels: the
loss per pair is the mean squared difference between the warped moving and the fixed image plus
``smooth`` times the mean squared spatial derivative of the predicted field
(:meth:`~stnkit.experiments.models.registration.Registration.smoothness`).

Metrics: ``dice`` (headline) and ``dice_before``, the Dice overlap of the digit masks (intensity
``> 0.5``) of the fixed and the warped (before: unwarped) moving digit, averaged over pairs (two
empty masks count 1); ``mse`` and ``mse_before`` the similarity after and before warping; and
``folding``, the share (%) of pixels where the displacement field's Jacobian determinant is
``<= 0`` (:func:`stnkit.fields.folding_fraction`).

Options (``task_options``): ``smooth`` (weight of the smoothness term, default 0.01).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar, cast

import torch
from torch import Tensor, nn

from ...fields import folding_fraction
from ..data import load_digits
from ..data.pairs import DigitPairs
from .base import Batch, Metric, StepResult, Task, register_task

if TYPE_CHECKING:
    from ..models.registration import Registration as RegistrationModel

#: Intensity above which a pixel belongs to the digit's mask.
MASK_THRESHOLD = 0.5
SMOOTH = 0.01


def dice(a: Tensor, b: Tensor) -> Tensor:
    """Dice overlap ``2 |a & b| / (|a| + |b|)`` of boolean masks ``(N, ...)`` per sample: ``(N,)``
    float64; 1 where both masks are empty."""
    if a.shape != b.shape:
        raise ValueError(f"b: expected the shape of a {tuple(a.shape)}, got {tuple(b.shape)}")
    a, b = a.flatten(1).double(), b.flatten(1).double()  # (N, P)
    total = a.sum(1) + b.sum(1)
    return torch.where(total > 0, 2 * (a * b).sum(1) / total.clamp_min(1), torch.ones_like(total))


@register_task
class Registration(Task):
    """Unsupervised registration of same-class digit pairs (see the module docs)."""

    name = "registration"
    title = "registration: warp a digit onto another of its class (MSE + smoothness, no labels)"
    metrics: ClassVar[tuple[Metric, ...]] = (
        Metric("dice", lower_is_better=False, unit=""),
        Metric("dice_before", lower_is_better=False, unit=""),
        Metric("mse", unit=""),
        Metric("mse_before", unit=""),
        Metric("folding", unit="%"),
    )
    models: ClassVar[tuple[str, ...]] = ("reg-unet",)
    options: ClassVar[tuple[str, ...]] = ("smooth",)
    recipe: ClassVar[dict[str, Any]] = {
        "model": "reg-unet",
        "transform": "velocity",
        "optimizer": "adam",
        "lr": 1e-3,
        "schedule": "constant",
        "batch_size": 64,
        "epochs": 2,
        "limit": 10000,
        "test_limit": 1000,
    }
    pictures: ClassVar[str] = "each moving digit warped onto its fixed partner (channel 0 warped; channel 1 the target)"

    def __init__(self, *, smooth: float = SMOOTH, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(smooth, bool) or not isinstance(smooth, (int, float)) or not smooth >= 0:
            raise ValueError(f"smooth: expected a number >= 0, got {smooth!r}")
        self.smooth = float(smooth)
        self._train: DigitPairs | None = None
        self._test: DigitPairs | None = None

    @property
    def in_shape(self) -> tuple[int, int, int]:
        return (2, 28, 28)  # moving and fixed stacked

    @property
    def num_outputs(self) -> int:
        return 2  # the field's components (x, y); the model's output is an image

    def train_data(self) -> DigitPairs:
        if self._train is None:
            digits = load_digits(self.digits, "train", data_dir=self.data_dir, download=self.download)
            self._train = DigitPairs(digits, train=True, seed=self.seed, limit=self.limit)
        return self._train

    def eval_data(self) -> DigitPairs:
        if self._test is None:
            digits = load_digits(self.digits, "test", data_dir=self.data_dir, download=self.download)
            limit = self.test_limit if self.test_limit is not None else self.limit
            self._test = DigitPairs(digits, train=False, limit=limit)
        return self._test

    def data_info(self) -> dict[str, Any]:
        return {"data_source": self.train_data().source, "smooth": self.smooth}

    @staticmethod
    def images(batch: Batch) -> Tensor:
        """Model inputs ``(n, 2, 28, 28)``: moving and fixed stacked."""
        return torch.cat([batch[0], batch[1]], 1)

    # -- training and scoring ------------------------------------------------------------------------
    def losses(self, model: nn.Module, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """Per-pair loss ``(n,)`` (differentiable) and per-pair metrics (detached, float64)."""
        model = cast("RegistrationModel", model)
        moving, fixed = batch[0], batch[1]
        x = torch.cat([moving, fixed], 1)  # (n, 2, H, W)
        warped, theta = model(x, return_theta=True)  # (n, 1, H, W), (n, P)
        mse = (warped - fixed).pow(2).flatten(1).mean(1)  # (n,)
        loss = mse + self.smooth * model.smoothness(theta)
        with torch.no_grad():
            mask = lambda t: t > MASK_THRESHOLD  # noqa: E731
            folding = folding_fraction(model.field(x, theta.detach())) if len(x) else mse.new_zeros(0)
            metrics = {
                "dice": dice(mask(warped), mask(fixed)),
                "dice_before": dice(mask(moving), mask(fixed)),
                "mse": mse.detach().double(),
                "mse_before": (moving - fixed).pow(2).flatten(1).mean(1).double(),
                "folding": 100 * folding.double(),
            }
        return loss, metrics

    def step(self, model: nn.Module, batch: Batch) -> StepResult:
        loss, metrics = self.losses(model, batch)
        return StepResult(loss.sum(), len(loss), {k: float(v.sum()) for k, v in metrics.items()})

    def train_metrics(self, sums: dict[str, float], count: float) -> dict[str, float]:
        return {m.name: sums.get(m.name, 0.0) / max(count, 1) for m in self.metrics}

    @torch.no_grad()
    def evaluate(
        self, model: nn.Module, batches: Iterable[Batch], device: torch.device | str | None = None
    ) -> dict[str, Any]:
        """``{"dice", "dice_before", "mse", "mse_before", "folding", "n"}`` averaged over the pairs."""
        was_training = model.training
        model.eval()
        sums: dict[str, float] = {}
        n = 0
        try:
            for batch in batches:
                batch = tuple(t.to(device) for t in batch) if device is not None else batch
                _, metrics = self.losses(model, batch)
                for k, v in metrics.items():
                    sums[k] = sums.get(k, 0.0) + float(v.sum())
                n += len(batch[0])
        finally:
            model.train(was_training)
        if not n:
            raise ValueError("batches: expected at least one pair to evaluate, got none")
        return {**self.train_metrics(sums, n), "n": n}
