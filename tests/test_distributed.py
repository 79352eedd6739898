"""Data-parallel training: two gloo processes started by torchrun match one process."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ppl_vae.data.base import ArrayDataset

from .ddp_worker import make_problem, train


def test_shards_partition_every_global_batch():
    data = ArrayDataset(torch.arange(23.0)[:, None])
    for shuffle in (False, True):
        g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
        single = [xb[:, 0].tolist() for xb, _ in data.batches(8, shuffle=shuffle, generator=g())]
        ranks = [[xb[:, 0].tolist() for xb, _ in data.batches(8, shuffle=shuffle, generator=g(), shard=(r, 3))] for r in range(3)]
        assert all(len(r) == 3 for r in ranks)  # the last batch (7 of 23) still gives every rank data
        for k, batch in enumerate(single):
            blocks = [ranks[r][k] for r in range(3)]
            assert sum(blocks, []) == batch  # contiguous blocks, in order, no index twice
    assert len(list(ArrayDataset(torch.zeros(9, 1)).batches(8, shuffle=False, shard=(0, 2)))) == 1  # 1 left < 2 ranks


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_ranks_match_a_single_process_run(tmp_path):
    worker = Path(__file__).with_name("ddp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent.parent)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(_free_port()),
            str(worker),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["world"] == 2
    for name, p in r0["params"].items():
        assert torch.equal(p, r1["params"][name]), name  # gradients were synchronized: identical ranks
    vae, x = make_problem()
    initial = {k: v.clone() for k, v in vae.state_dict().items()}
    history = train(vae, x)
    moved = max(float((r0["params"][k] - initial[k]).abs().max()) for k in initial)
    worst = max(float((r0["params"][k] - v).abs().max()) for k, v in vae.state_dict().items())
    assert moved > 0.05 and worst < 1e-4, (moved, worst)
    assert [h["train_loss"] for h in r0["history"]] == pytest.approx([h["train_loss"] for h in history], rel=1e-5)


def _torchrun(*args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(_free_port()),
            "-m",
            "ppl_vae",
            *map(str, args),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=cwd,
    )


@pytest.mark.slow
def test_distributed_cli_run_writes_once_and_resumes(tmp_path):
    import json

    out = tmp_path / "ddp"
    first = _torchrun(
        "train",
        "--distributed",
        "--out",
        out,
        "--set",
        "train.epochs=2",
        "--no-progress",
        "--no-figures",
        "--set",
        "eval.iwae_samples=20",
        cwd=tmp_path,
    )
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout.count("run directory") == 1  # only rank 0 reports and writes
    again = _torchrun(
        "train",
        "--distributed",
        "--resume",
        out,
        "--set",
        "train.epochs=3",
        "--no-progress",
        "--no-figures",
        "--set",
        "eval.iwae_samples=20",
        cwd=tmp_path,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    epochs = [json.loads(line)["epoch"] for line in (out / "history.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]
    files = sorted(p.name for p in out.iterdir() if p.name != ".lock")  # .lock: the claim on the folder
    assert files == ["best.pt", "checkpoint.pt", "config.toml", "history.jsonl", "metrics.json"]  # best.pt: the best validation ELBO


def test_distributed_flag_outside_torchrun_is_a_clear_error(tmp_path):
    from .clitools import error_of

    env_free = {k: os.environ.pop(k) for k in ("RANK", "WORLD_SIZE") if k in os.environ}
    try:
        assert "expects to be started by torchrun" in error_of("train", "--distributed", "--out", tmp_path / "x")
    finally:
        os.environ.update(env_free)
