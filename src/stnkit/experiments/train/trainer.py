"""The one training loop: data -> model -> optimizer, with checkpoints, DDP and callbacks.

Everything a run does is decided by its :class:`~stnkit.experiments.train.config.TrainConfig`; the run directory
holds ``config.json``, ``checkpoint.pt``, ``metrics.jsonl`` and ``summary.json`` (see
``docs/design.md``). A run stopped by Ctrl-C (or a callback raising ``KeyboardInterrupt``) saves a
checkpoint at the last completed step; ``resume=True`` continues from it and ends with the same
weights, bit for bit, as an uninterrupted run. A NaN/inf loss or theta stops the run with
:class:`TrainingDiverged` and leaves the last good checkpoint in place.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import NonFiniteThetaError, raise_pending
from ..models import count_parameters, create_model
from . import checkpoint as ckpt
from . import distributed
from .callbacks import call
from .config import TrainConfig
from .evaluate import evaluate
from .optim import build_optimizer, lr_factor, set_lr
from .rundir import RunDirectory, SettingsError
from .switches import amp_dtype

log = logging.getLogger(__name__)

# Settings that may change when a run is resumed; anything else would change the result.
RESUMABLE_CHANGES = {"epochs", "device", "threads", "data_dir", "download", "eval_batch_size", "compile", "amp",
                     "channels_last"}


class TrainingDiverged(RuntimeError):
    """The loss or theta became NaN/inf; the run stopped and kept its last good checkpoint."""


def build_model(config: TrainConfig, in_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Creates the config's model; the weight init is seeded by ``config.seed`` without touching
    the global RNG state (``torch.random.fork_rng``)."""
    downsample = config.downsample if config.downsample is not None else max(in_shape[1:]) > 28
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return create_model(config.model, in_shape=in_shape, num_classes=num_classes, transform=config.transform,
                            downsample=downsample, transform_options=config.transform_options or None,
                            **config.model_options)


