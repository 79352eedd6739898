"""Errors a user can act on: a misspelt argument of any registered component names the accepted ones,
and a custom network that breaks the contract is rejected when the model is built, with both shapes."""

import pytest
import torch
from torch import nn

from ppl_vae import VAE
from ppl_vae.kinds import build_component
from ppl_vae.registry import DECODERS, ENCODERS, GUIDES, LIKELIHOODS, OBJECTIVES, PRIORS, ConfigError

CASES = [  # (registry, recipe key, name, a misspelt argument, the argument meant)
    (PRIORS, "model.prior", "mixture", "kk", "k"),
    (LIKELIHOODS, "model.likelihood", "normal", "scal", "scale"),
    (ENCODERS, "model.encoder", "mlp", "hiden", "hidden"),
    (DECODERS, "model.decoder", "mlp", "hiden", "hidden"),
    (GUIDES, "model.posterior", "iaf", "num_flow", "num_flows"),
    (OBJECTIVES, "objective", "iwae", "num_particle", "num_particles"),
]


@pytest.mark.parametrize("registry,key,name,typo,meant", CASES, ids=[c[1] for c in CASES])
def test_a_misspelt_argument_names_the_accepted_ones(registry, key, name, typo, meant):
    from ppl_vae.registry import accepted_arguments

    with pytest.raises(ConfigError) as err:
        build_component(
            registry,
            {"name": name, typo: 1},
            key,
            **(
                {"data_shape": (4,), "latent_dim": 2}
                if registry is ENCODERS
                else {"latent_dim": 2, "out_shape": (4,)}
                if registry is DECODERS
                else {}
            ),
        )
    message = str(err.value)
    accepted = accepted_arguments(registry.get(name))
    if accepted is None:  # a factory that takes **kwargs passes them on: the receiving class names the problem
        assert typo in message
    else:
        assert f"has no argument '{typo}' (did you mean '{meant}'?)" in message
        assert f"it accepts: {', '.join(accepted)}" in message


class WrongEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(4, 3)

    def forward(self, x):
        return self.net(x), torch.ones(len(x), 3)


class WrongDecoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(2, 5)

    def forward(self, z):
        return self.net(z)


def test_a_custom_network_with_the_wrong_output_shape_is_rejected_when_the_model_is_built():
    with pytest.raises(
        ConfigError,
        match=r"the encoder's loc has shape \(2, 3\) for a batch of 2; expected \(loc, "
        r"scale\), each of shape \(batch, 2\)",
    ):
        VAE((4,), 2, encoder=WrongEncoder())
    with pytest.raises(
        ConfigError,
        match=r"the decoder returned shape \(3, 2, 5\) for z of shape \(3, 2, 2\); the "
        r"likelihood expects \(3, 2, 4\)",
    ):
        VAE((4,), 2, decoder=WrongDecoder())


def test_importing_the_library_leaves_the_matplotlib_backend_alone():
    import subprocess
    import sys

    code = (
        "import matplotlib; matplotlib.use('module://matplotlib_inline.backend_inline'); "
        "import ppl_vae, ppl_vae.plots, ppl_vae.runs, ppl_vae.diagnostics, ppl_vae.kinds; "
        "print(matplotlib.get_backend())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "module://matplotlib_inline.backend_inline"
