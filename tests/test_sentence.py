"""The sentence VAE, its LSTM LM baseline and the text data source, on tiny generated sentences
(the core is tested without the fortunes corpus; the recipes are covered by tests/test_recipes.py)."""

import math

import pyro
import pytest
import torch
from pyro import poutine

from ppl_vae.components.text import free_bits_penalty, kl_to_standard_normal, reverse_within_length, word_dropout
from ppl_vae.config import Config
from ppl_vae.data import load_data
from ppl_vae.data.text import BOS, EOS, PAD, UNK, decode, detokenize, encode, load_text_raw, tokenize
from ppl_vae.evaluation.importance_weights import log_importance_weights
from ppl_vae.evaluation.text import sentence_report
from ppl_vae.kinds.sentence import LanguageModel, SentenceVAE
from ppl_vae.objectives.elbo import ELBOObjective
from ppl_vae.registry import ConfigError
from ppl_vae.runs import load_run, sample_run, train_run

V, L = 12, 7  # vocabulary (4 specials + 8 words) and padded length (6 words + <eos>)


def sentences(n=6, seed=0):
    """n random sentences of 1..6 words, ids (n, L) as floats: words, <eos>, <pad>..."""
    g = torch.Generator().manual_seed(seed)
    x = torch.full((n, L), float(PAD))
    for i in range(n):
        k = int(torch.randint(1, L, (1,), generator=g))
        x[i, :k] = torch.randint(4, V, (k,), generator=g).float()
        x[i, k] = EOS
    return x


def small_vae(**kw):
    torch.manual_seed(0)
    return SentenceVAE(V, L, latent_dim=3, embed_dim=8, hidden=16, **kw)


def log_weights(module, x, k=1):
    pyro.set_rng_seed(1)
    return log_importance_weights(module.model, module.guide, x, None, num_samples=k)


@pytest.mark.parametrize("make", [small_vae, lambda: LanguageModel(V, L, embed_dim=8, hidden=16)])
def test_padding_does_not_change_the_log_weights(make):
    module = make().eval()
    x = sentences()
    wider = torch.cat([x, torch.full((len(x), 5), float(PAD))], 1)  # five more columns of padding
    longer = type(module)(V, L + 5, **_sizes(module)).eval()
    longer.load_state_dict(module.state_dict())
    assert torch.allclose(log_weights(module, x, 4), log_weights(longer, wider, 4), atol=1e-4)


def _sizes(module):
    d = module.decoder
    sizes = {"embed_dim": d.embed.embedding_dim, "hidden": d.hidden}
    return {**sizes, "latent_dim": module.latent_dim} if module.latent_dim else sizes


