"""The sentence VAE against its LSTM language model, and its training step against plain PyTorch.

    python benchmarks/sentences.py --runs RUN_VAE RUN_LM     # the comparison table of two trained runs
    python benchmarks/sentences.py --train DIR               # train both fortunes recipes into DIR first
    python benchmarks/sentences.py --speed                   # the training-step speed section only

The table holds, on the test split: NLL per sentence (IWAE for the VAE, exact for the LM), per-token
perplexity, KL, active units, I(x; z), and the verdict: the latent is *used* when KL >= 2 nats and at
least 2 units are active, and the VAE is *competitive* when its NLL is within 1 nat of the LM's.

The speed section times one optimizer step of the sentence VAE as ``fit`` runs it (the Pyro model and
guide, replayed from a traced graph) against the same networks and the same loss written in plain
PyTorch here, in the same process, on the recipe's sizes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

VAE_RECIPE, LM_RECIPE = "sentence-vae-fortunes", "lstm-lm-fortunes"


def comparison(vae_run: Path, lm_run: Path) -> str:
    v, m = (json.loads((Path(r) / "metrics.json").read_text()) for r in (vae_run, lm_run))
    rows = ["| model | test NLL / sentence | perplexity | KL (nats) | active units | I(x; z) | K |", "|---|---|---|---|---|---|---|"]
    for name, r in (("sentence VAE", v), ("LSTM LM", m)):
        rows.append(
            f"| {name} | {r['nll']:.2f} ± {r['nll_se']:.2f} | {r['perplexity']:.1f} | {r['kl']:.2f} | {r['active_units']} "
            f"| {r['mutual_information']:.2f} | {r['iwae_samples']} |"
        )
    used = v["kl"] >= 2 and v["active_units"] >= 2
    diff = v["nll"] - m["nll"]
    verdict = (
        f"latent {'used' if used else 'not used (collapsed)' if v['kl'] < 0.1 else 'barely used'}: KL {v['kl']:.2f} nats, "
        f"{v['active_units']} active units; VAE NLL {'-' if diff < 0 else '+'}{abs(diff):.2f} nats per sentence vs the LM "
        f"({'within' if diff <= 1 else 'more than'} 1 nat)"
    )
    return "\n".join(rows) + "\n\n" + verdict


def train_both(folder: Path) -> tuple:
    from ppl_vae.runs import load_config, train_run

    out = []
    for recipe in (VAE_RECIPE, LM_RECIPE):
        run = folder / recipe
        if not (run / "metrics.json").is_file():
            train_run(load_config(recipe), run, progress=False)
        out.append(run)
    return tuple(out)


def speed(steps: int = 20, batch: int = 64) -> str:
    """Seconds per optimizer step: the library's traced Pyro step against plain PyTorch."""
    import torch.nn.functional as F

    from ppl_vae.components.text import free_bits_penalty
    from ppl_vae.data.text import BOS, PAD, UNK
    from ppl_vae.kinds.sentence import SentenceVAE
    from ppl_vae.objectives.elbo import ELBOObjective
    from ppl_vae.training.tracing import TracedLoss

    torch.manual_seed(0)
    vocab, length = 2004, 31
    x = torch.randint(4, vocab, (batch, length)).float()
    lengths = torch.randint(3, length, (batch,))
    x[torch.arange(length) > lengths.unsqueeze(1)] = PAD
    x[torch.arange(batch), lengths] = 3  # <eos>

    def make():
        torch.manual_seed(0)
        return SentenceVAE(vocab, length, 16, 64, 128, word_dropout=0.1, free_bits=0.2).train()

    def plain_loss(vae, xb):
        ids = xb.long()
        m = ids != PAD
        loc, scale = vae.encoder(ids, m)
        z = loc + scale * torch.randn_like(loc)
        inputs = torch.cat([torch.full_like(ids[:, :1], BOS), ids[:, :-1]], 1)
        drop = (torch.rand(inputs.shape) < 0.1) & (inputs != BOS) & (inputs != PAD)
        logits = vae.decoder(torch.where(drop, torch.full_like(inputs, UNK), inputs), z)
        nll = (F.cross_entropy(logits.transpose(1, 2), ids, reduction="none") * m).sum()
        log_q = torch.distributions.Normal(loc, scale).log_prob(z).sum()
        log_p = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum()
        return nll + log_q - log_p + free_bits_penalty(loc, scale, 0.2)

    def stepper(step_loss, vae):
        opt = torch.optim.Adam(vae.parameters(), lr=1e-3)

        def run(n: int, first: int) -> float:
            start = time.perf_counter()
            for i in range(first, first + n):
                loss = step_loss(vae, i)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            return (time.perf_counter() - start) / n

        return run

    vae_lib = make()
    traced = TracedLoss(vae_lib, ELBOObjective(), "auto")
    lib_step, plain_step = stepper(lambda v, i: traced(x, None, step=i), vae_lib), stepper(lambda v, i: plain_loss(v, x), make())
    lib_step(3, 0), plain_step(3, 0)  # warm-up (and the tracer's first-step check)
    rounds = [(lib_step(steps // 4, 3 + r), plain_step(steps // 4, 3 + r)) for r in range(4)]  # interleaved: same load
    lib, plain = min(r[0] for r in rounds), min(r[1] for r in rounds)
    return (
        f"| batch {batch}, {torch.get_num_threads()} thread(s) | library (traced: {traced.traced}) | plain PyTorch | ratio |\n"
        f"|---|---|---|---|\n| seconds per step | {lib:.4f} | {plain:.4f} | {plain / lib:.2f}x |"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs=2, metavar=("RUN_VAE", "RUN_LM"))
    p.add_argument("--train", metavar="DIR", help="train both recipes into DIR (skips a run already finished)")
    p.add_argument("--speed", action="store_true", help="time the training step against plain PyTorch")
    args = p.parse_args()
    if args.train:
        print(comparison(*train_both(Path(args.train))))
    elif args.runs:
        print(comparison(*map(Path, args.runs)))
    if args.speed:
        print(speed())


if __name__ == "__main__":
    main()
