"""Objectives for disentanglement. Each reuses the VAE's own model and guide; only the loss changes.

* ``capacity`` (Burgess et al. 2018): recon + gamma * |KL - C(t)|, C rising linearly to ``capacity``.
* ``beta-tcvae`` (Chen et al. 2018): recon + alpha * MI + beta * TC + gamma * dimension-wise KL, with
  the minibatch-weighted (``mws``) or minibatch-stratified (``mss``) estimator of q(z), given the
  true data set size N.
* ``factor-vae`` (Kim & Mnih 2018): ELBO + gamma * TC, TC from a discriminator telling codes from
  dimension-wise permuted codes (density-ratio trick), trained with its own optimizer.
* ``dip-vae`` (Kumar et al. 2018): ELBO + lambda_od * sum of squared off-diagonal entries + lambda_d *
  sum of squared (diagonal - 1) of Cov(mu) (DIP-I) or Cov(mu) + diag E[sigma^2] (DIP-II).
(beta-VAE with constant, warm-up or cyclical beta is the ``elbo`` objective's ``beta``/``schedule``.)

Every objective here records per epoch the ELBO's decomposition KL = MI + TC + dimension-wise KL
(``epoch_stats``). Losses are summed over the batch, like the ELBO's: batch-level penalties are
multiplied by the batch size. The penalties need the diagonal Gaussian posterior and a prior that
factorizes over dimensions (N(0, I), learned-normal, Laplace, Student-t).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Dict, Optional, Union

import torch
import torch.nn.functional as F
from pyro import poutine
from torch import nn

from ppl_vae.data.base import ArrayDataset
from ppl_vae.objectives.elbo import ELBOObjective
from ppl_vae.schema import NonNegativeFloat, PositiveFloat, PositiveInt, Rule, checked, count_or_all, nonnegative_float
from ppl_vae.registry import OBJECTIVES, ConfigError


# ---- what the penalties need from one batch ---------------------------------------------------------
def batch_terms(vae: Any, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
    """One guide draw per datum replayed through the model: per-datum log p(x | z) and the guide's
    (loc, scale), the draw z and the prior, for the decomposition and penalties."""
    guide_tr = poutine.trace(vae.guide).get_trace(x, mask)
    model_tr = poutine.trace(poutine.replay(vae.model, trace=guide_tr)).get_trace(x, mask)
    q = guide_tr.nodes["z"]["fn"]
    base = getattr(q, "base_dist", q)
    if not isinstance(base, torch.distributions.Normal) or isinstance(q, torch.distributions.TransformedDistribution):
        raise ConfigError("disentanglement objectives need the diagonal Gaussian posterior (model.posterior.name = 'diagonal')")
    prior = model_tr.nodes["z"]["fn"]
    prior_base = getattr(prior, "base_dist", None)
    if prior_base is None or prior_base.batch_shape[-1:] != (vae.latent_dim,):
        raise ConfigError(
            "disentanglement objectives need a prior that factorizes over latent dimensions "
            "(standard-normal, learned-normal, laplace, student-t)"
        )
    x_site = model_tr.nodes["x"]
    return {
        "z": guide_tr.nodes["z"]["value"],
        "loc": base.loc,
        "scale": base.scale,
        "log_px": x_site["fn"].log_prob(x_site["value"]),
        "log_pz_dims": prior_base.log_prob(guide_tr.nodes["z"]["value"]),
    }


def log_q_pairs(z: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """log q(z_i,d | x_j) for every pair (i, j) and dimension d: shape (B, B, Z)."""
    return torch.distributions.Normal(loc[None], scale[None]).log_prob(z[:, None])


def mss_log_weights(batch: int, dataset_size: int, device: Optional[Union[str, torch.device]] = None) -> torch.Tensor:
    """Log weights (B, B) of minibatch-stratified sampling (Chen et al., appendix C.2): for datum i the
    term j = i weighs 1/N, one other term (N - M)/(N M) with M = B - 1, the rest 1/M."""
    m = batch - 1
    w = torch.full((batch, batch), 1.0 / m, device=device)
    idx = torch.arange(batch, device=device)
    w[idx, idx] = 1.0 / dataset_size
    w[idx, (idx + 1) % batch] = (dataset_size - m) / (dataset_size * m)
    return w.log()


def decomposition(
    z: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor, log_pz_dims: torch.Tensor, dataset_size: int, estimator: str = "mws"
) -> Dict[str, torch.Tensor]:
    """Per-datum estimates of MI, TC and dimension-wise KL (each (B,)); they sum to
    log q(z | x) - log p(z), the one-sample KL term."""
    b = z.shape[0]
    pairs = log_q_pairs(z, loc, scale)  # (B, B, Z)
    if estimator == "mws":
        log_w = torch.full((b, b), -math.log(dataset_size * b), device=z.device)
    elif estimator == "mss":
        if b < 2:
            raise ConfigError("the minibatch-stratified estimator needs batches of at least 2")
        log_w = mss_log_weights(b, dataset_size, z.device)
    else:
        raise ConfigError(f"unknown estimator '{estimator}'; choose 'mws' or 'mss'")
    log_qz_x = pairs.diagonal(dim1=0, dim2=1).sum(0)  # log q(z_i | x_i)
    log_qz = torch.logsumexp(pairs.sum(-1) + log_w, 1)  # log q(z_i)
    log_prod_qzd = torch.logsumexp(pairs + log_w[..., None], 1).sum(-1)  # sum_d log q(z_i,d)
    log_pz = log_pz_dims.sum(-1)
    return {"mi": log_qz_x - log_qz, "tc": log_qz - log_prod_qzd, "dim_kl": log_prod_qzd - log_pz, "kl": log_qz_x - log_pz}


class DecompositionStats:
    """Adds the per-epoch ELBO decomposition (on up to ``stats_size`` validation data) to the history."""

    stats_size = 1000
    dataset_size: Optional[int] = None

    def setup(self, vae: Any, train: Any) -> None:
        self.dataset_size = self.dataset_size or len(train)

    @torch.no_grad()
    def epoch_stats(self, vae: Any, data: ArrayDataset) -> dict:
        x = data.x[: self.stats_size]
        if data.binarize:
            x = torch.bernoulli(x)
        mask = None if data.mask is None else data.mask[: self.stats_size]
        t = batch_terms(vae, x, mask)
        d = decomposition(t["z"], t["loc"], t["scale"], t["log_pz_dims"], len(data), "mss")
        return {k: float(v.mean()) for k, v in d.items()}


@OBJECTIVES.register("capacity")
class CapacityObjective(DecompositionStats, ELBOObjective):
    """recon + gamma * |KL - C(step)| with C rising linearly from 0 to ``capacity`` over ``capacity_steps``."""

    @checked
    def __init__(self, gamma: PositiveFloat = 1000.0, capacity: NonNegativeFloat = 25.0, capacity_steps: PositiveInt = 100000) -> None:
        super().__init__()
        self.gamma, self.capacity, self.capacity_steps = float(gamma), float(capacity), int(capacity_steps)

    def capacity_at(self, step: int) -> float:
        return self.capacity * min(1.0, step / self.capacity_steps)

    def loss(self, vae: Any, x: torch.Tensor, mask: Optional[torch.Tensor] = None, step: int = 0) -> torch.Tensor:
        t = batch_terms(vae, x, mask)
        return -t["log_px"].sum() + len(x) * self.gamma * (_kl(vae, t).mean() - self.capacity_at(step)).abs()


def _kl(vae: Any, t: Dict[str, torch.Tensor]) -> torch.Tensor:
    """KL(q(z | x) || p(z)) per datum: closed form for a Normal prior, else the one-draw estimate."""
    base = getattr(vae.prior(), "base_dist", None)
    if isinstance(base, torch.distributions.Normal):
        q = torch.distributions.Normal(t["loc"], t["scale"])
        return torch.distributions.kl_divergence(q, base.expand(t["loc"].shape)).sum(-1)
    return _kl_one_draw(t)


def _kl_one_draw(t: Dict[str, torch.Tensor]) -> torch.Tensor:
    """log q(z | x) - log p(z) per datum at the batch's draw z (the ELBO's KL term)."""
    return torch.distributions.Normal(t["loc"], t["scale"]).log_prob(t["z"]).sum(-1) - t["log_pz_dims"].sum(-1)


@OBJECTIVES.register("beta-tcvae")
class TCVAEObjective(DecompositionStats, ELBOObjective):
    """recon + alpha * MI + beta * TC + gamma * dimension-wise KL (alpha = gamma = 1: the ELBO plus
    (beta - 1) TC). ``dataset_size`` defaults to the training set's size."""

    @checked
    def __init__(
        self,
        alpha: NonNegativeFloat = 1.0,
        beta: NonNegativeFloat = 6.0,
        gamma: NonNegativeFloat = 1.0,
        estimator: Annotated[str, Rule(str, choices=("mws", "mss"))] = "mss",
        dataset_size: Annotated[int, count_or_all(what="0 = the training set's size")] = 0,
    ) -> None:
        super().__init__()
        self.alpha, self.tc_beta, self.gamma, self.estimator = float(alpha), float(beta), float(gamma), estimator
        self.dataset_size = int(dataset_size) or None

    def loss(self, vae: Any, x: torch.Tensor, mask: Optional[torch.Tensor] = None, step: int = 0) -> torch.Tensor:
        if self.dataset_size is None:
            raise ConfigError("beta-TCVAE needs the data set size: call setup(vae, train) or set dataset_size")
        t = batch_terms(vae, x, mask)
        d = decomposition(t["z"], t["loc"], t["scale"], t["log_pz_dims"], self.dataset_size, self.estimator)
        return (-t["log_px"] + self.alpha * d["mi"] + self.tc_beta * d["tc"] + self.gamma * d["dim_kl"]).sum()


