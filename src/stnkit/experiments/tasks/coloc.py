"""Co-localisation (the paper's appendix): find the digit shared by a set of images without any box.

``coloc`` (plain) and ``coloc-tc`` (cluttered): 84x84 images each holding one MNIST digit of the
run's class at a random position (:class:`~stnkit.experiments.data.coloc.ColocImages`, 100 per
class). The model ``coloc-st`` (an attention transformer and a frozen Table 1 digit CNN as encoder,
:mod:`stnkit.experiments.models.coloc`) is trained only with the triplet hinge loss
(:func:`.boxes.triplet_hinge_loss`, margin 1): the crops of two images of one class should embed
closer than a crop and a random window of its own image. It is scored, as in the paper, on the
very images it trained on, with the true boxes it never saw: a hit is an IoU above 0.5; the hit
rate is reported on average and per class (``hit_rate_<class>``). The recipe (Adam 1e-3, batch 20,
120 epochs = 600 steps of 100 images) lets the model's window shrink from the whole image to about
the digit's size over the first 300 steps (``coloc-st``'s ``shrink_steps``), a curriculum the paper
does not describe: without it every run moved all windows into an empty region.

Options (``task_options`` of the config): ``classes`` (default all ten; the paper runs one class
per run, e.g. ``{"classes": [3]}``; several classes train one shared transformer whose pairs stay
within a class), ``per_class`` (100), ``encoder_steps`` (steps of the encoder's pretraining), and
the encoder's pretraining inputs (:func:`encoder_inputs`; default clean 28x28 digits):
``encoder_clutter`` (clutter patches at ``coloc-tc``'s density), ``encoder_shift`` (the digit moved
by up to that many pixels), ``encoder_zoom`` (windows of 1 to that many digit sides that hold the
digit). None of them made ``coloc-tc`` find its digits (docs/results.md, co-localisation).

The encoder is pretrained on MNIST's training digits before the first step
(:meth:`Colocalisation.prepare_model`: Adam, batch 128, ``encoder_steps`` steps, a generator seeded
by the run's seed; about a minute of one CPU thread) and cached in the data cache
(``$STNKIT_CACHE_DIR``), or loaded from a ``cnn`` run with the model option
``{"encoder": "runs/cnn-mnist"}``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..._io import atomic_open
from ..._validate import check_positive_int
from ...functional import warp
from ..data import derive_seed, load_digits
from ..data.clutter import TranslatedCluttered
from ..data.coloc import CANVAS, CROP_BOX, DIGIT, PATCH, PATCHES, ColocEval, ColocImages
from .base import Batch, Metric, StepResult, Task, register_task
from .boxes import attention_boxes, box_iou, triplet_hinge_loss

if TYPE_CHECKING:
    from ..models.coloc import CoLocaliser

log = logging.getLogger(__name__)
ENCODER_STEPS = 300


@register_task
class Colocalisation(Task):
    """Co-localisation of one digit class without box labels (see the module docs)."""

    name = "coloc"
    title = "co-localisation: one digit class on 84x84, no boxes (triplet loss)"
    metrics: ClassVar[tuple[Metric, ...]] = (Metric("hit_rate", lower_is_better=False), Metric("iou", False, ""))
    scored_on: ClassVar[str] = "train"
    models: ClassVar[tuple[str, ...]] = ("coloc-st",)
    options: ClassVar[tuple[str, ...]] = (
        "classes",
        "per_class",
        "encoder_steps",
        "encoder_clutter",
        "encoder_shift",
        "encoder_zoom",
    )
    recipe: ClassVar[dict[str, Any]] = {
        "model": "coloc-st",
        "transform": "attention",
        "optimizer": "adam",
        "lr": 1e-3,
        "schedule": "constant",
        "batch_size": 20,
        "epochs": 120,
    }
    pictures: ClassVar[str] = "each image with the predicted box (the transformer's window) and the true box"
    paper = {("coloc-st", "attention"): 100.0}
    paper_source = "appendix (co-localisation, hit rate at IoU > 0.5)"
    clutter: ClassVar[bool] = False

    def __init__(
        self,
        *,
        classes: Iterable[int] = tuple(range(10)),
        per_class: int = 100,
        encoder_steps: int = ENCODER_STEPS,
        encoder_clutter: bool = False,
        encoder_shift: int = 0,
        encoder_zoom: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.classes, self.per_class = list(classes), per_class
        self.encoder_steps = check_positive_int("encoder_steps", encoder_steps)
        self.encoder_shift = check_positive_int("encoder_shift", encoder_shift, minimum=0)
        if isinstance(encoder_zoom, bool) or not isinstance(encoder_zoom, (int, float)) or not encoder_zoom >= 1:
            raise ValueError(f"encoder_zoom: expected a number >= 1 (windows of 1 to 3 digits), got {encoder_zoom!r}")
        self.encoder_zoom = float(encoder_zoom)
        if not isinstance(encoder_clutter, bool):
            raise ValueError(f"encoder_clutter: expected true or false, got {encoder_clutter!r}")
        self.encoder_clutter = encoder_clutter
        self._train: ColocImages | None = None

    @property
    def in_shape(self) -> tuple[int, int, int]:
        return (1, 84, 84)

    @property
    def num_outputs(self) -> int:
        return 10  # the encoder's classes

    def train_data(self) -> ColocImages:
        """The run's images (drawn once from the seed); each epoch reshuffles them and draws new
        random negative crops from ``(seed, epoch)``."""
        if self._train is None:
            self._train = ColocImages(
                self.classes,
                self.per_class,
                self.clutter,
                name=self.digits,
                data_dir=self.data_dir,
                download=self.download,
                seed=self.seed,
                limit=self.limit,
            )
        return self._train

    def eval_data(self) -> ColocEval:
        """The training images themselves, in order (the paper scores co-localisation on them)."""
        return ColocEval(self.train_data())

    def data_info(self) -> dict[str, Any]:
        return {"data_source": self.train_data().source, "classes": self.classes, "clutter": self.clutter}

    # -- training and scoring ------------------------------------------------------------------------
    def step(self, model: nn.Module, batch: Batch) -> StepResult:
        x, boxes, labels, negatives = batch
        model = cast("CoLocaliser", model)
        crops, theta = model.st(x, return_theta=True)  # (n, 1, crop, crop), (n, 3)
        random_crops = warp(x, negatives.to(x.dtype), "attention", crops.shape[2:])  # (n, 1, crop, crop)
        loss = triplet_hinge_loss(model.embed(crops), model.embed(random_crops), labels).sum()
        model.st.advance()  # one step of the window's curriculum (it shrinks from the whole image)
        with torch.no_grad():  # monitoring only: the true boxes never reach the loss
            iou = box_iou(attention_boxes(theta.detach(), x.shape[2:]), boxes.to(x.dtype))
        return StepResult(loss, len(labels), {"hits": float((iou > 0.5).sum()), "iou": float(iou.sum())})

    def train_metrics(self, sums: dict[str, float], count: float) -> dict[str, float]:
        count = max(count, 1)
        return {"hit_rate": 100 * sums.get("hits", 0.0) / count, "iou": sums.get("iou", 0.0) / count}

    @torch.no_grad()
    def evaluate(
        self, model: nn.Module, batches: Iterable[Batch], device: torch.device | str | None = None
    ) -> dict[str, Any]:
        """``{"hit_rate": %, "iou": mean IoU, "hit_rate_<class>": % per class, "n": images}``."""
        model = cast("CoLocaliser", model)
        was_training = model.training
        model.eval()
        ious, labels = [], []
        try:
            for x, boxes, y, _ in batches:
                x = x.to(device) if device is not None else x
                ious.append(box_iou(model.boxes(x).cpu().double(), boxes.double()))
                labels.append(y)
        finally:
            model.train(was_training)
        if not ious:
            raise ValueError("batches: expected at least one image to evaluate, got none")
        iou, label = torch.cat(ious), torch.cat(labels)
        result: dict[str, Any] = {
            "hit_rate": 100 * float((iou > 0.5).double().mean()),
            "iou": float(iou.mean()),
            "n": len(iou),
        }
        for c in sorted(set(label.tolist())):
            result[f"hit_rate_{c}"] = 100 * float((iou[label == c] > 0.5).double().mean())
        return result

    @classmethod
    def paper_value(cls, model: str, transform: str | None, digits: str = "mnist") -> float | None:
        """The paper's hit rate (%) for ``model`` (its transform is always the attention)."""
        return cls.paper.get((model, "attention")) if digits == "mnist" else None

    # -- the encoder ----------------------------------------------------------------------------------
    def prepare_model(self, model: nn.Module) -> None:
        """Pretrains the model's frozen encoder on MNIST's training digits unless it is ready
        (loaded from a run or a checkpoint); cached in ``cache_dir()`` under a name that holds the
        digits, filter counts, seed, steps, pretraining inputs and a hash of the initial weights."""
        if bool(getattr(model, "encoder_ready", True)):
            return
        from ..data import cache_dir

        model = cast("CoLocaliser", model)
        encoder = model.encoder
        shapes = "-".join(str(p.shape[0]) for p in encoder.parameters() if p.dim() == 4)
        inputs = "-clutter" if self.encoder_clutter else ""
        inputs += f"-shift{self.encoder_shift}" if self.encoder_shift else ""
        inputs += f"-zoom{self.encoder_zoom:g}" if self.encoder_zoom != 1 else ""
        # the initial weights are part of the key: they come from the global RNG of whoever built
        # the model, so a run with other model options (or a script) must not load this run's encoder
        init = hashlib.sha256(b"".join(t.detach().cpu().numpy().tobytes() for t in encoder.state_dict().values()))
        name = f"coloc-encoder-{self.digits}-c{shapes}-s{self.seed}-n{self.encoder_steps}{inputs}"
        path = cache_dir() / f"{name}-i{init.hexdigest()[:12]}.pt"
        try:
            encoder.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            log.info("co-localisation: encoder loaded from %s", path)
        except (OSError, RuntimeError, ValueError):
            pretrain_encoder(
                encoder,
                load_digits(self.digits, "train", data_dir=self.data_dir, download=self.download),
                self.encoder_steps,
                torch.Generator().manual_seed(derive_seed("coloc-encoder", self.seed)),
                clutter=self.encoder_clutter,
                shift=self.encoder_shift,
                zoom=self.encoder_zoom,
            )
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with atomic_open(path) as f:
                    torch.save(encoder.state_dict(), f)
            except OSError as err:  # a read-only cache only costs the next run a minute
                log.warning("co-localisation: could not cache the encoder in %s (%s)", path, err)
        model.encoder_ready.fill_(True)


