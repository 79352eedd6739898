"""A distributed training worker for tests/test_distributed.py, started by torchrun:

    python -m torch.distributed.run --nproc_per_node 2 tests/ddp_worker.py OUT_DIR

Trains the problem below with ``fit`` and saves each rank's parameters to OUT_DIR/rank{R}.pt.
The guide is a point mass (Delta) at the encoder's mean, so the loss has no Monte Carlo noise and a
distributed run must reproduce a single-process run with the same global batch to float precision.
"""

import sys
from pathlib import Path

import pyro.distributions as dist
import torch
from torch import nn

EPOCHS, GLOBAL_BATCH, LR = 3, 40, 1e-2


class PointMass(nn.Module):
    def forward(self, loc, scale):
        return dist.Delta(loc, event_dim=1)


def make_problem():
    from ppl_vae.components.likelihoods import NormalLikelihood
    from ppl_vae.kinds.vae import VAE

    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 6, generator=g) @ torch.randn(6, 6, generator=g)
    torch.manual_seed(0)
    vae = VAE((6,), 2, likelihood=NormalLikelihood(scale=1.0), posterior=PointMass(), hidden=(16,))
    return vae, x


def train(vae, x):
    from ppl_vae.training.fit import fit

    return fit(vae, x, epochs=EPOCHS, batch_size=GLOBAL_BATCH, lr=LR, device="cpu", seed=0, progress=False)


if __name__ == "__main__":
    from ppl_vae.training import distributed

    distributed.init_from_env(timeout_s=120)
    vae, x = make_problem()
    history = train(vae, x)
    out = Path(sys.argv[1])
    torch.save(
        {"params": vae.state_dict(), "history": history, "world": distributed.world_size()}, out / f"rank{distributed.rank()}.pt"
    )
    distributed.shutdown()
