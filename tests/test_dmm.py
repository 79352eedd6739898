"""The sequence kinds (deep Markov model ``dmm``, LSTM baseline ``rnn``) and their data, on tiny
generated sequences (no chorales needed), plus the chorale reader and MIDI files where music21 is
installed."""

import importlib.util
import json

import numpy as np
import pyro
import pytest
import torch
from pyro import poutine

from ppl_vae.config import Config, DataConfig
from ppl_vae.data import load_data
from ppl_vae.data.base import ArrayDataset
from ppl_vae.data.sequences import load_sequences_raw, pad_sequences, piano_roll
from ppl_vae.evaluation.likelihood import iwae_log_likelihood
from ppl_vae.kinds import seqtools
from ppl_vae.kinds.dmm import DMM
from ppl_vae.kinds.rnn import RNNSequenceModel
from ppl_vae.objectives.elbo import ELBOObjective
from ppl_vae.registry import ConfigError
from ppl_vae.runs import evaluate_run, sample_run, train_run

HAS_MUSIC21 = importlib.util.find_spec("music21") is not None
D = 6


def random_rolls(n=12, seed=0, low=2, high=9):
    rng = np.random.default_rng(seed)
    return [(rng.random((int(rng.integers(low, high)), D)) < 0.3).astype(np.float32) for _ in range(n)]


def dataset(seqs, length=None):
    x = pad_sequences(seqs, length)
    m = ~np.isnan(x)
    return ArrayDataset(torch.from_numpy(np.nan_to_num(x)), mask=torch.from_numpy(m))


def tiny_dmm(data, iaf=0):
    torch.manual_seed(0)
    return DMM(tuple(data.shape), D, z_dim=3, transition_dim=8, emission_dim=8, rnn_dim=8, iaf=iaf, iaf_dim=8)


# ---- data -------------------------------------------------------------------------------------


def test_sequence_file_round_trip_pads_with_a_mask(tmp_path):
    seqs = random_rolls(10)
    path = tmp_path / "rolls.npz"
    np.savez(path, *seqs)
    raw = load_sequences_raw(str(path))
    assert raw.train_x.shape == (10, max(len(s) for s in seqs), D) and raw.meta["binary"] and raw.meta["padded"]
    for s, row in zip(seqs, raw.train_x):  # arr_0, arr_1, ... in numeric order, NaN after the end
        assert np.array_equal(row[: len(s)], s) and np.isnan(row[len(s) :]).all()
    splits = load_data(DataConfig(name="sequences", path=str(path), preprocess="none", flatten=False, val_fraction=0.0))
    steps = sorted(int(n) for part in (splits.train, splits.test) for n in seqtools.lengths(part, D))
    assert steps == sorted(len(s) for s in seqs) and splits.spec.meta["features"] == D
    assert not torch.isnan(splits.train.x[splits.train.mask]).any()


@pytest.mark.parametrize(
    "arrays, message",
    [
        ([np.zeros((3, 4)), np.zeros((2, 5))], "ragged feature dimensions"),
        ([np.zeros(4)], "T_i x D"),
        ([np.array([[np.nan, 1.0]])], "NaN"),
        ([np.array([["a", "b"]])], "T_i x D"),
    ],
)
def test_bad_sequence_files_are_one_line_errors(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, *arrays)
    with pytest.raises(ConfigError, match=message) as err:
        load_sequences_raw(str(path))
    assert "\n" not in str(err.value)


def test_missing_and_empty_sequence_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_sequences_raw(str(tmp_path / "nope.npz"))
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(ConfigError, match="empty"):
        load_sequences_raw(str(tmp_path / "empty.npz"))
    np.save(tmp_path / "one.npy", np.zeros((3, 2)))
    with pytest.raises(ConfigError, match="one array"):
        load_sequences_raw(str(tmp_path / "one.npy"))


def test_piano_roll_samples_the_notes_sounding_at_each_beat():
    # (onset, end, MIDI pitch): a half note C4, an eighth D4 between beats (not sounding at a beat), a tied E4
    roll = piano_roll([(0.0, 2.0, 60), (2.5, 3.0, 62), (1.0, 2.0, 64), (2.0, 4.0, 64), (0.0, 1.0, 200)])
    assert roll.shape == (4, 88)
    on = {(t, k + 21) for t, k in zip(*np.nonzero(roll))}
    assert on == {(0, 60), (1, 60), (1, 64), (2, 64), (3, 64)}


# ---- the models --------------------------------------------------------------------------------