def encoder_inputs(
    digits: Any, index: Tensor, generator: torch.Generator, clutter: bool = False, shift: int = 0, zoom: float = 1.0
) -> Tensor:
    """The encoder's pretraining inputs ``(b, 1, 28, 28)`` in [0, 1]: the digits ``digits.images[index]``,
    each moved by a uniformly random whole-pixel shift of at most ``shift`` pixels along each axis
    and, with ``clutter``, with 6x6 clutter patches of other training digits at the density of the
    cluttered co-localisation images (16 per 84x84), so on average as much clutter as a crop of them.

    With ``zoom > 1`` each input is instead a window of an 84x84 co-localisation image (cluttered
    with ``clutter``) sampled down to 28x28: its side uniform between the digit's (28) and ``zoom``
    times that (at most the image), at a random place that holds the whole digit (give or take
    ``shift`` pixels), i.e. what the transformer's window reads while it shrinks."""
    images = digits.images[index]  # (b, 28, 28) uint8
    if not clutter and shift == 0 and zoom == 1:
        return images.unsqueeze(1).float().div(255)
    b, side = len(index), (DIGIT + 2 * shift if zoom == 1 else CANVAS)  # a canvas the digit moves in
    patches = round(PATCHES * side**2 / CANVAS**2) if clutter else 0
    place = TranslatedCluttered(size=side, patches=patches, patch_size=PATCH, crop_box=CROP_BOX)
    others = digits.images[torch.randint(len(digits.images), (b, patches), generator=generator)]
    params = place.make_params(b, generator)
    canvas = place.apply(images, params, others if patches else None)  # (b, 1, side, side)
    if zoom == 1:
        return canvas[:, :, shift : shift + DIGIT, shift : shift + DIGIT]  # its centre 28x28
    fit = DIGIT / CANVAS  # the digit's half-side in normalised units
    digit = torch.stack([params["offset_x"], params["offset_y"]], 1) / (CANVAS / 2)  # (b, 2) its centre
    scale = fit + (min(zoom * fit, 1.0) - fit) * torch.rand(b, 1, generator=generator)  # (b, 1)
    room = scale - fit + 2 * shift / CANVAS  # how far the window's centre may be from the digit's
    low, high = torch.maximum(digit - room, scale - 1), torch.minimum(digit + room, 1 - scale)
    centre = low + (high - low) * torch.rand(b, 2, generator=generator)  # (b, 2)
    return warp(canvas, torch.cat([scale, centre], 1), "attention", (DIGIT, DIGIT))


