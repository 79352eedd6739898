"""Speed of ppl-vae against hand-written PyTorch and Pyro's textbook loop, measured side by side.

    python benchmarks/bench.py                 # full run, writes benchmarks/RESULTS.md
    python benchmarks/bench.py --quick --out /tmp/r.md   # a smoke run (the test suite uses it)

Every ratio compares runs made in the same process, interleaved in rounds (median of the rounds),
on the same data, network, batch size, likelihood and optimizer:
* training throughput (images/s) of ``ppl_vae.fit`` (one epoch, after a warm-up epoch; traced, and
  eager with ``trace=False``) against a plain PyTorch loop (``torch.optim.Adam`` with its defaults, and
  with the fused Adam that ``fit`` uses) and against ``SVI`` + ``pyro.optim.Adam`` + ``Trace_ELBO``;
* evaluation throughput of ``iwae_log_likelihood`` against a plain PyTorch IWAE (K = 1000, 5000);
* the cost of an M2 step (enumerated over 10 classes) relative to a plain VAE step;
* epoch time against data size and batch size; peak memory of evaluation as K grows (subprocesses).
"""

from __future__ import annotations

import argparse
import functools
import math
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pyro
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ppl_vae.data.base import ArrayDataset  # noqa: E402
from ppl_vae import VAE, fit  # noqa: E402
from ppl_vae.components.networks import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder  # noqa: E402
from ppl_vae.evaluation import iwae_log_likelihood  # noqa: E402

LOG2PI = math.log(2 * math.pi)
QUICK = False


@functools.lru_cache(maxsize=1)
def _fashion_mnist() -> torch.Tensor:
    """Fashion-MNIST training images in [0, 1] when installed (and not --quick), else uniform noise:
    throughput does not depend on the pixel values."""
    if QUICK:
        return torch.rand(2048, 784)
    try:
        from ppl_vae.config import DataConfig
        from ppl_vae.data import load_data

        return load_data(DataConfig(name="fashion-mnist", preprocess="scale", val_fraction=0.0)).train.x.reshape(-1, 784)
    except Exception:  # noqa: BLE001  (benchmark data only)
        return torch.rand(60000, 784)


def images(n: int, conv: bool = False) -> torch.Tensor:
    base = _fashion_mnist()
    x = torch.cat([base] * math.ceil(n / len(base)))[:n]
    return x.reshape(n, 1, 28, 28) if conv else x