def test_padding_changes_neither_loss_nor_likelihood():
    seqs = random_rolls(5)
    short, long = dataset(seqs), dataset(seqs, length=15)
    long.x[~long.mask] = 1.0  # garbage in the padding must not matter
    dmm = tiny_dmm(short)
    big = DMM(tuple(long.shape), D, z_dim=3, transition_dim=8, emission_dim=8, rnn_dim=8)
    big.load_state_dict(dmm.state_dict())
    losses = []
    for model, data in ((dmm, short), (big, long)):
        pyro.set_rng_seed(3)
        losses.append(ELBOObjective().loss(model, data.x, data.mask))
    assert torch.allclose(losses[0], losses[1])
    rnn = RNNSequenceModel(tuple(long.shape), D, hidden_dim=8)
    together = rnn.log_likelihood(long.x, long.mask)
    alone = torch.cat([rnn.log_likelihood(*dataset([s]).subset(slice(0, 1)).batches(1, shuffle=False).__next__()) for s in seqs])
    assert torch.allclose(together, alone, atol=1e-5)


def test_the_rnn_loss_is_the_exact_negative_log_likelihood():
    data = dataset(random_rolls(4))
    rnn = RNNSequenceModel(tuple(data.shape), D, hidden_dim=8)
    x, m = seqtools.as_steps(data.x, data.mask, D)
    inputs = torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], 1)
    p = torch.sigmoid(rnn.out(rnn.lstm(inputs)[0]))
    by_hand = -((x * p.log() + (1 - x) * (1 - p).log()).sum(-1) * m).sum()
    assert torch.allclose(ELBOObjective().loss(rnn, data.x, data.mask), by_hand, rtol=1e-5)


@pytest.mark.parametrize("iaf", [0, 1])
def test_iwae_bound_is_above_the_elbo_from_the_same_draws(iaf):
    data = dataset(random_rolls(6))
    dmm = tiny_dmm(data, iaf)
    pyro.set_rng_seed(0)
    est = iwae_log_likelihood(dmm, data, num_samples=20)
    assert torch.isfinite(est["log_px"]).all() and (est["log_px"] >= est["elbo"] - 1e-5).all()
    assert (est["log_px"] > est["elbo"]).any()


def test_kl_annealing_scales_every_latent_site_in_model_and_guide():
    data = dataset(random_rolls(4))
    dmm = tiny_dmm(data)
    guide = poutine.trace(dmm.guide).get_trace(data.x, data.mask, beta=0.3)
    model = poutine.trace(poutine.replay(dmm.model, trace=guide)).get_trace(data.x, data.mask, beta=0.3)
    for trace in (guide, model):
        z_sites = [s for name, s in trace.nodes.items() if name.startswith("z_")]
        assert len(z_sites) == int(data.mask[..., 0].sum(1).max()) and all(s["scale"] == 0.3 for s in z_sites)
    assert model.nodes["x"]["scale"] == 1.0
    # the loss is affine in beta for fixed draws: reconstruction + beta * (log q - log p)
    losses = []
    for beta in (0.25, 0.5, 0.75):
        pyro.set_rng_seed(1)
        losses.append(ELBOObjective().loss_at(dmm, data.x, data.mask, beta))
    assert torch.allclose(losses[1], (losses[0] + losses[2]) / 2, rtol=1e-5)
    # the linear schedule's beta reaches the sites: step 0 of a warm-up from 0.01
    objective = ELBOObjective(schedule="linear", warmup_steps=10, start=0.01)
    assert objective.beta(0) == pytest.approx(0.01) and objective.beta(10) == pytest.approx(1.0)


@pytest.mark.parametrize("cls", [DMM, RNNSequenceModel])
def test_generation_with_x_none_has_the_asked_shape(cls):
    data = dataset(random_rolls(3))
    module = tiny_dmm(data) if cls is DMM else RNNSequenceModel(tuple(data.shape), D, hidden_dim=8)
    x = module.model(None, T=7, n=3)
    assert x.shape == (3, 7, D) and set(x.unique().tolist()) <= {0.0, 1.0}


def test_marginal_baseline_matches_a_hand_count():
    train = dataset([np.array([[1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0]], np.float32), np.ones((1, D), np.float32)])
    test = dataset([np.array([[1, 0, 0, 0, 0, 1]], np.float32)])
    p = (np.array([3, 2, 1, 1, 1, 1]) + 1) / (3 + 2)  # on-steps per key over 3 training steps, add-one smoothed
    x = np.array([1, 0, 0, 0, 0, 1])
    hand = -(x * np.log(p) + (1 - x) * np.log(1 - p)).sum()
    assert seqtools.marginal_baseline(train, test, D)["marginal_nll_per_step"] == pytest.approx(hand)


def test_reverse_within_length_is_an_involution_that_keeps_padding():
    h = torch.arange(10.0).reshape(2, 5, 1)
    m = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    r = seqtools.reverse_within_length(h, m)
    assert r[0, :, 0].tolist() == [2, 1, 0, 3, 4] and r[1, :, 0].tolist() == [9, 8, 7, 6, 5]
    assert torch.equal(seqtools.reverse_within_length(r, m), h)


# ---- the run layer, figures and MIDI -----------------------------------------------------------


