"""Co-localisation (issue 10 item 5): IoU and the hit rate against hand-computed boxes, the triplet
hinge loss against a closed form (and float64 gradcheck), the images (determinism, where the digit
is), the bounded attention model, the task through the one contract checker and a tiny run."""

from __future__ import annotations

import json

import pytest
import torch

from _synthetic_digits import write_synthetic_mnist
from contract import Case, check_contract
from stnkit import transforms
from stnkit.experiments.data import Digits
from stnkit.experiments.data.coloc import CANVAS, DIGIT, PATCHES, ColocImages
from stnkit.experiments.models import create_model
from stnkit.experiments.models.coloc import load_encoder
from stnkit.experiments.tasks import get_task
from stnkit.experiments.tasks.boxes import attention_boxes, box_iou, hit_rate, triplet_hinge_loss
from stnkit.experiments.train import TrainConfig, Trainer

SMALL = {"channels": [4, 8]}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(write_synthetic_mnist(tmp_path_factory.mktemp("digits"), n_train=40, n_test=40))


def _digits(n: int = 30) -> Digits:
    images = torch.zeros(n, 28, 28, dtype=torch.uint8)
    images[:, 4:24, 4:24] = 200  # ink in the central 20x20, like MNIST
    return Digits(images, torch.arange(n) % 3, "squares")


# -- boxes and the hit rate ------------------------------------------------------------------------
def test_iou_against_hand_computed_boxes():
    a = torch.tensor([[0, 0, 2, 2], [0, 0, 4, 4], [0, 0, 2, 2], [0, 0, 2, 2], [5, 5, 7, 9]], dtype=torch.float64)
    b = torch.tensor([[1, 0, 3, 2], [1, 1, 3, 3], [0, 0, 2, 2], [3, 3, 4, 4], [6, 6, 7, 10]], dtype=torch.float64)
    # overlap 2 of union 6; inner 4 of 16; identical; disjoint; overlap 1x3=3 of 8 + 4 - 3 = 9
    torch.testing.assert_close(box_iou(a, b), torch.tensor([1 / 3, 0.25, 1.0, 0.0, 3 / 9], dtype=torch.float64))
    torch.testing.assert_close(box_iou(b, a), box_iou(a, b))


def test_hit_rate_counts_iou_strictly_above_one_half():
    truth = torch.tensor([[0.0, 0, 2, 2]]).repeat(4, 1)
    pred = torch.tensor([[0.0, 0, 4, 2],  # IoU exactly 0.5: not a hit
                         [0.0, 0, 3, 2],  # 4/6: a hit
                         [0.0, 0, 2, 2],  # 1: a hit
                         [2.0, 2, 4, 4]])  # 0
    assert hit_rate(pred, truth) == 50.0
    with pytest.raises(ValueError, match="boxes"):
        hit_rate(torch.zeros(0, 4), torch.zeros(0, 4))
    with pytest.raises(ValueError, match="others"):
        box_iou(torch.zeros(2, 4), torch.zeros(3, 4))


def test_attention_boxes_are_where_the_family_maps_the_output_corners():
    theta = torch.tensor([[1 / 3, 0.0, 0.0], [1.0, 0.0, 0.0], [0.25, -0.5, 0.5]], dtype=torch.float64)
    corners = transforms.get("attention").warp_points(theta, torch.tensor([[-1.0, -1.0], [1.0, 1.0]],
                                                                           dtype=torch.float64))  # (3, 2, 2)
    pixels = (corners + 1) * torch.tensor([84.0, 60.0], dtype=torch.float64) / 2  # align_corners=False
    torch.testing.assert_close(attention_boxes(theta, (60, 84)), pixels.flatten(1))
    torch.testing.assert_close(attention_boxes(theta[:1], (84, 84)),
                               torch.tensor([[28.0, 28, 56, 56]], dtype=torch.float64))


