"""Faults while a run works: a full disk, Ctrl-C, resuming backwards, two runs racing for one folder.
Each ends with a one-line message, the last good checkpoint intact, and nothing half-written."""

import errno
import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from ppl_vae import cli
from ppl_vae.training.checkpoint import load_checkpoint

QUICK = ["--set", "eval.iwae_samples=5", "--set", "eval.n_test=20", "--set", "data.limit=300", "--no-progress"]


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ppl-vae: "), err
    return lines[0]


def no_temporary_files(run) -> bool:
    return not list(run.rglob(".*.tmp"))


def test_a_full_disk_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    real_save, calls = torch.save, []

    def save(obj, f, *args, **kwargs):
        calls.append(f)
        if len(calls) == 2:  # the checkpoint after epoch 2: half a file, then the disk is full
            with open(f, "wb") as out:
                out.write(b"half")
            raise OSError(errno.ENOSPC, "No space left on device", str(f))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    code, _, err = run_cli(capsys, "train", "--out", run, "--set", "train.epochs=3", *QUICK)
    assert code == 2
    line = one_line(err)
    assert "No space left on device" in line and f"continue with 'ppl-vae train --resume {run}'" in line
    assert load_checkpoint(run / "checkpoint.pt")["epoch"] == 1  # the last good checkpoint
    assert no_temporary_files(run) and not (run / "metrics.json").exists()


def test_a_full_disk_before_the_first_checkpoint_leaves_nothing(tmp_path, capsys, monkeypatch):
    def save(obj, f, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(f))

    monkeypatch.setattr(torch, "save", save)
    code, _, err = run_cli(capsys, "train", "--out", tmp_path / "run", "--set", "train.epochs=2", *QUICK)
    assert code == 2 and "nothing was kept" in one_line(err)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("target", ["metrics", "figures"])
def test_an_unwritable_folder_for_metrics_or_figures_is_one_line_and_keeps_the_checkpoint(target, tmp_path, capsys, monkeypatch):
    import ppl_vae.plots
    import ppl_vae.runs.rundir

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "run" / target))

    if target == "metrics":
        monkeypatch.setattr(ppl_vae.runs.rundir, "_write_json", refuse)
    else:
        monkeypatch.setattr(ppl_vae.plots, "save_figures", refuse)
    code, _, err = run_cli(capsys, "train", "--out", tmp_path / "run", "--set", "train.epochs=2", *QUICK)
    assert code == 2
    line = one_line(err)
    assert "Permission denied" in line and "--resume" in line
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["epoch"] == 2


def _start(*args):
    return subprocess.Popen(
        [sys.executable, "-m", "ppl_vae", *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for(path, proc, seconds=120):
    deadline = time.time() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "no checkpoint in time"
        time.sleep(0.05)


@pytest.mark.slow
def test_ctrl_c_keeps_the_last_checkpoint_and_prints_the_resume_command(tmp_path):
    run = tmp_path / "run"
    proc = _start("train", "--out", run, "--set", "train.epochs=500", "--set", "eval.iwae_samples=5", "--no-progress")
    _wait_for(run / "checkpoint.pt", proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert f"the last checkpoint in '{run}' is intact: continue with 'ppl-vae train --resume {run}'" in one_line(err)
    payload = load_checkpoint(run / "checkpoint.pt")
    assert 1 <= payload["epoch"] < 500 and no_temporary_files(run)
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == list(range(1, payload["epoch"] + 1))


def test_resuming_with_fewer_epochs_than_done_is_refused_and_changes_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    assert run_cli(capsys, "train", "--out", run, "--set", "train.epochs=2", "--no-figures", *QUICK)[0] == 0
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    code, _, err = run_cli(capsys, "train", "--resume", run, "--set", "train.epochs=1", "--no-progress")
    assert code == 2
    assert "has already trained 2 epochs; train.epochs = 1 would be fewer: set train.epochs to 2 or more" in one_line(err)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


@pytest.mark.slow
def test_of_two_runs_started_into_one_folder_exactly_one_proceeds(tmp_path):
    run = tmp_path / "run"
    common = ["train", "--out", run, "--set", "train.epochs=4", "--set", "eval.iwae_samples=5", "--no-figures", "--no-progress"]
    procs = [_start(*common, "--seed", seed) for seed in (1, 2)]
    results = [(p.wait(timeout=300), p.communicate()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser_err = next(err for code, (_, err) in results if code == 2)
    assert "another ppl-vae process is using" in one_line(loser_err) or "already exists and is not empty" in one_line(loser_err)
    winner_seed = 1 if results[0][0] == 0 else 2
    payload = load_checkpoint(run / "checkpoint.pt")
    assert payload["config"]["train"]["seed"] == winner_seed  # config and checkpoint come from the same run
    assert f"seed = {winner_seed}" in (run / "config.toml").read_text()
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 4


def test_the_claim_is_exclusive_while_a_process_holds_it(tmp_path):
    from ppl_vae.registry import ConfigError
    from ppl_vae.runs.rundir import _make_run_dir, claim

    held = _make_run_dir(tmp_path / "run")
    try:
        with pytest.raises(ConfigError, match="another ppl-vae process is using"):
            claim(tmp_path / "run")
    finally:
        held.close()
    claim(tmp_path / "run").close()  # free again once released
