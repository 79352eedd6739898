import pytest
import torch
from torch import nn

from ppl_vae.data.base import ArrayDataset
from ppl_vae.objectives import ELBOObjective
from ppl_vae.registry import ConfigError
from ppl_vae.training.fit import TrainingDiverged, TrainState, fit, resolve_device
from ppl_vae.kinds.vae import VAE


def test_training_on_digits_lowers_the_loss(digits):
    x, _ = digits
    vae = VAE((64,), 4, hidden=(64,))
    history = fit(
        vae,
        ArrayDataset(x[:500], binarize=True),
        val=ArrayDataset(x[500:]).fixed_binarized(),
        epochs=8,
        batch_size=50,
        progress=False,
        device="cpu",
    )
    assert len(history) == 8
    assert history[-1]["train_loss"] < history[0]["train_loss"] - 3
    assert history[-1]["val_elbo"] > history[0]["val_elbo"]


def test_seeded_runs_are_reproducible_and_resume_is_exact(digits):
    x, _ = digits
    data = ArrayDataset(x[:200], binarize=True)

    def run(epochs, state=None, vae=None):
        torch.manual_seed(0)
        vae = vae or VAE((64,), 3, hidden=(16,))
        fit(vae, data, epochs=epochs, batch_size=40, progress=False, seed=7, state=state, device="cpu")
        return vae

    a, b = run(4), run(4)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    # 2 epochs, then resume to 4 from the saved state: same parameters as 4 straight
    state = TrainState()
    torch.manual_seed(0)
    c = VAE((64,), 3, hidden=(16,))
    fit(c, data, epochs=2, batch_size=40, progress=False, seed=7, state=state, device="cpu")
    fit(c, data, epochs=4, batch_size=40, progress=False, seed=7, state=state, device="cpu")
    assert [h["epoch"] for h in state.history] == [1, 2, 3, 4]
    assert all(torch.allclose(p, q, atol=1e-6) for p, q in zip(a.parameters(), c.parameters()))


class PoisonAfter(ELBOObjective):
    """Returns NaN from a given step on."""

    def __init__(self, step):
        super().__init__()
        self.bad_step = step

    def loss(self, vae, x, mask=None, step=0):
        loss = super().loss(vae, x, mask, step)
        return loss * float("nan") if step >= self.bad_step else loss


def test_nan_loss_stops_training_and_keeps_the_last_good_parameters(digits):
    x, _ = digits
    vae = VAE((64,), 3, hidden=(16,))
    epochs_seen = []
    snapshots = []

    def remember(model, state):
        epochs_seen.append(state.epoch)
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})

    with pytest.raises(TrainingDiverged, match=r"epoch 3.*last good epoch \(2\).*train.lr"):
        fit(
            vae,
            ArrayDataset(x[:100], binarize=True),
            objective=PoisonAfter(step=11),
            epochs=5,
            batch_size=20,
            progress=False,
            on_epoch_end=remember,
            device="cpu",
        )
    assert epochs_seen == [1, 2]
    assert all(torch.equal(v, vae.state_dict()[k]) for k, v in snapshots[-1].items())
    assert all(torch.isfinite(p).all() for p in vae.parameters())


def test_device_handling():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_support_is_checked_before_training():
    vae = VAE((4,), 2, hidden=(8,))
    with pytest.raises(ConfigError, match="binary"):
        fit(vae, torch.full((10, 4), 0.5), epochs=1, progress=False)


def test_optimizers_use_torchs_fused_kernel_where_it_has_one():
    from ppl_vae.training.fit import make_optimizer

    params = list(nn.Linear(3, 2).parameters())
    assert make_optimizer(params, "adam").defaults["fused"] is True
    assert make_optimizer(params, "adamw").defaults["fused"] is True
    assert not make_optimizer(params, "adam", fused=False).defaults["fused"]  # an explicit choice is kept
    assert not make_optimizer(params, "rmsprop").defaults.get("fused")  # torch has no fused RMSprop
    # a state saved by the unfused implementation resumes under the fused one
    plain = make_optimizer(params, "adam", fused=False)
    sum(p.sum() for p in params).backward()
    plain.step()
    fused = make_optimizer(params, "adam")
    fused.load_state_dict(plain.state_dict())
    fused.step()
    assert all(torch.isfinite(p).all() for p in params)
