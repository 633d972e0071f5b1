"""``stnkit show`` on a parallel-attention model: one box per head, each in its own colour, crops beside."""

from __future__ import annotations

import pytest
import torch

from stnkit.experiments.models.attention import ParallelAttention
from stnkit.experiments.viz.views import apply_transformers

pytest.importorskip("matplotlib")


def _model(heads: int) -> ParallelAttention:
    torch.manual_seed(0)
    return ParallelAttention((1, 16, 16), 5, heads=heads, crop_size=(8, 8), loc_size=(8, 8), features=4,
                             backbone_options={"width": 4, "blocks": (1,)}).eval()


@pytest.mark.parametrize("heads", [2, 4])
def test_one_view_per_head_with_its_crop_and_box(heads):
    model = _model(heads)
    x = torch.rand(3, 1, 16, 16)
    views = apply_transformers(model, x)
    assert [v.label for v in views] == [f"head {k + 1}" for k in range(heads)]
    crops = model.crops(x)
    for k, view in enumerate(views):
        torch.testing.assert_close(view.output, crops[:, k])
        corners = view.region.corners[0]  # (4, 2) input pixel coordinates of the box's corners
        # Default box k: half-size 0.5 (normalised) around the centre of cell k: 8x8 input pixels.
        assert float(corners[:, 0].max() - corners[:, 0].min()) == pytest.approx(7.0, abs=1.01)
    centres = torch.stack([v.region.corners[0].mean(0) for v in views])
    assert len({tuple(c.round().tolist()) for c in centres}) == heads  # distinct boxes


def test_panel_draws_each_head_in_its_own_colour():
    from stnkit.experiments.viz import plot_transformer
    from stnkit.experiments.viz.panel import HEAD_COLORS

    fig = plot_transformer(_model(2), torch.rand(2, 1, 16, 16))
    colours = [line.get_color() for line in fig.axes[0].lines]  # the first input's outlines
    assert set(colours) == {HEAD_COLORS[0], HEAD_COLORS[1]}