class Trainer:
    """Trains one run.

    Args:
        config: The run's settings (validated here).
        run_dir: Output directory (created on rank 0).
        callbacks: Objects with ``on_train_start`` / ``on_epoch_end`` / ``on_train_end`` (and
            optionally ``on_step_end``) hooks, called on rank 0 with the unwrapped model.
        resume: Continue from ``run_dir/checkpoint.pt``.
        overwrite: Start afresh even if ``run_dir`` holds a run (refused otherwise).
        progress: Show a tqdm progress bar (rank 0).
    """

    def __init__(self, config: TrainConfig, run_dir: str | Path, *, callbacks: Iterable[Any] = (),
                 resume: bool = False, progress: bool = True, overwrite: bool = False) -> None:
        self.config = config.validate()
        self.run_dir = Path(run_dir)
        # Run-directory rules (rundir.py): refuse foreign content / an existing run before building anything.
        self.rundir = RunDirectory(self.run_dir, resume=resume, overwrite=overwrite)
        if int(os.environ.get("RANK", "0")) == 0:  # rank 0 alone owns the directory under torchrun
            self.rundir.check()
        self.callbacks = list(callbacks)
        self.progress = progress
        state = ckpt.load_checkpoint(self.run_dir) if resume else None
        self.env = distributed.setup(config.device)
        try:
            self._setup(state)
        except BaseException:
            distributed.cleanup(self.env)
            raise

    def _setup(self, state: dict[str, Any] | None) -> None:
        from .. import data

        cfg, env = self.config, self.env
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if env.distributed and not env.is_main:
            distributed.barrier(env)  # rank 0 downloads/caches first
        common = dict(name=cfg.digits, data_dir=cfg.data_dir, download=cfg.download, seed=cfg.seed)
        self.train_set = data.DistortedDigits(cfg.dataset, "train", limit=cfg.limit, **common)
        self.test_set = data.DistortedDigits(cfg.dataset, "test", limit=cfg.test_limit or cfg.limit, **common)
        if env.distributed and env.is_main:
            distributed.barrier(env)
        self.in_shape = (self.train_set.channels, *self.train_set.size)
        self.num_classes = self.train_set.num_classes
        self.model = build_model(cfg, self.in_shape, self.num_classes).to(env.device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.amp_dtype = amp_dtype(env.device) if cfg.amp else None
        if state is not None:
            _check_resumable(TrainConfig.from_dict(state["config"]), cfg, bool(self.model.spatial_transformers))
        self.optimizer = build_optimizer(self.model, cfg)
        self.steps_per_epoch = math.ceil(len(self.train_set) / cfg.batch_size)
        self.iteration, self.epoch, self.batch = 0, 0, 0  # steps done; epochs done; batches done in this epoch
        self.partial = [0.0, 0.0, 0.0, 0.0]  # loss sum, correct, images, seconds of the current epoch
        self.metrics: list[dict[str, Any]] = []
        self.elapsed = 0.0  # seconds in the training loop (test evaluation and callbacks excluded)
        self._updating = False  # inside optimizer.step(): a hard interrupt there must not be saved
        self.resumed = state is not None
        if state is not None:
            self._restore(state)
        self.net: nn.Module = self.model
        if env.distributed:
            ids = [env.device.index] if env.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if cfg.compile:
            self.net = torch.compile(self.net)

    # -- checkpoint state ---------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything needed to continue the run exactly where it is."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": {"iteration": self.iteration, "schedule": self.config.schedule},
                "epoch": self.epoch, "batch": self.batch, "partial": list(self.partial),
                "rng": {"torch": torch.get_rng_state()}, "metrics": list(self.metrics),
                "config": self.config.to_dict(), "elapsed_s": self.elapsed, "in_shape": list(self.in_shape),
                "num_classes": self.num_classes, "params": count_parameters(self.model)}

    def _restore(self, state: dict[str, Any]) -> None:
        if tuple(state["in_shape"]) != self.in_shape or state["num_classes"] != self.num_classes:
            raise ValueError(f"resume: the checkpoint's model takes {tuple(state['in_shape'])} images and "
                             f"{state['num_classes']} classes; the data gives {self.in_shape} and {self.num_classes}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.iteration = int(state["scheduler"]["iteration"])
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])
        self.partial = [float(v) for v in state["partial"]]
        self.metrics = list(state["metrics"])
        self.elapsed = float(state["elapsed_s"])
        torch.set_rng_state(state["rng"]["torch"])

    def _save(self) -> None:
        ckpt.save_checkpoint(self.checkpoint_path, self.state())

    def _nonfinite_parameter(self) -> str | None:
        return next((name for name, p in self.model.named_parameters() if not bool(torch.isfinite(p).all())), None)

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / ckpt.CHECKPOINT

    def probe(self) -> None:
        """One forward and backward pass on one training batch, on a copy of the model: settings that
        cannot work fail here, before anything is written. The model, the RNG and the disk are untouched."""
        x, y = next(iter(self.train_set.batches(0, self.config.batch_size)))
        device = self.env.device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            try:
                logits = copy.deepcopy(self.model).train()(x.to(device))  # (n, classes)
                F.cross_entropy(logits, y.to(device)).backward()
            except (RuntimeError, ValueError, TypeError) as err:
                raise SettingsError(f"settings: one training step on one batch fails, so nothing was written "
                                 f"({type(err).__name__}: {err})") from err

    # -- the loop -----------------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Trains to ``config.epochs`` and returns the summary (also written to ``summary.json``).

        Raises:
            TrainingDiverged: NaN/inf loss or theta (the last good checkpoint stays in place).
            KeyboardInterrupt: after saving a checkpoint at the last completed step.
            RunDirectoryError: the run directory cannot be used (see ``rundir.py``).
        """
        # Run-directory rules (rundir.py): probe one step, lock, set an overwritten run aside; a failure
        # before the first end-of-epoch checkpoint puts it back.
        def agree(ok: bool) -> bool:
            return distributed.all_reduce_sum([float(not ok)], self.env)[0] == 0

        try:
            with self.rundir.session(self.probe, active=self.env.is_main, agree=agree):
                return self._fit()
        except BaseException:
            distributed.cleanup(self.env)
            raise

    def _fit(self) -> dict[str, Any]:
        cfg, main = self.config, self.env.is_main
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if not self.resumed:  # --resume never rewrites the recorded settings of the run it continues
                ckpt.write_text(self.run_dir / ckpt.CONFIG, cfg.to_json())
            if not self.resumed:  # a fresh run replaces whatever an earlier one left
                self._save()
                ckpt.write_jsonl(self.run_dir / ckpt.METRICS, [])
                (self.run_dir / ckpt.SUMMARY).unlink(missing_ok=True)
            log.info("%s run %s: %s, %d parameters, %d train / %d test images, %s x %d process(es)",
                     "resuming" if self.resumed else "starting", self.run_dir, self.label,
                     count_parameters(self.model), len(self.train_set), len(self.test_set),
                     self.env.device, self.env.world_size)
            call(self.callbacks, "on_train_start", self.model, self.run_dir)
        try:
            with _StopOnSigint() as stop:
                while self.epoch < cfg.epochs:
                    self._train_epoch(stop)
                    self._end_epoch()
        except KeyboardInterrupt:
            # rundir: an overwrite stopped before its first epoch puts the old run back; nothing to resume
            if main and not self._updating and self._nonfinite_parameter() is None and self.rundir.keeps_new_run:
                self._save()
                log.warning("interrupted: checkpoint saved at epoch %d, batch %d in %s; continue with resume "
                            "(stnkit train --resume --out %s)", self.epoch, self.batch, self.checkpoint_path, self.run_dir)
            distributed.cleanup(self.env)
            raise
        except BaseException:
            distributed.cleanup(self.env)
            raise
        summary = self.summary()
        if main:
            ckpt.write_json(self.run_dir / ckpt.SUMMARY, summary)
            call(self.callbacks, "on_train_end", self.model, self.run_dir)
        distributed.cleanup(self.env)
        return summary

    def _train_epoch(self, stop: "_StopOnSigint") -> None:
        from tqdm.auto import tqdm

        cfg, env = self.config, self.env
        total = self.steps_per_epoch * cfg.epochs
        self.net.train()
        bar = tqdm(total=self.steps_per_epoch, initial=self.batch, desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
                   unit="batch", leave=False, dynamic_ncols=True, disable=not (self.progress and env.is_main))
        try:
            start = time.perf_counter()
            seconds_before = self.partial[3]
            batches = self.train_set.batches(self.epoch, cfg.batch_size, env.rank, env.world_size)
            for i, (x, y) in enumerate(batches):
                if i < self.batch:
                    continue  # done before the interruption we resume from
                x, y = x.to(env.device, non_blocking=True), y.to(env.device, non_blocking=True)
                loss_sum, correct, reason = self._forward(x, y)
                bad, n, stopping, loss_all, correct_all = distributed.all_reduce_sum(
                    [float(reason is not None), float(len(y)), float(stop.requested), loss_sum.item(), correct], env)
                if bad:
                    self._diverged(reason or "another rank saw a NaN/inf loss or theta")
                if stopping:
                    raise KeyboardInterrupt
                lr = set_lr(self.optimizer, lr_factor(cfg, self.iteration, total))
                self.optimizer.zero_grad(set_to_none=True)
                (loss_sum * (env.world_size / n)).backward()  # DDP averages: sum over the global batch / n
                if cfg.grad_clip:
                    nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                self._updating = True
                self.optimizer.step()
                self.iteration, self.batch = self.iteration + 1, i + 1
                now = time.perf_counter()
                p = self.partial
                self.partial = [p[0] + loss_all, p[1] + correct_all, p[2] + n, seconds_before + now - start]
                self._updating = False
                bar.update(1)
                if env.is_main:
                    self._postfix(bar, lr, total)
                    call(self.callbacks, "on_step_end", self.model, self.iteration, loss_all / n)
        finally:
            bar.close()

    def _forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, float, str | None]:
        if self.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        try:
            with torch.autocast(x.device.type, dtype=self.amp_dtype or torch.bfloat16, enabled=self.amp_dtype is not None):
                logits = self.net(x)  # (n, classes)
            loss_sum = F.cross_entropy(logits.float(), y, reduction="sum")
            finite = bool(torch.isfinite(loss_sum))  # the step's sync point: the deferred theta check too
            raise_pending(x.device)
        except NonFiniteThetaError as err:
            return torch.zeros((), device=x.device), 0.0, f"non-finite theta ({err})"
        reason = None if finite else f"loss is {loss_sum.item()}"
        return loss_sum, float((logits.argmax(1) == y).sum()), reason

    def _diverged(self, reason: str) -> None:
        done = f"epoch {self.epoch}" if self.epoch else "the initial weights"
        msg = (f"training diverged at epoch {self.epoch + 1}, iteration {self.iteration + 1}: {reason}. Stopped; "
               f"the last good checkpoint ({done}) is kept in {self.checkpoint_path}. Try a lower --lr or "
               f"--loc-lr-mult, or --grad-clip")
        raise TrainingDiverged(msg)

    def _postfix(self, bar: Any, lr: float, total: int) -> None:
        loss, correct, n, seconds = self.partial
        rate = n / max(seconds, 1e-9)
        eta = (total - self.iteration) * seconds / max(self.batch, 1) if self.batch else float("nan")
        bar.set_postfix_str(f"loss {loss / n:.3f} acc {100 * correct / n:.1f}% {rate:.0f} img/s lr {lr:.2g} "
                            f"run ETA {_clock(eta)}", refresh=False)

    def _end_epoch(self) -> None:
        cfg, env = self.config, self.env
        bad = self._nonfinite_parameter()
        if bad is not None:
            self.iteration -= 1  # report the step that produced it
            self._diverged(f"parameter {bad} holds NaN/inf")
        loss, correct, n, seconds = self.partial
        test = None
        if env.is_main:
            test = evaluate(self.model, self.test_set.batches(0, cfg.eval_batch_size), env.device)
        distributed.barrier(env)
        self.elapsed += seconds
        self.epoch, self.batch, self.partial = self.epoch + 1, 0, [0.0, 0.0, 0.0, 0.0]
        total = self.steps_per_epoch * cfg.epochs
        row = {"epoch": self.epoch, "train_loss": loss / max(n, 1), "train_error": 100 * (1 - correct / max(n, 1)),
               "test_error": test["error"] if test else None,
               "lr": self.optimizer.param_groups[0]["base_lr"] * lr_factor(cfg, max(self.iteration - 1, 0), total),
               "epoch_time_s": seconds, "images_per_s": n / max(seconds, 1e-9), "elapsed_s": self.elapsed}
        self.metrics.append(row)
        if not env.is_main:
            return
        self._save()
        ckpt.write_jsonl(self.run_dir / ckpt.METRICS, self.metrics)
        ckpt.write_json(self.run_dir / ckpt.SUMMARY, self.summary())
        self.rundir.commit()  # rundir: the new run has a checkpoint; the run it replaces may go now
        log.info("epoch %d/%d: train loss %.4f, train error %.2f%%, test error %.2f%%, %.1f s (%.0f img/s)",
                 self.epoch, cfg.epochs, row["train_loss"], row["train_error"], row["test_error"], seconds,
                 row["images_per_s"])
        call(self.callbacks, "on_epoch_end", self.model, self.epoch, dict(row), self.run_dir)

    @property
    def label(self) -> str:
        """``model (transform)`` for models with spatial transformers, ``model`` otherwise."""
        has_st = bool(getattr(self.model, "spatial_transformers", None))
        return f"{self.config.model} ({self.config.transform})" if has_st else self.config.model

    def summary(self) -> dict[str, Any]:
        """The run's ``summary.json``: what was trained, its size, the final test error and cost."""
        cfg = self.config
        last = self.metrics[-1] if self.metrics else {}
        return {"model": cfg.model, "transform": cfg.transform, "label": self.label, "dataset": cfg.dataset,
                "digits": cfg.digits,
                "params": count_parameters(self.model), "test_error": last.get("test_error"),
                "train_time_s": self.elapsed, "epochs": self.epoch, "iterations": self.iteration,
                "batch_size": cfg.batch_size, "train_images": len(self.train_set),
                "test_images": len(self.test_set), "in_shape": list(self.in_shape),
                "data_source": self.train_set.digits.source, "embedded": bool(self.train_set.digits.embedded),
                "world_size": self.env.world_size, "device": str(self.env.device),
                "completed": self.epoch >= cfg.epochs}  # rundir: `stnkit report` leaves out incomplete runs


