"""Boxes and the co-localisation loss: IoU, the hit rate at IoU > 0.5, attention theta -> box, and
the triplet hinge loss of the paper's co-localisation experiment (Jaderberg et al. 2015, appendix).

Boxes are ``(x0, y0, x1, y1)`` in continuous pixel coordinates of the input: with the project's
``align_corners=False`` convention, pixel ``i`` covers ``[i, i + 1]``, so a box of the whole
``H x W`` image is ``(0, 0, W, H)``.

Example:
    >>> import torch
    >>> a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    >>> b = torch.tensor([[1.0, 0.0, 3.0, 2.0]])
    >>> box_iou(a, b)  # overlap 2, union 6
    tensor([0.3333])
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..._validate import check_tensor
from ..models.coloc import attention_boxes

__all__ = ["HIT_IOU", "attention_boxes", "box_iou", "hit_rate", "hits", "triplet_hinge_loss"]

#: The paper's criterion: a predicted box is a hit when its IoU with the true box exceeds this.
HIT_IOU = 0.5


def box_iou(boxes: Tensor, others: Tensor) -> Tensor:
    """Intersection over union of matching boxes.

    Args:
        boxes: ``(N, 4)`` boxes ``(x0, y0, x1, y1)`` with ``x0 <= x1``, ``y0 <= y1``.
        others: ``(N, 4)`` boxes, likewise.

    Returns:
        ``(N,)`` IoU in [0, 1] (0 where both boxes are empty).

    Raises:
        ValueError: shapes that are not ``(N, 4)`` or differ.
    """
    check_tensor("boxes", boxes, ndim=2, shape="(N, 4)", floating=True)
    check_tensor("others", others, ndim=2, shape="(N, 4)", floating=True)
    if boxes.shape[1] != 4 or boxes.shape != others.shape:
        raise ValueError(
            f"others: expected the shape of boxes {tuple(boxes.shape)} = (N, 4), got {tuple(others.shape)}"
        )
    low = torch.maximum(boxes[:, :2], others[:, :2])  # (N, 2) top-left of the intersection
    high = torch.minimum(boxes[:, 2:], others[:, 2:])  # (N, 2) bottom-right
    inter = (high - low).clamp(min=0).prod(dim=1)  # (N,)
    area = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0).prod(dim=1)
    area_o = (others[:, 2:] - others[:, :2]).clamp(min=0).prod(dim=1)
    union = area + area_o - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), torch.zeros_like(union))


def hits(boxes: Tensor, true_boxes: Tensor, threshold: float = HIT_IOU) -> Tensor:
    """``(N,)`` bool: IoU with the true box strictly above ``threshold`` (the paper: 0.5)."""
    return box_iou(boxes, true_boxes) > threshold


def hit_rate(boxes: Tensor, true_boxes: Tensor, threshold: float = HIT_IOU) -> float:
    """Percentage of predicted boxes whose IoU with their true box exceeds ``threshold``.

    Raises:
        ValueError: no box.
    """
    if boxes.shape[0] == 0:
        raise ValueError("boxes: expected at least one box to score, got none")
    return 100.0 * float(hits(boxes, true_boxes, threshold).double().mean())


def triplet_hinge_loss(anchors: Tensor, negatives: Tensor, labels: Tensor, margin: float = 1.0) -> Tensor:
    """The co-localisation loss, per anchor.

    For each image ``n`` and every other image ``m != n`` of the same class:
    ``max(0, ||e_n - e_m||^2 - ||e_n - r_n||^2 + margin)`` where ``e_n`` is the encoding of the
    transformed crop of image ``n`` (anchor), ``e_m`` that of image ``m`` (positive) and ``r_n``
    the encoding of a random crop of image ``n`` itself (negative). Anchor ``n``'s loss is the
    mean over its partners ``m`` (0 when it has none), so sums over batches weigh images alike.

    Args:
        anchors: ``(N, D)`` encodings of the transformed crops.
        negatives: ``(N, D)`` encodings of the random crops of the same images.
        labels: ``(N,)`` class of each image (pairs are formed within a class).
        margin: The hinge margin (paper: 1).

    Returns:
        ``(N,)`` loss per anchor.
    """
    check_tensor("anchors", anchors, ndim=2, shape="(N, D)", floating=True)
    check_tensor("negatives", negatives, ndim=2, shape="(N, D)", floating=True)
    if negatives.shape != anchors.shape or labels.shape != anchors.shape[:1]:
        raise ValueError(
            f"negatives, labels: expected shapes {tuple(anchors.shape)} and ({anchors.shape[0]},) "
            f"like anchors, got {tuple(negatives.shape)} and {tuple(labels.shape)}"
        )
    norms = anchors.square().sum(dim=1)  # (N,)
    positive = (norms[:, None] + norms[None, :] - 2 * anchors @ anchors.T).clamp(min=0)  # (N, N) ||e_n - e_m||^2
    negative = (anchors - negatives).square().sum(dim=1)  # (N,) ||e_n - r_n||^2
    pairs = (labels[:, None] == labels[None, :]) & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    hinge = (positive - negative[:, None] + margin).clamp(min=0) * pairs  # (N, N)
    return hinge.sum(dim=1) / pairs.sum(dim=1).clamp(min=1)
