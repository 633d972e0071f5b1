"""Draws the pictures of the documentation site (docs/images/*.png): the coordinate convention and
one warp per transform family. Deterministic (fixed theta, no randomness).

    python scripts/make_docs_figures.py [--out docs/images]

Each family figure shows the input with the region the transformer reads (the output frame mapped
through theta into the input, red) and the output. A letter "F" on a checkerboard shows flips and
rotations at a glance.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import stnkit  # noqa: E402
from stnkit import coords  # noqa: E402

SIZE = 64
DPI = 80

# One telling theta per family (see each family's docstring for the parameters).
THETAS: dict[str, list[float]] = {
    "translation": [0.3, -0.2],
    "attention": [0.6, 0.25, 0.2],
    "similarity": [0.8, math.radians(30), 0.1, 0.0],
    "affine": [0.9, 0.3, 0.0, -0.2, 0.8, 0.1],
    "projective": [1.0, 0.1, 0.0, 0.0, 1.0, 0.0, 0.35, 0.2],
}


def letter_image() -> torch.Tensor:
    """``(1, 1, SIZE, SIZE)``: a faint checkerboard with a bold "F" (asymmetric in both axes)."""
    y, x = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    img = 0.15 + 0.1 * (((x // 8) + (y // 8)) % 2).float()  # (SIZE, SIZE)
    s = SIZE // 16
    img[3 * s:13 * s, 4 * s:6 * s] = 1.0  # stem
    img[3 * s:5 * s, 4 * s:12 * s] = 1.0  # top bar
    img[7 * s:9 * s, 4 * s:10 * s] = 0.8  # middle bar
    return img.view(1, 1, SIZE, SIZE)


def frame_outline(family: stnkit.transforms.Transform, theta: torch.Tensor, steps: int = 40) -> torch.Tensor:
    """The output frame's border mapped into the input, in pixel coordinates: ``(4 * steps, 2)``."""
    t = torch.linspace(-1, 1, steps)
    one = torch.ones(steps)
    border = torch.cat([torch.stack([t, -one], 1), torch.stack([one, t], 1), torch.stack([-t, one], 1),
                        torch.stack([-one, -t], 1)])  # (4 * steps, 2) normalised (x, y)
    points = family.warp_points(theta, border.unsqueeze(0))[0]  # (4 * steps, 2)
    return coords.normalized_to_pixel(points, (SIZE, SIZE), False)


def family_figure(name: str, theta: torch.Tensor, out: Path) -> None:
    family = stnkit.transforms.get(name)
    x = letter_image()
    y = stnkit.warp(x, theta, family)
    ring = frame_outline(family, theta)
    fig, axes = plt.subplots(1, 2, figsize=(4.4, 2.4))
    axes[0].imshow(x[0, 0], cmap="gray", vmin=0, vmax=1)
    axes[0].plot(ring[:, 0], ring[:, 1], color="red", linewidth=1.5)
    axes[0].set_xlim(-0.5, SIZE - 0.5)
    axes[0].set_ylim(SIZE - 0.5, -0.5)
    axes[0].set_title("input + region read", fontsize=9)
    axes[1].imshow(y[0, 0], cmap="gray", vmin=0, vmax=1)
    axes[1].set_title(f"{name} output", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(out, dpi=DPI)
    plt.close(fig)


def tps_theta() -> torch.Tensor:
    family = stnkit.transforms.get("tps")
    control = family.identity().view(-1, 2).clone()  # (K, 2) control points at their rest positions
    g = torch.Generator().manual_seed(0)
    control += (torch.rand(control.shape, generator=g) - 0.5) * 0.35
    return control.view(1, -1)


def convention_figure(out: Path) -> None:
    """Normalised coordinates over a 4 x 6 image: pixel centres, the (x, y) axes, align_corners."""
    h, w = 4, 6
    fig, axes = plt.subplots(1, 2, figsize=(7.0, 3.0))
    for ax, align in zip(axes, (False, True), strict=True):
        xs = coords.pixel_centres(w, align)
        ys = coords.pixel_centres(h, align)
        for i in range(w + 1):  # pixel borders in normalised coordinates
            edge = -1 + 2 * i / w if not align else -1 + 2 * (i - 0.5) / (w - 1)
            ax.axvline(edge, color="0.8", linewidth=0.8)
        for j in range(h + 1):
            edge = -1 + 2 * j / h if not align else -1 + 2 * (j - 0.5) / (h - 1)
            ax.axhline(edge, color="0.8", linewidth=0.8)
        gx, gy = torch.meshgrid(xs, ys, indexing="xy")
        ax.scatter(gx.flatten(), gy.flatten(), s=12, color="tab:blue", zorder=3)
        ax.plot([-1, 1, 1, -1, -1], [-1, -1, 1, 1, -1], color="red", linewidth=1.2)
        ax.annotate("", xy=(0.9, -1.25), xytext=(-1.0, -1.25), arrowprops={"arrowstyle": "->"}, annotation_clip=False)
        ax.text(0.95, -1.25, "x", va="center", fontsize=9)
        ax.annotate("", xy=(-1.25, 0.9), xytext=(-1.25, -1.0), arrowprops={"arrowstyle": "->"}, annotation_clip=False)
        ax.text(-1.25, 1.0, "y", ha="center", fontsize=9)
        ax.set_xlim(-1.5, 1.5)
        ax.set_ylim(1.5, -1.5)  # y grows downwards, as rows do
        ax.set_aspect("equal")
        ax.set_xticks([-1, 0, 1])
        ax.set_yticks([-1, 0, 1])
        ax.set_title(f"align_corners={align}: (H, W) = ({h}, {w})", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=DPI)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "docs" / "images")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    convention_figure(args.out / "convention.png")
    thetas = {name: torch.tensor([values]) for name, values in THETAS.items()}
    thetas["tps"] = tps_theta()
    for name in stnkit.transforms.list_transforms():
        if stnkit.transforms.get(name).ndim != 2:
            continue  # volumes: see the page's text
        if name not in thetas:
            raise SystemExit(f"no example theta for family {name!r}: add one to THETAS")
        family_figure(name, thetas[name], args.out / f"family-{name}.png")


if __name__ == "__main__":
    main()
