"""Probe co-localisation recipes in-process (one class): the `coloc-st` model and the paper's triplet loss
in a loop of its own (batches and negatives from its own generator, so numbers differ from `stnkit train`).
Prints the hit rate (%), mean IoU, mean scale, spread of tx and CPU seconds. docs/results.md, co-localisation.

    STNKIT_DATA_DIR=/work/shared/data/mnist python scripts/coloc_probe.py '{"sched": "shrink", "steps": 600}'

Keys: cls, task_name, steps, lr, batch, seed, sched ("shrink": both bounds from 1 to `final` over the
fraction `frac` of the steps; "shrinkfix": a fixed scale from 1 to 1/3, then `final`), final, frac,
init ("rand": regression weights N(0, 0.1)), bound ("centre": only the window's centre inside the
image), neg ("own" or "other": the negative crop from the image itself or the next one in the batch),
log (progress every 25 steps).
"""

import json
import sys
import time

import torch

from stnkit import warp
from stnkit.experiments.data.coloc import random_crops
from stnkit.experiments.models import create_model
from stnkit.experiments.tasks import get_task
from stnkit.experiments.tasks.boxes import attention_boxes, box_iou, triplet_hinge_loss


def run(
    cls=3,
    task_name="coloc",
    steps=300,
    lr=1e-3,
    batch=20,
    seed=0,
    sched=None,
    neg="own",
    init=None,
    final=(1 / 6, 1 / 2),
    frac=0.5,
    log=False,
    opt="adam",
    negscale="crop",
    bound="inside",
    frozenbias=False,
):
    torch.manual_seed(seed)  # probe only
    t0 = time.process_time()
    task = get_task(task_name)(classes=[cls])
    # no built-in shrink: the loop below sets the bounds (st.scale) itself
    model = create_model("coloc-st", in_shape=(1, 84, 84), num_classes=10, transform="attention", shrink_steps=0)
    task.prepare_model(model)
    data = task.train_data()
    x, boxes, labels = data.images, data.boxes, data.labels
    n = len(x)
    st = model.st
    if init == "rand":
        with torch.no_grad():
            st.regression.weight.normal_(0, 0.1)
    if bound == "centre":
        import types

        from stnkit.module import SpatialTransformer

        def predict(self, xx):
            raw = SpatialTransformer.predict(self, xx)
            lo, hi = self.scale
            sc = lo + (hi - lo) * torch.sigmoid(raw[:, :1])
            return torch.cat([sc, torch.tanh(raw[:, 1:])], 1)

        st.predict = types.MethodType(predict, st)
    if frozenbias:
        st.regression.bias.requires_grad_(False)
    params = [p for p in st.parameters() if p.requires_grad]
    optim = torch.optim.Adam(params, lr=lr) if opt == "adam" else torch.optim.SGD(params, lr=lr, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    step = 0
    while step < steps:
        order = torch.randperm(n, generator=g)
        for s0 in range(0, n, batch):
            if step >= steps:
                break
            t = step / max(steps - 1, 1)
            if sched == "shrink":  # window from 1 down to final bounds over frac of training
                u = min(t / frac, 1.0)
                lo = 1 + (final[0] - 1) * u
                hi = 1 + (final[1] - 1) * u
                st.scale = (lo, hi)
            elif sched == "shrinkfix":  # fixed scale from 1 to 1/3 then final bounds
                u = min(t / frac, 1.0)
                sc = 1 + (1 / 3 - 1) * u
                st.scale = (sc, sc) if u < 1 else final
            else:
                st.scale = final
            idx = order[s0 : s0 + batch]
            xb = x[idx]
            crops, theta = st(xb, return_theta=True)
            if neg == "own":
                nth = random_crops(len(idx), g)
                if negscale == "anchor":
                    nth[:, 0] = theta[:, 0].detach()
                    nth[:, 1:] = (torch.rand(len(idx), 2, generator=g) * 2 - 1) * (1 - nth[:, :1])
                negs = warp(xb, nth, "attention", crops.shape[2:])
            elif neg == "other":
                nth = random_crops(len(idx), g)
                other = torch.roll(xb, 1, 0)
                negs = warp(other, nth, "attention", crops.shape[2:])
            loss = triplet_hinge_loss(model.embed(crops), model.embed(negs), labels[idx]).mean()
            optim.zero_grad()
            loss.backward()
            optim.step()
            step += 1
            if log and step % 25 == 0:
                with torch.no_grad():
                    th = model.theta(x)
                    c = (boxes[:, :2] + boxes[:, 2:]) / 2 / 42 - 1
                    err = ((th[:, 1:] - c) * 42).norm(dim=1)
                bounds = tuple(round(v, 3) for v in st.scale)
                print(
                    f"  step {step} loss {loss.item():.3f} bounds {bounds} s {float(th[:, 0].mean()):.3f} "
                    f"txstd {float(th[:, 1].std()):.3f} centre error {float(err.mean()):.1f} px",
                    flush=True,
                )
    st.scale = final
    with torch.no_grad():
        th = model.theta(x)
        iou = box_iou(attention_boxes(th, (84, 84)).double(), boxes.double())
    return {
        "hit": 100 * float((iou > 0.5).double().mean()),
        "iou": float(iou.mean()),
        "s": float(th[:, 0].mean()),
        "txstd": float(th[:, 1].std()),
        "cpu": time.process_time() - t0,
    }


if __name__ == "__main__":
    torch.set_num_threads(1)
    kw = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    print(kw, run(**kw), flush=True)