# -- the triplet hinge loss ------------------------------------------------------------------------
def test_triplet_loss_closed_form():
    anchors = torch.tensor([[0.0], [1.0], [3.0]], dtype=torch.float64)
    negatives = torch.tensor([[2.0], [1.0], [0.0]], dtype=torch.float64)
    # one class: anchor 0: partners d^2 = 1, 9; negative 4 -> max(0, 1-4+1)=0, 9-4+1=6 -> mean 3
    # anchor 1: d^2 = 1, 4; negative 0 -> 2, 5 -> 3.5; anchor 2: d^2 = 9, 4; negative 9 -> 1, 0 -> 0.5
    same = torch.zeros(3, dtype=torch.long)
    torch.testing.assert_close(triplet_hinge_loss(anchors, negatives, same),
                               torch.tensor([3.0, 3.5, 0.5], dtype=torch.float64))
    # pairs only within a class: anchor 2 alone (0); anchor 0: 0; anchor 1: 1 - 0 + 1 = 2
    torch.testing.assert_close(triplet_hinge_loss(anchors, negatives, torch.tensor([0, 0, 1])),
                               torch.tensor([0.0, 2.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(triplet_hinge_loss(anchors, negatives, same, margin=0.0),
                               torch.tensor([2.5, 2.5, 0.0], dtype=torch.float64))


def test_triplet_loss_gradcheck():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    n = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 1])
    assert torch.autograd.gradcheck(lambda a, n: triplet_hinge_loss(a, n, labels, margin=3.0), (a, n))


# -- the images ------------------------------------------------------------------------------------
def test_images_hold_the_digit_in_its_box_and_nothing_else_without_clutter():
    digits = _digits()
    data = ColocImages(classes=[1, 2], per_class=4, digits=digits, seed=5)
    assert len(data) == 8 and sorted(data.labels.tolist()) == [1] * 4 + [2] * 4
    for x, box in zip(data.images, data.boxes, strict=True):
        x0, y0, x1, y1 = (int(v) for v in box)
        assert x1 - x0 == y1 - y0 == DIGIT and 0 <= x0 and x1 <= CANVAS and 0 <= y0 and y1 <= CANVAS
        torch.testing.assert_close(x[0, y0:y1, x0:x1], digits.images[0].float() / 255)
        assert float(x.sum()) == pytest.approx(float(digits.images[0].float().sum() / 255), rel=1e-5)


def test_clutter_adds_sixteen_patches_of_other_digits():
    digits = _digits()
    clutter = ColocImages(classes=[0], per_class=6, clutter=True, digits=digits, clutter_digits=digits, seed=1)
    plain = ColocImages(classes=[0], per_class=6, digits=digits, seed=1)
    extra = (clutter.images - plain.images).clamp(min=0).flatten(1).sum(1) * 255 / 200  # pixels of ink added
    assert bool((extra > 0).all()) and bool((extra <= PATCHES * 36 + 1e-3).all())


def test_images_are_drawn_once_from_the_seed_and_epochs_from_seed_and_epoch():
    digits = _digits()
    make = lambda seed: ColocImages(classes=[0, 1, 2], per_class=5, clutter=True, digits=digits,  # noqa: E731
                                    clutter_digits=digits, seed=seed)
    a, b, c = make(3), make(3), make(4)
    assert torch.equal(a.images, b.images) and torch.equal(a.boxes, b.boxes)
    assert not torch.equal(a.images, c.images)

    def epoch(data, e, batch_size, world_size=1):
        parts = [p for r in range(world_size) for p in data.batches(e, batch_size, r, world_size)]
        x = torch.cat([p[0] for p in parts])
        order = torch.cat([p[1] for p in parts])[:, 0] * 100 + torch.cat([p[1] for p in parts])[:, 1]
        negatives = torch.cat([p[3] for p in parts])
        key = order.argsort()
        return x[key], negatives[key]

    x, neg = epoch(a, 1, 15)
    for other in (epoch(a, 1, 4), epoch(a, 1, 6, world_size=2)):  # a sample's draw: (seed, epoch, index)
        assert torch.equal(other[0], x) and torch.equal(other[1], neg)
    assert not torch.equal(epoch(a, 2, 15)[1], neg)
    s = neg[:, :1]
    assert bool(((neg[:, 1:].abs() + s) <= 1 + 1e-6).all())  # random crops lie inside the image


@pytest.mark.parametrize("classes", [[], [10], [1, 1], "3"])
def test_bad_classes(classes):
    with pytest.raises(ValueError, match="classes"):
        ColocImages(classes=classes, digits=_digits())


# -- the model -------------------------------------------------------------------------------------
def test_window_stays_inside_the_image_and_gradients_reach_the_localisation_only():
    torch.manual_seed(0)
    model = create_model("coloc-st", in_shape=(1, 84, 84), num_classes=10, transform="attention", **SMALL)
    with torch.no_grad():
        model.st.regression.weight.normal_(0, 50.0)  # wild raw outputs
    x = torch.rand(16, 1, 84, 84)
    model.st.steps_done.fill_(300)  # past the shrink
    boxes = model.boxes(x)
    assert bool((boxes >= -1e-4).all() and (boxes <= 84 + 1e-4).all())
    side = boxes[:, 2] - boxes[:, 0]
    assert bool((side >= 21 - 1e-3).all() and (side <= 33.6 + 1e-3).all())  # 0.75 to 1.2 crops of 28
    model(x).square().sum().backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in model.st.parameters())
    assert all(not p.requires_grad and p.grad is None for p in model.encoder.parameters())
    torch.testing.assert_close(model(x).norm(dim=1), torch.ones(16))  # unit embeddings
    with pytest.raises(ValueError, match="transform"):
        create_model("coloc-st", in_shape=(1, 84, 84), num_classes=10, transform="affine")


