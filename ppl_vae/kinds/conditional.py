"""The conditional VAE kind: p(x | y) = int p(z) p(x | z, y) dz with q(z | x, y), as a Pyro program.

The label is an input, always observed (class-conditional generation). Sites ``z`` and ``x`` in the
plate ``data`` (dim -1). Any prior and likelihood from the components can be used (not the VampPrior,
whose pseudo-inputs go through an unconditional encoder). The networks add a label embedding to their
first layer (the same map as concatenating a one-hot label) and broadcast it against enumerated or
particle dimensions; ``kinds.semisupervised`` (M2) reuses them. ``ConditionalKind`` is registered
as ``"conditional"``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar, Dict, Optional, Sequence, Tuple

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import nn

from ppl_vae.components.guides import DiagonalGaussianPosterior
from ppl_vae.components.likelihoods import as_likelihood
from ppl_vae.components.networks import activation_layer, mlp, positive_scale
from ppl_vae.components.priors import VampPrior, as_prior
from ppl_vae.config import ModelConfig
from ppl_vae.data import Splits
from ppl_vae.data.base import ArrayDataset, as_dataset
from ppl_vae.data.spec import DataSpec
from ppl_vae.evaluation.importance_weights import ModelGuide
from ppl_vae.evaluation.likelihood import bound_report, per_datum_log_weights
from ppl_vae.kinds.base import ModelKind, build_component, component_table
from ppl_vae.registry import KINDS, LIKELIHOODS, PRIORS, ConfigError, recipe_of, remember_arguments

if TYPE_CHECKING:
    from matplotlib.figure import Figure


class LabelledInput(nn.Module):
    """Linear(cat(h, one_hot(y))) computed as Linear(h) + Embedding(y): the same map, but the
    data half runs once per datum instead of once per enumerated class."""

    def __init__(self, in_dim: int, n_classes: int, out_dim: int) -> None:
        super().__init__()
        self.data = nn.Linear(in_dim, out_dim)
        self.label = nn.Embedding(n_classes, out_dim)
        nn.init.normal_(self.label.weight, std=1 / math.sqrt(in_dim + n_classes))

    def forward(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.data(h) + self.label(y.long())  # broadcasts (N, d) with enumerated (C, 1, d)


class ConditionalEncoder(nn.Module):
    """(x, y) -> (loc, scale) of q(z | x, y): an MLP on (flattened x, one-hot y)."""

    def __init__(
        self, data_dim: int, n_classes: int, latent_dim: int, hidden: Sequence[int] = (256,), activation: str = "relu"
    ) -> None:
        super().__init__()
        sizes = [*hidden, 2 * latent_dim]
        self.input = LabelledInput(data_dim, n_classes, sizes[0])
        self.rest = nn.Sequential(activation_layer(activation), mlp(sizes, activation)) if hidden else nn.Identity()

    def forward(self, x_flat: torch.Tensor, y: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        loc, raw = self.rest(self.input(x_flat, y)).chunk(2, -1)
        return loc, positive_scale(raw)


class ConditionalDecoder(nn.Module):
    """(z, y) -> likelihood parameters shaped (*batch, *out_shape)."""

    def __init__(
        self, latent_dim: int, n_classes: int, out_shape: Sequence[int], hidden: Sequence[int] = (256,), activation: str = "relu"
    ) -> None:
        super().__init__()
        self.out_shape = tuple(out_shape)
        sizes = [*hidden, math.prod(self.out_shape)]
        self.input = LabelledInput(latent_dim, n_classes, sizes[0])
        self.rest = nn.Sequential(activation_layer(activation), mlp(sizes, activation)) if hidden else nn.Identity()

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.rest(self.input(z, y))
        return h.reshape(*h.shape[:-1], *self.out_shape)


@remember_arguments
class ConditionalVAE(nn.Module):
    """p(x | y) with labels always given: ``ConditionalVAE((784,), n_classes=10, latent_dim=20)``."""

    def __init__(
        self,
        data_shape: Sequence[int],
        n_classes: int,
        latent_dim: int = 10,
        prior: Any = None,
        likelihood: Any = None,
        hidden: Sequence[int] = (256,),
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if n_classes < 2 or latent_dim < 1:
            raise ConfigError(f"need n_classes >= 2 and latent_dim >= 1, got {n_classes} and {latent_dim}")
        self.data_shape, self.n_classes, self.latent_dim = tuple(data_shape), int(n_classes), int(latent_dim)
        self.likelihood = as_likelihood(likelihood).setup(self.data_shape)
        out_shape = self.likelihood.decoder_output_shape(self.data_shape)
        self.encoder = ConditionalEncoder(math.prod(self.data_shape), n_classes, latent_dim, hidden, activation)
        self.decoder = ConditionalDecoder(latent_dim, n_classes, out_shape, tuple(reversed(hidden)), activation)
        prior = as_prior(prior)
        if isinstance(prior, VampPrior):
            raise ConfigError("the VampPrior needs an unconditional encoder; label-aware VAEs use q(z | x, y): choose another prior")
        self.prior = prior.setup(latent_dim, data_shape=self.data_shape)
        self.posterior = DiagonalGaussianPosterior()

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(start_dim=x.dim() - len(self.data_shape))

    def encode(self, x: torch.Tensor, y: torch.Tensor, mask: Optional[torch.Tensor] = None) -> dist.TorchDistribution:
        return self.posterior(*self.encoder(self._flat(self.likelihood.fill_missing(x, mask)), y))

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> dist.TorchDistribution:
        return self.likelihood(self.decoder(z, y))

    def model(
        self,
        x: Optional[torch.Tensor] = None,
        mask: Optional[torch.Tensor] = None,
        y: Optional[torch.Tensor] = None,
        beta: float = 1.0,
    ) -> None:
        """p(x, z | y) = p(z) p(x | z, y); with ``x=None`` it generates one datum per label in ``y``."""
        if y is None:
            raise ConfigError("the conditional VAE needs labels for every datum")
        x = self.likelihood.fill_missing(x, mask) if x is not None else None
        with pyro.plate("data", len(y), dim=-1):
            with poutine.scale(scale=beta):
                z = pyro.sample("z", self.prior())
            pyro.sample("x", self.likelihood(self.decoder(z, y), mask), obs=x)

    def guide(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None, y: Optional[torch.Tensor] = None, beta: float = 1.0) -> None:
        if y is None:
            raise ConfigError("the conditional VAE needs labels for every datum")
        with pyro.plate("data", x.shape[0], dim=-1), poutine.scale(scale=beta):
            pyro.sample("z", self.encode(x, y, mask))

    @torch.no_grad()
    def generate_grid(self, n_styles: int = 8) -> torch.Tensor:
        """(n_classes * n_styles, *data_shape): one row per class, one column per style z (shared by rows)."""
        z = self.prior().sample((n_styles,))
        y = torch.arange(self.n_classes, device=z.device)
        return self.likelihood.reconstruct(self.decoder(z[None], y[:, None])).reshape(-1, *self.data_shape)

    @torch.no_grad()
    def style_transfer(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(len(x) * n_classes, *data_shape): z's mean from each (x, y), decoded with every class."""
        loc, _ = self.encoder(self._flat(x), y)
        classes = torch.arange(self.n_classes, device=x.device)
        return self.likelihood.reconstruct(self.decoder(loc[:, None], classes[None])).reshape(-1, *self.data_shape)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


