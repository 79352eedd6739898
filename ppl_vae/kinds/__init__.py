"""Model kinds as plug-ins: one module per kind, each a Pyro module plus a registered ``ModelKind``.

* ``vae``: the plain VAE (any prior, likelihood, networks, guide; unlabelled objectives).
* ``conditional``: the conditional VAE p(x | y).
* ``semi-supervised``: Kingma et al.'s M2.

Adding a kind: a module in this folder that defines its Pyro module and a ``ModelKind`` subclass
registered with ``@KINDS.register(name)`` (every module here is imported, so it registers itself);
a recipe in ``models/``; its tests (the recipe template in ``tests/test_recipes.py`` covers the new
recipe without edits).
"""

import importlib
import pkgutil

from ppl_vae.kinds.base import CAPABILITIES, ModelKind, build_component, kind, kind_of, kinds_where, require
from ppl_vae.kinds.conditional import ConditionalKind, ConditionalVAE
from ppl_vae.kinds.semisupervised import SemiSupervisedKind, SemiSupervisedVAE
from ppl_vae.kinds.vae import VAE, VAEKind

for _module in pkgutil.iter_modules(__path__):  # every kind module registers itself on import
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "CAPABILITIES",
    "ModelKind",
    "build_component",
    "kind",
    "kind_of",
    "kinds_where",
    "require",
    "VAE",
    "VAEKind",
    "ConditionalVAE",
    "ConditionalKind",
    "SemiSupervisedVAE",
    "SemiSupervisedKind",
]