def test_window_shrinks_from_the_whole_image_to_its_bounds():
    model = create_model("coloc-st", in_shape=(1, 84, 84), num_classes=10, transform="attention",
                         scale=[0.75, 1.5], shrink_steps=4, **SMALL)
    st, x = model.st, torch.rand(3, 1, 84, 84)
    with torch.no_grad():
        st.regression.bias.copy_(torch.tensor([0.0, 0.5, -2.0]))  # a window off-centre, midway in scale
    # bounds (lo, hi) after k of 4 steps: 1 + k/4 ((0.25, 0.5) - 1); a zero raw scale is the midpoint,
    # so the window's side is 84 (lo + hi) / 2 = 84 (1 - 0.625 k/4) pixels
    sides = []
    for k in range(6):
        assert st.bounds() == pytest.approx((1 - min(k, 4) / 4 * 0.75, 1 - min(k, 4) / 4 * 0.5))
        boxes = model.boxes(x).detach()
        assert bool((boxes >= -1e-4).all() and (boxes <= 84 + 1e-4).all())
        sides.append(float(boxes[0, 2] - boxes[0, 0]))
        st.advance()
    assert sides == pytest.approx([84 * (1 - 0.625 * min(k, 4) / 4) for k in range(6)], abs=1e-4)
    assert int(st.steps_done) == 6
    x4 = torch.rand(4, 1, 84, 84)
    negatives = torch.tensor([[1 / 3, 0.0, 0.0]]).repeat(4, 1)
    get_task("coloc")().step(model, (x4, torch.zeros(4, 4), torch.tensor([0, 0, 1, 1]), negatives))
    assert int(st.steps_done) == 7  # the task's training step counts itself
    # a checkpoint resumes the schedule; one saved before it existed loads as finished
    fresh = create_model("coloc-st", in_shape=(1, 84, 84), num_classes=10, transform="attention",
                         scale=[0.75, 1.5], shrink_steps=4, **SMALL)
    fresh.load_state_dict(model.state_dict())
    assert int(fresh.st.steps_done) == 7
    old = {k: v for k, v in model.state_dict().items() if k != "st.steps_done"}
    fresh.st.steps_done.zero_()
    fresh.load_state_dict(old)
    assert fresh.st.bounds() == pytest.approx((0.25, 0.5))
    with pytest.raises(ValueError, match="shrink_steps"):
        create_model("coloc-st", in_shape=(1, 84, 84), num_classes=10, transform="attention", shrink_steps=-1)
    with pytest.raises(ValueError, match="scale"):
        create_model("coloc-st", in_shape=(1, 84, 84), num_classes=10, transform="attention", scale=[1.2, 0.5])


