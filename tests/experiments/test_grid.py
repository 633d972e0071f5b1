"""`stnkit grid`: the paper's cells, bad input refused before anything runs, finished runs skipped,
interrupted ones resumed, several trainings at once, and the report marking incomplete cells."""

from __future__ import annotations

import json
import sys

import pytest

from _synthetic_digits import write_synthetic_mnist
from stnkit.experiments.cli import main
from stnkit.experiments.grid import cells_of, run_grid, select
from stnkit.experiments.train import TrainConfig, train

FAIL = [sys.executable, "-c", "import sys; sys.exit(1)"]

# A stand-in for `stnkit train`: records its arguments, waits (up to 60 s) until `n` of its kind have
# started, writes a finished run. Only trainings that run at the same time get past the wait.
BARRIER = """
import json, sys, time, pathlib
argv = sys.argv[1:]
out = pathlib.Path(argv[argv.index("--out") + 1])
meet = pathlib.Path(sys.argv[0]).parent / "started"
meet.mkdir(exist_ok=True)
(meet / out.parent.name).write_text(json.dumps(argv))
deadline = time.time() + 60
while len(list(meet.iterdir())) < {n}:
    if time.time() > deadline:
        sys.exit(3)
    time.sleep(0.05)
out.mkdir(parents=True)
value = lambda k: argv[argv.index(k) + 1] if k in argv else None
(out / "config.json").write_text(json.dumps({{"model": value("--model"), "task": value("--task"), "epochs": 1}}))
(out / "summary.json").write_text(json.dumps({{"model": value("--model"), "transform": value("--transform"),
    "task": value("--task"), "test_error": 7.0, "epochs": 1, "completed": True}}))
"""


def test_the_cell_sets_are_the_papers_tables():
    table1 = cells_of("table1")
    assert len(table1) == 4 * 8  # R, RTS, P, E x FCN, CNN, ST-FCN and ST-CNN with 3 transforms
    names = {c.name for c in table1}
    assert {"r_fcn", "rts_cnn", "p_st-fcn_projective", "e_st-cnn_tps"} <= names
    assert {c.name for c in cells_of("tc")} == {"tc_fcn", "tc_cnn", "tc_st-fcn_affine", "tc_st-cnn_affine"}
    table4 = {c.name for c in cells_of("table4")}
    assert len(table4) == 8 and {"addition_2xst-fcn_affine", "addition_2xst-fcn_tps", "addition_fcn"} <= table4
    assert len(cells_of("all")) == 32 + 4 + 8
    assert [c.name for c in select(["table1"], models=["cnn"])] == ["r_cnn", "rts_cnn", "p_cnn", "e_cnn"]


@pytest.mark.parametrize("kwargs, names", [
    (dict(sets=["table9"]), ["cell set", "table9"]),
    (dict(sets=["table1"], cells=["rts_st-cnn_bogus"]), ["--cells", "rts_st-cnn_bogus"]),
    (dict(sets=["table1"], models=["resnet"]), ["--models", "resnet"]),
    (dict(sets=["table1"], overrides={"epochs": 0}), ["--epochs", "positive", "0"]),
    (dict(sets=["table1"], overrides={"limit": -5}), ["--limit", "-5"]),
    (dict(sets=["table1"], budget="huge"), ["--budget", "huge", "tiny"]),
    (dict(sets=["table1"], seeds=0), ["--seeds", "0"]),
    (dict(sets=["table1"], jobs=0), ["--jobs", "0"]),
])
def test_bad_input_is_refused_before_anything_runs(tmp_path, kwargs, names):
    runs = tmp_path / "runs"
    with pytest.raises(ValueError) as err:
        run_grid(runs, command=FAIL, **kwargs)
    assert all(n in str(err.value) for n in names), str(err.value)
    assert not runs.exists()