def with_label(vae: Any, y: torch.Tensor) -> ModelGuide:
    """A label-aware VAE with y fixed, seen as a (model, guide) pair over (x, mask)."""
    return ModelGuide(lambda x, mask=None: vae.model(x, mask, y), lambda x, mask=None: vae.guide(x, mask, y), vae.likelihood)


@torch.no_grad()
def conditional_log_likelihood(vae: Any, data: ArrayDataset, num_samples: int = 1000, batch_size: int = 100) -> dict:
    """Per datum ``log_px`` = log p(x | y) (importance-weighted) and ``elbo``, from the same draws."""
    if data.y is None:
        raise ConfigError("the conditional VAE is evaluated on labelled data; these data have no labels")
    px, el = [], []
    for start in range(0, len(data), batch_size):
        part = data.subset(slice(start, start + batch_size))
        assert part.y is not None  # data.y is checked above
        log_w = torch.cat(list(per_datum_log_weights(with_label(vae, part.y), part.x, part.mask, num_samples)), 0)
        px.append((torch.logsumexp(log_w, 0) - math.log(num_samples)).cpu())
        el.append(log_w.mean(0).cpu())
    return {"log_px": torch.cat(px), "elbo": torch.cat(el)}


@KINDS.register("conditional")
class ConditionalKind(ModelKind):
    """p(x | y) on labelled data: class-conditional generation and style transfer."""

    name = "conditional"
    description = "p(z) p(x | z, y) with q(z | x, y); labels always given"
    capabilities = frozenset({"sample", "conditional-sample", "reconstruct"})
    objectives = ("conditional",)
    module_type: ClassVar[Optional[type]] = ConditionalVAE

    def describe(self, module: Any) -> Dict[str, Any]:
        args = recipe_of(module) or {}
        hidden, activation = [int(h) for h in args.get("hidden", (256,))], str(args.get("activation", "relu"))
        return {
            "kind": self.name,
            "latent_dim": module.latent_dim,
            "prior": component_table(module.prior, "model.prior"),
            "likelihood": component_table(module.likelihood, "model.likelihood"),
            "encoder": {"name": "mlp", "hidden": hidden, "activation": activation},
            "decoder": {"name": "mlp", "hidden": hidden[::-1], "activation": activation},
        }

    def _parts(self, model: ModelConfig, spec: DataSpec) -> Dict[str, Any]:
        """What both label-aware kinds build from a config: shape, classes, prior, likelihood, MLP sizes."""
        if not spec.n_classes:
            raise ConfigError(f"model.kind '{self.name}' needs labelled data with known classes; '{spec.source}' has none")
        if model.encoder.get("name", "mlp") != "mlp" or model.decoder.get("name", "mlp") != "mlp":
            raise ConfigError(f"model.kind '{self.name}' uses MLP networks; set model.encoder.name and model.decoder.name to 'mlp'")
        return dict(
            data_shape=tuple(spec.shape),
            n_classes=spec.n_classes,
            latent_dim=model.latent_dim,
            prior=build_component(PRIORS, model.prior, "model.prior"),
            likelihood=build_component(LIKELIHOODS, model.likelihood, "model.likelihood", meta=spec.meta),
            hidden=tuple(model.encoder.get("hidden", [256])),
            activation=model.encoder.get("activation", "relu"),
        )

    def build(self, model: ModelConfig, spec: DataSpec) -> nn.Module:
        return ConditionalVAE(**self._parts(model, spec))

    def evaluate(self, module: Any, data: ArrayDataset, spec: DataSpec, num_samples: int, progress: bool = False) -> Dict[str, Any]:
        data = as_dataset(data).to(module.device)
        est = conditional_log_likelihood(module, data, num_samples)
        return {"conditional_on_label": True, **bound_report(est, data, num_samples, module.likelihood.discrete, spec.bin_width)}

    def figures(self, module: nn.Module, splits: Splits, history: list) -> dict:
        from ppl_vae import plots

        figs = {"loss_curves": plots.loss_curves_figure(history)}
        shape = splits.spec.image_shape
        if shape is not None:
            figs["conditional_generation"] = conditional_generation_figure(module, shape, splits.spec.class_names)
            assert splits.test.y is not None  # label-aware kinds are built only for labelled data
            figs["style_transfer"] = style_transfer_figure(module, splits.test.x, splits.test.y, shape)
        return figs

    def sample_figure(self, module: Any, spec: DataSpec, n: int) -> Figure:
        if spec.image_shape is None:
            raise ConfigError(f"'sample' draws image grids; this run's data ('{spec.source}') are not images")
        return conditional_generation_figure(module, spec.image_shape, spec.class_names, max(1, n // module.n_classes))


@torch.no_grad()
def conditional_generation_figure(
    vae: Any, image_shape: Sequence[int], class_names: Optional[Sequence[str]] = None, n_styles: int = 8
) -> Figure:
    """One row per class, one column per style z drawn from the prior (shared down each column)."""
    from ppl_vae.plots import image_grid

    return image_grid(
        vae.generate_grid(n_styles),
        image_shape,
        n_styles,
        "conditional generation: rows are classes, columns share z",
        row_labels=list(class_names or [str(c) for c in range(vae.n_classes)]),
    )


@torch.no_grad()
def style_transfer_figure(vae: Any, x: torch.Tensor, y: torch.Tensor, image_shape: Sequence[int], n: int = 6) -> Figure:
    """Each row: z encoded from one image (left, with its own label), decoded with every class."""
    from ppl_vae.plots import image_grid

    x, y = x[:n].to(vae.device), y[:n].to(vae.device)
    grid = torch.cat(
        [torch.cat([x[i : i + 1], out]) for i, out in enumerate(vae.style_transfer(x, y).reshape(len(x), vae.n_classes, *x.shape[1:]))]
    )
    return image_grid(grid, image_shape, vae.n_classes + 1, f"style transfer: input, then its z with classes 0..{vae.n_classes - 1}")
