"""Tables as applications (issue 21): the table source and its schema, ``ppl-vae train --data``,
imputation, anomaly scores, synthesis with its reports, bad input, and the image-folder source.

One small model is trained once (module fixture) on a toy table whose columns depend on each other
strongly (b = 2a + noise; the colour is the cluster a comes from), so that the properties tested
(imputation beats the column mean, anomalies score high) must hold for a model that learned anything.
"""

import json

import numpy as np
import pandas as pd
import pytest
import torch

import ppl_vae
from ppl_vae.cli import main
from ppl_vae.data.tables import decode_column, encode, infer_schema, read_csv
from ppl_vae.registry import ConfigError

N_ROWS = 400


def toy(n=N_ROWS, seed=0, missing=0.1):
    """Three clusters: a ~ N(3g, 1), b = 2a + N(0, 0.3), kids ~ Poisson(1 + g), colour = g's name, member ~ Bernoulli."""
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 3, n)
    a = rng.normal(0, 1, n) + 3 * g
    frame = pd.DataFrame(
        {
            "a": np.round(a, 3),
            "b": np.round(2 * a + rng.normal(0, 0.3, n), 3),
            "kids": rng.poisson(1 + g),
            "colour": np.array(["red", "green", "blue"])[g],
            "member": np.where(rng.random(n) < 0.1 + 0.4 * g, "yes", "no"),
        }
    ).astype(object)
    return frame.mask(rng.random(frame.shape) < missing) if missing else frame


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: one thread is fastest, and fair to a shared machine
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("tables")
    toy().to_csv(root / "toy.csv", index=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    args = ["train", "tabular-vae", "--data", str(root / "toy.csv"), "--out", str(root / "run"), "--no-progress", "--no-figures"]
    fast = ["train.epochs=25", "train.batch_size=64", "train.lr=3e-3", "eval.iwae_samples=10", "model.latent_dim=4"]
    try:
        assert main(args + [x for s in fast for x in ("--set", s)]) == 0
    finally:
        torch.set_num_threads(threads)
    return root


def one_line_error(capsys, argv, *words):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ppl-vae: error: "), err
    for w in words:
        assert w in err[0], (w, err[0])
    return err[0]


# ---- 1. schema ------------------------------------------------------------------------------
def test_schema_types_inferred_overridden_and_round_trip():
    frame = toy(60, missing=0.0)
    schema = infer_schema(frame)
    assert [(c["name"], c["type"]) for c in schema] == [
        ("a", "numeric"),
        ("b", "numeric"),
        ("kids", "integer"),
        ("colour", "categorical"),
        ("member", "boolean"),
    ]
    assert schema[3]["categories"] == ["blue", "green", "red"] and schema[4]["categories"] == ["no", "yes"]
    assert infer_schema(frame, {"kids": "categorical"})[2]["type"] == "categorical"
    steps = infer_schema(pd.DataFrame({"age": [17.5, 22.0, 27.0, 22.0]}))[0]  # few values: decoded to the nearest
    assert steps["type"] == "numeric" and steps["levels"] == [17.5, 22.0, 27.0] and "levels" not in schema[0]
    assert decode_column(encode(pd.DataFrame({"age": [18.9, 26.0]}), [steps])[:, 0], steps) == [17.5, 27.0]
    x = encode(frame, schema)
    assert np.allclose(x[:, 0].mean(), 0, atol=1e-5) and np.allclose(x[:, 0].std(), 1, atol=1e-4)  # standardized
    for j, col in enumerate(schema):  # decode(encode(cells)) == cells
        back = decode_column(x[:, j], col)
        want = list(frame.iloc[:, j])
        if col["type"] == "numeric":
            assert np.allclose(np.array(back, float), np.array(want, float), atol=1e-4)
        else:
            assert [str(v) for v in back] == [str(v) for v in want]
    holes = toy(60, missing=0.3)
    assert np.isnan(encode(holes, schema)).sum() == holes.isna().to_numpy().sum()
    with pytest.raises(ConfigError, match="'nope'"):
        infer_schema(frame, {"nope": "numeric"})


def test_gmm_column_log_prob_is_the_mixture_density():
    from ppl_vae.components.tabular import GMM_MIN_SCALE, TabularLikelihood

    lik = TabularLikelihood(["gmm:2", "binary"]).setup((2,))
    params = torch.tensor([[0.3, -0.2, -1.0, 2.0, 0.1, 0.5, 0.7]])
    x = torch.tensor([[0.4, 1.0]])
    w = torch.softmax(params[0, :2], 0)
    scale = torch.nn.functional.softplus(params[0, 4:6]) + GMM_MIN_SCALE
    dens = (w * torch.distributions.Normal(params[0, 2:4], scale).log_prob(x[0, 0]).exp()).sum()
    expected = dens.log() + torch.distributions.Bernoulli(logits=params[0, 6]).log_prob(x[0, 1])
    assert torch.allclose(lik(params).log_prob(x), expected.reshape(1), atol=1e-5)
    mask = torch.tensor([[False, True]])  # a missing cell contributes nothing
    assert torch.allclose(
        lik(params, mask).log_prob(x), torch.distributions.Bernoulli(logits=params[0, 6]).log_prob(x[0, 1]).reshape(1)
    )


def test_train_with_data_flag_stores_the_schema_and_reports_no_bits_per_dim(table_run, capsys):
    run = ppl_vae.load(table_run / "run")
    assert run.config.data.name == "table" and run.config.data.preprocess == "none"
    schema = run.spec.meta["schema"]
    assert [c["name"] for c in schema] == ["a", "b", "kids", "colour", "member"]
    assert [c["type"] for c in schema] == ["numeric", "numeric", "integer", "categorical", "boolean"]
    assert run.spec.meta["columns"][:3] == ["gmm:5"] * 3
    assert "bits_per_dim" not in json.loads((table_run / "run" / "metrics.json").read_text())
    assert main(["evaluate", str(table_run / "run"), "--json", "--iwae-samples", "5", "--n-test", "20"]) == 0
    assert "bits_per_dim" not in json.loads(capsys.readouterr().out)


# ---- 2. imputation --------------------------------------------------------------------------
def test_impute_cli_keeps_rows_and_observed_cells_and_fills_typed_values(table_run, tmp_path, capsys):
    src = table_run / "toy.csv"
    assert main(["impute", str(table_run / "run"), str(src), "--out", str(tmp_path / "out.csv"), "--seed", "3"]) == 0
    before = pd.read_csv(src, dtype=str, keep_default_na=False)
    after = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)
    assert list(after.columns) == list(before.columns) and len(after) == len(before)
    observed = before != ""
    assert ((after == before) | ~observed).all().all()  # observed cells unchanged, rows in order
    assert (after != "").all().all()  # every missing cell filled
    assert set(after["colour"]) <= {"red", "green", "blue"} and set(after["member"]) <= {"yes", "no"}
    kids = after["kids"].astype(float)
    assert (kids == kids.round()).all() and kids.between(0, before["kids"][observed["kids"]].astype(int).max()).all()
    # multiple imputation: M tables, observed cells the same, draws that differ
    assert main(["impute", str(table_run / "run"), str(src), "--multiple", "2", "--out-dir", str(tmp_path / "mi")]) == 0
    tables = [pd.read_csv(tmp_path / "mi" / f"imputed-{i}.csv", dtype=str, keep_default_na=False) for i in (1, 2)]
    assert all(((t == before) | ~observed).all().all() for t in tables)
    assert (tables[0] != tables[1]).to_numpy().any()


