"""Helpers for tests that run the real ``ppl-vae`` command in a subprocess."""

import subprocess
import sys

FAST = ["--set", "train.epochs=5", "--set", "eval.iwae_samples=100", "--no-progress"]


def ppl_vae(*args, cwd=None, check=True):
    proc = subprocess.run([sys.executable, "-m", "ppl_vae", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def error_of(*args, cwd=None):
    proc = ppl_vae(*args, cwd=cwd, check=False)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ppl-vae: error: "), proc.stderr  # one line, no traceback
    return lines[0]
