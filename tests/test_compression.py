"""Bits-back compression (ppl_vae.apps.compression, .ppz files, the compress / decompress commands) and
the discretized logistic mixture likelihood: exact round trips for every coded likelihood, the rate
against the negative ELBO, every bad file, refusals, and a decode in another process."""

import json
import math

import numpy as np
import pytest
import torch

import ppl_vae
from ppl_vae import ConfigError
from ppl_vae.apps import ppz
from ppl_vae.apps.compression import LATENT_BITS, coding_likelihoods, compress_with_stats
from ppl_vae.components.discretized import DiscretizedLogisticLikelihood, DiscretizedLogisticMixture

from .clitools import ppl_vae as run_cli

pytest.importorskip("constriction")


def _sigmoid(t):
    return 1.0 / (1.0 + np.exp(-t))


# ---- the discretized logistic mixture ------------------------------------------------------------
def test_discretized_logistic_matches_closed_form_and_sums_to_one():
    g = torch.Generator().manual_seed(1)
    shape = (7, 3)
    logits, loc = torch.randn(*shape, generator=g, dtype=torch.float64), 0.6 * torch.randn(*shape, generator=g, dtype=torch.float64)
    log_scale = torch.randn(*shape, generator=g, dtype=torch.float64) - 2.5
    d = DiscretizedLogisticMixture(logits, loc, log_scale, levels=256)
    values = d.enumerate_support(expand=False)  # (256, 1)
    probs = d.log_prob(values).exp().numpy()  # (256, 7)
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-12)
    # The closed form: CDF differences at the bin edges, the edge bins stretched to -inf and +inf.
    w = torch.softmax(logits, -1).numpy()
    mu, s = loc.numpy(), log_scale.exp().numpy()
    x = np.arange(256.0)[:, None, None]
    c, h = 2 * x / 255 - 1, 1 / 255
    upper = np.where(x == 255, 1.0, _sigmoid((c + h - mu) / s))
    lower = np.where(x == 0, 0.0, _sigmoid((c - h - mu) / s))
    expected = ((upper - lower) * w).sum(-1)
    np.testing.assert_allclose(probs, expected, rtol=1e-9, atol=1e-15)  # the naive form cancels near 1
    # The coder's table: every level at once, by CDF differences.
    np.testing.assert_allclose(d.support_probs().numpy().T, probs, rtol=1e-6, atol=1e-15)


def test_discretized_logistic_is_stable_in_the_tails_and_has_few_outputs():
    loc = torch.tensor([[-40.0], [40.0], [0.0]], dtype=torch.float64)
    d = DiscretizedLogisticMixture(torch.zeros(3, 1, dtype=torch.float64), loc, torch.full((3, 1), -7.0, dtype=torch.float64))
    lp = d.log_prob(d.enumerate_support(expand=False))
    assert torch.isfinite(lp).all()  # far tails: tiny but finite log probabilities, never -inf or NaN
    assert lp[0, 0] > -1e-12 and lp[255, 1] > -1e-12  # all the mass in the edge bins
    np.testing.assert_allclose(lp.exp().sum(0).numpy(), 1.0, atol=1e-12)
    one, mix = DiscretizedLogisticLikelihood(), DiscretizedLogisticLikelihood(components=3)
    assert one.setup((1, 8, 8)).decoder_output_shape() == (2, 8, 8)
    assert mix.setup((64,)).decoder_output_shape() == (9 * 64,)  # 3 per component and entry
    assert bool(one.in_support(torch.tensor([0.0, 255.0])).all()) and not bool(one.in_support(torch.tensor([256.0, 0.5])).any())
    with pytest.raises(ConfigError, match="components"):
        DiscretizedLogisticLikelihood(components=0)


@pytest.mark.parametrize("components", [1, 3])
def test_discretized_logistic_meets_the_likelihood_contract(components):
    lik = DiscretizedLogisticLikelihood(components=components).setup((1, 4, 4))
    params = torch.randn(2, 3, *lik.decoder_output_shape(), requires_grad=True)  # (particles, batch, ...)
    d = lik(params)
    x = torch.randint(0, 256, (3, 1, 4, 4)).float()
    assert tuple(d.event_shape) == (1, 4, 4) and d.sample().shape == (2, 3, 1, 4, 4)
    assert bool(((d.sample() >= 0) & (d.sample() <= 255)).all())
    mask = torch.rand(3, 1, 4, 4) > 0.4
    x_nan = torch.where(mask, x, torch.full_like(x, float("nan")))
    lp = lik(params, mask).log_prob(lik.fill_missing(x_nan, mask))
    full = lik.elementwise(lik.split(params)).log_prob(x)
    assert torch.allclose(lp, (full * mask).flatten(2).sum(-1), atol=1e-4)
    lp.sum().backward()
    assert torch.isfinite(params.grad).all()
    with pytest.raises(ConfigError, match="integer levels 0..255"):
        lik.check_support(x + 0.5)