def test_the_likelihood_is_a_masked_categorical_over_words_and_eos():
    module = LanguageModel(V, L, embed_dim=8, hidden=16).eval()
    x = sentences()
    tr = poutine.trace(module.model).get_trace(x)
    site = tr.nodes["x"]
    lp = site["fn"].log_prob(site["value"])
    logits = module.decoder(module.decoder_inputs(x.long()))
    per_pos = torch.log_softmax(logits, -1).gather(-1, x.long().unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(lp, (per_pos * (x != PAD)).sum(1), atol=1e-5)
    # the mask also takes an explicit mask: hiding every token leaves nothing to score
    tr = poutine.trace(module.model).get_trace(x, torch.zeros_like(x, dtype=torch.bool))
    assert float(tr.nodes["x"]["fn"].log_prob(x.long()).detach().abs().sum()) == 0.0


def test_word_dropout_replaces_only_words_and_rate_one_is_inputless():
    torch.manual_seed(0)
    inputs = torch.tensor([[BOS, 5, 6, 7, 8, PAD, PAD]] * 200)
    keep = (inputs == BOS) | (inputs == PAD)
    out = word_dropout(inputs, 0.5, UNK, keep)
    assert torch.equal(out[keep], inputs[keep])
    dropped = (out[~keep] == UNK).float().mean()
    assert abs(float(dropped) - 0.5) < 0.05
    assert (word_dropout(inputs, 1.0, UNK, keep)[~keep] == UNK).all()
    assert torch.equal(word_dropout(inputs, 0.0, UNK, keep), inputs)
    # in the model: dropout while training only, except the inputless decoder (rate 1), always
    vae = small_vae(word_dropout=1.0).eval()
    ids = sentences().long()
    assert ((vae.decoder_inputs(ids)[:, 1:] == UNK) | (vae.decoder_inputs(ids)[:, 1:] == PAD)).all()
    vae = small_vae(word_dropout=0.5)
    assert torch.equal(vae.eval().decoder_inputs(ids)[:, 1:], ids[:, :-1])
    assert (vae.train().decoder_inputs(ids) == UNK).any()


def test_free_bits_turn_the_kl_term_into_its_hinge_in_closed_form():
    loc, scale = torch.tensor([[0.1, 2.0], [0.3, -2.0]]), torch.tensor([[0.9, 0.5], [1.0, 0.5]])
    kl = kl_to_standard_normal(loc, scale)
    expected = torch.distributions.kl_divergence(torch.distributions.Normal(loc, scale), torch.distributions.Normal(0.0, 1.0))
    assert torch.allclose(kl, expected)
    lam = 0.5
    # batch KL term sum_b sum_d KL + penalty == batch size * sum_d max(lambda, mean_b KL_d)
    total = kl.sum() + free_bits_penalty(loc, scale, lam)
    assert torch.allclose(total, 2 * torch.clamp(kl.mean(0), min=lam).sum())
    # in the guide: a factor while training only; its gradient cancels the KL's below lambda
    vae, x = small_vae(free_bits=lam), sentences()
    tr = poutine.trace(vae.train().guide).get_trace(x)
    loc, scale = vae.encode(x)
    assert torch.allclose(tr.nodes["free_bits"]["fn"].log_factor, free_bits_penalty(loc, scale, lam))
    assert "free_bits" not in poutine.trace(vae.eval().guide).get_trace(x).nodes


def test_beta_scales_the_latent_site_for_kl_annealing():
    vae, x = small_vae().eval(), sentences()
    tr = poutine.trace(vae.model).get_trace(x, beta=0.25)
    assert tr.nodes["z"]["scale"] == 0.25 and tr.nodes["x"]["scale"] == 1.0


def test_iwae_bound_is_above_the_elbo_and_tightens():
    vae, x = small_vae().eval(), sentences(20)
    lw = log_weights(vae, x, 64)
    elbo, iwae = lw.mean(0), torch.logsumexp(lw, 0) - math.log(64)
    assert (iwae >= elbo - 1e-6).all()
    report = sentence_report(vae, x, num_samples=64, batch_size=7)
    assert report["log_px"] >= report["elbo"] and report["gap"] >= 0
    assert report["n"] == 20 and report["tokens_per_sentence"] == pytest.approx(float((x != PAD).sum(1).double().mean()))
    assert math.isclose(report["perplexity"], math.exp(-report["log_px"] * 20 / float((x != PAD).sum())), rel_tol=1e-6)
    loc, scale = vae.encode(x)
    assert math.isclose(report["kl"], float(kl_to_standard_normal(loc, scale).detach().sum(1).mean()), rel_tol=1e-5)
    assert 0 <= report["active_units"] <= 3 and report["latent"] in ("used", "collapsed")


def test_the_lm_report_is_its_exact_log_likelihood():
    lm, x = LanguageModel(V, L, embed_dim=8, hidden=16).eval(), sentences(9)
    report = sentence_report(lm, x, num_samples=50)
    exact = float(poutine.trace(lm.model).get_trace(x).nodes["x"]["fn"].log_prob(x.long()).detach().mean())
    assert math.isclose(report["log_px"], exact, rel_tol=1e-5) and report["gap"] == pytest.approx(0, abs=1e-5)
    assert report["kl"] == 0 and report["latent"] == "none"


@pytest.mark.parametrize("make", [small_vae, lambda: LanguageModel(V, L, embed_dim=8, hidden=16)])
def test_model_without_data_generates_sentences_that_end_at_eos(make):
    module = make().eval()
    pyro.set_rng_seed(0)
    tr = poutine.trace(module.model).get_trace(None, n=5)
    ids = tr.nodes["_RETURN"]["value"]
    assert ids.shape == (5, L) and ids.dtype == torch.long
    assert {f"x_{t}" for t in range(L)} <= set(tr.nodes)
    for row in ids.tolist():
        if EOS in row:
            assert all(i == PAD for i in row[row.index(EOS) + 1 :])
    greedy = module.decode_ids(module.prior(2).sample() if module.latent_dim else None, 2, greedy=True)
    assert greedy.shape == (2, L)


def test_reverse_within_length_leaves_the_padding():
    t = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]])
    assert reverse_within_length(t, torch.tensor([3, 2])).tolist() == [[3, 2, 1, 0], [5, 4, 0, 0]]