def test_impute_uses_observed_cells_better_than_the_column_mean(table_run):
    run = ppl_vae.load(table_run / "run")
    full = toy(200, seed=7, missing=0.0)
    holes = full.copy()
    rng = np.random.default_rng(1)
    miss_b, miss_c = rng.random(len(full)) < 0.5, rng.random(len(full)) < 0.5
    holes.loc[miss_b, "b"] = None
    holes.loc[miss_c, "colour"] = None
    out = ppl_vae.impute(run, holes, seed=0, iterations=30, burn_in=10)
    b = full["b"].astype(float)
    rmse = np.sqrt(np.mean((out.loc[miss_b, "b"].astype(float) - b[miss_b]) ** 2))
    rmse_mean = np.sqrt(np.mean((b[~miss_b].mean() - b[miss_b]) ** 2))
    assert rmse < 0.5 * rmse_mean, (rmse, rmse_mean)
    accuracy = np.mean(out.loc[miss_c, "colour"].to_numpy() == full.loc[miss_c, "colour"].to_numpy())
    assert accuracy > 0.7, accuracy  # the most frequent colour alone gets about 1/3
    assert out.loc[~miss_b, "b"].tolist() == holes.loc[~miss_b, "b"].tolist()


# ---- 3. anomaly -----------------------------------------------------------------------------
def test_anomaly_scores_find_rows_far_from_the_training_data(table_run, tmp_path, capsys):
    frame = toy(60, seed=11, missing=0.0)
    frame["label"] = 0
    odd = frame.index[:10]
    frame.loc[odd, "b"] = 2 * frame.loc[odd, "a"].astype(float) + 12  # breaks b = 2a + noise (sd 0.3)
    frame.loc[odd, "label"] = 1
    frame.to_csv(tmp_path / "score.csv", index=False)
    argv = ["anomaly", str(table_run / "run"), str(tmp_path / "score.csv"), "--labels", "label", "--json", "--samples", "20"]
    argv += ["--out", str(tmp_path / "scores.csv")]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["scores"]) == 60 and report["roc_auc"] > 0.95, report["roc_auc"]
    assert set(report) >= {"average_precision", "typicality", "typicality_scores"}
    assert list(pd.read_csv(tmp_path / "scores.csv").columns) == ["row", "score", "typicality", "label"]


