"""stnkit.export: what cannot be exported fails with a clear ExportError; files are written whole.
(Parity of every family and model is the contract checker's "export" check: tests/test_contracts.py.)"""

from __future__ import annotations

import onnx
import pytest
import torch
from torch import nn

import stnkit
from stnkit.errors import ExportError
from stnkit.export import export_onnx, export_program, load_program


def _st(name="affine", shape=(1, 8, 8)):
    return stnkit.SpatialTransformer(stnkit.fc_localisation(shape), name).eval()


def test_opset_below_the_exporters_is_refused(tmp_path):
    with pytest.raises(ExportError, match="opset: expected at least 18.*got 17"):
        export_onnx(_st(), torch.rand(2, 1, 8, 8), tmp_path / "m.onnx", opset=17)
    assert not list(tmp_path.iterdir())


def test_volumes_need_opset_20(tmp_path):
    st = _st("affine3d", (1, 4, 4, 4))
    with pytest.raises(ExportError, match="3-D transforms need opset 20.*got 19"):
        export_onnx(st, torch.rand(2, 1, 4, 4, 4), tmp_path / "m.onnx", opset=19)


def test_a_2d_model_exports_at_opset_18_with_a_dynamic_batch(tmp_path):
    path = export_onnx(_st(), torch.rand(2, 1, 8, 8), tmp_path / "m.onnx", opset=18)
    model = onnx.load(path)
    assert model.opset_import[0].version == 18
    assert any(node.op_type == "GridSample" for node in model.graph.node)
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.dim_value  # symbolic, not 2
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # no temporary file left


def test_training_mode_and_bad_examples_are_named():
    with pytest.raises(ValueError, match="module: expected eval mode"):
        export_program(_st().train(), torch.rand(2, 1, 8, 8))
    with pytest.raises(TypeError, match="example: expected a tensor or a tuple of tensors"):
        export_program(_st(), [1, 2])
    with pytest.raises(TypeError, match="module: expected an nn.Module, got function"):
        export_program(lambda x: x, torch.rand(2, 1, 8, 8))


class _DataDependent(nn.Module):
    def forward(self, x):
        return x * 2 if x.sum() > 0 else x  # control flow on values: no single graph


def test_what_the_exporter_refuses_is_an_export_error(tmp_path):
    with pytest.raises(ExportError, match="torch.export could not export _DataDependent"):
        export_program(_DataDependent().eval(), torch.rand(2, 3), tmp_path / "p.pt2")
    assert not list(tmp_path.iterdir())


def test_torchscript_points_to_torch_export():
    model = nn.Sequential(_st(), nn.Flatten())
    with pytest.raises(ExportError, match="TorchScript.*deprecated.*torch.export"):
        torch.jit.script(model)


def test_saved_program_round_trips(tmp_path):
    st = _st("tps")
    nn.init.normal_(st.regression.weight, std=0.1)
    export_program(st, torch.rand(2, 1, 8, 8), tmp_path / "p.pt2")
    x = torch.rand(7, 1, 8, 8)
    torch.testing.assert_close(load_program(tmp_path / "p.pt2").module()(x), st(x), atol=1e-5, rtol=0)


def test_export_leaves_the_fast_paths_on_for_eager_calls():
    export_program(_st(), torch.rand(2, 1, 8, 8))
    assert stnkit.fastpath.enabled()


def test_an_example_of_one_sample_still_gives_a_dynamic_batch(tmp_path):
    st = _st("projective")
    nn.init.normal_(st.regression.weight, std=0.1)
    program = export_program(st, torch.rand(1, 1, 8, 8))
    x = torch.rand(3, 1, 8, 8)
    torch.testing.assert_close(program.module()(x), st(x), atol=1e-5, rtol=0)
    export_onnx(st, torch.rand(1, 1, 8, 8), tmp_path / "m.onnx")
    batch = onnx.load(tmp_path / "m.onnx").graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.dim_value


def test_antialias_is_refused_with_the_reason():
    st = stnkit.SpatialTransformer(stnkit.fc_localisation((1, 8, 8)), "affine", antialias=True).eval()
    with pytest.raises(ExportError, match="antialias=True.*pyramid levels from the data"):
        export_program(nn.Sequential(st).eval(), torch.rand(2, 1, 8, 8))
