"""The deterministic RNN baseline for sequences: an LSTM predicts x_t from x_{<t} through the same
factorised emission as the DMM (Bernoulli over the 88 keys by default), trained by the same loop.

There is no latent variable: the model's one site ``x`` scores whole sequences (padding masked
out) and the guide is empty, so the ELBO objective's loss is exactly -log p(x) and ``evaluate``
reports the exact log-likelihood per time step (no importance sampling). ``RNNKind`` is
registered as ``"rnn"``; ``RNNSequenceModel.model(x=None, T=..., n=...)`` generates.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import pyro
import torch
from torch import nn

from ppl_vae.components.likelihoods import as_likelihood
from ppl_vae.config import ModelConfig
from ppl_vae.data import Splits
from ppl_vae.data.base import ArrayDataset
from ppl_vae.data.spec import DataSpec
from ppl_vae.kinds import seqtools
from ppl_vae.kinds.base import ModelKind, build_component
from ppl_vae.kinds.dmm import MIDI_FILES, sample_steps, write_midi_samples
from ppl_vae.registry import KINDS, LIKELIHOODS, ConfigError

if TYPE_CHECKING:
    from matplotlib.figure import Figure


class RNNSequenceModel(nn.Module):
    """p(x) = prod_t p(x_t | LSTM(x_{<t})); ``RNNSequenceModel(data_shape=(T_max, 88), features=88)``."""

    def __init__(
        self, data_shape: Tuple[int, ...], features: int, hidden_dim: int = 128, layers: int = 1, likelihood: Any = None
    ) -> None:
        super().__init__()
        if min(hidden_dim, layers, features) < 1:
            raise ConfigError("the RNN's hidden size, layers and features must be positive")
        self.data_shape, self.features = tuple(data_shape), int(features)
        self.steps = math.prod(self.data_shape) // self.features
        self.likelihood = as_likelihood(likelihood).setup(self.data_shape)
        self.emission = copy.deepcopy(self.likelihood).setup((self.features,))
        self.lstm = nn.LSTM(self.features, hidden_dim, num_layers=layers, batch_first=True)
        self.out = nn.Linear(hidden_dim, self.emission.decoder_output_shape()[0])

    def emit(self, params: torch.Tensor, m: torch.Tensor) -> Any:
        return self.emission.elementwise(self.emission.split(params)).to_event(1).mask(m).to_event(1)

    def model(
        self,
        x: Optional[torch.Tensor] = None,
        mask: Optional[torch.Tensor] = None,
        beta: Any = 1.0,
        T: Optional[int] = None,
        n: int = 1,
    ) -> torch.Tensor:
        """Scores x (B, T, D), teacher-forced; with ``x=None`` draws ``n`` sequences of ``T`` steps, step by step."""
        if x is None:
            return self.generate(n, T)
        xs, m = seqtools.trim(*seqtools.as_steps(x, mask, self.features))
        inputs = torch.cat([torch.zeros_like(xs[:, :1]), xs[:, :-1]], 1)  # x_{t-1}, zeros before the start
        h, _ = self.lstm(inputs)
        with pyro.plate("data", len(xs), dim=-1):
            pyro.sample("x", self.emit(self.out(h), m), obs=xs)
        return xs

    def guide(self, *args: Any, **kwargs: Any) -> None:
        """No latent variables."""

    @torch.no_grad()
    def generate(self, n: int, T: Optional[int] = None) -> torch.Tensor:
        """``n`` sequences of ``T`` steps, each step drawn from the emission given the ones before, (n, T, D)."""
        prev = torch.zeros(n, 1, self.features, device=self.out.weight.device)
        state = None
        out = []
        for _ in range(T or self.steps):
            h, state = self.lstm(prev, state)
            prev = self.emission.elementwise(self.emission.split(self.out(h))).sample()
            out.append(prev)
        return torch.cat(out, 1)

    @torch.no_grad()
    def log_likelihood(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Exact log p(x) per sequence (B,)."""
        xs, m = seqtools.trim(*seqtools.as_steps(x, mask, self.features))
        inputs = torch.cat([torch.zeros_like(xs[:, :1]), xs[:, :-1]], 1)
        return self.emit(self.out(self.lstm(inputs)[0]), m).log_prob(xs)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The emission's mean of every step given the true steps before it (B, T, D)."""
        xs, _ = seqtools.as_steps(x, mask, self.features)
        inputs = torch.cat([torch.zeros_like(xs[:, :1]), xs[:, :-1]], 1)
        return self.emission.reconstruct(self.out(self.lstm(inputs)[0]))

    @property
    def device(self) -> torch.device:
        return self.out.weight.device


@KINDS.register("rnn")
class RNNKind(ModelKind):
    """The LSTM baseline on sequences: exact log p(x) per time step, generation, MIDI."""

    name = "rnn"
    description = "deterministic LSTM with a factorised emission (baseline for the DMM)"
    capabilities = frozenset({"sample"})
    objectives = ("elbo",)

    def build(self, model: ModelConfig, spec: DataSpec) -> nn.Module:
        _, features = seqtools.sequence_dims(spec)
        return RNNSequenceModel(
            tuple(spec.shape),
            features,
            **seqtools.settings(model.decoder, "model.decoder", {"hidden_dim": 128, "layers": 1}),
            likelihood=build_component(LIKELIHOODS, model.likelihood, "model.likelihood"),
        )

    def evaluate(self, module: Any, data: ArrayDataset, spec: DataSpec, num_samples: int, progress: bool = False) -> Dict[str, Any]:
        """Exact log p(x) per time step and per sequence (``num_samples`` is not needed: reported as 1)."""
        data = data.to(module.device)
        module.eval()
        log_px = torch.cat([module.log_likelihood(xb, mb).cpu() for xb, mb in data.batches(64, shuffle=False)])
        return seqtools.per_step_report(log_px, None, seqtools.lengths(data, module.features).cpu(), 1)

    def extra_metrics(self, module: nn.Module, splits: Splits, cfg: Any) -> Dict[str, Any]:
        return seqtools.marginal_baseline(splits.train, splits.test, int(splits.spec.meta["features"]))

    def figures(self, module: Any, splits: Splits, history: List[dict]) -> Dict[str, Any]:
        from ppl_vae.plots import loss_curves_figure

        test = splits.test.subset(slice(0, 3)).to(module.device)
        x, m = seqtools.as_steps(test.x, test.mask, module.features)
        pred = module.predict(test.x, test.mask)
        rolls, titles = [], []
        for i, n in enumerate(int(v) for v in m.sum(1)):
            rolls += [x[i, :n], pred[i, :n]]
            titles += [f"test sequence {i + 1}", f"next-step probabilities {i + 1} (given the true past)"]
        return {
            "loss_curves": loss_curves_figure(history),
            "samples": self.sample_figure(module, splits.spec, 4),
            "predictions": seqtools.piano_roll_figure(rolls, titles, "test sequences and one-step predictions"),
        }

    def sample_figure(self, module: Any, spec: DataSpec, n: int) -> Figure:
        rolls = module.generate(min(n, 8), T=sample_steps(spec))
        return seqtools.piano_roll_figure(list(rolls), [f"sample {i + 1}" for i in range(len(rolls))], "sequences drawn from the LSTM")

    def write_samples(self, module: Any, spec: DataSpec, n: int, folder: Path) -> List[Path]:
        """``min(n, 16)`` generated sequences as MIDI files ``folder/sample-I.mid`` (binary rolls only)."""
        return write_midi_samples(module.generate(min(n, MIDI_FILES), T=sample_steps(spec)), spec, folder)
