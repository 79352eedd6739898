"""Evaluation of sentence models (the sentence VAE and the LSTM LM of ``ppl_vae.kinds.sentence``).

Figures per sentence and per token, never bits/dim:

* ``log_px``: per-sentence log p(x) by the importance-weighted bound with K guide samples (for a
  model without a latent, the exact log-likelihood); ``nll`` is its negation, ``elbo`` the mean
  log weight; standard errors over sentences.
* ``perplexity``: exp(total NLL / total tokens), tokens being the words and ``<eos>`` of each
  sentence (``<bos>`` and padding are not predicted); ``nll_per_token`` its log.
* ``kl`` (nats per sentence, closed form, with ``kl_per_dim``), ``active_units`` (Burda et al.:
  Cov_x E_q[z_d] > 0.01) and ``mutual_information`` I(x; z) under the aggregate posterior (Hoffman &
  Johnson 2016; the estimator of He et al. 2019: E_x E_q log q(z|x) - E_q(z) log q(z), with q(z)
  the mixture of the evaluated data's posteriors, so it cannot exceed log N).
* ``latent``: "collapsed" when the KL is below 0.1 nats per sentence (the decoder ignores z), else
  "used"; compare ``nll`` with the LM's to see whether the latent is also worth its KL.

The model is read through a small duck-typed interface: ``tokens(x, mask)``, ``model``/``guide``
with the VAE's signature, ``latent_dim`` (0: no latent), ``vocab_size``, ``length`` and, with a
latent, ``encode(x, mask) -> (loc, scale)``.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Union

import torch
from tqdm.auto import tqdm

from ppl_vae.components.text import kl_to_standard_normal
from ppl_vae.data.base import ArrayDataset, as_dataset
from ppl_vae.evaluation.importance_weights import log_importance_weights

COLLAPSED_KL = 0.1  # nats per sentence


@torch.no_grad()
def log_weights(module: Any, x: torch.Tensor, num_samples: int, max_elements: int = 2**24) -> torch.Tensor:
    """log p(x, z_k) - log q(z_k | x) for K = ``num_samples`` guide draws, shaped (K, batch), computed
    in chunks of particles so that at most ``max_elements`` logits exist at once."""
    k_total = num_samples if module.latent_dim else 1
    per_particle = len(x) * module.length * module.vocab_size
    chunk = max(1, min(k_total, max_elements // max(per_particle, 1)))
    parts, done = [], 0
    while done < k_total:
        k = min(chunk, k_total - done)
        parts.append(log_importance_weights(module.model, module.guide, x, None, num_samples=k).reshape(k, len(x)))
        done += k
    return torch.cat(parts)


@torch.no_grad()
def mutual_information(loc: torch.Tensor, scale: torch.Tensor, max_rows: int = 256) -> float:
    """I(x; z) under q(x, z) = p_data(x) q(z | x), with one z per datum and q(z) the data's mixture."""
    n, d = loc.shape
    neg_entropy = float((-0.5 * d * math.log(2 * math.pi) - torch.log(scale).sum(-1) - 0.5 * d).mean())
    z = loc + scale * torch.randn_like(loc)
    log_qz = []
    for start in range(0, n, max_rows):
        zj = z[start : start + max_rows].unsqueeze(1)  # (rows, 1, d) against every posterior (1, n, d)
        log_q = torch.distributions.Normal(loc.unsqueeze(0), scale.unsqueeze(0)).log_prob(zj).sum(-1)
        log_qz.append(torch.logsumexp(log_q, 1) - math.log(n))
    return neg_entropy - float(torch.cat(log_qz).mean())


@torch.no_grad()
def sentence_report(
    module: Any, data: Union[ArrayDataset, torch.Tensor], num_samples: int = 100, batch_size: int = 50, progress: bool = False
) -> Dict[str, Any]:
    """The test report of a sentence model (see the module docstring)."""
    data = as_dataset(data).to(module.device)
    module.eval()
    log_px, elbo, tokens, locs, scales = [], [], [], [], []
    bar = tqdm(total=len(data), disable=None if progress else True, desc=f"log p(x), K={num_samples}", unit="sentence", leave=False)
    for xb, mb in data.batches(batch_size, shuffle=False):
        lw = log_weights(module, xb, num_samples)
        log_px.append((torch.logsumexp(lw, 0) - math.log(len(lw))).cpu())
        elbo.append(lw.mean(0).cpu())
        tokens.append(module.tokens(xb, mb)[1].sum(1).cpu())
        if module.latent_dim:
            loc, scale = module.encode(xb, mb)
            locs.append(loc.cpu())
            scales.append(scale.cpu())
        bar.update(len(xb))
    bar.close()
    lp, el, nt = torch.cat(log_px).double(), torch.cat(elbo).double(), torch.cat(tokens).double()
    se = lambda t: float(t.std(unbiased=True) / math.sqrt(len(t))) if len(t) > 1 else float("nan")  # noqa: E731
    nll_per_token = float(-lp.sum() / nt.sum())
    report: Dict[str, Any] = {
        "n": len(data),
        "iwae_samples": num_samples if module.latent_dim else 1,
        "elbo": float(el.mean()),
        "elbo_se": se(el),
        "log_px": float(lp.mean()),
        "log_px_se": se(lp),
        "gap": float((lp - el).mean()),
        "nll": float(-lp.mean()),
        "nll_se": se(lp),
        "tokens_per_sentence": float(nt.mean()),
        "nll_per_token": nll_per_token,
        "perplexity": math.exp(nll_per_token),
    }
    if module.latent_dim:
        loc, scale = torch.cat(locs), torch.cat(scales)
        kl_dim = kl_to_standard_normal(loc, scale).mean(0)
        variance = loc.var(0, unbiased=True) if len(loc) > 1 else torch.zeros(loc.shape[1])
        report.update(
            kl=float(kl_dim.sum()),
            kl_per_dim=[round(float(v), 4) for v in kl_dim],
            active_units=int((variance > 0.01).sum()),
            mutual_information=mutual_information(loc, scale),
        )
    else:
        report.update(kl=0.0, kl_per_dim=[], active_units=0, mutual_information=0.0)
    report["latent"] = "none" if not module.latent_dim else "collapsed" if report["kl"] < COLLAPSED_KL else "used"
    return report
