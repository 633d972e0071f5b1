"""The paper's published test errors (%), for comparison tables (Jaderberg et al., NIPS 2015).

Keys are ``(model, transform, distortion)`` in this library's names: models of
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

#: Display names of models and transforms, as the paper's tables write them.
MODEL_LABELS = {"fcn": "FCN", "cnn": "CNN", "st-fcn": "ST-FCN", "st-cnn": "ST-CNN",
                "2xst-fcn": "2xST-FCN", "2xst-cnn": "2xST-CNN"}
TRANSFORM_LABELS = {"affine": "Aff", "projective": "Proj", "tps": "TPS", "attention": "Att",
                    "similarity": "Sim", "translation": "Trans", "affine3d": "Aff3d"}
DISTORTION_LABELS = {"none": "none", "r": "R", "rts": "RTS", "p": "P", "e": "E", "t": "T", "tc": "TC",
                     "addition": "Addition"}

#: Table 1: test error (%) on distorted MNIST.
TABLE1: dict[tuple[str, str | None], dict[str, float]] = {
    ("fcn", None): {"r": 2.1, "rts": 5.2, "p": 3.1, "e": 3.2},
    ("cnn", None): {"r": 1.2, "rts": 0.8, "p": 1.5, "e": 1.4},
    ("st-fcn", "affine"): {"r": 1.2, "rts": 0.8, "p": 1.5, "e": 2.7},
    ("st-fcn", "projective"): {"r": 1.3, "rts": 0.9, "p": 1.4, "e": 2.6},
    ("st-fcn", "tps"): {"r": 1.1, "rts": 0.8, "p": 1.4, "e": 2.4},
    ("st-cnn", "affine"): {"r": 0.7, "rts": 0.5, "p": 0.8, "e": 1.2},
    ("st-cnn", "projective"): {"r": 0.8, "rts": 0.6, "p": 0.8, "e": 1.3},
    ("st-cnn", "tps"): {"r": 0.7, "rts": 0.5, "p": 0.8, "e": 1.1},
}

#: Translated cluttered MNIST (60x60), from the paper's text; the transform is not named.
TC: dict[str, float] = {"fcn": 13.2, "cnn": 3.5, "st-fcn": 2.0, "st-cnn": 1.7}

#: Whether :data:`TC` applies to a transformer model whatever its transform family.
TC_ANY_TRANSFORM = True

#: Table 4: test error (%) on MNIST addition.
TABLE4: dict[tuple[str, str | None], float] = {
    ("fcn", None): 47.7,
    ("cnn", None): 14.7,
    ("st-fcn", "affine"): 22.6,
    ("st-fcn", "projective"): 18.5,
    ("st-fcn", "tps"): 19.1,
    ("2xst-fcn", "affine"): 9.0,
    ("2xst-fcn", "projective"): 5.9,
    ("2xst-fcn", "tps"): 5.8,
}

#: The columns of the paper's tables, in order.
PAPER_DISTORTIONS = ("r", "rts", "p", "e", "tc", "addition")


def has_transformer(model: str) -> bool:
    """Whether a model name has a spatial transformer (``st-...`` or ``Nxst-...``)."""
    return "st-" in model


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
    if dataset != "mnist":
        return None
    key = (model, transform if has_transformer(model) else None)
    if distortion == "tc":
        return TC.get(model)
    if distortion == "addition":
        return TABLE4.get(key)
    return TABLE1.get(key, {}).get(distortion)


def row_label(model: str, transform: str | None) -> str:
    """The paper's row name, e.g. ``"ST-CNN Aff"``, ``"CNN"``."""
    name = MODEL_LABELS.get(model, model)
    if not has_transformer(model) or not transform:
        return name
    return f"{name} {TRANSFORM_LABELS.get(transform, transform)}"