def test_discretized_logistic_trains_in_a_vae(digits):
    x = torch.round(digits[0][:100] * 16)
    vae = ppl_vae.VAE((64,), 4, likelihood=DiscretizedLogisticLikelihood(components=2, levels=17), hidden=(32,))
    history = ppl_vae.fit(vae, x, epochs=3, batch_size=50, progress=False, trace=False)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert vae.generate(5, mean=False).shape == (5, 64)


# ---- round trips -------------------------------------------------------------------------------
def _random_data(name, rng, n=30, d=12):
    if name == "bernoulli":
        return rng.integers(0, 2, size=(n, d)).astype(np.uint8)
    if name in ("categorical256", "discretized-logistic"):
        return rng.integers(0, 256, size=(n, d)).astype(np.uint8)
    x = rng.poisson(3.0, size=(n, d)).astype(np.int64)
    x[0, 0] = 900  # a count far in the tail
    return x


@pytest.mark.parametrize("name", coding_likelihoods())
def test_round_trip_is_exact_for_every_coded_likelihood(name):
    x = _random_data(name, np.random.default_rng(0))
    vae = ppl_vae.VAE((12,), 3, likelihood=name, hidden=(16,))
    data = ppl_vae.compress(vae, x)
    back = ppl_vae.decompress(vae, data)
    assert back.dtype == x.dtype and back.shape == x.shape and back.tobytes() == x.tobytes()


def test_every_registered_discrete_likelihood_is_covered():
    assert {"bernoulli", "categorical256", "poisson", "negative-binomial", "discretized-logistic"} <= set(coding_likelihoods())


def test_float_input_and_image_shaped_input_come_back_bit_for_bit():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 2, size=(9, 2, 3, 4)).astype(np.float32)  # 24 values per datum, shaped as images
    vae = ppl_vae.VAE((24,), 2, hidden=(8,))
    back = ppl_vae.decompress(vae, ppl_vae.compress(vae, x, latent_bits=6))
    assert back.dtype == np.float32 and back.shape == (9, 2, 3, 4) and back.tobytes() == x.tobytes()


@pytest.fixture(scope="module")
def trained(digits):
    """A VAE trained briefly on binarized digits, and 300 binarized test digits."""
    x = (digits[0] > 0.5).float()
    vae = ppl_vae.VAE((64,), 8, hidden=(64,))
    ppl_vae.fit(vae, x[:500], epochs=10, batch_size=100, progress=False)
    return vae, x[500:].numpy().astype(np.uint8)


def test_real_data_round_trip_and_rate_near_the_negative_elbo(trained):
    vae, x = trained
    data, report = compress_with_stats(vae, x)
    assert ppl_vae.decompress(vae, data).tobytes() == x.tobytes()
    elbo = ppl_vae.iwae_log_likelihood(vae, torch.from_numpy(x).float(), num_samples=200)["elbo"]
    neg_elbo_bpd = float(-elbo.mean()) / (64 * math.log(2))
    # Bits back: the payload's rate is the negative ELBO (plus a little for the latent bins).
    assert report["payload_bits_per_dim"] == pytest.approx(neg_elbo_bpd, rel=0.05)
    assert report["payload_bits_per_dim"] < 1.0  # far below the 1 bit/dim of the raw binary data
    assert report["initial_bits"] <= 32 * (math.ceil((8 * LATENT_BITS + 64) / 32) + 1)  # one datum's latent (and a margin), paid once


# ---- bad files ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def packed(trained):
    vae, x = trained
    return vae, x, ppl_vae.compress(vae, x[:50])


def _one_line(err):
    text = str(err.value)
    assert "\n" not in text and text
    return text


def test_another_models_file_is_refused(packed):
    vae, _, data = packed
    other = ppl_vae.VAE((64,), 8, hidden=(64,))
    with pytest.raises(ppz.PpzError) as err:
        ppl_vae.decompress(other, data)
    assert "another model" in _one_line(err)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda b: b[:-7], "truncated"),
        (lambda b: b[:40], "truncated"),
        (lambda b: b[:3], "not a .ppz"),
        (lambda b: b"", "not a .ppz"),
        (lambda b: b + b"\0\0\0\1", "after its payload"),
        (lambda b: b[:-9] + bytes([b[-9] ^ 0x10]) + b[-8:], "payload is corrupted"),
        (lambda b: b[:30] + bytes([b[30] ^ 0x01]) + b[31:], "header is corrupted"),
        (lambda b: b[:4] + b"\x07\x00" + b[6:], "format version 7"),
        (lambda b: b"PK\x03\x04" + b[4:], "not a .ppz"),
    ],
)
def test_damaged_files_give_one_line_errors(packed, damage, message):
    vae, _, data = packed
    with pytest.raises(ppz.PpzError) as err:
        ppl_vae.decompress(vae, damage(data))
    assert message in _one_line(err)


def test_a_consistent_but_wrong_header_never_returns_wrong_data(packed):
    vae, _, data = packed
    header, words = ppz.unpack(data)
    header.latent_bits -= 1  # re-packed with valid checksums: only the decoder's own checks can tell
    with pytest.raises(ppz.PpzError) as err:
        ppl_vae.decompress(vae, ppz.pack(header, words))
    assert "corrupted" in _one_line(err) or "checksum" in _one_line(err)