def test_the_elbo_trains_with_the_objective_and_annealing():
    vae, x = small_vae(word_dropout=0.2, free_bits=0.1), sentences(16)
    obj = ELBOObjective(schedule="linear", warmup_steps=10)
    opt = torch.optim.Adam(vae.parameters(), lr=2e-2)
    first = float(obj.eval_loss(vae.eval(), x).detach())
    vae.train()
    for step in range(25):
        loss = obj.loss(vae, x, None, step)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(obj.eval_loss(vae.eval(), x).detach()) < first


# ---- the text data source ----------------------------------------------------------------------
def test_tokenize_encode_decode_round_trip():
    assert tokenize("Don't PANIC, it's 42!") == ["don't", "panic", ",", "it's", "42", "!"]
    assert detokenize(["hello", ",", "world", "!"]) == "hello, world!"
    vocab = ["<pad>", "<unk>", "<bos>", "<eos>", "a", "b"]
    ids = encode([["a", "b", "c"]], vocab, 5)
    assert ids.tolist() == [[4, 5, UNK, EOS, PAD]]
    assert decode(ids[0], vocab) == "a b <unk>"


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return str(path)


def test_text_source_splits_items_and_keeps_the_vocabulary_in_the_spec(tmp_path):
    items = [f"item {i} says hello {'world ' * (i % 3)}" for i in range(40)]
    path = write(tmp_path / "f.txt", "\n%\n".join(items) + "\n%\n" + "too long " * 20 + "\n")
    cfg = Config()
    cfg.data.name, cfg.data.preprocess, cfg.data.path = "text", "none", path
    cfg.data.options = {"vocab_size": 5, "max_tokens": 8}
    splits = load_data(cfg.data)
    meta = splits.spec.meta
    assert meta["items_read"] == 41 and meta["items_kept"] == 40 and meta["items_too_long"] == 1
    assert sum(splits.spec.sizes.values()) == 40 and splits.spec.shape == (9,)
    assert meta["vocab"][:4] == ["<pad>", "<unk>", "<bos>", "<eos>"] and len(meta["vocab"]) == 9
    assert meta["vocab"][4:] == ["hello", "item", "says", "world", "0"]  # by count (hello, item, says: 40; world: 39), then name
    again = load_data(cfg.data)  # the split and vocabulary are fixed
    assert torch.equal(again.test.x, splits.test.x) and again.spec.meta["vocab"] == meta["vocab"]
    lines = write(tmp_path / "lines.txt", "one line\nanother line\n\nthird line here\n")
    raw = load_text_raw(lines, max_tokens=5)
    assert len(raw.train_x) + len(raw.test_x) == 3
    cut = load_text_raw(path, max_tokens=3, truncate=True)
    assert len(cut.train_x) + len(cut.test_x) == 41 and cut.meta["long_items"] == "cut"


