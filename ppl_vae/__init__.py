"""ppl-vae: variational autoencoders as Pyro programs.

The public entry points. Importing ``ppl_vae`` registers every component, objective and model
kind under its name (``ppl_vae.registry``). The layers, from the bottom: ``registry`` and
``config``; ``components`` and ``data``; ``evaluation`` and ``plots``; ``objectives``; ``kinds``,
``training`` and ``diagnostics``; ``runs``; ``cli`` (the contract is in ``pyproject.toml``).
"""

from ppl_vae import components, kinds, objectives  # noqa: F401  (registrations)
from ppl_vae.apps.compression import compress, decompress
from ppl_vae.apps.anomaly import anomaly_scores
from ppl_vae.apps.impute import impute, impute_multiple
from ppl_vae.apps.synthesize import synthesize
from ppl_vae.config import Config
from ppl_vae.evaluation import evaluate, iwae_log_likelihood
from ppl_vae.kinds import VAE, ConditionalVAE, SemiSupervisedVAE
from ppl_vae.registry import ConfigError
from ppl_vae.runs import load, save
from ppl_vae.training import fit

__all__ = [
    "VAE",
    "ConditionalVAE",
    "SemiSupervisedVAE",
    "compress",
    "decompress",
    "anomaly_scores",
    "impute",
    "impute_multiple",
    "synthesize",
    "Config",
    "ConfigError",
    "evaluate",
    "fit",
    "iwae_log_likelihood",
    "load",
    "save",
]