# -- the task --------------------------------------------------------------------------------------
def test_task_contract():
    task = get_task("coloc")()
    torch.manual_seed(0)
    # no curriculum here: each step advances the window's shrink, which would change the next call
    model = create_model("coloc-st", in_shape=task.in_shape, num_classes=10, transform="attention", shrink_steps=0,
                         **SMALL).double()

    def step(t, x, boxes, labels, negatives):
        result = t.step(model, (x, boxes, labels, negatives))
        return result.loss, result.count, result.sums

    def make_inputs(g):
        x = torch.rand(4, 1, 84, 84, generator=g, dtype=torch.float64)
        boxes = torch.tensor([[0.0, 0, 28, 28], [28, 28, 56, 56], [10, 20, 38, 48], [56, 56, 84, 84]])
        negatives = torch.cat([torch.full((4, 1), 1 / 3), torch.rand(4, 2, generator=g) - 0.5], 1).double()
        return x, boxes, torch.tensor([0, 0, 1, 1]), negatives

    # The loss is over pairs of images, so it is not a sum of one-image losses ("additive").
    check_contract(Case("task coloc", task, step, make_inputs), checks=("inplace", "dtype_device", "pickle",
                                                                        "determinism"))


def test_task_options_are_checked():
    with pytest.raises(ValueError, match="task_options"):
        TrainConfig(task="coloc", model="coloc-st", transform="attention", task_options={"clases": [1]}).validate()
    with pytest.raises(ValueError, match="task_options"):
        TrainConfig(task="rts", task_options={"classes": [1]}).validate()
    with pytest.raises(ValueError, match="encoder_steps"):
        get_task("coloc")(encoder_steps=0)


