"""What a researcher expects of the training loop: plain lines in logs, early stopping, torch LR
schedules, gradient clipping, best and last checkpoints, likelihood scales started from the data."""

import math

import pytest
import torch

from ppl_vae import VAE, ConfigError, fit, load
from ppl_vae.components.likelihoods import LaplaceLikelihood, NormalLikelihood, StudentTLikelihood
from ppl_vae.runs import load_config, train_run
from ppl_vae.training.checkpoint import load_checkpoint, save_checkpoint
from ppl_vae.training.fit import TrainState
from ppl_vae.training.lr_schedules import best_epoch

G = torch.Generator().manual_seed(0)
X = (torch.rand(96, 12, generator=G) > 0.5).float()
V = (torch.rand(32, 12, generator=G) > 0.5).float()


def vae():
    torch.manual_seed(0)
    return VAE((12,), 2, hidden=(8,))


def test_without_a_terminal_each_epoch_is_one_plain_line(capsys):
    fit(vae(), X, val=V, epochs=3, batch_size=32, progress=True)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert [ln.split()[1] for ln in lines] == ["1/3", "2/3", "3/3"], err
    assert all("loss" in ln and "val ELBO" in ln and "lr 0.001" in ln for ln in lines) and "\r" not in err


def test_early_stopping_waits_patience_epochs_after_the_best_and_stays_stopped_on_resume():
    model, state = vae(), TrainState()
    # a rise of 1e9 nats never happens: the first epoch stays the best, so 2 epochs later training stops
    history = fit(model, X, val=V, epochs=10, batch_size=32, progress=False, patience=2, min_delta=1e9, state=state)
    assert [r["epoch"] for r in history] == [1, 2, 3] and best_epoch(history, 1e9) == 1
    again = fit(model, X, val=V, epochs=10, batch_size=32, progress=False, patience=2, min_delta=1e9, state=state)
    assert len(again) == 3
    assert len(fit(vae(), X, val=V, epochs=4, batch_size=32, progress=False, patience=2)) == 4  # improving: no stop


def test_cosine_schedule_follows_its_closed_form_and_plateau_halves_a_stalled_rate():
    history = fit(vae(), X, epochs=4, batch_size=32, progress=False, lr=0.01, lr_schedule={"name": "cosine", "eta_min": 0.001})
    expected = [0.001 + 0.009 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)]
    assert [r["lr"] for r in history] == pytest.approx(expected, rel=1e-9)
    stalled = {"name": "plateau", "factor": 0.5, "patience": 0, "threshold": 1e9, "threshold_mode": "abs"}
    history = fit(vae(), X, val=V, epochs=4, batch_size=32, progress=False, lr_schedule=stalled)
    assert [r["lr"] for r in history] == pytest.approx([1e-3, 1e-3, 5e-4, 2.5e-4])


def test_a_resumed_schedule_continues_where_it_stopped(tmp_path):
    schedule = {"name": "step", "step_size": 1, "gamma": 0.5}
    straight = vae()
    full = fit(straight, X, epochs=4, batch_size=32, progress=False, lr_schedule=schedule, seed=1)
    half, state = vae(), TrainState()
    fit(half, X, epochs=2, batch_size=32, progress=False, lr_schedule=schedule, state=state, seed=1)
    save_checkpoint(tmp_path / "c.pt", half, {}, state)
    payload = load_checkpoint(tmp_path / "c.pt")
    resumed = TrainState(
        payload["epoch"], payload["step"], payload["optimizer"], payload["objective"], payload["history"], payload["scheduler"]
    )
    rest = fit(half, X, epochs=4, batch_size=32, progress=False, lr_schedule=schedule, state=resumed, seed=1)
    assert [r["lr"] for r in rest] == [r["lr"] for r in full] == pytest.approx([1e-3, 5e-4, 2.5e-4, 1.25e-4])
    assert all(torch.equal(a, b) for a, b in zip(half.state_dict().values(), straight.state_dict().values()))


def test_a_bad_schedule_is_a_one_line_error_naming_what_is_accepted():
    with pytest.raises(ConfigError, match="no argument 'step'.*did you mean 'step_size'.*accepts: step_size, gamma"):
        fit(vae(), X, epochs=1, progress=False, lr_schedule={"name": "step", "step": 2})
    with pytest.raises(ConfigError, match="name must be one of: step, multistep, exponential, cosine, plateau"):
        fit(vae(), X, epochs=1, progress=False, lr_schedule={"name": "warm"})
    with pytest.raises(ConfigError, match="'plateau' follows the validation ELBO"):
        fit(vae(), X, epochs=1, progress=False, lr_schedule={"name": "plateau"})


def test_gradient_clipping_bounds_each_step_by_the_clip_norm():
    for clip, bound in ((1e-3, 1e-3 * (1 + 1e-4)), (None, None)):
        model = vae()
        before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        fit(model, X, epochs=1, batch_size=96, optimizer="sgd", lr=1.0, progress=False, clip_grad=clip)
        moved = float((torch.cat([p.detach().flatten() for p in model.parameters()]) - before).norm())
        assert moved <= bound if bound else moved > 0.05  # SGD with lr 1: the step is the (clipped) gradient


@pytest.mark.parametrize(
    "likelihood, spread",
    [
        (NormalLikelihood(scale="feature"), lambda x: x.std(0, unbiased=False)),
        (NormalLikelihood(scale="shared"), lambda x: x.std(unbiased=False).expand(12)),
        (LaplaceLikelihood(scale="feature"), lambda x: (x - x.median(0).values).abs().mean(0)),
        (StudentTLikelihood(df=5.0, scale="feature"), lambda x: x.std(0, unbiased=False) * math.sqrt(3 / 5)),
    ],
)
def test_learned_likelihood_scales_start_from_the_data(likelihood, spread):
    x = torch.rand(200, 12, generator=torch.Generator().manual_seed(3)) * torch.linspace(0.1, 1.0, 12)
    torch.manual_seed(0)
    model = VAE((12,), 2, likelihood=likelihood, hidden=(8,))
    fit(model, x, epochs=1, batch_size=200, lr=1e-9, progress=False)  # the first step sets the scale
    scale = likelihood.scale([torch.zeros(12)])
    assert torch.allclose(scale, spread(x), rtol=1e-4)
    likelihood.log_scale.data.fill_(0.3)  # a trained scale is never reset
    fit(model, x, epochs=2, batch_size=200, lr=1e-9, progress=False)
    assert torch.allclose(likelihood.log_scale, torch.full_like(likelihood.log_scale, 0.3), atol=1e-6)


def test_a_run_keeps_best_and_last_and_can_be_evaluated_at_its_best(tmp_path):
    cfg = load_config(
        "vae-digits",
        ["data.limit=200", "train.epochs=3", "train.min_delta=1e9", "train.evaluate=best", "eval.iwae_samples=5", "eval.n_test=50"],
    )
    metrics = train_run(cfg, tmp_path / "run", progress=False, figures=False)
    assert metrics["best_epoch"] == 1 and metrics["evaluated_epoch"] == 1 and metrics["epochs"] == 3
    assert load_checkpoint(tmp_path / "run" / "best.pt")["epoch"] == 1
    assert load(tmp_path / "run", checkpoint="best").payload["epoch"] == 1
    assert load(tmp_path / "run").payload["epoch"] == 3
