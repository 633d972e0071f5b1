"""The paper's published test errors (%), for comparison tables (Jaderberg et al., NIPS 2015).

The numbers are declared by the tasks (:mod:`stnkit.experiments.tasks`, ``Task.paper``); this module
views them as the paper's tables. Keys are ``(model, transform, distortion)`` in this library's names: models of
:mod:`stnkit.experiments.models` (``fcn``, ``cnn``, ``st-fcn``, ``st-cnn``, ``2xst-fcn``, ``2xst-cnn``), transform
families of :mod:`stnkit.transforms` (``None`` for models without a transformer) and distortions of
:mod:`stnkit.experiments.data` (``r``, ``rts``, ``p``, ``e``, ``tc``, ``addition``). All numbers are on MNIST.

* Table 1 (distorted MNIST: R, RTS, P, E): every model.
* Translated cluttered MNIST (TC, 60x60): given in the text for FCN, CNN, ST-FCN and ST-CNN
  without naming the transform; :func:`paper_error` returns those numbers for any transform
  (see :data:`TC_ANY_TRANSFORM`).
* Table 4 (MNIST addition).
"""

from __future__ import annotations

from ..tasks import get_task, list_tasks

#: Display names of models and transforms, as the paper's tables write them.
MODEL_LABELS = {
    "fcn": "FCN",
    "cnn": "CNN",
    "st-fcn": "ST-FCN",
    "st-cnn": "ST-CNN",
    "2xst-fcn": "2xST-FCN",
    "2xst-cnn": "2xST-CNN",
    "ic-st-cnn": "IC-ST-CNN",
    "multidigit-cnn": "CNN (multi-digit)",
    "st-cnn-single": "ST-CNN Single",
    "st-cnn-multi": "ST-CNN Multi",
}
TRANSFORM_LABELS = {
    "affine": "Aff",
    "projective": "Proj",
    "tps": "TPS",
    "attention": "Att",
    "similarity": "Sim",
    "translation": "Trans",
    "affine3d": "Aff3d",
}
DISTORTION_LABELS = {
    "none": "none",
    "r": "R",
    "rts": "RTS",
    "p": "P",
    "e": "E",
    "t": "T",
    "tc": "TC",
    "addition": "Addition",
    "svhn": "SVHN 64px",
    "svhn-128": "SVHN 128px",
    "mnist-sequences": "sequences 64px",
    "mnist-sequences-128": "sequences 128px",
}

# The numbers themselves are declared by the tasks (stnkit.experiments.tasks); these are views of them.
#: Table 1: test error (%) on distorted MNIST.
TABLE1: dict[tuple[str, str | None], dict[str, float]] = {}
for _d in ("r", "rts", "p", "e"):
    for _key, _value in get_task(_d).paper.items():
        TABLE1.setdefault(_key, {})[_d] = _value

#: Translated cluttered MNIST (60x60), from the paper's text; the transform is not named.
TC: dict[str, float] = {model: value for (model, _), value in get_task("tc").paper.items()}

#: Whether :data:`TC` applies to a transformer model whatever its transform family.
TC_ANY_TRANSFORM = True

#: Table 4: test error (%) on MNIST addition.
TABLE4: dict[tuple[str, str | None], float] = dict(get_task("addition").paper)

#: The columns of the paper's tables, in order.
PAPER_DISTORTIONS = ("r", "rts", "p", "e", "tc", "addition")


def has_transformer(model: str) -> bool:
    """Whether a model name has a spatial transformer (``st-...``, ``Nxst-...`` or ``st3d-...``)."""
    return "st-" in model or "st3d-" in model


def paper_error(model: str, transform: str | None, distortion: str, dataset: str = "mnist") -> float | None:
    """The paper's test error (%) for a model, transform and distortion, or ``None`` if not published.

    Args:
        model: Model name, e.g. ``"st-cnn"``.
        transform: Transform family (ignored for models without a transformer).
        distortion: ``"r"``, ``"rts"``, ``"p"``, ``"e"``, ``"tc"`` or ``"addition"``.
        dataset: The digits; the paper used MNIST only.

    Example:
        >>> paper_error("st-cnn", "tps", "e")
        1.1
        >>> paper_error("cnn", "affine", "addition")
        14.7
    """
    if distortion not in list_tasks():
        return None
    return get_task(distortion).paper_value(model, transform, dataset)


def row_label(model: str, transform: str | None) -> str:
    """The paper's row name, e.g. ``"ST-CNN Aff"``, ``"CNN"``."""
    name = MODEL_LABELS.get(model, model)
    if not has_transformer(model) or not transform:
        return name
    return f"{name} {TRANSFORM_LABELS.get(transform, transform)}"