def test_a_runs_directory_holding_something_else_or_another_budget_is_refused(tmp_path, capsys):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit) as exc:
        main(["grid", "table1", "--runs", str(runs), "--cells", "r_cnn"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and "notes.txt" in err and "--runs" in err and "Traceback" not in err
    assert sorted(p.name for p in runs.iterdir()) == ["notes.txt"]

    other = tmp_path / "other"
    run_grid(other, ["table1"], cells=["r_cnn"], command=FAIL)  # records the tiny budget
    (other / "r_cnn" / "seed0").mkdir(parents=True)
    (other / "r_cnn" / "seed0" / "stray.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="budget"):
        run_grid(other, ["table1"], cells=["r_cnn"], overrides={"epochs": 5}, command=FAIL)
    with pytest.raises(ValueError, match="stray.bin"):
        run_grid(other, ["table1"], cells=["r_cnn"], command=FAIL)


def test_two_cells_run_at_once_and_cells_take_their_config_settings(tmp_path):
    script = tmp_path / "fake" / "train.py"
    script.parent.mkdir()
    script.write_text(BARRIER.format(n=2))
    runs = tmp_path / "runs"
    result = run_grid(runs, ["table1"], cells=["rts_cnn", "rts_st-cnn_tps"], jobs=2, threads=1,
                      command=[sys.executable, str(script)])
    assert result["failed"] == [] and len(result["status"]) == 2  # with one at a time, the first would wait in vain
    more = run_grid(runs, ["table1"], cells=["rts_cnn", "rts_st-cnn_tps"], seeds=2, jobs=2, threads=1,
                    command=[*FAIL[:2], "import time, sys; time.sleep(0.3); sys.exit(1)"])  # seed 1 fails
    assert [j.state for j in more["jobs"]] == ["done", "fresh", "done", "fresh"] and len(more["failed"]) == 2
    assert "Not run yet (incomplete): rts_cnn seed 1, rts_st-cnn_tps seed 1." in more["report"].read_text()
    argv = json.loads((script.parent / "started" / "rts_st-cnn_tps").read_text())
    assert argv[argv.index("--transform-options") + 1] == '{"grid_size": 4}'  # configs/table1_st-cnn_tps_rts.json
    assert argv[argv.index("--epochs") + 1] == "1" and argv[argv.index("--threads") + 1] == "1"
    assert "--optimizer" not in argv and "--lr" not in argv  # the defaults' recipe, not the paper's
    md = (runs / "report.md").read_text()  # the second grid's: seed 1 of each cell failed before it started
    assert "| CNN | — / 1.2 | **7.00** (+1 not run) / 0.8 | — / 1.5 | — / 1.4 |" in md
    assert "| ST-CNN TPS | — / 0.7 | **7.00** (+1 not run) / 0.5 |" in md
    assert "## Translated cluttered" in md and "## Table 4" in md  # the paper's other tables, all "—"


def test_finished_cells_are_skipped_interrupted_ones_resumed_and_the_report_marks_them(tmp_path):
    data = str(write_synthetic_mnist(tmp_path / "digits", n_train=48, n_test=32))
    runs = tmp_path / "runs"
    grid = dict(cells=["r_cnn"], overrides={"epochs": 2, "batch_size": 16}, threads=1)
    first = run_grid(runs, ["table1"], command=FAIL, extra={"data_dir": data}, **grid)
    assert [j.state for j in first["jobs"]] == ["fresh"] and first["report"] is None and len(first["failed"]) == 1

    class StopAfterEpoch1:
        def on_epoch_end(self, model, epoch, metrics, run_dir):
            raise KeyboardInterrupt

    run = runs / "r_cnn" / "seed0"
    config = TrainConfig(model="cnn", task="r", data_dir=data, epochs=2, batch_size=16, eval_batch_size=32,
                         model_options={"channels": [4, 8]})
    with pytest.raises(KeyboardInterrupt):
        train(config, run, callbacks=[StopAfterEpoch1()], progress=False)
    epoch1 = (run / "metrics.jsonl").read_text().splitlines()
    assert len(epoch1) == 1

    second = run_grid(runs, ["table1"], command=FAIL, **grid)  # the training fails: still incomplete
    assert [j.state for j in second["jobs"]] == ["resume"]
    md = second["report"].read_text()
    assert "Grid budget `tiny`: 2 epoch(s), 256 training and 256 test images, batch 16; 1 seed(s)" in md
    cnn_row = next(x for x in md.splitlines() if x.startswith("| CNN |"))
    assert cnn_row.split("|")[2].strip() == "incomplete / 1.2"

    third = run_grid(runs, ["table1"], **grid)  # the real `stnkit train --resume`
    assert third["failed"] == [], (runs / "logs" / "r_cnn_seed0.log").read_text()
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert lines[0] == epoch1[0] and [json.loads(x)["epoch"] for x in lines] == [1, 2]
    cpu = json.loads((runs / "logs" / "cpu.json").read_text())["r_cnn/seed0"]
    assert cpu > 0.5  # the real training's import of torch alone takes more
    run_line = next(x for x in third["report"].read_text().splitlines() if x.startswith("| `r_cnn/seed0`"))
    assert run_line.split("|")[8].strip() == f"{cpu / 60:.1f}"  # the CPU min column of the runs table
    summary = json.loads((run / "summary.json").read_text())
    assert summary["completed"] is True and summary["epochs"] == 2
    cnn_row = next(x for x in third["report"].read_text().splitlines() if x.startswith("| CNN |"))
    assert cnn_row.split("|")[2].strip() == f"**{summary['test_error']:.2f}** / 1.2"

    fourth = run_grid(runs, ["table1"], command=FAIL, **grid)
    assert [j.state for j in fourth["jobs"]] == ["done"] and fourth["status"] == {}  # nothing was started


TRAPS_SIGINT = """
import pathlib, signal, sys, time
argv = sys.argv[1:]
name = pathlib.Path(argv[argv.index("--out") + 1]).parent.name
here = pathlib.Path(sys.argv[0]).parent
def stop(signum, frame):
    with open(here / (name + ".sigint"), "a") as f:
        f.write("x")
    time.sleep(0.2)  # a second SIGINT now would be counted too
    sys.exit(130)
signal.signal(signal.SIGINT, stop)
(here / (name + ".ready")).write_text("")
time.sleep(60)
sys.exit(3)
"""


def test_ctrl_c_passes_one_sigint_to_each_training_and_waits_for_them(tmp_path, default_sigint):
    import _thread
    import threading
    import time

    from stnkit.experiments.grid import GridInterrupted

    script = tmp_path / "fake" / "train.py"
    script.parent.mkdir()
    script.write_text(TRAPS_SIGINT)

    def press_ctrl_c() -> None:
        deadline = time.time() + 30
        while len(list(script.parent.glob("*.ready"))) < 2 and time.time() < deadline:
            time.sleep(0.05)
        _thread.interrupt_main()

    threading.Thread(target=press_ctrl_c, daemon=True).start()
    with pytest.raises(GridInterrupted):
        run_grid(tmp_path / "runs", ["table1"], cells=["r_cnn", "r_fcn"], jobs=2, threads=1,
                 command=[sys.executable, str(script)])
    assert sorted(p.read_text() for p in script.parent.glob("*.sigint")) == ["x", "x"]  # both stopped, once