@pytest.mark.parametrize(
    "content, options, message",
    [
        (b"", {}, "is empty"),
        ("caf\u00e9 au lait\n".encode("latin-1"), {}, "is not UTF-8 .*iconv"),
        (b"a b c d e f\n", {"max_tokens": 3}, "has 0 item.*at most 3 tokens"),
        (b"one\ntwo\n", {"vocab_size": 0}, "vocab_size"),
        (b"one\ntwo\n", {"no_such": 1}, "has no argument 'no_such'"),
    ],
)
def test_text_source_errors_are_one_line(tmp_path, content, options, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    cfg = Config()
    cfg.data.name, cfg.data.preprocess, cfg.data.path, cfg.data.options = "text", "none", str(path), options
    with pytest.raises(ConfigError, match=message) as err:
        load_data(cfg.data)
    assert "\n" not in str(err.value)


def test_missing_file_and_missing_fortunes_say_what_to_do(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="not found"):
        load_text_raw(str(tmp_path / "nope.txt"))
    monkeypatch.setattr("ppl_vae.data.text.FORTUNES_DIR", str(tmp_path / "no-fortunes"))
    with pytest.raises(ConfigError, match="apt-get install -y fortunes"):
        load_text_raw("")


# ---- through the run layer: the vocabulary travels in the checkpoint -----------------------------
def tiny_config(path, kind="sentence-vae"):
    cfg = Config()
    cfg.data.name, cfg.data.preprocess, cfg.data.path = "text", "none", path
    cfg.data.options = {"vocab_size": 20, "max_tokens": 8}
    cfg.model.kind, cfg.model.latent_dim = kind, 2
    cfg.model.encoder = {"name": "rnn", "hidden": 16, "embed_dim": 8}
    cfg.model.decoder = {"name": "rnn", "hidden": 16, "embed_dim": 8}
    cfg.model.posterior = {"name": "diagonal", "free_bits": 0.1}
    cfg.train.epochs, cfg.train.batch_size, cfg.train.device = 1, 16, "cpu"
    cfg.eval.iwae_samples = 3
    return cfg


def test_vocabulary_round_trips_through_a_checkpoint_and_sample_writes_text(tmp_path, capsys):
    words = "the cat sat on a mat and dog ran to big red house".split()
    text = "\n".join(" ".join(words[(i + j) % len(words)] for j in range(2 + i % 5)) for i in range(60))
    path = write(tmp_path / "corpus.txt", text)
    cfg = tiny_config(path)
    vocab = load_data(cfg.data).spec.meta["vocab"]
    metrics = train_run(cfg, tmp_path / "run", progress=False, figures=False)
    assert {"nll", "perplexity", "kl", "active_units", "mutual_information"} <= set(metrics)
    assert "bits_per_dim" not in metrics and set(metrics["examples"]) == {"greedy", "sampled", "reconstructions", "homotopy"}
    write(tmp_path / "corpus.txt", "entirely different words now\n" * 50)  # the data may change: the checkpoint decodes
    loaded = load_run(tmp_path / "run")
    assert loaded.spec.meta["vocab"] == vocab and set(vocab[4:]) == set(words)
    out = sample_run(tmp_path / "run", n=4)
    lines = out.read_text().splitlines()
    assert out == tmp_path / "run" / "samples.txt" and len(lines) == 4
    assert all(set(line.split()) <= set(words) | {"<unk>"} for line in lines)
    with pytest.raises(ConfigError, match=r"\.txt"):
        sample_run(tmp_path / "run", n=2, out_file=tmp_path / "s.png")
    # the command line prints the sentences, and evaluate's table has per-token figures, not bits/dim
    from ppl_vae.cli import main

    capsys.readouterr()
    assert main(["sample", str(tmp_path / "run"), "-n", "3", "--out", str(tmp_path / "three.txt")]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[:3] == (tmp_path / "three.txt").read_text().splitlines() and printed[3] == str(tmp_path / "three.txt")
    assert main(["evaluate", str(tmp_path / "run"), "--iwae-samples", "2"]) == 0
    table = capsys.readouterr().out
    assert "perplexity per token" in table and "I(x; z)" in table and "bits/dim" not in table
    # the baseline LM on the same data, compared by paired per-sentence log p(x) in one call
    from ppl_vae.runs import compare_runs

    train_run(tiny_config(path, "lstm-lm"), tmp_path / "lm", progress=False, figures=False)
    rows = compare_runs([tmp_path / "run", tmp_path / "lm"], n=10, samples=3)
    assert {r["model"] for r in rows} == {"run", "lm"} and all(math.isfinite(r["log_px"]) for r in rows)


def test_kind_checks_its_data_and_settings(tmp_path):
    path = write(tmp_path / "c.txt", "a b\nc d\ne f\n")
    cfg = tiny_config(path)
    cfg.data.preprocess = "binarize"
    with pytest.raises(ConfigError, match="data.preprocess = 'none'"):
        train_run(cfg, tmp_path / "r1", progress=False)
    cfg = tiny_config(path)
    cfg.model.decoder["word_dropout"] = 1.5
    with pytest.raises(ConfigError, match=r"word_dropout must be in \[0, 1\]"):
        train_run(cfg, tmp_path / "r2", progress=False)
    cfg = tiny_config(path)
    cfg.model.encoder["layers"] = 2
    with pytest.raises(ConfigError, match="has no argument 'layers'"):
        train_run(cfg, tmp_path / "r3", progress=False)
    cfg = tiny_config(path)
    cfg.data.name, cfg.data.path, cfg.data.options = "digits", "", {}
    with pytest.raises(ConfigError, match="set data.name = 'text'"):
        train_run(cfg, tmp_path / "r4", progress=False)


def test_a_recipe_naming_only_the_kind_gets_the_rnn_defaults_and_describe_round_trips():
    from ppl_vae.config import ModelConfig
    from ppl_vae.data.spec import DataSpec
    from ppl_vae.kinds import kind

    spec = DataSpec("text", shape=(L,), meta={"vocab": [f"w{i}" for i in range(V)]})
    for name, cls in (("sentence-vae", SentenceVAE), ("lstm-lm", LanguageModel)):
        module = kind(name).build(ModelConfig(kind=name), spec)
        assert type(module) is cls and module.decoder.hidden == 256 and module.vocab_size == V
        table = kind(name).describe(module)
        again = kind(name).build(ModelConfig(**{k: v for k, v in table.items()}), spec)
        assert [p.shape for p in again.parameters()] == [p.shape for p in module.parameters()]
