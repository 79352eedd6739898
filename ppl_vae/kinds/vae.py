"""The plain VAE kind: a generative ``model`` and an amortized ``guide``, both ordinary Pyro programs.

Sites: latent ``z`` and observation ``x`` inside one plate ``data`` (dim -1). Everything
swappable is a constructor argument: prior, likelihood, encoder, decoder, posterior family.
The VAE owns its parameters as an ``nn.Module`` (no global param store), so two VAEs in one
process never share or clobber each other. It knows nothing of training, files or the CLI. ``VAEKind`` (registered as ``"vae"``) builds
it from a recipe and says what the run layer may ask of it.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any, Optional, Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import nn

from ppl_vae.components.guides import posterior_point
from ppl_vae.components.likelihoods import as_likelihood
from ppl_vae.components.networks import MLPDecoder, MLPEncoder, check_decoder, check_encoder
from ppl_vae.components.priors import as_prior
from ppl_vae.config import ModelConfig
from ppl_vae.data import Splits
from ppl_vae.data.base import ArrayDataset
from ppl_vae.data.spec import DataSpec
from ppl_vae.evaluation.likelihood import evaluate
from ppl_vae.kinds.base import ModelKind, build_component, component_table
from ppl_vae.registry import DECODERS, ENCODERS, GUIDES, KINDS, LIKELIHOODS, PRIORS, ConfigError, remember_arguments

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_ids = itertools.count()


@remember_arguments
class VAE(nn.Module):
    """A VAE as a Pyro program. ``VAE((784,), 10, prior=MixtureOfGaussiansPrior(k=10))``.

    Args:
        data_shape: shape of one datum, e.g. ``(784,)`` or ``(1, 28, 28)``.
        latent_dim: size of z.
        prior: a prior object, a registered name, or a distribution (default N(0, I)).
        likelihood: a likelihood object or a registered name (default Bernoulli).
        encoder: an ``nn.Module`` meeting the contract in ``ppl_vae.components.networks`` (default an MLP with ``hidden``).
        decoder: the same for the decoder (default an MLP with ``hidden`` reversed).
        posterior: "diagonal" (default), "iaf", or a module mapping (loc, scale) to a distribution.
        hidden: the layer sizes of the default MLPs.
    """

    def __init__(
        self,
        data_shape: Sequence[int],
        latent_dim: int = 10,
        prior: Any = None,
        likelihood: Any = None,
        encoder: Optional[nn.Module] = None,
        decoder: Optional[nn.Module] = None,
        posterior: Any = "diagonal",
        hidden: Sequence[int] = (256,),
    ) -> None:
        super().__init__()
        if latent_dim < 1:
            raise ConfigError(f"latent_dim must be >= 1, got {latent_dim}")
        self.data_shape, self.latent_dim = tuple(int(s) for s in data_shape), int(latent_dim)
        self.likelihood = as_likelihood(likelihood).setup(self.data_shape)
        out_shape = self.likelihood.decoder_output_shape(self.data_shape)
        self.encoder = encoder if encoder is not None else MLPEncoder(self.data_shape, latent_dim, hidden)
        self.decoder = decoder if decoder is not None else MLPDecoder(latent_dim, out_shape, tuple(reversed(hidden)))
        check_encoder(self.encoder, self.data_shape, latent_dim)
        check_decoder(self.decoder, latent_dim, out_shape)
        self.prior = as_prior(prior).setup(latent_dim, encoder=self.encoder, data_shape=self.data_shape)
        posterior = GUIDES.build(posterior) if isinstance(posterior, str) else posterior
        self.posterior = posterior.setup(latent_dim) if hasattr(posterior, "setup") else posterior
        self.pyro_name = f"vae{next(_ids)}"
        self.use_param_store = False  # set True to train with pyro's SVI + pyro.optim

    # ---- the Pyro program -------------------------------------------------------------------
    def model(
        self, x: Optional[torch.Tensor] = None, mask: Optional[torch.Tensor] = None, beta: float = 1.0, n: Optional[int] = None
    ) -> torch.Tensor:
        """p(x, z) = p(z) p(x | decoder(z)); ``beta`` scales the latent site (with the guide).

        ``x`` is observed; ``model(None, n=N)`` generates N data instead (the ``x`` site samples).
        For posterior predictive draws condition ``z`` on the guide and leave ``x`` unobserved:
        ``Predictive(poutine.uncondition(vae.model), guide=vae.guide, num_samples=S)(x)`` (Pyro keeps an
        observed site's value, so ``Predictive(vae.model, guide=vae.guide)(x)`` returns ``x`` itself)."""
        if self.use_param_store:
            pyro.module(self.pyro_name, self)
        x = self.likelihood.fill_missing(x, mask) if x is not None else None
        with pyro.plate("data", data_size(x, n), dim=-1):
            with poutine.scale(scale=beta):
                z = pyro.sample("z", self.prior())
            pyro.sample("x", self.likelihood(self.decoder(z), mask), obs=x)
        return z

    def guide(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None, beta: float = 1.0) -> torch.Tensor:
        """q(z | x): the encoder's amortized posterior."""
        if self.use_param_store:
            pyro.module(self.pyro_name, self)
        with pyro.plate("data", x.shape[0], dim=-1):
            with poutine.scale(scale=beta):
                return pyro.sample("z", self.encode(x, mask))

    # ---- conveniences for evaluation and plots ----------------------------------------------
    def encode(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> dist.TorchDistribution:
        return self.posterior(*self.encoder(self.likelihood.fill_missing(x, mask)))

    def decode(self, z: torch.Tensor) -> dist.TorchDistribution:
        return self.likelihood(self.decoder(z))

    def reconstruct(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Point reconstruction from the posterior mean of z (for flows: the base mean pushed through)."""
        loc, scale = self.encoder(self.likelihood.fill_missing(x, mask))
        z = self._posterior_mean(loc, scale)
        return self.likelihood.reconstruct(self.decoder(z))

    def embed(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The representation used by plots and metrics: the posterior mean of z."""
        loc, scale = self.encoder(self.likelihood.fill_missing(x, mask))
        return self._posterior_mean(loc, scale)

    def _posterior_mean(self, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return posterior_point(self.posterior(loc, scale), loc)

    def generate(self, n: int, mean: bool = True) -> torch.Tensor:
        """n new data: z from the prior, then the likelihood's point prediction (or a sample)."""
        z = self.prior().sample((n,))
        params = self.decoder(z)
        return self.likelihood.reconstruct(params) if mean else self.likelihood(params).sample()

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


@KINDS.register("vae")
class VAEKind(ModelKind):
    """The plain VAE with any prior, likelihood, networks, guide, and the unlabelled objectives."""

    name = "vae"
    description = "p(z) p(x | z) with an amortized q(z | x)"
    capabilities = frozenset(
        {"sample", "reconstruct", "impute", "diagnose", "compare", "disentanglement", "compress", "anomaly", "synthesize"}
    )
    objectives = ("elbo", "meanfield", "iwae", "capacity", "beta-tcvae", "factor-vae", "dip-vae")
    module_type = VAE

    def describe(self, module: Any) -> dict:
        return {
            "kind": self.name,
            "latent_dim": module.latent_dim,
            "prior": component_table(module.prior, "model.prior"),
            "likelihood": component_table(module.likelihood, "model.likelihood"),
            "encoder": component_table(module.encoder, "model.encoder", ("data_shape", "latent_dim")),
            "decoder": component_table(module.decoder, "model.decoder", ("latent_dim", "out_shape")),
            "posterior": component_table(module.posterior, "model.posterior"),
        }

    def build(self, model: ModelConfig, spec: DataSpec) -> VAE:
        shape = tuple(spec.shape)
        likelihood = build_component(LIKELIHOODS, model.likelihood, "model.likelihood", meta=spec.meta)
        out_shape = likelihood.decoder_output_shape(shape)
        encoder = build_component(ENCODERS, model.encoder, "model.encoder", data_shape=shape, latent_dim=model.latent_dim)
        decoder = build_component(DECODERS, model.decoder, "model.decoder", latent_dim=model.latent_dim, out_shape=out_shape)
        return VAE(
            shape,
            model.latent_dim,
            prior=build_component(PRIORS, model.prior, "model.prior"),
            likelihood=likelihood,
            encoder=encoder,
            decoder=decoder,
            posterior=build_component(GUIDES, model.posterior, "model.posterior"),
        )

    def evaluate(self, module: Any, data: ArrayDataset, spec: DataSpec, num_samples: int, progress: bool = False) -> dict:
        """The bound report plus reconstruction error, KL per latent dimension and active units."""
        return evaluate(module, data, num_samples, bin_width=spec.bin_width, progress=progress)

    def figures(self, module: nn.Module, splits: Splits, history: list) -> dict:
        from ppl_vae import plots

        figs = {"loss_curves": plots.loss_curves_figure(history), "latent_map": plots.latent_map_figure(module, splits.test)}
        shape = splits.spec.image_shape
        if shape is not None:
            x = splits.test.x
            figs.update(
                samples=plots.samples_figure(module, shape),
                reconstructions=plots.reconstructions_figure(module, x, shape),
                interpolations=plots.interpolation_figure(module, x, shape),
                traversals=plots.traversal_figure(module, x, shape),
            )
        return figs

    def sample_figure(self, module: nn.Module, spec: DataSpec, n: int) -> Figure:
        from ppl_vae import plots

        return plots.samples_figure(module, _image_shape(spec, "sample"), n)

    def represent(self, module: Any, x: torch.Tensor) -> torch.Tensor:
        return module.embed(x)


def data_size(x: Optional[torch.Tensor], n: Optional[int]) -> int:
    """The size of the data plate: ``len(x)``, or ``n`` (default 1) when the model generates."""
    if x is not None:
        if n is not None and n != x.shape[0]:
            raise ConfigError(f"model(x, n={n}): n must be left out or equal len(x) = {x.shape[0]}")
        return int(x.shape[0])
    if n is not None and n < 1:
        raise ConfigError(f"model(None, n={n}) generates n data: n must be >= 1")
    return 1 if n is None else int(n)


def _image_shape(spec: DataSpec, action: str) -> tuple:
    if spec.image_shape is None:
        raise ConfigError(f"'{action}' draws image grids; this run's data ('{spec.source}') are not images")
    return spec.image_shape