def test_tiny_run_pretrains_the_encoder_then_scores_the_training_images(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("STNKIT_CACHE_DIR", str(tmp_path / "cache"))
    config = TrainConfig.from_dict({**get_task("coloc-tc").recipe, "task": "coloc-tc", "data_dir": data_dir,
                                    "epochs": 2, "batch_size": 4, "model_options": SMALL, "threads": 1,
                                    "task_options": {"classes": [0, 1], "per_class": 3, "encoder_steps": 3}})
    trainer = Trainer(config, tmp_path / "run", progress=False)
    assert bool(trainer.model.encoder_ready)
    cached = list((tmp_path / "cache").glob("coloc-encoder-*.pt"))
    assert len(cached) == 1
    encoder = {k: v.clone() for k, v in trainer.model.encoder.state_dict().items()}
    summary = trainer.fit()
    assert all(torch.equal(v, trainer.model.encoder.state_dict()[k]) for k, v in encoder.items())  # frozen
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and 0 <= rows[-1]["test_hit_rate"] <= 100 and 0 <= rows[-1]["test_iou"] <= 1
    assert summary["test_images"] == 6 and summary["clutter"] is True

    from stnkit.experiments.viz.show import show_run  # `stnkit show`: predicted and true boxes
    png = show_run(tmp_path / "run", tmp_path / "panel.png", n=4)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the encoder of a cnn run loads with the model option `encoder`
    torch.save({"model": {f"classifier.{k}": v for k, v in encoder.items()}}, tmp_path / "cnn.pt")
    model = create_model("coloc-st", in_shape=(1, 84, 84), num_classes=10, transform="attention",
                         encoder=str(tmp_path / "cnn.pt"), **SMALL)
    assert bool(model.encoder_ready) and torch.equal(model.encoder[0].weight, encoder["0.weight"])
    with pytest.raises(ValueError, match="encoder"):
        load_encoder(create_model("coloc-st", in_shape=(1, 84, 84), num_classes=10, transform="attention"),
                     tmp_path / "cnn.pt")  # 32/64 filters against a 4/8 checkpoint


@pytest.mark.parametrize("name", ["coloc_coloc-st.json", "coloc-tc_coloc-st.json"])
def test_configs_are_the_recipe_for_one_class(name):
    from pathlib import Path

    from stnkit.experiments.train.config import load_config

    config = load_config(Path(__file__).parents[2] / "configs" / name).validate()
    assert {k: getattr(config, k) for k in get_task(config.task).recipe} == get_task(config.task).recipe
    assert config.task_options == {"classes": [3]}


def test_box_picture_draws_each_box_where_it_is():
    from matplotlib.patches import Rectangle

    from stnkit.experiments.viz.boxes import PREDICTED, TRUE, plot_boxes

    predicted = torch.tensor([[1.0, 2.0, 5.0, 9.0], [0.0, 0.0, 10.0, 10.0]])
    true = torch.tensor([[2.0, 2.0, 6.0, 6.0], [3.0, 4.0, 5.0, 6.0]])
    fig = plot_boxes(torch.rand(2, 1, 10, 10), predicted, true)
    for ax, p, t in zip(fig.axes, predicted, true, strict=True):
        rects = [r for r in ax.patches if isinstance(r, Rectangle)]
        drawn = {r.get_edgecolor()[:3]: (r.get_x(), r.get_y(), r.get_x() + r.get_width(), r.get_y() + r.get_height())
                 for r in rects}
        from matplotlib.colors import to_rgb
        assert drawn[to_rgb(PREDICTED)] == tuple(p.tolist()) and drawn[to_rgb(TRUE)] == tuple(t.tolist())
    with pytest.raises(ValueError, match="true"):
        plot_boxes(torch.rand(2, 1, 10, 10), predicted, true[:1])


def test_bad_sizes_are_named():
    with pytest.raises(ValueError, match="crop"):
        create_model("coloc-st", in_shape=(1, 84, 84), num_classes=10, transform="attention", crop=0)
    with pytest.raises(ValueError, match="in_shape"):
        create_model("coloc-st", in_shape=(1, 12, 12), num_classes=10, transform="attention")


# -- the encoder's pretraining inputs and the embedding (options) ----------------------------------
def test_encoder_inputs_shift_the_digit_and_add_clutter_of_other_digits():
    from stnkit.experiments.tasks.coloc import encoder_inputs

    images = torch.zeros(6, 28, 28, dtype=torch.uint8)
    images[:, 10:18, 10:18] = 255  # an 8x8 square in the centre
    digits = Digits(images, torch.zeros(6, dtype=torch.long), "squares")
    index = torch.arange(6)
    plain = encoder_inputs(digits, index, torch.Generator().manual_seed(0))
    assert plain.shape == (6, 1, 28, 28) and torch.equal(plain[:, 0], images.float() / 255)
    shifted = encoder_inputs(digits, index, torch.Generator().manual_seed(0), shift=4)
    assert shifted.shape == (6, 1, 28, 28) and torch.equal(shifted.sum((1, 2, 3)), plain.sum((1, 2, 3)))  # moved
    for x in shifted[:, 0]:  # the square moved by at most 4 pixels along each axis, whole pixels
        rows, cols = torch.nonzero(x, as_tuple=True)
        assert x.max() == 1 and 6 <= int(rows.min()) <= 14 and 6 <= int(cols.min()) <= 14
        assert int(rows.max()) - int(rows.min()) == 7 and int(cols.max()) - int(cols.min()) == 7
    # clutter: the square stays whole (maximum of the overlaps) and 6x6 patches of the others add ink
    cluttered = encoder_inputs(digits, index, torch.Generator().manual_seed(1), clutter=True, shift=28)
    assert (cluttered.sum((1, 2, 3)) <= 64 + 2 * PATCHES * 36).all() and cluttered.max() == 1
    clutter_only = encoder_inputs(Digits(images * 0, digits.labels, "blank"), index, torch.Generator(), clutter=True)
    assert torch.equal(clutter_only, torch.zeros(6, 1, 28, 28))  # blank digits: blank patches


def test_encoder_options_are_checked_and_name_the_cache(data_dir, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="encoder_shift"):
        get_task("coloc-tc")(encoder_shift=-1)
    with pytest.raises(ValueError, match="encoder_clutter"):
        get_task("coloc-tc")(encoder_clutter="yes")
    monkeypatch.setenv("STNKIT_CACHE_DIR", str(tmp_path))
    task = get_task("coloc-tc")(data_dir=data_dir, encoder_steps=2, encoder_clutter=True, encoder_shift=3)
    model = create_model("coloc-st", in_shape=(1, 84, 84), num_classes=10, transform="attention", **SMALL)
    initial = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    task.prepare_model(model)
    names = [p.name for p in tmp_path.glob("coloc-encoder-*")]
    assert len(names) == 1 and names[0].startswith("coloc-encoder-mnist-c4-8-s0-n2-clutter-shift3-i")
    trained = {k: v.clone() for k, v in model.encoder.state_dict().items()}

    # a model whose encoder starts from the same weights loads that encoder; one from others pretrains its own
    same = create_model("coloc-st", in_shape=(1, 84, 84), num_classes=10, transform="attention", **SMALL)
    same.encoder.load_state_dict(initial)
    task.prepare_model(same)
    assert all(torch.equal(v, same.encoder.state_dict()[k]) for k, v in trained.items())
    other = create_model("coloc-st", in_shape=(1, 84, 84), num_classes=10, transform="attention", **SMALL)
    task.prepare_model(other)
    assert len(list(tmp_path.glob("coloc-encoder-*"))) == 2
    assert not torch.equal(other.encoder[0].weight, trained["0.weight"])


def test_logits_embedding_is_the_normalised_logits():
    model = create_model("coloc-st", in_shape=(1, 84, 84), num_classes=10, transform="attention",
                         embedding="logits", **SMALL)
    crops = torch.rand(3, 1, 28, 28)
    assert torch.allclose(model.embed(crops), torch.nn.functional.normalize(model.encoder(crops), dim=1))
    with pytest.raises(ValueError, match="embedding"):
        create_model("coloc-st", in_shape=(1, 84, 84), num_classes=10, transform="attention", embedding="pixels")


def test_zoomed_encoder_inputs_are_windows_that_hold_the_whole_digit():
    from stnkit.experiments.tasks.coloc import encoder_inputs

    images = torch.full((8, 28, 28), 255, dtype=torch.uint8)  # a digit that fills its 28x28 frame
    digits = Digits(images, torch.zeros(8, dtype=torch.long), "frames")
    index = torch.arange(8)
    tight = encoder_inputs(digits, index, torch.Generator().manual_seed(0), zoom=1.0001)  # ~ the digit's own box
    torch.testing.assert_close(tight, torch.ones(8, 1, 28, 28), atol=1e-2, rtol=0)
    wide = encoder_inputs(digits, index, torch.Generator().manual_seed(0), zoom=3)
    ink = wide.sum((1, 2, 3))  # the frame seen from 1 to 3 times its side: 784 / 9 to 784 pixels of ink
    assert wide.shape == (8, 1, 28, 28) and (ink > 784 / 9 - 28).all() and (ink <= 784 + 1e-3).all()
    assert ink.std() > 10  # the windows' sizes vary
    with pytest.raises(ValueError, match="encoder_zoom"):
        get_task("coloc-tc")(encoder_zoom=0.5)
