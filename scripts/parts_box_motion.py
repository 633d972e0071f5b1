"""How far the heads of ``parts`` runs moved from their default boxes (docs/results.md, parallel attention).

    STNKIT_DATA_DIR=/work/shared/data/mnist python scripts/parts_box_motion.py RUN_DIR [RUN_DIR ...]

For each run: the heads' predicted centres on the first 1,000 test canvases of its seed; prints
per head the mean |centre - default centre| (normalised units, 1 = half the canvas = 48 px), the
spread of the centres over the canvases (norm of the per-axis standard deviation) and the fraction
of the localisation net's features that are zero on every canvas (dead ReLU units), and the mean
distance from each head's centre to its digit's centre (head 1: the left digit, head 2: the right one;
2 heads only), now and at the default boxes.
"""

from __future__ import annotations

import sys

import torch

from stnkit.experiments.data.glyph_pairs import GlyphPairs
from stnkit.experiments.models.attention import default_centres
from stnkit.experiments.train.evaluate import load_run


def main(paths: list[str]) -> None:
    torch.set_num_threads(1)
    for path in paths:
        model, config = load_run(path)
        model.eval()
        data = GlyphPairs("test", config.digits, seed=config.seed, limit=1000, canvas=96)
        x = next(iter(data.batches(0, 1000)))[0]
        draw = data.test_draw()
        digits = torch.stack([draw["x"], draw["y"]], -1).float().add(14).div(48).sub(1)  # (N, 2, 2) centres
        with torch.no_grad():
            _, theta = model.st(x, return_theta=True)  # (N, K, P)
            features = model.st.localisation[:2](x)  # (N, F) before any normalisation (loc_norm)
        centres = theta[..., -2:]  # (N, K, 2): (tx, ty) of each head
        delta = (centres - default_centres(model.heads)).norm(dim=-1)  # (N, K)
        dead = float((features.abs().sum(0) == 0).double().mean())
        print(f"{path}: mean |delta centre| per head {[round(float(v), 4) for v in delta.mean(0)]}, "
              f"spread over canvases {[round(float(v), 4) for v in centres.std(0).norm(dim=-1)]}, "
              f"dead localisation features {100 * dead:.0f}%")
        if model.heads == 2:
            now = (centres - digits).norm(dim=-1).mean(0)  # (K,)
            start = (default_centres(2) - digits).norm(dim=-1).mean(0)
            print(f"  distance to the digit per head: {[round(float(v), 3) for v in now]} "
                  f"(default boxes {[round(float(v), 3) for v in start]})")


if __name__ == "__main__":
    main(sys.argv[1:])
