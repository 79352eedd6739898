"""Swappable building blocks of a VAE; each builds or returns a distribution.

* ``priors``: p(z) modules whose call returns a distribution with event shape ``(latent_dim,)``.
* ``likelihoods`` (and ``tabular``, a column-wise likelihood for tables): p(x | decoder output).
* ``networks``: encoders ``x -> (loc, scale)`` and decoders ``z -> likelihood parameters``.
* ``guides``: posterior families mapping ``(loc, scale)`` to q(z | x).

Importing this package registers every component under its short name (``ppl_vae.registry``).
"""

from ppl_vae.components import guides, likelihoods, networks, priors, tabular  # noqa: F401  (registrations)
from ppl_vae.components import discretized  # noqa: F401  (registers the discretized logistic likelihood)

__all__ = ["discretized", "guides", "likelihoods", "networks", "priors", "tabular"]
