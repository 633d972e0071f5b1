"""Run directories that never lose data (issue 8, item 6): every rule done for real.

Refusals, the probe step, ``--overwrite`` set aside / commit / restore (library, SIGINT and SIGKILL
subprocesses), two processes on one directory, completion markers in ``stnkit report``, ``--resume``
and ``config.json``, honest Ctrl-C hints, read-only and full filesystems (tmpfs where mounting is
allowed, injected EROFS / ENOSPC everywhere) and checkpoints with non-finite weights.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from _synthetic_digits import write_synthetic_mnist
from stnkit.experiments.cli import main
from stnkit.experiments.train import TrainConfig, TrainingDiverged, load_checkpoint, train

SMALL = ["--model", "cnn", "--task", "r", "--epochs", "1", "--batch-size", "16", "--eval-batch-size", "32",
         "--no-progress", "--no-animation", "--model-options", '{"channels": [4, 8]}']


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(write_synthetic_mnist(tmp_path_factory.mktemp("digits"), n_train=48, n_test=32))


@pytest.fixture(scope="module")
def template(tmp_path_factory, data_dir):
    """A finished one-epoch run, copied by the tests that need an old run to protect."""
    run = tmp_path_factory.mktemp("template") / "run"
    assert main(["train", "--out", str(run), "--data-dir", data_dir, *SMALL]) == 0
    (run / "animation.gif").write_bytes(b"GIF89a old")  # stale artefacts an overwrite must not keep
    (run / "last_epoch.png").write_bytes(b"old png")
    (run / "panel.png").write_bytes(b"old panel")
    (run / "animation_frames").mkdir()
    (run / "animation_frames" / "epoch_00001.gif").write_bytes(b"GIF89a frame")
    return run


def _old_run(template: Path, where: Path) -> Path:
    shutil.copytree(template, where)
    return where


def snapshot(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def leftovers(parent: Path) -> list[str]:
    """Set-aside runs, trash, locks and temporary files in ``parent`` and below."""
    return sorted(str(p.relative_to(parent)) for p in parent.rglob(".*"))


def error_line(capsys, argv, status=2) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == status, err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def _config(data_dir: str, **overrides) -> TrainConfig:
    values = dict(model="cnn", task="r", data_dir=data_dir, epochs=1, batch_size=16, eval_batch_size=32,
                  model_options={"channels": [4, 8]})
    return TrainConfig(**{**values, **overrides})


# -- what a directory may hold -----------------------------------------------------------------------
@pytest.mark.parametrize("overwrite", [False, True], ids=["fresh", "overwrite"])
def test_a_directory_that_is_not_a_run_is_refused_and_left_alone(tmp_path, data_dir, capsys, overwrite):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my thesis")  # no checkpoint.pt: today's code wrote over it
    (out / "metrics.jsonl").write_text("{}\n")
    line = error_line(capsys, ["train", "--out", str(out), "--data-dir", data_dir, *SMALL]
                      + (["--overwrite"] if overwrite else []))
    assert str(out) in line and "notes.txt" in line and "not an stnkit run" in line
    assert snapshot(out) == {"notes.txt": b"my thesis", "metrics.jsonl": b"{}\n"}
    assert leftovers(tmp_path) == []


def test_empty_and_missing_directories_are_fine_and_a_run_is_not_overwritten_silently(tmp_path, data_dir, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["train", "--out", str(empty), "--data-dir", data_dir, *SMALL]) == 0
    assert (empty / "checkpoint.pt").is_file()
    before = snapshot(empty)
    line = error_line(capsys, ["train", "--out", str(empty), "--data-dir", data_dir, *SMALL])
    assert "already holds a run" in line and snapshot(empty) == before


def test_out_that_is_a_file_is_a_one_line_error(tmp_path, data_dir, capsys):
    out = tmp_path / "file"
    out.write_text("keep me")
    line = error_line(capsys, ["train", "--out", str(out), "--data-dir", data_dir, *SMALL])
    assert str(out) in line and "is a file" in line
    assert out.read_text() == "keep me" and leftovers(tmp_path) == []


def test_overwrite_refuses_the_current_directory_and_symlinks(tmp_path, template, data_dir, capsys, monkeypatch):
    run = _old_run(template, tmp_path / "run")
    before = snapshot(run)
    (tmp_path / "link").symlink_to(run)
    line = error_line(capsys, ["train", "--out", str(tmp_path / "link"), "--overwrite", "--data-dir", data_dir, *SMALL])
    assert "symbolic link" in line
    monkeypatch.chdir(run)  # renaming "." aside would send the new run's writes into the old run
    line = error_line(capsys, ["train", "--out", ".", "--overwrite", "--data-dir", data_dir, *SMALL])
    assert "current directory" in line
    assert snapshot(run) == before


# -- nothing written before the settings are known to work --------------------------------------------
def test_settings_that_cannot_work_are_rejected_before_anything_is_written(tmp_path, template, data_dir, capsys):
    run = _old_run(template, tmp_path / "run")
    before = snapshot(run)
    argv = ["--data-dir", data_dir, *SMALL, "--model", "st-cnn", "--transform", "affine3d"]
    line = error_line(capsys, ["train", "--out", str(run), "--overwrite", *argv])
    assert line.startswith("stnkit train: error: settings:") and "5-D" in line
    assert snapshot(run) == before and leftovers(tmp_path) == []
    error_line(capsys, ["train", "--out", str(tmp_path / "new" / "run"), *argv])
    assert not (tmp_path / "new").exists()


# -- --overwrite: set aside, commit, restore -------------------------------------------------------------
def test_overwrite_keeps_the_old_run_until_the_first_checkpoint_then_removes_it_and_its_artefacts(
        tmp_path, template, data_dir):
    run = _old_run(template, tmp_path / "run")
    old = snapshot(run)
    seen = []

    class Watch:
        def on_step_end(self, model, iteration, loss):  # inside epoch 1: the old run is set aside, whole
            aside = tmp_path / ".run.stnkit-previous"
            seen.append((iteration, aside.is_dir() and snapshot(aside) == old))

    train(_config(data_dir, epochs=2, model="fcn", model_options={}), run, overwrite=True, callbacks=[Watch()],
          progress=False)
    assert seen[:3] == [(1, True), (2, True), (3, True)] and seen[3][1] is False  # gone after epoch 1
    assert sorted(snapshot(run)) == ["checkpoint.pt", "config.json", "metrics.jsonl", "summary.json"]
    assert json.loads((run / "config.json").read_text())["model"] == "fcn"
    assert leftovers(tmp_path) == []


class _Fail:
    def __init__(self, error: BaseException) -> None:
        self.error = error

    def on_step_end(self, model, iteration, loss):
        if iteration == 2:
            raise self.error


@pytest.mark.parametrize("failure", ["exception", "ctrl-c", "diverged"])
def test_an_overwrite_that_fails_before_its_first_checkpoint_puts_the_old_run_back(tmp_path, template, data_dir,
                                                                                   failure):
    run = _old_run(template, tmp_path / "run")
    before = snapshot(run)
    config, callbacks, expected = _config(data_dir), [], KeyboardInterrupt
    if failure == "exception":
        callbacks, expected = [_Fail(RuntimeError("boom"))], RuntimeError
    elif failure == "ctrl-c":
        callbacks = [_Fail(KeyboardInterrupt())]
    else:
        config, expected = _config(data_dir, lr=1e20), TrainingDiverged
    with pytest.raises(expected):
        train(config, run, overwrite=True, callbacks=callbacks, progress=False)
    assert snapshot(run) == before and leftovers(tmp_path) == []


_PAUSING_CLI = textwrap.dedent("""
    import pathlib, sys, time
    import stnkit.experiments.cli as cli

    ready, go = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])

    class Pause:  # after step 1 of epoch 1: inside the window before the first checkpoint
        def on_step_end(self, model, iteration, loss):
            if iteration == 1:
                ready.write_text("in the window")
                deadline = time.monotonic() + 120
                while not go.exists() and time.monotonic() < deadline:
                    time.sleep(0.02)

    cli._viz_callbacks = lambda trainer: [Pause()]
    sys.exit(cli.main(sys.argv[3:]))
