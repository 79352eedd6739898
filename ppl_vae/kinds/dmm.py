"""The deep Markov model kind (Krishnan, Shalit & Sontag 2017), as a plain Pyro model and guide.

Model: z_0 a learned vector, z_t ~ N(loc, scale)(z_{t-1}) by a gated transition, x_t ~ emission(z_t)
(factorised Bernoulli over the 88 piano keys by default; any element-wise likelihood of the
registry). Guide: a GRU run right to left over each sequence (within its own length, so padding
changes nothing), and a combiner q(z_t | z_{t-1}, h_t); optionally an inverse autoregressive flow
(``pyro.distributions.transforms.affine_autoregressive``) on each q(z_t | ...). Steps run under
``pyro.markov``; steps past a sequence's end are masked out of every site. KL annealing: the
objective's beta scales each z_t site in model and guide (``poutine.scale``), as in the VAEs.

``DMM.model(x=None, T=..., n=...)`` generates. ``DMMKind`` (``"dmm"``) evaluates IWAE and ELBO per
time step (``kinds.seqtools``) beside the per-note marginal baseline, draws piano rolls,
reconstructions and a chorale's latent trajectory, and writes generated MIDI files on ``sample``.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro import poutine
from pyro.distributions.transforms import affine_autoregressive
from torch import nn

from ppl_vae.components.likelihoods import as_likelihood
from ppl_vae.config import ModelConfig
from ppl_vae.data import Splits
from ppl_vae.data.base import ArrayDataset
from ppl_vae.data.spec import DataSpec
from ppl_vae.evaluation.likelihood import iwae_log_likelihood
from ppl_vae.kinds import seqtools
from ppl_vae.kinds.base import ModelKind, build_component
from ppl_vae.registry import KINDS, LIKELIHOODS, ConfigError

if TYPE_CHECKING:
    from matplotlib.figure import Figure


class GatedTransition(nn.Module):
    """p(z_t | z_{t-1}): loc = (1 - g) * A z + g * proposal, with gate g and proposal MLPs of z_{t-1};
    scale = softplus of a linear map of the proposal (A starts as the identity)."""

    def __init__(self, z_dim: int, hidden: int) -> None:
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(z_dim, hidden), nn.ReLU(), nn.Linear(hidden, z_dim), nn.Sigmoid())
        self.proposal = nn.Sequential(nn.Linear(z_dim, hidden), nn.ReLU(), nn.Linear(hidden, z_dim))
        self.linear = nn.Linear(z_dim, z_dim)
        self.scale = nn.Linear(z_dim, z_dim)
        with torch.no_grad():
            self.linear.weight.copy_(torch.eye(z_dim))
            self.linear.bias.zero_()

    def forward(self, z: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        g, proposed = self.gate(z), self.proposal(z)
        loc = (1 - g) * self.linear(z) + g * proposed
        return loc, F.softplus(self.scale(F.relu(proposed))) + 1e-4


class Combiner(nn.Module):
    """q(z_t | z_{t-1}, h_t): h = (tanh(W z_{t-1}) + h_t) / 2, then linear maps to loc and scale."""

    def __init__(self, z_dim: int, rnn_dim: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(z_dim, rnn_dim)
        self.out = nn.Linear(rnn_dim, 2 * z_dim)

    def forward(self, z: torch.Tensor, h: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        loc, raw = self.out(0.5 * (torch.tanh(self.hidden(z)) + h)).chunk(2, -1)
        return loc, F.softplus(raw) + 1e-4


class DMM(nn.Module):
    """``DMM(data_shape=(T_max, 88), features=88)``; x batches (B, T_max, D) with an element mask."""

    def __init__(
        self,
        data_shape: Tuple[int, ...],
        features: int,
        z_dim: int = 32,
        transition_dim: int = 64,
        emission_dim: int = 64,
        rnn_dim: int = 128,
        iaf: int = 0,
        iaf_dim: int = 64,
        likelihood: Any = None,
    ) -> None:
        super().__init__()
        if min(z_dim, transition_dim, emission_dim, rnn_dim, iaf_dim, features) < 1 or iaf < 0:
            raise ConfigError("the DMM's sizes must be positive (and model.encoder.iaf >= 0)")
        self.data_shape, self.features, self.z_dim = tuple(data_shape), int(features), int(z_dim)
        self.steps = math.prod(self.data_shape) // self.features
        self.likelihood = as_likelihood(likelihood).setup(self.data_shape)  # checks whole sequences
        self.emission = copy.deepcopy(self.likelihood).setup((self.features,))  # scores one step
        out = self.emission.decoder_output_shape()[0]
        self.emitter = nn.Sequential(
            nn.Linear(z_dim, emission_dim), nn.ReLU(), nn.Linear(emission_dim, emission_dim), nn.ReLU(), nn.Linear(emission_dim, out)
        )
        self.transition = GatedTransition(z_dim, transition_dim)
        self.combiner = Combiner(z_dim, rnn_dim)
        self.rnn = nn.GRU(self.features, rnn_dim, batch_first=True)
        self.h_0 = nn.Parameter(torch.zeros(1, 1, rnn_dim))
        self.z_0 = nn.Parameter(torch.zeros(z_dim))
        self.z_q_0 = nn.Parameter(torch.zeros(z_dim))
        self.iafs = nn.ModuleList([affine_autoregressive(z_dim, hidden_dims=[iaf_dim]) for _ in range(iaf)])

    def emit(self, z: torch.Tensor, m: torch.Tensor) -> dist.TorchDistribution:
        """p(x_{1:T} | z_{1:T}) = prod_t p(x_t | z_t), one site for all steps (B, T, D): the emission is
        factorised given the path, so it is scored in one vectorized op; padding steps masked."""
        return self.emission.elementwise(self.emission.split(self.emitter(z))).to_event(1).mask(m).to_event(1)

    def model(
        self,
        x: Optional[torch.Tensor] = None,
        mask: Optional[torch.Tensor] = None,
        beta: Any = 1.0,
        T: Optional[int] = None,
        n: int = 1,
    ) -> torch.Tensor:
        """The generative program; returns x (B, T, D). With ``x=None`` it generates ``n`` sequences of ``T`` steps."""
        if x is None:
            xs, m = None, torch.ones(n, T or self.steps, dtype=torch.bool, device=self.z_0.device)
        else:
            xs, m = seqtools.trim(*seqtools.as_steps(x, mask, self.features))
        path = []
        with pyro.plate("data", m.shape[0], dim=-1):
            z = self.z_0.expand(m.shape[0], self.z_dim)
            for t in pyro.markov(range(m.shape[1])):
                loc, scale = self.transition(z)
                with poutine.scale(scale=beta):
                    z = pyro.sample(f"z_{t + 1}", dist.Normal(loc, scale).to_event(1).mask(m[..., t]))
                path.append(z)
            return pyro.sample("x", self.emit(torch.stack(path, -2), m), obs=xs)

    def guide(
        self,
        x: Optional[torch.Tensor] = None,
        mask: Optional[torch.Tensor] = None,
        beta: Any = 1.0,
        T: Optional[int] = None,
        n: int = 1,
    ) -> torch.Tensor:
        """q(z_{1:T} | x): returns the drawn path (B, T, z_dim)."""
        if x is None:
            raise ConfigError("the DMM's guide needs data x")
        xs, m = seqtools.trim(*seqtools.as_steps(x, mask, self.features))
        rev = seqtools.reverse_within_length(xs, m)
        h, _ = self.rnn(rev, self.h_0.expand(1, len(xs), -1).contiguous())
        h = seqtools.reverse_within_length(h, m)  # h_t summarises x_t..x_T of its own sequence
        path = []
        with pyro.plate("data", len(xs), dim=-1):
            z = self.z_q_0.expand(len(xs), self.z_dim)
            for t in pyro.markov(range(xs.shape[1])):
                loc, scale = self.combiner(z, h[:, t])
                q = (
                    dist.TransformedDistribution(dist.Normal(loc, scale), list(self.iafs))
                    if len(self.iafs)
                    else dist.Normal(loc, scale).to_event(1)
                )
                with poutine.scale(scale=beta):
                    z = pyro.sample(f"z_{t + 1}", q.mask(m[:, t]))
                path.append(z)
        return torch.stack(path, -2)

    @torch.no_grad()
    def generate(self, n: int, T: Optional[int] = None) -> torch.Tensor:
        """``n`` sequences of ``T`` steps drawn from the model, (n, T, D)."""
        return self.model(None, T=T, n=n)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """(the emission's mean for one posterior path, that path (B, T, z_dim))."""
        z = self.guide(x, mask)
        return self.emission.reconstruct(self.emitter(z)), z

    @property
    def device(self) -> torch.device:
        return self.z_0.device


@KINDS.register("dmm")
class DMMKind(ModelKind):
    """The deep Markov model on sequences (piano rolls): per-step IWAE, generation, MIDI."""

    name = "dmm"
    description = "deep Markov model: gated transition, right-to-left combiner guide (optional IAF)"
    capabilities = frozenset({"sample", "reconstruct"})
    objectives = ("elbo", "iwae")

    def build(self, model: ModelConfig, spec: DataSpec) -> nn.Module:
        steps, features = seqtools.sequence_dims(spec)
        enc = seqtools.settings(model.encoder, "model.encoder", {"rnn_dim": 128, "iaf": 0, "iaf_dim": 64})
        dec = seqtools.settings(model.decoder, "model.decoder", {"transition_dim": 64, "emission_dim": 64})
        return DMM(
            tuple(spec.shape),
            features,
            z_dim=model.latent_dim,
            **enc,
            **dec,
            likelihood=build_component(LIKELIHOODS, model.likelihood, "model.likelihood"),
        )

    def evaluate(self, module: Any, data: ArrayDataset, spec: DataSpec, num_samples: int, progress: bool = False) -> Dict[str, Any]:
        """IWAE log p(x) (K = ``num_samples``) and the ELBO, per time step and per sequence."""
        data = data.to(module.device)
        est = iwae_log_likelihood(module, data, num_samples, batch_size=64, progress=progress)
        steps = seqtools.lengths(data, module.features).cpu()
        return seqtools.per_step_report(est["log_px"], est["elbo"], steps, num_samples)

    def extra_metrics(self, module: nn.Module, splits: Splits, cfg: Any) -> Dict[str, Any]:
        return seqtools.marginal_baseline(splits.train, splits.test, int(splits.spec.meta["features"]))

    def figures(self, module: Any, splits: Splits, history: List[dict]) -> Dict[str, Any]:
        from ppl_vae.plots import loss_curves_figure

        test = splits.test.subset(slice(0, 3)).to(module.device)
        x, m = seqtools.as_steps(test.x, test.mask, module.features)
        recon, z = module.reconstruct(test.x, test.mask)
        n = [int(v) for v in m.sum(1)]
        rolls, titles = [], []
        for i in range(len(x)):
            rolls += [x[i, : n[i]], recon[i, : n[i]]]
            titles += [f"test sequence {i + 1}", f"reconstruction {i + 1} (emission probabilities, one posterior path)"]
        return {
            "loss_curves": loss_curves_figure(history),
            "samples": self.sample_figure(module, splits.spec, 4),
            "reconstructions": seqtools.piano_roll_figure(rolls, titles, "test sequences and reconstructions"),
            "latent_trajectory": seqtools.latent_trajectory_figure(x[0, : n[0]], z[0, : n[0]], "a test sequence and its latent path"),
        }

    def sample_figure(self, module: Any, spec: DataSpec, n: int) -> Figure:
        rolls = module.generate(min(n, 8), T=sample_steps(spec))
        return seqtools.piano_roll_figure(list(rolls), [f"sample {i + 1}" for i in range(len(rolls))], "sequences drawn from the DMM")

    def write_samples(self, module: Any, spec: DataSpec, n: int, folder: Path) -> List[Path]:
        """``min(n, 16)`` generated sequences as MIDI files ``folder/sample-I.mid`` (binary rolls only)."""
        return write_midi_samples(module.generate(min(n, MIDI_FILES), T=sample_steps(spec)), spec, folder)


MIDI_FILES = 16  # at most this many MIDI files per `ppl-vae sample`


def sample_steps(spec: DataSpec) -> int:
    """The length of generated sequences: 64 steps (16 bars of 4/4), or shorter data's own length."""
    return min(64, seqtools.sequence_dims(spec)[0])


def write_midi_samples(rolls: torch.Tensor, spec: DataSpec, folder: Path) -> List[Path]:
    if not spec.meta.get("binary"):
        raise ConfigError("MIDI files are written for binary piano rolls; these sequence data are real-valued")
    low = int(spec.meta.get("lowest_midi", 21))
    return [seqtools.write_midi(r.cpu().numpy(), folder / f"sample-{i + 1}.mid", low) for i, r in enumerate(rolls)]