def tiny_config(path, kind):
    cfg = Config()
    cfg.data = DataConfig(name="sequences", path=str(path), preprocess="none", flatten=False, val_fraction=0.2)
    cfg.model.kind = kind
    cfg.model.latent_dim = 3
    cfg.model.encoder = {"name": "dmm-combiner", "rnn_dim": 8} if kind == "dmm" else {}
    cfg.model.decoder = {"name": "dmm-emitter", "transition_dim": 8, "emission_dim": 8} if kind == "dmm" else {"hidden_dim": 8}
    cfg.objective = {"name": "elbo", "schedule": "linear", "warmup_steps": 4, "start": 0.1}
    cfg.train.epochs, cfg.train.batch_size, cfg.train.device, cfg.train.trace = 2, 8, "cpu", False
    cfg.eval.iwae_samples = 5
    return cfg


@pytest.mark.parametrize("kind", ["dmm", "rnn"])
def test_train_evaluate_and_sample_through_the_run_layer(tmp_path, kind):
    path = tmp_path / "rolls.npz"
    np.savez(path, *random_rolls(20))
    metrics = train_run(tiny_config(path, kind), tmp_path / "run", progress=False)
    assert metrics["nll_per_step"] > 0 and metrics["marginal_nll_per_step"] > 0 and "bits_per_dim" not in metrics
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["steps"] == metrics["steps"]
    figures = {p.stem for p in (tmp_path / "run" / "figures").glob("*.png")}
    assert {"samples", "loss_curves"} <= figures and ("latent_trajectory" in figures) == (kind == "dmm")
    again = evaluate_run(tmp_path / "run")
    assert again["steps"] == metrics["steps"] and np.isfinite(again["nll_per_step"])
    if HAS_MUSIC21:
        assert sample_run(tmp_path / "run", n=2).is_file()
        assert sorted(p.name for p in (tmp_path / "run" / "samples").glob("*.mid")) == ["sample-1.mid", "sample-2.mid"]


@pytest.mark.parametrize("name", ["dmm", "rnn"])
def test_sequence_kinds_refuse_data_that_are_not_sequences(name):
    from ppl_vae.data.spec import DataSpec
    from ppl_vae.kinds import kind

    with pytest.raises(ConfigError, match="sequence data") as err:
        kind(name).build(Config().model, DataSpec("digits", shape=(64,), meta={"image_shape": [1, 8, 8]}))
    assert "\n" not in str(err.value)
    cfg = Config()
    cfg.model.decoder = {"name": "lstm", "hiden": 8}
    with pytest.raises(ConfigError, match="no setting 'hiden'"):
        kind("rnn").build(cfg.model, DataSpec("sequences", shape=(5, D), meta={"sequence": True, "features": D}))


@pytest.mark.skipif(not HAS_MUSIC21, reason="music21 is not installed")
def test_midi_file_is_written_and_read_back(tmp_path):
    roll = np.zeros((12, 88), np.uint8)
    roll[0:4, 39] = roll[2:3, 43] = roll[5:12, 46] = roll[6:8, 50] = 1
    path = seqtools.write_midi(roll, tmp_path / "a.mid")
    assert path.is_file() and not list(tmp_path.glob("*.tmp*"))
    assert np.array_equal(seqtools.read_midi(path, steps=12), roll)


@pytest.mark.skipif(not HAS_MUSIC21, reason="music21 is not installed")
def test_musicxml_reader_agrees_with_music21(tmp_path):
    from music21 import converter

    from ppl_vae.data.sequences import chorale_files, convert_chorale

    for f in chorale_files()[:2]:
        score = converter.parse(str(f)).stripTies().flatten()
        notes = [(float(n.offset), float(n.offset + n.duration.quarterLength), int(p.midi)) for n in score.notes for p in n.pitches]
        assert np.array_equal(convert_chorale(f), piano_roll(notes))


def test_chorales_without_music21_is_a_one_line_error(monkeypatch):
    import sys

    from ppl_vae.data.sequences import load_chorales_raw

    monkeypatch.setitem(sys.modules, "music21", None)  # import music21 now raises ImportError
    with pytest.raises(ConfigError, match="pip install music21") as err:
        load_chorales_raw()
    assert "\n" not in str(err.value)


def test_chorale_split_is_fixed_disjoint_and_a_fifth():
    from ppl_vae.data.sequences import chorale_split

    names = [f"bwv{i}.mxl" for i in range(410)]
    train, test = chorale_split(names)
    assert len(test) == 82 and not set(train) & set(test) and sorted(train + test) == sorted(names)
    assert chorale_split(names) == (train, test)


def test_flattened_sequences_give_the_same_loss(tmp_path):
    path = tmp_path / "rolls.npz"
    np.savez(path, *random_rolls(8))
    cfg = dict(name="sequences", path=str(path), preprocess="none", val_fraction=0.0)
    flat, steps = (load_data(DataConfig(flatten=f, **cfg)).train for f in (True, False))
    assert flat.x.dim() == 2 and flat.mask.shape == flat.x.shape
    dmm = tiny_dmm(steps)
    losses = []
    for data in (flat, steps):
        pyro.set_rng_seed(0)
        losses.append(ELBOObjective().loss(dmm, data.x, data.mask))
    assert torch.allclose(losses[0], losses[1])