@OBJECTIVES.register("factor-vae")
class FactorVAEObjective(DecompositionStats, ELBOObjective):
    """ELBO + gamma * TC, TC = E_q(z)[log D(z) / (1 - D(z))] from a discriminator D between codes and
    dimension-wise permuted codes; D has its own Adam (lr 1e-4, betas (0.5, 0.9)) and 6 x 1000 leaky-ReLU
    layers by default, and is updated after every VAE step on the same batch (``auxiliary_step``). The
    discriminator and its optimizer are part of ``state_dict``, so a resumed run continues exactly."""

    @checked
    def __init__(
        self, gamma: NonNegativeFloat = 35.0, hidden: PositiveInt = 1000, layers: PositiveInt = 6, lr: PositiveFloat = 1e-4
    ) -> None:
        super().__init__()
        self.gamma, self.hidden, self.layers, self.lr = float(gamma), int(hidden), int(layers), float(lr)
        self.discriminator: Optional[nn.Module] = None

    def setup(self, vae: Any, train: Any) -> None:
        super().setup(vae, train)
        if self.discriminator is None:
            sizes = [vae.latent_dim] + [self.hidden] * self.layers
            mods = []
            for a, b in zip(sizes[:-1], sizes[1:]):
                mods += [nn.Linear(a, b), nn.LeakyReLU(0.2)]
            self.discriminator = nn.Sequential(*mods, nn.Linear(sizes[-1], 2)).to(vae.device)
            self.disc_opt = torch.optim.Adam(self.discriminator.parameters(), lr=self.lr, betas=(0.5, 0.9))

    def state_dict(self) -> dict:
        if self.discriminator is None:
            return {}
        return {"discriminator": self.discriminator.state_dict(), "discriminator_optimizer": self.disc_opt.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        if self.discriminator is None:
            raise ConfigError("FactorVAE: call setup(model, train) before load_state_dict")
        self.discriminator.load_state_dict(state["discriminator"])
        self.disc_opt.load_state_dict(state["discriminator_optimizer"])

    def loss(self, vae: Any, x: torch.Tensor, mask: Optional[torch.Tensor] = None, step: int = 0) -> torch.Tensor:
        if self.discriminator is None:
            raise ConfigError("FactorVAE: call setup(model, train) before computing the loss")
        t = batch_terms(vae, x, mask)
        kl = _kl_one_draw(t)
        logits = self.discriminator(t["z"])
        tc = logits[:, 0] - logits[:, 1]
        self._last_z = t["z"].detach()
        return (-t["log_px"] + kl + self.gamma * tc).sum()

    def auxiliary_step(self, vae: Any, x: torch.Tensor, mask: Optional[torch.Tensor], step: int) -> None:
        z = self._last_z
        assert self.discriminator is not None  # _last_z is set by loss(), which needs the discriminator
        permuted = torch.stack([col[torch.randperm(len(col), device=z.device)] for col in z.T], 1)
        logits = self.discriminator(torch.cat([z, permuted]))
        labels = torch.cat([torch.zeros(len(z)), torch.ones(len(z))]).long().to(z.device)
        self.disc_opt.zero_grad(set_to_none=True)
        F.cross_entropy(logits, labels).backward()
        self.disc_opt.step()


def dip_covariance(loc: torch.Tensor, scale: torch.Tensor, kind: str = "ii") -> torch.Tensor:
    """Cov(mu) over the batch (DIP-I), plus diag(E[sigma^2]) for the aggregate posterior (DIP-II)."""
    centred = loc - loc.mean(0)
    cov = centred.T @ centred / loc.shape[0]
    return cov if kind == "i" else cov + torch.diag((scale**2).mean(0))


@OBJECTIVES.register("dip-vae")
class DIPVAEObjective(DecompositionStats, ELBOObjective):
    """ELBO + lambda_od * sum_{i != j} C_ij^2 + lambda_d * sum_i (C_ii - 1)^2 with C from ``dip_covariance``;
    lambda_d defaults to 10 lambda_od (DIP-I) or lambda_od (DIP-II)."""

    @checked
    def __init__(
        self,
        kind: Annotated[str, Rule(str, choices=("i", "ii"))] = "ii",
        lambda_od: NonNegativeFloat = 10.0,
        lambda_d: Annotated[float, nonnegative_float(note="0 = 10 lambda_od for DIP-I, lambda_od for DIP-II")] = 0.0,
    ) -> None:
        super().__init__()
        self.kind, self.lambda_od = kind, float(lambda_od)
        self.lambda_d = float(lambda_d) or (10 * self.lambda_od if kind == "i" else self.lambda_od)

    def loss(self, vae: Any, x: torch.Tensor, mask: Optional[torch.Tensor] = None, step: int = 0) -> torch.Tensor:
        t = batch_terms(vae, x, mask)
        kl = _kl_one_draw(t)
        c = dip_covariance(t["loc"], t["scale"], self.kind)
        diag = torch.diagonal(c)
        penalty = self.lambda_od * (c**2).sum() - self.lambda_od * (diag**2).sum() + self.lambda_d * ((diag - 1) ** 2).sum()
        return (-t["log_px"] + kl).sum() + len(x) * penalty
