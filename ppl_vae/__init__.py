"""ppl-vae: variational autoencoders as Pyro programs.

The public entry points; every registered component (priors, likelihoods, networks, objectives)
is importable by name after ``import ppl_vae``.
"""
from . import disentangled, likelihoods, nets, objectives, priors, semisupervised, tabular  # noqa: F401  (registrations)
from .evaluate import evaluate, iwae_log_likelihood
from .ssvae import ConditionalVAE, SemiSupervisedVAE
from .train import fit
from .vae import VAE

__all__ = ["VAE", "ConditionalVAE", "SemiSupervisedVAE", "evaluate", "fit", "iwae_log_likelihood"]