""")


def _start_paused(tmp_path: Path, argv: list[str]) -> tuple[subprocess.Popen, Path]:
    script = tmp_path / "pausing_cli.py"
    script.write_text(_PAUSING_CLI)
    ready, go = tmp_path / "ready", tmp_path / "go"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    argv = [a for a in argv if a != "--no-animation"]  # the pause rides on the animation's callback slot
    proc = subprocess.Popen([sys.executable, str(script), str(ready), str(go), "train", *argv], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the training process did not reach its first step: {proc.communicate()}")
        time.sleep(0.05)
    return proc, go


def test_sigint_during_an_overwrite_restores_the_old_run_and_suggests_no_resume(tmp_path, template, data_dir):
    run = _old_run(template, tmp_path / "run")
    before = snapshot(run)
    proc, go = _start_paused(tmp_path, ["--out", str(run), "--overwrite", "--data-dir", data_dir, *SMALL])
    assert (tmp_path / ".run.stnkit-previous").is_dir()  # set aside while the new run trains
    proc.send_signal(signal.SIGINT)
    go.write_text("go")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert last == f"stnkit train: interrupted; the previous run is back in {run}, untouched"
    assert "--resume" not in err and "Traceback" not in err
    assert snapshot(run) == before
    assert sorted(leftovers(tmp_path)) == []


def test_second_process_is_refused_and_a_killed_overwrite_is_restored_by_the_next_command(
        tmp_path, template, data_dir, capsys):
    run = _old_run(template, tmp_path / "run")
    before = snapshot(run)
    argv = ["--out", str(run), "--data-dir", data_dir, *SMALL]
    proc, _ = _start_paused(tmp_path, [*argv, "--overwrite"])
    try:
        line = error_line(capsys, ["train", *argv, "--overwrite"])  # this test process is the second one
        assert f"another stnkit process (pid {proc.pid}) is training into '{run}'" in line
        assert str(tmp_path / ".run.stnkit-previous") in line  # and where the old run is meanwhile
    finally:
        proc.kill()  # SIGKILL in the window: no handler runs, the lock dies with the process
        proc.communicate(timeout=60)
    assert (tmp_path / ".run.stnkit-previous").is_dir()
    line = error_line(capsys, ["train", *argv])  # the next command puts the old run back, then refuses
    assert "already holds a run" in line
    assert snapshot(run) == before and leftovers(tmp_path) == []
    assert main(["eval", str(run), "--json"]) == 0  # and it is the old run, usable


@pytest.mark.parametrize("command", ["eval", "report"])
def test_eval_and_report_restore_a_run_that_a_killed_overwrite_set_aside(tmp_path, template, capsys, command):
    run = _old_run(template, tmp_path / ".run.stnkit-previous")  # as SIGKILL between rename and mkdir leaves it
    before = snapshot(run)
    argv = [str(tmp_path / "run")] + (["--json"] if command == "eval" else ["--out", str(tmp_path / "r" / "r.md")])
    assert main([command, *argv]) == 0
    assert snapshot(tmp_path / "run") == before and leftovers(tmp_path) == []


def test_quickstart_checks_both_directories_before_writing(tmp_path, data_dir, capsys):
    (tmp_path / "qs" / "st-cnn").mkdir(parents=True)
    (tmp_path / "qs" / "st-cnn" / "data.csv").write_text("1,2\n")
    line = error_line(capsys, ["quickstart", "--out", str(tmp_path / "qs"), "--epochs", "1", "--data-dir", data_dir,
                               "--no-progress"])
    assert "st-cnn" in line and "data.csv" in line
    assert sorted(os.listdir(tmp_path / "qs")) == ["st-cnn"]  # cnn was not trained either


# -- completion, resume, Ctrl-C hints --------------------------------------------------------------------
def test_report_marks_incomplete_runs_and_never_averages_them(tmp_path, data_dir):
    from stnkit.experiments.viz import write_report

    done = tmp_path / "done"
    summary = train(_config(data_dir), done, progress=False)

    class StopAfterEpoch1:
        def on_epoch_end(self, model, epoch, metrics, run_dir):
            raise KeyboardInterrupt

    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        train(_config(data_dir, epochs=2, seed=1), cut, callbacks=[StopAfterEpoch1()], progress=False)
    assert summary["completed"] is True
    assert json.loads((cut / "summary.json").read_text())["completed"] is False
    md = write_report([done, cut], tmp_path / "report.md").read_text()
    cnn_row = next(line for line in md.splitlines() if line.startswith("| CNN |"))
    assert cnn_row.split("|")[2].strip() == f"**{summary['test_error']:.2f}** (+1 incomplete) / 1.2"
    assert "`cut` (incomplete)" in md and "`done` (incomplete)" not in md


def test_resume_never_rewrites_config_json(tmp_path, template, capsys, monkeypatch):
    import stnkit.experiments.cli as cli

    class StopAfterEpoch2:
        def on_epoch_end(self, model, epoch, metrics, run_dir):
            if epoch == 2:
                raise KeyboardInterrupt

    run = _old_run(template, tmp_path / "run")
    config = (run / "config.json").read_bytes()
    monkeypatch.setattr(cli, "_viz_callbacks", lambda trainer: [StopAfterEpoch2()])
    error_line(capsys, ["train", "--resume", "--out", str(run), "--epochs", "3", "--no-progress"], status=130)
    monkeypatch.undo()
    assert (run / "config.json").read_bytes() == config
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["epochs"], summary["completed"]) == (2, False)
    assert main(["train", "--resume", "--out", str(run), "--no-progress"]) == 0  # continues to the 3 epochs it had
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["epochs"], summary["completed"]) == (3, True)
    assert (run / "config.json").read_bytes() == config


def test_ctrl_c_before_any_checkpoint_suggests_no_resume(tmp_path, data_dir, capsys, monkeypatch):
    from stnkit.experiments.train import Trainer

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "probe", interrupted)
    line = error_line(capsys, ["train", "--out", str(tmp_path / "run"), "--data-dir", data_dir, *SMALL], status=130)
    assert line == "stnkit train: interrupted"
    assert not (tmp_path / "run").exists()


def test_ctrl_c_after_a_checkpoint_suggests_the_resume_that_works(tmp_path, data_dir, capsys, monkeypatch):
    import stnkit.experiments.cli as cli

    monkeypatch.setattr(cli, "_viz_callbacks", lambda trainer: [_Fail(KeyboardInterrupt())])
    run = tmp_path / "run"
    animated = [a for a in SMALL if a != "--no-animation"]
    line = error_line(capsys, ["train", "--out", str(run), "--data-dir", data_dir, *animated], status=130)
    assert line == f"stnkit train: interrupted; continue with: stnkit train --resume --out {run}"
    monkeypatch.undo()
    assert main(["train", "--resume", "--out", str(run), "--no-progress"]) == 0


# -- filesystem failures -----------------------------------------------------------------------------------
def _refuse_writes_under(monkeypatch, root: Path, code: int) -> None:
    """Every write-like call on a path under ``root`` fails with ``code`` (EROFS, ENOSPC)."""
    root = str(root)

    def failing(real, flags_at=None):
        def call(path, *args, **kwargs):
            writes = flags_at is None or (args and args[0] & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            if os.path.abspath(os.fspath(path)).startswith(root) and writes:
                raise OSError(code, os.strerror(code), os.fspath(path))
            return real(path, *args, **kwargs)
        return call

    monkeypatch.setattr(os, "open", failing(os.open, flags_at=1))
    for name in ("mkdir", "rename", "replace", "unlink"):
        monkeypatch.setattr(os, name, failing(getattr(os, name)))


def test_injected_read_only_filesystem(tmp_path, template, data_dir, capsys, monkeypatch):
    run = _old_run(template, tmp_path / "ro" / "run")
    before = snapshot(run)
    _refuse_writes_under(monkeypatch, tmp_path / "ro", errno.EROFS)
    for out, extra in ((run, ["--overwrite"]), (tmp_path / "ro" / "new", [])):
        line = error_line(capsys, ["train", "--out", str(out), "--data-dir", data_dir, *SMALL, *extra])
        assert f"cannot write the run directory '{out}': Read-only file system (EROFS)" in line
    monkeypatch.undo()
    assert snapshot(run) == before and sorted(os.listdir(tmp_path / "ro")) == ["run"]


def test_injected_full_disk_mid_run_puts_the_old_run_back(tmp_path, template, data_dir, capsys, monkeypatch):
    run = _old_run(template, tmp_path / "run")
    before = snapshot(run)
    real_save, calls = torch.save, []

    def save(obj, f, *args, **kwargs):  # the first checkpoint fits, the end-of-epoch one half does
        calls.append(1)
        if len(calls) == 2:
            f.write(b"half a checkpoint")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    line = error_line(capsys, ["train", "--out", str(run), "--overwrite", "--data-dir", data_dir, *SMALL])
    assert line == f"stnkit train: error: out: cannot write the run directory '{run}': No space left on device (ENOSPC)"
    assert snapshot(run) == before and leftovers(tmp_path) == []


@pytest.fixture
def tmpfs(tmp_path):
    """Mounts a 512 KiB tmpfs (skips where mounting is not allowed); yields its path, unmounts after."""
    point = tmp_path / "tmpfs"
    point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(point)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()}); the injected tests cover it")
    yield point
    subprocess.run(["umount", "-l", str(point)], check=False)


def test_real_read_only_tmpfs(tmpfs, template, data_dir, capsys):
    run = _old_run(template, tmpfs / "run")
    before = snapshot(run)
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    line = error_line(capsys, ["train", "--out", str(run), "--overwrite", "--data-dir", data_dir, *SMALL])
    assert f"cannot write the run directory '{run}': Read-only file system (EROFS)" in line
    assert snapshot(run) == before


def test_real_full_tmpfs(tmpfs, template, data_dir, capsys):
    run = _old_run(template, tmpfs / "run")
    before = snapshot(run)
    with open(tmpfs / "filler", "wb", buffering=0) as f:  # fill the disk up
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as err:
            assert err.errno == errno.ENOSPC
    line = error_line(capsys, ["train", "--out", str(run), "--overwrite", "--data-dir", data_dir, *SMALL])
    assert f"cannot write the run directory '{run}': No space left on device (ENOSPC)" in line
    assert snapshot(run) == before and sorted(os.listdir(tmpfs)) == ["filler", "run"]


# -- checkpoints with non-finite weights -------------------------------------------------------------------
def test_non_finite_weights_are_refused_by_eval_show_and_resume(tmp_path, template, capsys):
    run = _old_run(template, tmp_path / "run")
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    name = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][name][0] = float("nan")
    torch.save(state, run / "checkpoint.pt")
    for argv in (["eval", str(run)], ["show", str(run)], ["train", "--resume", "--out", str(run), "--epochs", "2"]):
        line = error_line(capsys, argv)
        assert "non-finite weights" in line and name in line, argv
    with pytest.raises(ValueError, match="non-finite weights"):
        load_checkpoint(run)