def make_vae(conv: bool, seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    if conv:
        return VAE((1, 28, 28), 32, encoder=ConvEncoder((1, 28, 28), 32), decoder=ConvDecoder(32, (1, 28, 28)))
    return VAE((784,), 50, encoder=MLPEncoder((784,), 50, (400,), "softplus"), decoder=MLPDecoder(50, (784,), (400,), "softplus"))


# ---- the three training loops -----------------------------------------------------------------
def train_ppl_vae(x, batch: int, conv: bool, trace="auto") -> float:
    """images/s of the second epoch of ``fit`` (the first warms up); ``trace=False``: the Pyro program eagerly."""
    vae = make_vae(conv)
    hist = fit(vae, ArrayDataset(x, binarize=True), epochs=2, batch_size=batch, lr=1e-3, progress=False, device="cpu", trace=trace)
    assert hist[1]["traced"] == bool(trace), "the benchmarked run did not take the path it names"
    return len(x) / hist[1]["seconds"]


def train_plain(x, batch: int, conv: bool, fused: bool = False) -> float:
    """The same model, estimator and optimizer written by hand in PyTorch: ``torch.optim.Adam`` with its
    defaults as a hand-written loop would have it, or (``fused``) with the fused kernel that ``fit`` uses."""
    vae = make_vae(conv)
    enc, dec = vae.encoder, vae.decoder
    opt = torch.optim.Adam(list(enc.parameters()) + list(dec.parameters()), lr=1e-3, **({"fused": True} if fused else {}))
    g = torch.Generator().manual_seed(0)

    def epoch():
        total = torch.zeros(())
        for idx in torch.randperm(len(x), generator=g).split(batch):
            xb = torch.bernoulli(x[idx], generator=g)
            loc, scale = enc(xb)
            z = loc + scale * torch.randn(loc.shape, generator=g)
            log_px = -F.binary_cross_entropy_with_logits(dec(z), xb, reduction="sum")
            log_pz = -0.5 * (z**2).sum() - 0.5 * z.numel() * LOG2PI
            log_qz = (-0.5 * ((z - loc) / scale) ** 2 - scale.log()).sum() - 0.5 * z.numel() * LOG2PI
            loss = -(log_px + log_pz - log_qz)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach()
        return float(total)

    epoch()
    start = time.perf_counter()
    epoch()
    return len(x) / (time.perf_counter() - start)


def train_textbook_pyro(x, batch: int, conv: bool) -> float:
    """Pyro's tutorial loop: SVI + pyro.optim.Adam + Trace_ELBO over the global param store."""
    from pyro.infer import SVI, Trace_ELBO
    from pyro.optim import Adam

    pyro.clear_param_store()
    vae = make_vae(conv)
    vae.use_param_store = True
    svi = SVI(vae.model, vae.guide, Adam({"lr": 1e-3}), Trace_ELBO())
    g = torch.Generator().manual_seed(0)

    def epoch():
        return sum(svi.step(torch.bernoulli(x[idx], generator=g)) for idx in torch.randperm(len(x), generator=g).split(batch))

    epoch()
    start = time.perf_counter()
    epoch()
    pyro.clear_param_store()
    return len(x) / (time.perf_counter() - start)


def rounds(fns: dict, n_rounds: int) -> dict:
    """Median over rounds, the candidates interleaved within each round."""
    out = {k: [] for k in fns}
    for _ in range(n_rounds):
        for k, fn in fns.items():
            out[k].append(fn())
    return {k: statistics.median(v) for k, v in out.items()}


# ---- evaluation ----------------------------------------------------------------------------------
@torch.no_grad()
def iwae_plain(vae, x, k: int, batch: int = 100, max_elements: int = 2**25) -> torch.Tensor:
    """The importance-weighted log-likelihood written by hand (same chunking as ppl-vae)."""
    out = []
    for xb in x.split(batch):
        loc, scale = vae.encoder(xb)
        chunk = max(1, min(k, max_elements // (len(xb) * xb[0].numel())))
        lse, done = torch.full((len(xb),), -math.inf), 0
        while done < k:
            kk = min(chunk, k - done)
            eps = torch.randn(kk, *loc.shape)
            z = loc + scale * eps
            logits = vae.decoder(z)
            log_px = -F.binary_cross_entropy_with_logits(logits, xb.expand_as(logits), reduction="none").flatten(2).sum(-1)
            log_w = log_px - 0.5 * (z**2).sum(-1) + 0.5 * (eps**2).sum(-1) + scale.log().sum(-1)
            lse = torch.logaddexp(lse, torch.logsumexp(log_w, 0))
            done += kk
        out.append(lse - math.log(k))
    return torch.cat(out)


def eval_pair(n: int, k: int, n_rounds: int) -> dict:
    vae = make_vae(False).eval()
    x = torch.bernoulli(images(n), generator=torch.Generator().manual_seed(1))

    def ours():
        start = time.perf_counter()
        iwae_log_likelihood(vae, x, num_samples=k)
        return n / (time.perf_counter() - start)

    def plain():
        start = time.perf_counter()
        iwae_plain(vae, x, k)
        return n / (time.perf_counter() - start)

    return rounds({"ppl-vae": ours, "plain": plain}, n_rounds)


# ---- M2 step cost --------------------------------------------------------------------------------
def m2_vs_vae(steps: int, n_rounds: int) -> dict:
    from ppl_vae.kinds.semisupervised import SemiSupervisedVAE
    from ppl_vae.objectives import ELBOObjective, SemiSupervisedObjective

    x = torch.bernoulli(images(2000))
    y = torch.randint(0, 10, (2000,))
    torch.manual_seed(0)
    m2 = SemiSupervisedVAE((784,), 10, 50, hidden=(500,), classifier_hidden=(500,))
    vae = VAE((784,), 50, hidden=(500,))
    m2_obj = SemiSupervisedObjective(labelled=ArrayDataset(x[:100], y[:100]), labelled_batch_size=100)
    m2_obj.setup(m2, None)
    elbo = ELBOObjective()

    def timed(model, obj):
        opt = torch.optim.Adam(model.parameters(), 1e-3)

        def run():
            start = time.perf_counter()
            for i in range(steps):
                loss = obj.loss(model, x[200 * (i % 10) : 200 * (i % 10 + 1)], None)
                opt.zero_grad()
                loss.backward()
                opt.step()
            return (time.perf_counter() - start) / steps

        return run

    return rounds({"vae": timed(vae, elbo), "m2": timed(m2, m2_obj)}, n_rounds)


# ---- scaling and memory ----------------------------------------------------------------------------
def epoch_seconds(n: int, batch: int) -> float:
    vae = make_vae(False)
    hist = fit(vae, ArrayDataset(images(n), binarize=True), epochs=2, batch_size=batch, progress=False, device="cpu")
    return hist[1]["seconds"]


MEMORY_PROBE = """
import sys, torch
sys.path.insert(0, {root!r})
import benchmarks.bench as b
b.QUICK = True  # noise images: the probe's own baseline stays small
from benchmarks.bench import make_vae, images
from ppl_vae.evaluation import iwae_log_likelihood

def peak_kb():  # VmHWM: this process's peak RSS (ru_maxrss would carry the parent's peak across exec)
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1])

vae = make_vae(False).eval(); x = torch.bernoulli(images(100))
iwae_log_likelihood(vae, x[:10], num_samples=10)
before = peak_kb()
iwae_log_likelihood(vae, x, num_samples={k})
print((peak_kb() - before) / 1024)
"""


def eval_peak_memory_mb(k: int) -> float:
    """Growth of the peak resident memory (MB) while evaluating 100 images with K samples (fresh process)."""
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE.format(root=str(ROOT), k=k)], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


# ---- report ----------------------------------------------------------------------------------------
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks the script runs (numbers meaningless)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "RESULTS.md"))
    args = p.parse_args(argv)
    global QUICK
    q = QUICK = args.quick
    n_rounds = 1 if q else args.rounds
    steps = 3 if q else 60
    lines = [
        "# ppl-vae benchmarks",
        "",
        f"Command: `python benchmarks/bench.py{' --quick' if q else ''}`. Machine: {platform.machine()}, "
        f"{torch.get_num_threads()} torch threads, {platform.python_version()}; torch {torch.__version__}, "
        f"pyro {pyro.__version__}; device cpu. Ratios are ppl-vae / baseline (above 1: ppl-vae faster), "
        f"medians of {n_rounds} interleaved round(s).",
        "",
        "## Training throughput (images/s, dynamically binarized Fashion-MNIST, Adam 1e-3, Bernoulli)",
        "",
        "`fit` replays the Pyro program's loss from a recorded graph (`ppl_vae.training.tracing`, the default) and uses "
        "torch's fused Adam (the default of `make_optimizer`); *eager* runs the Pyro program every step "
        "(`trace=False`). The plain loop is shown with `torch.optim.Adam`'s defaults, as a hand-written loop has it, "
        "and with the same fused Adam as `fit`.",
        "",
        "| network | batch | fit | fit, eager | plain PyTorch | plain, fused Adam | Pyro SVI textbook "
        "| fit vs plain | fit vs plain fused | eager vs plain fused | fit vs textbook |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for conv, batch in [(False, 128), (False, 256), (False, 1024), (True, 256)] if not q else [(False, 64), (True, 64)]:
        x = images(batch * steps, conv)
        r = rounds(
            {
                "ours": lambda: train_ppl_vae(x, batch, conv),
                "eager": lambda: train_ppl_vae(x, batch, conv, False),
                "plain": lambda: train_plain(x, batch, conv),
                "fused": lambda: train_plain(x, batch, conv, True),
                "svi": lambda: train_textbook_pyro(x, batch, conv),
            },
            n_rounds,
        )
        name = "conv (recipe conv-vae-fashion-mnist)" if conv else "MLP 784-400-50"
        lines.append(
            f"| {name} | {batch} | {r['ours']:.0f} | {r['eager']:.0f} | {r['plain']:.0f} | {r['fused']:.0f} | "
            f"{r['svi']:.0f} | {r['ours'] / r['plain']:.2f}x | {r['ours'] / r['fused']:.2f}x | "
            f"{r['eager'] / r['fused']:.2f}x | {r['ours'] / r['svi']:.2f}x |"
        )
        print(lines[-1], flush=True)
    if not q:  # compiling takes seconds per batch shape: one configuration
        x = images(256 * steps)
        r = rounds(
            {
                "compiled": lambda: train_ppl_vae(x, 256, False, "compile"),
                "ours": lambda: train_ppl_vae(x, 256, False),
                "fused": lambda: train_plain(x, 256, False, True),
            },
            n_rounds,
        )
        lines += [
            "",
            '`train.compile = true` (`fit(..., trace="compile")`: the recorded graph compiled by `torch.compile`, '
            "inductor, eager random draws), MLP 784-400-50 at batch 256:",
            "",
            "| fit, compiled | fit | plain, fused Adam | compiled vs plain fused | compiled vs fit |",
            "|---|---|---|---|---|",
            f"| {r['compiled']:.0f} | {r['ours']:.0f} | {r['fused']:.0f} | {r['compiled'] / r['fused']:.2f}x | "
            f"{r['compiled'] / r['ours']:.2f}x |",
        ]
        print(lines[-1], flush=True)
    lines += [
        "",
        "## Evaluation throughput (importance-weighted log p(x), images/s, MLP 784-400-50)",
        "",
        "| K | images | ppl-vae | plain PyTorch | ratio |",
        "|---|---|---|---|---|",
    ]
    for k in [1000, 5000] if not q else [20]:
        n = 100 if not q else 10
        r = eval_pair(n, k, n_rounds)
        lines.append(f"| {k} | {n} | {r['ppl-vae']:.1f} | {r['plain']:.1f} | {r['ppl-vae'] / r['plain']:.2f}x |")
        print(lines[-1], flush=True)
    r = m2_vs_vae(steps, n_rounds)
    lines += [
        "",
        "## M2 step (10 classes enumerated) against a VAE step (MLP 784-500-50, batch 200)",
        "",
        "| VAE step (ms) | M2 step (ms) | M2 / VAE |",
        "|---|---|---|",
        f"| {1000 * r['vae']:.1f} | {1000 * r['m2']:.1f} | {r['m2'] / r['vae']:.1f}x |",
    ]
    print(lines[-1], flush=True)
    lines += [
        "",
        "## Epoch time of `fit` against data size and batch size (MLP 784-400-50)",
        "",
        "| images | batch | seconds | images/s |",
        "|---|---|---|---|",
    ]
    grid = [(5000, 256), (10000, 256), (20000, 256), (40000, 256), (20000, 64), (20000, 1024)] if not q else [(256, 64)]
    for n, batch in grid:
        s = epoch_seconds(n, batch)
        lines.append(f"| {n} | {batch} | {s:.2f} | {n / s:.0f} |")
        print(lines[-1], flush=True)
    lines += ["", "## Peak memory of evaluation (100 images, MLP 784-400-50; growth of peak RSS, MB)", "", "| K | MB |", "|---|---|"]
    for k in [100, 1000, 5000, 20000] if not q else [10]:
        lines.append(f"| {k} | {eval_peak_memory_mb(k):.0f} |")
        print(lines[-1], flush=True)
    lines += [
        "",
        "Evaluation memory is bounded by chunking: at most 2^25 decoder outputs exist at once "
        "(`max_elements` of `iwae_log_likelihood`), so it stops growing once K x batch x 784 exceeds that.",
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