def train(config: TrainConfig, run_dir: str | Path, *, callbacks: Iterable[Any] = (), resume: bool = False,
          progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Trains ``config`` into ``run_dir`` and returns the summary (see :class:`Trainer`)."""
    return Trainer(config, run_dir, callbacks=callbacks, resume=resume, progress=progress, overwrite=overwrite).fit()


def _check_resumable(saved: TrainConfig, given: TrainConfig, has_st: bool) -> None:
    free = RESUMABLE_CHANGES | (set() if has_st else {"transform", "transform_options", "loc_lr_mult"})
    for key, value in given.to_dict().items():
        if key not in free and getattr(saved, key) != value:
            raise ValueError(f"resume: {key} was {getattr(saved, key)!r} in the run being resumed, got {value!r}; "
                             f"only {', '.join(sorted(RESUMABLE_CHANGES))} may change when resuming")


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class _StopOnSigint:
    """First Ctrl-C: finish the current step, then stop with a checkpoint. Second: stop at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, self._previous)
        log.warning("Ctrl-C: stopping after this step and saving a checkpoint (Ctrl-C again to abort now)")

    def __enter__(self) -> "_StopOnSigint":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None and signal.getsignal(signal.SIGINT) == self._handle:
            signal.signal(signal.SIGINT, self._previous)
