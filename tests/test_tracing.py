"""The traced training step replays exactly what the Pyro program computes, or steps aside."""

import json
import shutil

import pyro
import pytest
import torch
from torch import nn

from ppl_vae.data.base import ArrayDataset
from ppl_vae.objectives.disentangled import TCVAEObjective
from ppl_vae.components.likelihoods import NormalLikelihood
from ppl_vae.objectives import ELBOObjective, IWAEObjective
from ppl_vae.training.tracing import MAX_SIGNATURES, TracedLoss
from ppl_vae.training.fit import fit
from ppl_vae.kinds.vae import VAE

X = torch.bernoulli(torch.rand(16, 12, generator=torch.Generator().manual_seed(0)))
MASK = torch.rand(16, 12, generator=torch.Generator().manual_seed(1)) > 0.3


def loss_and_grads(fn, vae, seed):
    pyro.set_rng_seed(seed)
    loss = fn()
    grads = torch.autograd.grad(loss, list(vae.parameters()), allow_unused=True)
    return loss.detach(), grads


CASES = {
    "default": lambda: (VAE((12,), 3, hidden=(8,)), ELBOObjective(), None),
    "vampprior": lambda: (VAE((12,), 3, prior="vamp", hidden=(8,)), ELBOObjective(), None),
    "mixture prior": lambda: (VAE((12,), 3, prior="mixture", hidden=(8,)), ELBOObjective(), None),
    "iaf posterior": lambda: (VAE((12,), 3, posterior="iaf", hidden=(8,)), ELBOObjective(), None),
    "missing entries": lambda: (VAE((12,), 3, hidden=(8,)), ELBOObjective(), MASK),
    "3 particles": lambda: (VAE((12,), 3, hidden=(8,)), ELBOObjective(num_particles=3), None),
    "iwae": lambda: (VAE((12,), 3, hidden=(8,)), IWAEObjective(num_particles=4), None),
    "beta warm-up": lambda: (VAE((12,), 3, hidden=(8,)), ELBOObjective(beta=4.0, schedule="linear", warmup_steps=3), None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_replay_equals_the_pyro_program_in_value_and_gradient(case):
    torch.manual_seed(0)
    vae, objective, mask = CASES[case]()
    traced = TracedLoss(vae, objective)
    with pyro.validation_enabled(False):
        traced(X, mask, step=0)  # records and checks
        for step in (1, 2, 5):
            a, ga = loss_and_grads(lambda: traced(X, mask, step=step), vae, seed=step)
            assert traced.traced, traced.reason
            b, gb = loss_and_grads(lambda: objective.loss(vae, X, mask, step=step), vae, seed=step)
            assert torch.allclose(a, b, rtol=1e-6), (step, a, b)
            assert all(torch.allclose(u, v, rtol=1e-5, atol=1e-7) for u, v in zip(ga, gb) if u is not None)
    assert len(traced.graphs) == 1  # one graph serves every beta of the schedule


def test_a_new_batch_shape_gets_its_own_graph_and_too_many_shapes_run_eagerly():
    vae = VAE((12,), 3, hidden=(8,))
    traced = TracedLoss(vae, ELBOObjective())
    for n in range(2, 2 + MAX_SIGNATURES):
        traced(X[:n])
    assert len(traced.graphs) == MAX_SIGNATURES and traced.traced
    traced(X[:1])
    assert not traced.traced and "input shapes" in traced.reason


def test_fit_gives_the_same_run_traced_or_eager(digits):
    x, _ = digits
    data = ArrayDataset(x[:230], binarize=True)  # 230 = 5 batches of 40 and a last batch of 30: two graphs
    runs = []
    for trace in (True, False):
        torch.manual_seed(0)
        vae = VAE((64,), 3, hidden=(16,), likelihood="bernoulli")
        history = fit(vae, data, epochs=2, batch_size=40, progress=False, seed=3, device="cpu", trace=trace)
        runs.append((vae, history))
    (a, ha), (b, hb) = runs
    assert [h["traced"] for h in ha] == [True, True] and [h["traced"] for h in hb] == [False, False]
    assert [h["train_loss"] for h in ha] == pytest.approx([h["train_loss"] for h in hb], rel=1e-6)
    assert all(torch.allclose(p, q, atol=1e-6) for p, q in zip(a.parameters(), b.parameters()))


class BranchOnData(nn.Module):
    """A model whose structure depends on the data's values: no single graph can stand for it."""

    def __init__(self):
        super().__init__()
        self.vae = VAE((12,), 3, hidden=(8,))

    def model(self, x, mask=None, beta=1.0):
        if x.sum() > 0:  # Python branching on a tensor value
            return self.vae.model(x, mask, beta)
        return self.vae.model(x, mask, beta)

    def guide(self, x, mask=None, beta=1.0):
        return self.vae.guide(x, mask, beta)


class CountsCalls(nn.Module):
    """A guide whose scale depends on Python state that changes every call: a trace would freeze it."""

    def __init__(self):
        super().__init__()
        self.vae, self.calls = VAE((12,), 3, hidden=(8,)), 0

    def model(self, x, mask=None, beta=1.0):
        return self.vae.model(x, mask, beta)

    def guide(self, x, mask=None, beta=1.0):
        self.calls += 1
        loc, scale = self.vae.encoder(x)
        with pyro.plate("data", x.shape[0], dim=-1):
            return pyro.sample("z", pyro.distributions.Normal(loc, scale * self.calls).to_event(1))


@pytest.mark.parametrize("program, why", [(BranchOnData, "could not be traced"), (CountsCalls, "differs")])
def test_programs_a_graph_cannot_stand_for_run_eagerly(program, why):
    torch.manual_seed(0)
    module = program()
    traced = TracedLoss(module, ELBOObjective(), mode=True)
    with pytest.warns(UserWarning, match=why):
        first = traced(X)
    assert not traced.traced and why in traced.reason
    assert torch.isfinite(first)
    pyro.set_rng_seed(4)
    a = traced(X)
    if program is BranchOnData:  # deterministic given the seed: the fallback is the Pyro program itself
        pyro.set_rng_seed(4)
        assert torch.equal(a, ELBOObjective().loss(module, X))


def test_objectives_with_terms_of_their_own_are_not_traced():
    vae = VAE((12,), 3, hidden=(8,))
    traced = TracedLoss(vae, TCVAEObjective(beta=2.0, dataset_size=16))
    traced(X)
    assert not traced.traced and "not a function of" in traced.reason
    off = TracedLoss(vae, ELBOObjective(), mode=False)
    off(X)
    assert not off.traced


def test_a_normal_likelihood_with_learned_scale_traces():
    vae = VAE((12,), 3, hidden=(8,), likelihood=NormalLikelihood(scale="decoder"))
    traced = TracedLoss(vae, ELBOObjective())
    x = torch.randn(16, 12)
    traced(x)
    traced(x)
    assert traced.traced, traced.reason


def test_recorded_graph_drops_identity_ops_and_folds_constants():
    vae = VAE((12,), 3, hidden=(8,))
    traced = TracedLoss(vae, ELBOObjective())
    traced(X)
    graph = next(iter(traced.graphs.values())).graph
    targets = [(n.target, n.args[1:]) for n in graph.nodes if n.op == "call_function"]
    aten = torch.ops.aten
    assert not any(t == aten.lift_fresh_copy.default for t, _ in targets)  # plate sites' zero log-densities folded
    assert not any(
        t in (aten.add.Tensor, aten.sub.Tensor) and a == (0,) or t in (aten.mul.Tensor, aten.div.Tensor) and a == (1,)
        for t, a in targets
    )  # x + 0, x * 1, x / 1 dropped
    assert not any(
        t == aten.view.default and n.args[0].meta["val"].shape == n.meta["val"].shape
        for n in graph.nodes
        if n.op == "call_function"
        for t in [n.target]
    )


def test_an_unknown_trace_mode_is_refused():
    from ppl_vae.registry import ConfigError

    with pytest.raises(ConfigError, match=r"trace must be one of 'auto', True, False, 'compile', got 'fast'"):
        TracedLoss(VAE((12,), 3, hidden=(8,)), ELBOObjective(), mode="fast")
    with pytest.raises(ConfigError, match="trace must be one of"):
        fit(VAE((12,), 3, hidden=(8,)), ArrayDataset(X), epochs=1, progress=False, device="cpu", trace="fast")


def test_the_config_switch_reaches_fit(tmp_path):
    from ppl_vae.config import Config
    from ppl_vae.runs import train_run

    def traced_epochs(trace: bool):
        cfg = Config()
        cfg.train.epochs, cfg.train.trace, cfg.eval.iwae_samples, cfg.eval.n_test = 1, trace, 10, 20
        out = tmp_path / f"run-{trace}"
        train_run(cfg, out, progress=False, figures=False)
        return [json.loads(line)["traced"] for line in (out / "history.jsonl").read_text().splitlines()]

    assert traced_epochs(True) == [True]
    assert traced_epochs(False) == [False]


def _inductor_works() -> bool:
    """Whether this machine can compile anything with inductor (a C++ toolchain and Python headers)."""
    if shutil.which("g++") is None:
        return False
    try:
        return bool(torch.compile(lambda t: t * 2 + 1)(torch.ones(3)).eq(3).all())
    except Exception:  # noqa: BLE001
        return False


@pytest.mark.slow
def test_compiled_graph_matches_the_pyro_program():
    if not _inductor_works():
        pytest.skip("torch.compile cannot build kernels on this machine (no C++ toolchain)")
    torch.manual_seed(0)
    vae, objective = VAE((12,), 3, hidden=(8,)), ELBOObjective(beta=2.0, schedule="linear", warmup_steps=4)
    traced = TracedLoss(vae, objective, mode="compile")
    traced(X, step=0)  # records, compiles (forward and backward) and checks against the Pyro program
    assert traced.traced, traced.reason
    for step in (1, 3, 6):
        a, ga = loss_and_grads(lambda: traced(X, step=step), vae, seed=step)
        assert traced.traced
        b, gb = loss_and_grads(lambda: objective.loss(vae, X, step=step), vae, seed=step)
        assert torch.allclose(a, b, rtol=1e-5), (step, a, b)  # same random draws; fused kernels round differently
        assert all(torch.allclose(u, v, rtol=1e-4, atol=1e-6) for u, v in zip(ga, gb))


def test_changing_a_python_side_setting_records_a_new_graph():
    torch.manual_seed(0)
    x = torch.rand(16, 12)
    vae = VAE((12,), 3, likelihood=NormalLikelihood(scale="feature", min_scale=1e-3), hidden=(8,))
    objective = ELBOObjective()
    traced = TracedLoss(vae, objective)
    with pyro.validation_enabled(False):
        traced(x, None, step=0)
        for setting in (0.5, 2.0):  # the minimum scale is a Python float the graph bakes in
            vae.likelihood.min_scale = setting
            a, _ = loss_and_grads(lambda: traced(x, None, step=1), vae, seed=3)
            b, _ = loss_and_grads(lambda: objective.loss(vae, x, None, step=1), vae, seed=3)
            assert traced.traced and torch.allclose(a, b, rtol=1e-6), (setting, a, b)
        objective.num_particles = 2  # an objective's setting is part of the key too
        traced(x, None, step=2)
    assert len(traced.graphs) == 4


def test_a_failing_replay_falls_back_to_the_pyro_program_with_one_warning():
    vae = VAE((12,), 3, hidden=(8,))
    objective = ELBOObjective()
    traced = TracedLoss(vae, objective)

    def broken(*args):
        raise RuntimeError("replay broke")

    with pyro.validation_enabled(False):
        traced(X, None, step=0)
        assert traced.traced
        for key in traced.graphs:
            traced.graphs[key] = broken
        with pytest.warns(UserWarning, match="eagerly from now on.*replay failed \\(RuntimeError: replay broke\\)") as caught:
            a, _ = loss_and_grads(lambda: traced(X, None, step=1), vae, seed=1)
            for step in (2, 3):
                traced(X, None, step=step)
    assert len([w for w in caught if "eagerly" in str(w.message)]) == 1
    assert not traced.traced and "replay failed" in traced.reason
    b, _ = loss_and_grads(lambda: objective.loss(vae, X, None, step=1), vae, seed=1)
    assert torch.allclose(a, b)


def test_a_verification_replay_that_raises_is_caught(monkeypatch):
    vae = VAE((12,), 3, hidden=(8,))
    traced = TracedLoss(vae, ELBOObjective())
    monkeypatch.setattr(traced, "_record", lambda *args: lambda *a: (_ for _ in ()).throw(ValueError("bad graph")))
    with pyro.validation_enabled(False), pytest.warns(UserWarning, match="its replay raised ValueError: bad graph"):
        loss = traced(X, None, step=0)
    assert torch.isfinite(loss) and not traced.traced and not traced.graphs


def test_recording_leaves_no_fake_tensors_in_a_module_reached_twice():
    from torch._subclasses.fake_tensor import FakeTensor

    vae = VAE((12,), 3, prior="vamp", hidden=(8,))  # the VampPrior holds the encoder as well
    traced = TracedLoss(vae, ELBOObjective())
    with pyro.validation_enabled(False):
        traced(X, None, step=0)
    assert traced.traced, traced.reason
    tensors = [t for m in vae.modules() for t in [*m._parameters.values(), *m._buffers.values()] if t is not None]
    assert tensors and not any(isinstance(t, FakeTensor) for t in tensors)
