"""A disentanglement recipe through the real command: train, then evaluate --disentanglement."""

import json

from .clitools import error_of, ppl_vae


def test_tcvae_recipe_and_disentanglement_metrics(tmp_path, run_dir):
    out = tmp_path / "tc"
    ppl_vae(
        "train",
        "tcvae-dsprites",
        "--out",
        out,
        "--no-progress",
        "--no-figures",
        "--set",
        "data.limit=400",
        "--set",
        "train.epochs=1",
        "--set",
        "eval.n_test=50",
        "--set",
        "eval.iwae_samples=5",
        "--set",
        "model.encoder.hidden=[64]",
        "--set",
        "model.decoder.hidden=[64]",
    )
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert {"mi", "tc", "dim_kl", "kl", "val_elbo"} <= set(history[0])
    r = json.loads(ppl_vae("evaluate", out, "--disentanglement", "--fast", "--json").stdout)
    for name in ("beta_vae", "factor_vae", "mig", "dci", "sap", "modularity_explicitness"):
        assert r[name]["settings"] and r[name]["sklearn"]
    assert 0 <= r["mig"]["mig"] <= 1 and 0 <= r["dci"]["disentanglement"] <= 1
    assert set(r["factor_to_latent"]) == {"shape", "scale", "orientation", "posX", "posY"}
    assert (out / "disentanglement.json").is_file()
    assert (out / "figures" / "factor_traversals.png").read_bytes()[:4] == b"\x89PNG"
    assert "known factors" in error_of("evaluate", run_dir, "--disentanglement")
