"""The benchmark script runs end to end and writes its table (speed targets live in the benchmark's
own output, benchmarks/RESULTS.md, never in timed tests)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_benchmark_script_writes_every_section(tmp_path):
    out = tmp_path / "r.md"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = out.read_text()
    for section in ("Training throughput", "Evaluation throughput", "M2 step", "Epoch time", "Peak memory"):
        assert f"## {section}" in text
    rows = [line for line in text.splitlines() if line.startswith("| MLP 784-400-50 |")]
    assert rows and all(line.count("x |") == 4 for line in rows)  # vs plain, plain fused, eager vs fused, textbook
