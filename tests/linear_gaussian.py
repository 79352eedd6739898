"""A linear-Gaussian VAE (probabilistic PCA) where log p(x) and the posterior are known exactly.

p(z) = N(0, I), p(x | z) = N(W z + b, s^2 I)  =>  p(x) = N(b, W W^T + s^2 I),
p(z | x) = N(M^-1 W^T (x - b), s^2 M^-1) with M = W^T W + s^2 I.
"""

import torch
from torch import nn

from ppl_vae.components.likelihoods import NormalLikelihood
from ppl_vae.training.fit import fit
from ppl_vae.kinds.vae import VAE


class LinearEncoder(nn.Module):
    """loc = A x + c; scale does not depend on x (as for the exact posterior)."""

    def __init__(self, d, k):
        super().__init__()
        self.lin = nn.Linear(d, k)
        self.log_scale = nn.Parameter(torch.zeros(k) - 1)

    def forward(self, x):
        loc = self.lin(x)
        return loc, self.log_scale.exp().expand_as(loc)


def exact_log_px(vae, x):
    W, b = vae.decoder.weight, vae.decoder.bias
    s = float(vae.likelihood.scale_mode)
    cov = W @ W.T + s**2 * torch.eye(len(b))
    return torch.distributions.MultivariateNormal(b, cov).log_prob(x)


def exact_posterior(vae, x):
    W, b = vae.decoder.weight, vae.decoder.bias
    s = float(vae.likelihood.scale_mode)
    M = W.T @ W + s**2 * torch.eye(W.shape[1])
    Minv = torch.linalg.inv(M)
    loc = (x - b) @ W @ Minv.T
    return loc, s**2 * Minv


def make_data(n=2000, d=5, k=2, s=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(d, k, generator=g)
    z = torch.randn(n, k, generator=g)
    return z @ W.T + 1.0 + s * torch.randn(n, d, generator=g)


def trained_linear_vae(epochs=60, seed=0):
    x = make_data()
    vae = VAE((5,), 2, likelihood=NormalLikelihood(scale=0.5), encoder=LinearEncoder(5, 2), decoder=nn.Linear(2, 5))
    fit(vae, x, epochs=epochs, batch_size=100, lr=1e-2, progress=False, seed=seed, device="cpu")
    return vae, x


def exact_guide_vae(d=5, k=2, s=0.5, seed=0):
    """A pPCA whose W has orthogonal columns, so p(z | x) is a diagonal Gaussian, with the encoder set
    to that exact posterior: loc = M^-1 W^T (x - b), scale = s / sqrt(diag M), M = W^T W + s^2 I."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, k, generator=g))
    W = q * torch.tensor([2.0, 1.0])[:k]
    b = torch.randn(d, generator=g)
    m = (W * W).sum(0) + s**2
    vae = VAE((d,), k, likelihood=NormalLikelihood(scale=s), encoder=LinearEncoder(d, k), decoder=nn.Linear(k, d))
    with torch.no_grad():
        vae.decoder.weight.copy_(W)
        vae.decoder.bias.copy_(b)
        vae.encoder.lin.weight.copy_(W.T / m[:, None])
        vae.encoder.lin.bias.copy_(-(W.T @ b) / m)
        vae.encoder.log_scale.copy_(torch.log(s / m.sqrt()))
    z = torch.randn(500, k, generator=g)
    return vae, z @ W.T + b + s * torch.randn(500, d, generator=g)
