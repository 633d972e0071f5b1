"""``python -m benchmarks --smoke`` runs every section once at tiny sizes (no timing assertions):
the JSON has one row per case, the contenders compute the same warp, and the table shows them."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `benchmarks` sits at the repository root, beside `src`
    sys.path.insert(0, str(ROOT))

from benchmarks import __main__ as cli  # noqa: E402
from benchmarks import _timing  # noqa: E402

COMPARED = {"affine", "tps", "projective", "training", "sampling", "deterministic"}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "out" / "smoke.json"
    assert cli.main(["--smoke", "--json", str(path)]) == 0
    return path, json.loads(path.read_text())


def test_smoke_writes_json_with_the_machine_and_every_section(smoke):
    path, report = smoke
    assert report["smoke"] is True
    assert {"cpu", "cpu_count", "torch", "torch_threads"} <= set(report["machine"])
    assert [p.name for p in path.parent.iterdir()] == ["smoke.json"]  # no temp file left behind
    sections = {row["section"] for row in report["results"]}
    for section in cli.SECTIONS:
        assert section in sections or section in report["skipped"], section
    for section, why in report["skipped"].items():
        assert why, section  # a skipped section says why
    assert "affine" in sections  # needs nothing optional


def test_smoke_rows_hold_positive_times_and_consistent_ratios(smoke):
    _, report = smoke
    rows = [r for r in report["results"] if r["section"] in COMPARED]
    assert rows
    for r in rows:
        for key in ("fwd_ms", "fwd_bwd_ms"):
            assert r[key]["ours"] > 0 and r[key]["baseline"] > 0
        assert math.isclose(r["speedup_fwd_bwd"], r["fwd_bwd_ms"]["baseline"] / r["fwd_bwd_ms"]["ours"], rel_tol=1e-2)
        assert "meets_target" not in r  # targets are not judged on a smoke run


def test_contenders_compute_the_same_warp(smoke):
    """The speedups compare like with like: same output up to rounding (TPS: kornia's spline centres
    its kernels elsewhere, so only the same scale of output is asked)."""
    _, report = smoke
    for r in report["results"]:
        if r["section"] in ("affine", "projective", "deterministic"):
            assert r["max_abs_diff"] < 1e-5, r["name"]
        elif r["section"] == "tps":
            assert r["max_abs_diff"] < 0.5, r["name"]


def test_smoke_memory_is_measured_for_the_affine_rows(smoke):
    _, report = smoke
    for r in report["results"]:
        if r["section"] == "affine":
            assert r["peak_mb"]["ours"] is not None and r["peak_mb"]["ours"] > 0


def test_table_lists_every_case(smoke):
    _, report = smoke
    text = cli.table(report)
    assert "smoke run" in text and "torch" in text
    for r in report["results"]:
        label = r["name"].split("/", 1)[1] if "fwd_ms" in r else r.get("distortion", r["name"])
        assert label in text


def test_only_refuses_unknown_sections(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--smoke", "--only", "affine,nope"])
    assert "unknown section(s) nope" in capsys.readouterr().err


def test_peak_memory_counts_what_a_call_allocates():
    import torch

    def allocate():
        a = torch.empty(1 << 20, dtype=torch.uint8)  # 1 MiB alive ...
        b = torch.empty(1 << 19, dtype=torch.uint8)  # ... plus 0.5 MiB at the peak
        del a, b

    peak = _timing.peak_memory_bytes(allocate)
    if peak is None:
        pytest.skip("this PyTorch's profiler does not report allocations")
    assert (1 << 20) + (1 << 19) <= peak < (1 << 20) + (1 << 19) + 4096


def test_markdown_has_one_table_row_per_case(smoke):
    _, report = smoke
    text = cli.markdown(report)
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| case")
            and not line.startswith("| distortion")]
    assert len(rows) == len(report["results"])


def test_cpu_clock_refuses_threads(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--smoke", "--clock", "cpu", "--threads", "2"])
    assert "--threads" in capsys.readouterr().err