def pretrain_encoder(
    encoder: nn.Module,
    digits: Any,
    steps: int,
    generator: torch.Generator,
    batch_size: int = 128,
    lr: float = 1e-3,
    clutter: bool = False,
    shift: int = 0,
    zoom: float = 1.0,
) -> float:
    """Trains ``encoder`` (a digit classifier on ``(N, 1, 28, 28)``) with Adam and cross-entropy on
    random batches of ``digits`` (shifted and cluttered by :func:`encoder_inputs` as asked), keeps
    it frozen, and returns the last batch's accuracy (%)."""
    params = list(encoder.parameters())
    encoder.requires_grad_(True)
    optimizer = torch.optim.Adam(params, lr=lr)
    correct = 0.0
    try:
        with torch.enable_grad():
            for _ in range(steps):
                index = torch.randint(len(digits.labels), (batch_size,), generator=generator)
                x = encoder_inputs(digits, index, generator, clutter, shift, zoom).to(params[0])  # (b, 1, 28, 28)
                logits = encoder(x)
                loss = F.cross_entropy(logits, digits.labels[index].to(logits.device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                correct = float((logits.argmax(1).cpu() == digits.labels[index]).float().mean())
    finally:
        encoder.requires_grad_(False)
    log.info("co-localisation: encoder pretrained, %d steps, last batch accuracy %.1f%%", steps, 100 * correct)
    return 100 * correct


@register_task
class ColocalisationCluttered(Colocalisation):
    """Co-localisation on cluttered images (sixteen 6x6 patches of training digits)."""

    name = "coloc-tc"
    title = "co-localisation, cluttered: sixteen 6x6 patches of other digits"
    clutter = True
    paper = {}  # the appendix gives 75-93% depending on the class, no single number
    paper_source = "appendix (co-localisation with clutter: 75-93% hit rate depending on the class)"
