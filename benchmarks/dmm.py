"""The deep Markov model's training step (the Pyro program, as ``fit`` runs it) against the same networks
and the same single-sample ELBO written in plain PyTorch here, in the same process.

    OMP_NUM_THREADS=1 python benchmarks/dmm.py [--batch 20] [--steps 64] [--repeats 10]
    OMP_NUM_THREADS=1 python benchmarks/dmm.py --paired RUN_DMM RUN_RNN   # the test comparison, paired by chorale

Both sides use one ``DMM`` module's networks (gated transition, GRU run right to left, combiner,
emitter) on random binary rolls of ``--steps`` steps, and time forward, backward and an Adam step.
The plain loss draws z_t = loc + scale * eps and sums log p(z_t | z_{t-1}) - log q(z_t | ...) and the
Bernoulli log-likelihood; it is the estimator Pyro's ELBO computes (checked equal from the same draws
before timing).
"""

from __future__ import annotations

import argparse
import math
import time

import pyro
import torch
import torch.nn.functional as F

from ppl_vae.kinds import seqtools
from ppl_vae.kinds.dmm import DMM
from ppl_vae.objectives.elbo import ELBOObjective


def normal_log_prob(z: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return (-((z - loc) ** 2) / (2 * scale**2) - scale.log() - 0.5 * math.log(2 * math.pi)).sum(-1)


def plain_loss(dmm: DMM, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """-ELBO summed over the batch, one reparameterized draw per step, in plain PyTorch."""
    xs, m = seqtools.as_steps(x, mask, dmm.features)
    rev = seqtools.reverse_within_length(xs, m)
    h = seqtools.reverse_within_length(dmm.rnn(rev, dmm.h_0.expand(1, len(xs), -1).contiguous())[0], m)
    z_q, z_p = dmm.z_q_0.expand(len(xs), -1), dmm.z_0.expand(len(xs), -1)
    total, path = torch.zeros(len(xs)), []
    for t in range(xs.shape[1]):
        loc_q, scale_q = dmm.combiner(z_q, h[:, t])
        z = loc_q + scale_q * torch.randn_like(loc_q)
        loc_p, scale_p = dmm.transition(z_p)
        total = total + (normal_log_prob(z, loc_p, scale_p) - normal_log_prob(z, loc_q, scale_q)) * m[:, t]
        path.append(z)
        z_q = z_p = z
    logits = dmm.emitter(torch.stack(path, 1))
    nll = F.binary_cross_entropy_with_logits(logits, xs, reduction="none").sum(-1)
    return -(total - (nll * m).sum(1)).sum()


def paired(dmm_run: str, rnn_run: str, k: int = 100) -> None:
    """Test NLL per step of a trained DMM (IWAE, K = ``k``) and LSTM (exact), and the paired difference
    per step with its standard error (ratio estimator over sequences)."""
    from ppl_vae.evaluation.likelihood import iwae_log_likelihood
    from ppl_vae.runs import load_run

    d, r = load_run(dmm_run, "cpu"), load_run(rnn_run, "cpu")
    test = d.split("test")
    pyro.set_rng_seed(0)
    lp_d = iwae_log_likelihood(d.module, test, k, batch_size=64)["log_px"].double()
    with torch.no_grad():
        lp_r = torch.cat([r.module.log_likelihood(xb, mb) for xb, mb in test.batches(64, shuffle=False)]).double()
    steps = seqtools.lengths(test, d.module.features).double()
    diff, n = lp_d - lp_r, len(steps)
    ratio = diff.sum() / steps.sum()
    se = math.sqrt(float(((diff - ratio * steps) ** 2).sum()) / (n - 1) / n) / float(steps.mean())
    print(f"test: {n} sequences, {int(steps.sum())} steps")
    print(f"DMM NLL per step (IWAE, K={k}): {-float(lp_d.sum() / steps.sum()):.3f}")
    print(f"LSTM NLL per step (exact)     : {-float(lp_r.sum() / steps.sum()):.3f}")
    print(f"DMM better by {float(ratio):.3f} ± {se:.3f} nats per step; better on {int((diff > 0).sum())} of {n} sequences")


def timed(step, repeats: int) -> float:
    step()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--paired", nargs=2, metavar=("RUN_DMM", "RUN_RNN"), help="compare two trained runs on the test split")
    args = parser.parse_args()
    if args.paired:
        paired(*args.paired)
        return
    torch.manual_seed(0)
    x = (torch.rand(args.batch, args.steps, 88) < 0.05).float()
    mask = torch.ones_like(x, dtype=torch.bool)
    dmm = DMM((args.steps, 88), 88)  # the recipe's sizes: z 32, transition 64, emission 64, GRU 128
    objective = ELBOObjective()
    opt = torch.optim.Adam(dmm.parameters(), 1e-3)

    pyro.set_rng_seed(1)
    a = objective.loss(dmm, x, mask)
    pyro.set_rng_seed(1)
    b = plain_loss(dmm, x, mask)
    assert torch.allclose(a, b, rtol=1e-4), (float(a), float(b))

    def step(loss_fn) -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn().backward()
        opt.step()

    with pyro.validation_enabled(False):
        pyro_s = timed(lambda: step(lambda: objective.loss(dmm, x, mask)), args.repeats)
    plain_s = timed(lambda: step(lambda: plain_loss(dmm, x, mask)), args.repeats)
    print(f"batch {args.batch}, {args.steps} steps, {torch.get_num_threads()} thread(s)")
    print(f"Pyro program (ppl-vae): {pyro_s * 1000:8.1f} ms per training step")
    print(f"plain PyTorch          : {plain_s * 1000:8.1f} ms per training step")
    print(f"throughput ratio (plain time / Pyro time): {plain_s / pyro_s:.2f}x")


if __name__ == "__main__":
    main()