# ---- 4. synthesis ---------------------------------------------------------------------------
def test_synthesize_schema_shape_and_report(table_run, tmp_path, capsys):
    out = tmp_path / "synth.csv"
    argv = ["synthesize", str(table_run / "run"), "-n", "150", "--out", str(out), "--report", str(table_run / "toy.csv"), "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    synth = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(synth.columns) == ["a", "b", "kids", "colour", "member"] and len(synth) == 150
    assert (synth != "").all().all() and set(synth["colour"]) <= {"red", "green", "blue"} and set(synth["member"]) <= {"yes", "no"}
    assert (synth["kids"].astype(float) % 1 == 0).all()
    q, p = report["quality"], report["privacy"]
    assert 0 <= q["quality_score"] <= 1 and set(q["columns"]) == set(synth.columns) and 0 <= q["column_pair_trends"] <= 1
    assert set(p) >= {"dcr_synthetic_median", "dcr_holdout_median", "dcr_ratio", "exact_copies", "closer_than_holdout_p5"}
    assert q["column_shapes"] > 0.6  # an untrained decoder's draws would not reproduce the marginals
    # a draw is a draw: b's spread is that of the data, not of a mean
    assert float(synth["b"].astype(float).std()) > 0.5 * float(pd.to_numeric(toy()["b"]).std())


# ---- 5. bad input ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "change, words",
    [
        (lambda f: f.drop(columns=["kids"]), ["lacks column 'kids'"]),
        (lambda f: f.assign(extra=1), ["column 'extra'", "not trained on"]),
        (lambda f: f.rename(columns={"colour": "color"}), ["'color'", "'colour'", "renamed"]),
        (lambda f: f.assign(colour=["purple"] + list(f["colour"][1:])), ["column 'colour'", "row 2", "'purple'"]),
        (lambda f: f.assign(a=["abc"] + list(f["a"][1:])), ["column 'a'", "row 2", "'abc'"]),
    ],
    ids=["missing-column", "extra-column", "renamed-column", "unseen-category", "non-numeric"],
)
def test_bad_tables_are_refused_in_one_line_and_nothing_is_written(table_run, tmp_path, capsys, change, words):
    bad = change(toy(20, seed=3, missing=0.0))
    bad.to_csv(tmp_path / "bad.csv", index=False)
    run = str(table_run / "run")
    one_line_error(capsys, ["impute", run, str(tmp_path / "bad.csv"), "--out", str(tmp_path / "o.csv")], *words)
    one_line_error(capsys, ["anomaly", run, str(tmp_path / "bad.csv"), "--out", str(tmp_path / "s.csv")], *words)
    one_line_error(
        capsys, ["synthesize", run, "-n", "5", "--out", str(tmp_path / "y.csv"), "--report", str(tmp_path / "bad.csv")], *words
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]