# ---- refusals ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make, x, message",
    [
        (lambda: ppl_vae.VAE((4,), 2, likelihood="normal"), np.zeros((3, 4)), "bernoulli, categorical256"),
        (lambda: ppl_vae.VAE((4,), 2, prior="mog"), np.zeros((3, 4)), "factorised Gaussian prior"),
        (lambda: ppl_vae.VAE((4,), 2, posterior="iaf"), np.zeros((3, 4)), "diagonal Gaussian guide"),
        (lambda: ppl_vae.ConditionalVAE((4,), n_classes=2, latent_dim=2), np.zeros((3, 4)), "kinds that can: vae"),
        (lambda: ppl_vae.VAE((4,), 2), np.full((3, 4), 2.0), "binary data"),
        (lambda: ppl_vae.VAE((4,), 2), np.zeros((3, 5)), "4 values per datum"),
        (lambda: ppl_vae.VAE((4,), 2), np.zeros(4), "shaped (n_data"),
        (lambda: ppl_vae.VAE((4,), 2), np.array([[0.0, -0.0, 1.0, 0.0]]), "-0.0"),
    ],
)
def test_models_and_data_that_cannot_be_coded_are_refused(make, x, message):
    with pytest.raises(ConfigError) as err:
        ppl_vae.compress(make(), x)
    assert message in _one_line(err)


# ---- the command line and another process ------------------------------------------------------
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A one-epoch vae-digits run (trained in this process: cheaper than the CLI tests' shared run)."""
    from ppl_vae.runs import load_config, train_run

    out = tmp_path_factory.mktemp("runs") / "digits"
    cfg = load_config("vae-digits", ["train.epochs=1", "eval.iwae_samples=2", "eval.n_test=20"])
    train_run(cfg, out, progress=False, figures=False)
    return out


def _cli(capsys, *args):
    from ppl_vae.cli import main

    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_round_trip_decoded_in_another_process(run_dir, tmp_path, capsys):
    from sklearn.datasets import load_digits

    x = (load_digits().data[:120] > 7).astype(np.uint8).reshape(120, 8, 8)
    np.save(tmp_path / "in.npy", x)
    code, out, _ = _cli(capsys, "compress", run_dir, tmp_path / "in.npy", "--out", tmp_path / "d.ppz", "--json")
    report = json.loads(out)
    assert code == 0 and report["output_bytes"] == (tmp_path / "d.ppz").stat().st_size < x.size / 8
    run_cli("decompress", run_dir, tmp_path / "d.ppz", "--out", tmp_path / "back.npz")  # a fresh process decodes
    back = np.load(tmp_path / "back.npz")["x"]
    assert back.dtype == x.dtype and back.shape == x.shape and np.array_equal(back, x)


def test_a_folder_of_images_compresses_and_decompresses_to_its_levels(tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8), mode="L").save(folder / f"{i}.png")
    run = tmp_path / "run"
    run_cli(
        "train", "vae-digits", "--data", folder, "--out", run, "--no-progress", "--no-figures",
        "--set", "data.options={size = 8}", "--set", "data.preprocess=levels", "--set", "data.val_fraction=0",
        "--set", 'model.likelihood={name = "categorical256"}', "--set", "train.epochs=1", "--set", "eval.iwae_samples=2",
    )  # fmt: skip
    code, _, err = _cli(capsys, "compress", run, folder, "--out", tmp_path / "f.ppz")
    assert code == 0, err
    run_cli("decompress", run, tmp_path / "f.ppz", "--out", tmp_path / "back.npy")
    levels = np.stack([np.asarray(Image.open(folder / f"{i}.png"))[None] for i in range(6)])
    back = np.load(tmp_path / "back.npy")
    assert back.dtype == np.uint8 and np.array_equal(back, levels)


def test_cli_errors_are_one_line_and_leave_no_file(run_dir, tmp_path, capsys):
    grey = np.arange(64 * 3).reshape(3, 64) % 17
    np.save(tmp_path / "grey.npy", grey)
    np.save(tmp_path / "wide.npy", np.zeros((3, 65), dtype=np.uint8))
    (tmp_path / "bad.ppz").write_bytes(b"\x89PPZ\x01\x00\xff\x00\x00\x00")
    cases = [
        (("compress", run_dir, tmp_path / "grey.npy", "--out", tmp_path / "g.ppz"), "binary data"),
        (("compress", run_dir, tmp_path / "wide.npy", "--out", tmp_path / "g.ppz"), "(n, 64)"),
        (("compress", run_dir, tmp_path / "wide.npy", "--out", tmp_path / "g.bin"), ".ppz"),
        (("compress", run_dir, tmp_path / "missing.npy", "--out", tmp_path / "g.ppz"), "not found"),
        (("decompress", run_dir, tmp_path / "bad.ppz", "--out", tmp_path / "o.npz"), "truncated"),
    ]
    for args, message in cases:
        code, _, err = _cli(capsys, *args)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("ppl-vae: error: ") and message in lines[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.ppz", "grey.npy", "wide.npy"]
