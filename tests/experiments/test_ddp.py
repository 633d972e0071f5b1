"""DistributedDataParallel: two CPU processes (gloo) train exactly what one process trains."""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from _synthetic_digits import write_synthetic_mnist
from stnkit.experiments.train import TrainConfig, build_model, load_checkpoint, train

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, config: dict, run_dir: str, out_dir: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from stnkit.experiments.train import Trainer, distributed

    with distributed.process_group("cpu") as env:  # the caller owns the process group, not the Trainer
        trainer = Trainer(TrainConfig(**config), run_dir, progress=False, env=env)
        trainer.fit()
    torch.save(trainer.model.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))


def test_two_gloo_ranks_match_one_process(tmp_path):
    data_dir = str(write_synthetic_mnist(tmp_path / "digits", n_train=72, n_test=16))
    # 72 images in global batches of 16: the last batch (8 images) is split 4 + 4.
    config = dict(model="st-cnn", task="r", data_dir=data_dir, epochs=2, batch_size=16, optimizer="sgd",
                  lr=0.05, momentum=0.9, loc_lr_mult=0.5, seed=5, eval_batch_size=16,
                  model_options={"channels": [4, 8]})
    mp.spawn(_worker, args=(2, _free_port(), config, str(tmp_path / "ddp"), str(tmp_path)), nprocs=2, join=True)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key  # DDP keeps the replicas identical

    single = tmp_path / "single"
    summary = train(TrainConfig(**config), single, progress=False)
    reference = load_checkpoint(single)["model"]
    for key in reference:
        torch.testing.assert_close(rank0[key], reference[key], rtol=1e-5, atol=1e-6)
    initial = build_model(TrainConfig(**config), (1, 28, 28), 10).state_dict()
    assert max(float((reference[k] - initial[k]).abs().max()) for k in reference) > 1e-2  # training moved them
    assert summary["iterations"] == 10

    ddp_state = load_checkpoint(tmp_path / "ddp")  # written by rank 0 only
    for key in reference:
        assert torch.equal(ddp_state["model"][key], rank0[key])
    ddp_summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert ddp_summary["world_size"] == 2 and ddp_summary["iterations"] == 10
    ddp_rows = [json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    one_rows = [json.loads(line) for line in (single / "metrics.jsonl").read_text().splitlines()]
    for a, b in zip(ddp_rows, one_rows):  # global train metrics, summed over both ranks
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["train_error"] == pytest.approx(b["train_error"])
