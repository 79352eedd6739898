import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import MCMC, NUTS, SVI, Predictive, Trace_ELBO
from torch import nn

from ppl_vae.components.networks import ConvDecoder, ConvEncoder
from ppl_vae.registry import ConfigError
from ppl_vae.training.fit import fit
from ppl_vae.kinds import VAE, ConditionalVAE, SemiSupervisedVAE


def binary(n=8, d=16):
    return (torch.rand(n, d) > 0.5).float()


def test_model_and_guide_have_the_same_latent_sites():
    vae = VAE((16,), 3, hidden=(8,))
    x = binary()
    guide = poutine.trace(vae.guide).get_trace(x)
    model = poutine.trace(poutine.replay(vae.model, trace=guide)).get_trace(x)
    latent = lambda tr: {n for n in tr.stochastic_nodes if n != "data"}  # noqa: E731 (the plate is a site too)
    assert latent(guide) == latent(model) == {"z"}
    assert model.nodes["x"]["is_observed"]
    assert model.nodes["z"]["value"].shape == (8, 3)
    assert "data" in {f.name for f in model.nodes["x"]["cond_indep_stack"]}


def test_predictive_and_condition_work():
    vae = VAE((16,), 3, hidden=(8,))
    x = binary()
    post = Predictive(vae.model, guide=vae.guide, num_samples=4, return_sites=["z", "x"])(x)
    assert post["z"].shape == (4, 8, 3)
    prior = Predictive(vae.model, num_samples=2, return_sites=["x"])(x)
    assert prior["x"].shape == (2, 8, 16)
    z = torch.zeros(8, 3)
    tr = poutine.trace(poutine.condition(vae.model, data={"z": z})).get_trace(x)
    assert torch.equal(tr.nodes["z"]["value"], z)


def test_model_with_x_none_generates_and_predictive_draws_new_data():
    torch.manual_seed(0)
    vae = VAE((16,), 3, hidden=(8,))
    x = binary()
    gen = poutine.trace(vae.model).get_trace(None, n=5)
    assert gen.nodes["x"]["value"].shape == (5, 16) and not gen.nodes["x"]["is_observed"]
    prior = Predictive(vae.model, num_samples=3, parallel=True)(None, n=4)
    assert prior["x"].shape == (3, 4, 16) and set(prior["x"].unique().tolist()) <= {0.0, 1.0}
    # posterior predictive: z from the guide, x unobserved (Pyro keeps an observed site's value)
    draws = Predictive(poutine.uncondition(vae.model), guide=vae.guide, num_samples=2000, return_sites=["x", "z"])(x)
    assert draws["x"].shape == (2000, 8, 16) and not torch.equal(draws["x"][0], x)
    probs = torch.sigmoid(vae.decoder(draws["z"]))  # E[x_rep] = E_q(z|x)[sigmoid(decoder(z))]
    assert torch.allclose(draws["x"].mean(0), probs.mean(0), atol=0.06)  # 5 sd of a mean of 2000 draws
    kept = Predictive(vae.model, guide=vae.guide, num_samples=2)(x)["x"]
    assert torch.equal(kept[0], x)  # the documented reason to uncondition
    with pytest.raises(ConfigError, match="n must be left out or equal len"):
        vae.model(x, n=3)


def test_label_aware_models_generate_with_x_none():
    cvae = ConditionalVAE((16,), n_classes=3, latent_dim=2, hidden=(8,))
    y = torch.tensor([0, 2, 1, 1])
    tr = poutine.trace(cvae.model).get_trace(None, y=y)
    assert tr.nodes["x"]["value"].shape == (4, 16) and not tr.nodes["x"]["is_observed"]
    m2 = SemiSupervisedVAE((16,), n_classes=3, latent_dim=2, hidden=(8,))
    tr = poutine.trace(m2.model).get_trace(None, n=6)
    assert tr.nodes["x"]["value"].shape == (6, 16) and tr.nodes["y"]["value"].shape == (6,)
    assert not tr.nodes["y"]["is_observed"]


def test_two_vaes_in_one_process_train_independently():
    a, b = VAE((16,), 3, hidden=(8,)), VAE((16,), 3, hidden=(8,))
    before_b = {k: v.clone() for k, v in b.state_dict().items()}
    before_a = {k: v.clone() for k, v in a.state_dict().items()}
    fit(a, binary(64), epochs=2, batch_size=16, progress=False, device="cpu")
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in before_b.items())
    assert any(not torch.equal(v, a.state_dict()[k]) for k, v in before_a.items())
    assert not set(map(id, a.parameters())) & set(map(id, b.parameters()))


def test_svi_with_pyro_optim_trains_the_vae():
    pyro.clear_param_store()
    vae = VAE((16,), 3, hidden=(8,))
    vae.use_param_store = True
    x = binary(32)
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
    w = vae.decoder.net[0].weight.detach().clone()
    losses = [svi.step(x) for _ in range(30)]
    assert not torch.equal(w, vae.decoder.net[0].weight)
    assert sum(losses[-5:]) < sum(losses[:5])
    pyro.clear_param_store()


def test_nuts_on_one_datums_latent_with_the_decoder_fixed():
    vae = VAE((16,), 2, hidden=(8,))
    for p in vae.parameters():
        p.requires_grad_(False)
    mcmc = MCMC(NUTS(vae.model), num_samples=30, warmup_steps=30, num_chains=1, disable_progbar=True)
    mcmc.run(binary(1))
    assert mcmc.get_samples()["z"].shape == (30, 1, 2)


def test_iaf_posterior_and_conv_networks():
    for size in (28, 64):
        enc = ConvEncoder((1, size, size), 4)
        dec = ConvDecoder(4, (1, size, size))
        vae = VAE((1, size, size), 4, encoder=enc, decoder=dec, posterior="iaf")
        x = (torch.rand(3, 1, size, size) > 0.5).float()
        loss = Trace_ELBO(max_plate_nesting=1).differentiable_loss(vae.model, vae.guide, x)
        loss.backward()
        assert torch.isfinite(loss)
        assert dec(torch.zeros(2, 3, 4)).shape == (2, 3, 1, size, size)


class BadEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(16, 3)

    def forward(self, x):
        return self.lin(x)


def test_a_users_network_is_checked_at_construction():
    with pytest.raises(ConfigError, match=r"encoder must return \(loc, scale\), each of shape \(batch, 3\)"):
        VAE((16,), 3, encoder=BadEncoder())
    with pytest.raises(ConfigError, match=r"decoder returned shape \(3, 2, 10\).*expects \(3, 2, 16\)"):
        VAE((16,), 3, decoder=nn.Linear(3, 10), hidden=(8,))


def test_generate_and_reconstruct_shapes():
    vae = VAE((16,), 3, hidden=(8,))
    assert vae.generate(5).shape == (5, 16)
    assert vae.reconstruct(binary()).shape == (8, 16)
    assert isinstance(vae.encode(binary()), dist.Independent)
