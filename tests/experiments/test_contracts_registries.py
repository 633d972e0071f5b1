"""The one contract checker (tests/contract.py) over the experiment registries: every distortion
(the same drawn parameters applied batched and one at a time) and every model (eval mode)."""

from __future__ import annotations

import pytest
import torch

from contract import Case, check_contract
from stnkit.experiments.data import get_distortion, list_distortions
from stnkit.experiments.models import create_model, list_models
from stnkit.experiments.models.network import MODELS


@pytest.mark.parametrize("name", list_distortions())
def test_distortion_contract(name):
    distortion = get_distortion(name)

    def make_inputs(g):
        images = torch.randint(0, 256, (3, 28, 28), generator=g, dtype=torch.uint8)
        others = (torch.randint(0, 256, (3, distortion.num_others, 28, 28), generator=g, dtype=torch.uint8)
                  if distortion.num_others else None)
        return images, distortion.make_params(3, g), others

    check_contract(Case(f"distortion {name}", distortion, lambda d, x, p, o: d.apply(x, p, o), make_inputs,
                        out_dtype=torch.float32))


# Models for other inputs: (in_shape, num_classes, options); default (1, 28, 28), 10 classes.
SETUPS = {name: ((1, 32, 32), 11, {"width": 0.0625}) for name in ("multidigit-cnn", "st-cnn-single", "st-cnn-multi")}
SETUPS.update({name: ((1, 16, 16, 16), 10, {"channels": (4, 8)}) for name in ("flat-cnn", "st3d-cnn")})  # volumes


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("transform", ["affine", "tps"])
def test_model_contract(name, transform):
    if transform != "affine" and "st" not in name:
        pytest.skip("models without transformers have no family")
    families = getattr(MODELS.get(name), "families", None)  # models tied to families (coloc-st: attention)
    if families is not None:
        if transform != "affine":
            pytest.skip(f"model {name} takes only {', '.join(families)}")
        transform = families[0]
    if transform == "tps" and name == "ic-st-cnn":
        pytest.skip("ic-st-cnn composes its warps: matrix families only (its refusal is tested in test_models_icstn)")
    torch.manual_seed(0)  # the models' default init draws from the global generator
    c = getattr(MODELS.get(name), "in_channels", 1)  # reg-unet: moving and fixed
    in_shape, classes, options = SETUPS.get(name, ((c, 28, 28), 10, {}))
    model = create_model(name, in_shape=in_shape, num_classes=classes, transform=transform, **options).double().eval()
    check_contract(Case(f"model {name} ({transform})", model, lambda m, x: m(x),
                        lambda g: (torch.rand(3, *in_shape, generator=g, dtype=torch.float64),)))


@pytest.mark.parametrize("name", list_models())
def test_model_export_contract(name):
    """Every model exports (ONNX in onnxruntime, torch.export) within 1e-4 at another batch size."""
    torch.manual_seed(0)  # the models' default init draws from the global generator
    families = getattr(MODELS.get(name), "families", None)  # models tied to families (coloc-st: attention)
    transform = families[0] if families else "projective" if "st" in name else "affine"
    c = getattr(MODELS.get(name), "in_channels", 1)  # reg-unet: moving and fixed
    in_shape, classes, options = SETUPS.get(name, ((c, 42, 42), 10, {"downsample": True}))
    model = create_model(name, in_shape=in_shape, num_classes=classes, transform=transform, **options).eval()
    for st in model.spatial_transformers:  # random regression weights: theta depends on the input
        last = st.regression or [m for m in st.localisation.modules() if hasattr(m, "weight")][-1]  # no regression: the net's last layer
        torch.nn.init.normal_(last.weight, std=0.01)
    check_contract(Case(f"model {name} ({transform}) export", model, lambda m, x: m(x),
                        lambda g: (torch.rand(3, *in_shape, generator=g),)), ("export",))