def test_empty_file_and_zero_rows_are_refused(table_run, tmp_path, capsys):
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "header.csv").write_text("a,b,kids,colour,member\n")
    run = str(table_run / "run")
    one_line_error(capsys, ["impute", run, str(tmp_path / "empty.csv"), "--out", str(tmp_path / "o.csv")], "empty")
    one_line_error(capsys, ["impute", run, str(tmp_path / "header.csv"), "--out", str(tmp_path / "o.csv")], "no data rows")
    one_line_error(capsys, ["synthesize", run, "-n", "0", "--out", str(tmp_path / "y.csv")], "-n")
    with pytest.raises(ConfigError, match="1.."):
        ppl_vae.synthesize(ppl_vae.load(run), 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.csv", "header.csv"]
    with pytest.raises(ConfigError, match="empty"):
        read_csv(str(tmp_path / "empty.csv"))


def test_applications_ask_for_capabilities():
    from ppl_vae.kinds import require

    with pytest.raises(ConfigError, match="kinds that can: .*vae"):
        require("conditional", "synthesize", "synthesis")
    assert "anomaly" in require("vae", "anomaly").capabilities


# ---- 6. image folders and --data ------------------------------------------------------------
def test_image_folder_source_reads_labels_from_sub_folders(tmp_path):
    from PIL import Image

    from ppl_vae.config import DataConfig
    from ppl_vae.data import load_data, source_for_path

    rng = np.random.default_rng(0)
    for cls, level in (("cats", 40), ("dogs", 200)):
        (tmp_path / cls).mkdir()
        for i in range(10):
            pixels = np.clip(rng.normal(level, 5, (12, 10, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / cls / f"{i}.{'png' if i % 2 else 'jpg'}")
    assert source_for_path(str(tmp_path)) == "image-folder"
    splits = load_data(DataConfig(name="image-folder", path=str(tmp_path), preprocess="scale", options={"size": 6}))
    assert splits.spec.shape == (36,) and splits.spec.meta["image_shape"] == (1, 6, 6)
    assert splits.spec.meta["class_names"] == ["cats", "dogs"] and sum(splits.spec.sizes.values()) == 20
    x, y = splits.train.x, splits.train.y
    assert ((x[y == 0].mean() - 40 / 255).abs() < 0.05) and ((x[y == 1].mean() - 200 / 255).abs() < 0.05)
    rgb = load_data(
        DataConfig(name="image-folder", path=str(tmp_path), preprocess="scale", flatten=False, options={"size": 4, "mode": "rgb"})
    )
    assert rgb.spec.shape == (3, 4, 4)
    with pytest.raises(ConfigError, match="no .png"):
        (tmp_path / "empty").mkdir()
        load_data(DataConfig(name="image-folder", path=str(tmp_path / "empty"), options={"size": 4}))


def test_data_flag_infers_the_source(tmp_path):
    from ppl_vae.data import source_for_path

    for name, source in (("t.csv", "table"), ("a.npy", "array"), ("b.npz", "array"), ("c.txt", "text")):
        (tmp_path / name).write_text("")
        assert source_for_path(str(tmp_path / name)) == source
    (tmp_path / "d.parquet").write_text("")
    with pytest.raises(ConfigError, match="suffix"):
        source_for_path(str(tmp_path / "d.parquet"))
    with pytest.raises(ConfigError, match="not found"):
        source_for_path(str(tmp_path / "nothing.csv"))


def test_train_and_score_an_image_folder_from_the_command_line(tmp_path, capsys):
    from PIL import Image

    rng = np.random.default_rng(0)

    def save(folder, n, odd):
        folder.mkdir(parents=True)
        for i in range(n):
            pixels = np.zeros((8, 8), np.uint8)
            if odd:
                pixels[5:7, :] = 255  # a horizontal bar
            else:
                pixels[:, 2:4] = 255  # a vertical bar
            Image.fromarray(np.clip(pixels + rng.integers(0, 20, (8, 8)), 0, 255).astype(np.uint8)).save(folder / f"{i}.png")

    save(tmp_path / "train", 40, odd=False)
    save(tmp_path / "score" / "normal", 8, odd=False)
    save(tmp_path / "score" / "odd", 8, odd=True)
    run = tmp_path / "run"
    argv = ["train", "vae-digits", "--data", str(tmp_path / "train"), "--out", str(run), "--no-progress", "--no-figures"]
    settings = ["data.options.size=8", "train.epochs=30", "train.batch_size=16", "eval.iwae_samples=5", "data.preprocess=scale"]
    settings.append('model.likelihood={name="continuous-bernoulli"}')
    assert main(argv + [x for s in settings for x in ("--set", s)]) == 0
    capsys.readouterr()
    assert ppl_vae.load(run).spec.shape == (64,)
    assert main(["anomaly", str(run), str(tmp_path / "score"), "--labels", "odd", "--json", "--samples", "10"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["scores"]) == 16 and report["roc_auc"] > 0.9, report["roc_auc"]
