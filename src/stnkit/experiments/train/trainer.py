"""The one training loop, generic over tasks: data -> model -> optimizer, with checkpoints, DDP and callbacks.

Everything a run does is decided by its :class:`~stnkit.experiments.train.config.TrainConfig` and its
task (:mod:`stnkit.experiments.tasks`: the data, the training step, the evaluation and the metrics);
the run directory holds ``config.json``, ``checkpoint.pt``, ``metrics.jsonl`` and ``summary.json``
(see ``docs/design.md``). A run stopped by Ctrl-C (or a callback raising ``KeyboardInterrupt``)
saves a checkpoint at the last completed step; ``resume=True`` continues from it and ends with the
same weights, bit for bit, as an uninterrupted run. A NaN/inf loss or theta stops the run with
:class:`TrainingDiverged` and leaves the last good checkpoint in place. Under ``torchrun`` the
caller sets up the process group (:func:`distributed.setup`) and passes the ``env``.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from ...errors import NonFiniteThetaError, raise_pending
from ..data.loading import batches_from, configure_loading
from ..models import count_parameters
from . import checkpoint as ckpt
from . import distributed
from .build import build_model, make_task
from .callbacks import call
from .config import TrainConfig
from .optim import build_optimizer, lr_factor, set_lr
from .progress import ProgressBar
from .records import epoch_line, epoch_row
from .resume import RESUMABLE_CHANGES, StopOnSigint, checkpoint_state, nonfinite_parameter, restore_state
from .rundir import RunDirectory, SettingsError
from .state import EpochTotals, TrainState
from .switches import amp_dtype

log = logging.getLogger(__name__)

__all__ = ["Trainer", "TrainingDiverged", "build_model", "train", "RESUMABLE_CHANGES"]


class TrainingDiverged(RuntimeError):
    """The loss or theta became NaN/inf; the run stopped and kept its last good checkpoint."""


class Trainer:
    """Trains one run.

    Args:
        config: The run's settings (validated here).
        run_dir: Output directory (created on rank 0).
        callbacks: Objects with ``on_train_start`` / ``on_epoch_end`` / ``on_train_end`` (and
            optionally ``on_step_end``) hooks, called on rank 0 with the unwrapped model.
        resume: Continue from ``run_dir/checkpoint.pt``.
        overwrite: Start afresh even if ``run_dir`` holds a run (refused otherwise).
        progress: Show a tqdm progress bar (rank 0; :class:`~.progress.ProgressBar`).
        env: This process's place in the process group, from :func:`distributed.setup` (the caller
            owns the group); default: one process on ``config.device``.
    """

    def __init__(
        self,
        config: TrainConfig,
        run_dir: str | Path,
        *,
        callbacks: Iterable[Any] = (),
        resume: bool = False,
        progress: bool = True,
        overwrite: bool = False,
        env: distributed.DistEnv | None = None,
    ) -> None:
        self.config = config.validate()
        self.run_dir = Path(run_dir)
        self.env = env if env is not None else distributed.single_process(config.device)
        # Run-directory rules (rundir.py): refuse foreign content / an existing run before building anything.
        self.rundir = RunDirectory(self.run_dir, resume=resume, overwrite=overwrite)
        if self.env.is_main:  # rank 0 alone owns the directory under torchrun
            self.rundir.check()
        self.callbacks = list(callbacks)
        if progress and self.env.is_main:
            self.callbacks.insert(0, ProgressBar())
        saved = ckpt.load_checkpoint(self.run_dir) if resume else None
        cfg, env = self.config, self.env
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.task = make_task(cfg)
        if env.distributed and not env.is_main:
            distributed.barrier(env)  # rank 0 downloads/caches first
        self.train_set, self.test_set = self.task.train_data(), self.task.eval_data()
        for data in (self.train_set, self.test_set):  # file-based data loads through a DataLoader
            configure_loading(data, num_workers=cfg.num_workers, pin_memory=env.device.type == "cuda")
        if env.distributed and env.is_main:
            distributed.barrier(env)
        self.in_shape, self.num_classes = tuple(self.task.in_shape), self.task.num_outputs
        self.model = build_model(cfg, self.in_shape, self.num_classes).to(env.device)
        if cfg.downsample is None:  # recorded as the model does it, so that a later default cannot change a run
            cfg = self.config = dataclasses.replace(cfg, downsample=bool(getattr(self.model, "downsample", False)))
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.amp_dtype = amp_dtype(env.device) if cfg.amp else None
        self.optimizer = build_optimizer(self.model, cfg)
        self.steps_per_epoch = math.ceil(len(self.train_set) / cfg.batch_size)
        self.total_iterations = self.steps_per_epoch * cfg.epochs
        self.state = TrainState()
        self._updating = False  # inside optimizer.step(): a hard interrupt there must not be saved
        self.resumed = saved is not None
        if saved is not None:
            self.state = restore_state(saved, self.model, self.optimizer, cfg, self.in_shape, self.num_classes)
        else:
            self.task.prepare_model(self.model)  # e.g. pretrains a frozen encoder (co-localisation)
        self.net: nn.Module = self.model
        if env.distributed:
            ids = [env.device.index] if env.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if cfg.compile:
            self.net = cast(nn.Module, torch.compile(self.net))

    # -- checkpoint state (resume.py) ---------------------------------------------------------------
    def checkpoint(self) -> dict[str, Any]:
        """Everything needed to continue the run exactly where it is (:func:`~.resume.checkpoint_state`)."""
        return checkpoint_state(self.model, self.optimizer, self.state, self.config, self.in_shape, self.num_classes)

    def _save(self) -> None:
        ckpt.save_checkpoint(self.checkpoint_path, self.checkpoint())

    def _may_save(self) -> bool:
        """Whether a checkpoint may be written now (finite weights; not an overwrite before its first epoch)."""
        return nonfinite_parameter(self.model) is None and self.rundir.keeps_new_run

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / ckpt.CHECKPOINT

    def _to_device(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return tuple(t.to(self.env.device, non_blocking=True) for t in batch)

    def probe(self) -> None:
        """One forward and backward pass on one training batch, on a copy of the model: settings that
        cannot work fail here, before anything is written. The model, the RNG and the disk are untouched."""
        batch = self._to_device(next(iter(self.train_set.batches(0, self.config.batch_size))))
        device = self.env.device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            try:
                self.task.step(copy.deepcopy(self.model).train(), batch).loss.backward()
            except (RuntimeError, ValueError, TypeError) as err:
                raise SettingsError(
                    f"settings: one training step on one batch fails, so nothing was written "
                    f"({type(err).__name__}: {err})"
                ) from err

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

        with self.rundir.session(self.probe, active=self.env.is_main, agree=agree):
            return self._fit()

    def _fit(self) -> dict[str, Any]:
        cfg, main = self.config, self.env.is_main
        if main:
            self._start()
        try:
            with StopOnSigint() as stop:
                while self.state.epoch < cfg.epochs:
                    self._train_epoch(stop)
                    self._end_epoch()
        except KeyboardInterrupt:
            # rundir: an overwrite stopped before its first epoch puts the old run back; nothing to resume
            if main and not self._updating and self._may_save():
                self._save()
                log.warning(
                    "interrupted: checkpoint saved at epoch %d, batch %d in %s; continue with resume "
                    "(stnkit train --resume --out %s)",
                    self.state.epoch,
                    self.state.batch,
                    self.checkpoint_path,
                    self.run_dir,
                )
            raise
        summary = self.summary()
        if main:
            ckpt.write_json(self.run_dir / ckpt.SUMMARY, summary)
            call(self.callbacks, "on_train_end", self.model, self.run_dir)
        return summary

    def _start(self) -> None:
        """Rank 0: the run directory's files of a fresh run, the log line, ``on_train_start``."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not self.resumed:  # --resume never rewrites the recorded settings of the run it continues
            ckpt.write_text(self.run_dir / ckpt.CONFIG, self.config.to_json())
            self._save()  # a fresh run replaces whatever an earlier one left
            ckpt.write_jsonl(self.run_dir / ckpt.METRICS, [])
            (self.run_dir / ckpt.SUMMARY).unlink(missing_ok=True)
        log.info(
            "%s run %s: %s, %d parameters, %d train / %d test images, %s x %d process(es)",
            "resuming" if self.resumed else "starting",
            self.run_dir,
            self.label,
            count_parameters(self.model),
            len(self.train_set),
            len(self.test_set),
            self.env.device,
            self.env.world_size,
        )
        call(self.callbacks, "on_train_start", self.model, self.run_dir)

    def _train_epoch(self, stop: StopOnSigint) -> None:
        cfg, env, state = self.config, self.env, self.state
        self.net.train()
        if env.is_main:
            call(self.callbacks, "on_epoch_begin", self)
        try:
            start = time.perf_counter()
            seconds_before = state.partial.seconds
            # a resumed run skips the batches done before the interruption (same order, same draws)
            batches = batches_from(
                self.train_set, state.epoch, cfg.batch_size, env.rank, env.world_size, start=state.batch
            )
            for i, batch in enumerate(batches, start=state.batch):
                result, reason = self._step(self._to_device(batch))
                names = sorted(result.sums)
                bad, n, stopping, loss_all, *sums_all = distributed.all_reduce_sum(
                    [
                        float(reason is not None),
                        float(result.count),
                        float(stop.requested),
                        result.loss.item(),
                        *(result.sums[k] for k in names),
                    ],
                    env,
                )
                if bad:
                    self._diverged(reason or "another rank saw a NaN/inf loss or theta")
                if stopping:
                    raise KeyboardInterrupt
                lr = set_lr(self.optimizer, lr_factor(cfg, state.iteration, self.total_iterations))
                self.optimizer.zero_grad(set_to_none=True)
                (result.loss * (env.world_size / n)).backward()  # DDP averages: sum over the global batch / n
                if cfg.grad_clip:
                    nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                self._updating = True
                self.optimizer.step()
                state.iteration, state.batch = state.iteration + 1, i + 1
                seconds = seconds_before + time.perf_counter() - start
                state.partial = state.partial.added(loss_all, n, dict(zip(names, sums_all, strict=True)), seconds)
                self._updating = False
                if (
                    env.is_main
                    and cfg.checkpoint_every
                    and state.iteration % cfg.checkpoint_every == 0
                    and self._may_save()
                ):
                    self._save()  # mid-epoch: a resumed run continues at the next batch
                if env.is_main:
                    call(self.callbacks, "on_batch_end", self, lr)
                    call(self.callbacks, "on_step_end", self.model, state.iteration, loss_all / n)
        finally:
            if env.is_main:
                call(self.callbacks, "on_epoch_close", self)

    def _step(self, batch: tuple[torch.Tensor, ...]) -> tuple[Any, str | None]:
        """The task's step and the reason it diverged, if it did (read at the loss: the step's sync point)."""
        from ..tasks import StepResult

        x = batch[0]
        if self.config.channels_last:
            batch = (x.contiguous(memory_format=torch.channels_last), *batch[1:])
        try:
            with torch.autocast(
                x.device.type, dtype=self.amp_dtype or torch.bfloat16, enabled=self.amp_dtype is not None
            ):
                result = self.task.step(self.net, batch)
            finite = bool(torch.isfinite(result.loss))  # the step's sync point: the deferred theta check too
            raise_pending(x.device)
        except NonFiniteThetaError as err:
            return StepResult(torch.zeros((), device=batch[0].device), len(batch[0]), {}), f"non-finite theta ({err})"
        return result, None if finite else f"loss is {result.loss.item()}"

    def _diverged(self, reason: str) -> None:
        epoch, iteration = self.state.epoch, self.state.iteration
        done = f"epoch {epoch}" if epoch else "the initial weights"
        raise TrainingDiverged(
            f"training diverged at epoch {epoch + 1}, iteration {iteration + 1}: {reason}. Stopped; the last "
            f"good checkpoint ({done}) is kept in {self.checkpoint_path}. Try a lower --lr or --loc-lr-mult, "
            f"or --grad-clip"
        )

    def _end_epoch(self) -> None:
        cfg, env, state = self.config, self.env, self.state
        bad = nonfinite_parameter(self.model)
        if bad is not None:
            state.iteration -= 1  # report the step that produced it
            self._diverged(f"parameter {bad} holds NaN/inf")
        p = state.partial
        test = (
            self.task.evaluate(self.model, self.test_set.batches(0, cfg.eval_batch_size), env.device)
            if env.is_main
            else None
        )
        distributed.barrier(env)
        state.elapsed += p.seconds
        state.epoch, state.batch, state.partial = state.epoch + 1, 0, EpochTotals()
        lr = self.optimizer.param_groups[0]["base_lr"] * lr_factor(
            cfg, max(state.iteration - 1, 0), self.total_iterations
        )
        row = epoch_row(self.task, p, test, epoch=state.epoch, lr=lr, elapsed=state.elapsed)
        state.metrics.append(row)
        if not env.is_main:
            return
        self._save()
        ckpt.write_jsonl(self.run_dir / ckpt.METRICS, state.metrics)
        ckpt.write_json(self.run_dir / ckpt.SUMMARY, self.summary())
        self.rundir.commit()  # rundir: the new run has a checkpoint; the run it replaces may go now
        log.info("%s", epoch_line(self.task, row, cfg.epochs))
        call(self.callbacks, "on_epoch_end", self.model, state.epoch, dict(row), self.run_dir)

    @property
    def label(self) -> str:
        """``model (transform)`` for models with spatial transformers, ``model`` otherwise."""
        has_st = bool(getattr(self.model, "spatial_transformers", None))
        return f"{self.config.model} ({self.config.transform})" if has_st else self.config.model

    def summary(self) -> dict[str, Any]:
        """The run's ``summary.json``: what was trained, its size, the final metrics and cost."""
        cfg, state = self.config, self.state
        last = state.metrics[-1] if state.metrics else {}
        return {
            "model": cfg.model,
            "transform": cfg.transform,
            "label": self.label,
            "task": cfg.task,
            "digits": cfg.digits,
            "params": count_parameters(self.model),
            **{f"test_{m.name}": last.get(f"test_{m.name}") for m in self.task.metrics},
            "train_time_s": state.elapsed,
            "epochs": state.epoch,
            "iterations": state.iteration,
            "batch_size": cfg.batch_size,
            "train_images": len(self.train_set),
            "test_images": len(self.test_set),
            "in_shape": list(self.in_shape),
            **self.task.data_info(),
            "world_size": self.env.world_size,
            "device": str(self.env.device),
            "completed": state.epoch >= cfg.epochs,
        }  # rundir: `stnkit report` leaves out incomplete runs


def train(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    callbacks: Iterable[Any] = (),
    resume: bool = False,
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Trains ``config`` into ``run_dir`` and returns the summary (see :class:`Trainer`); under
    ``torchrun`` it joins the process group first and leaves it at the end."""
    with distributed.process_group(config.device) as env:
        return Trainer(
            config, run_dir, callbacks=callbacks, resume=resume, progress=progress, overwrite=overwrite, env=env
        ).fit()
