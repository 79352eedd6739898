"""Analyses of finished runs: diagnostics, held-out comparison, disentanglement metrics.

Each checks, before any work, that the run's model kind has the capability the analysis needs
(``ppl_vae.kinds.require``) and that its data fit, and writes its files atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ppl_vae import kinds
from ppl_vae.config import MAX_SAMPLES
from ppl_vae.registry import ConfigError
from ppl_vae.runs.rundir import _write_json, load_run
from ppl_vae.schema import Rule, positive_int, seed

# The settings of the analyses, checked here and by the command line's parser.
DIAGNOSE_RULES = {
    "n": positive_int(1_000_000),
    "samples": Rule(int, min=10, max=MAX_SAMPLES, note="at least 10 for the Pareto fit"),
    "nuts_points": Rule(int, min=0, max=1000, note="0 = no NUTS reference"),
    "nuts_samples": Rule(int, min=50, max=1_000_000),
    "sbc_sims": Rule(int, min=10, max=1_000_000),
    "seed": seed(),
}
COMPARE_RULES = {"n": positive_int(1_000_000), "samples": positive_int(MAX_SAMPLES)}


def diagnose_run(
    run_dir: Union[str, Path],
    split: str = "test",
    n: int = 1000,
    samples: int = 1000,
    nuts_points: int = 2,
    sbc_sims: int = 500,
    out_dir: Optional[Union[str, Path]] = None,
    progress: bool = False,
    seed: int = 0,
    **kwargs: Any,
) -> Tuple[dict, Path]:
    """``ppl_vae.diagnostics.diagnose`` on the first ``n`` data of a run's split; returns (results, report dir)."""
    from ppl_vae.diagnostics import diagnose

    out = Path(out_dir) if out_dir else Path(run_dir) / f"diagnostics-{split}"
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"report directory '{out}' already exists and is not empty; choose another --out")
    for key, value in (
        ("n", n),
        ("samples", samples),
        ("nuts_points", nuts_points),
        ("sbc_sims", sbc_sims),
        ("seed", seed),
        ("nuts_samples", kwargs.get("nuts_samples", 500)),
    ):
        DIAGNOSE_RULES[key].check(key, value)
    loaded = load_run(run_dir, "auto")
    kinds.require(loaded.config.model.kind, "diagnose", "'diagnose'")
    data = loaded.split(split).subset(slice(0, n))
    spec = loaded.spec
    tabular = bool(spec.meta.get("tabular"))
    results = diagnose(
        loaded.module,
        data,
        out,
        samples=samples,
        sbc_sims=sbc_sims,
        nuts_points=nuts_points,
        image_shape=spec.image_shape,
        columns=spec.meta.get("columns") if tabular else None,
        obs_dim="row" if tabular else "image",
        title=f"{Path(run_dir).name} ({split}, first {len(data)})",
        progress=progress,
        seed=seed,
        **kwargs,
    )
    return results, out


def compare_runs(
    run_dirs: Sequence[Union[str, Path]], split: str = "test", n: int = 1000, samples: int = 1000, progress: bool = False
) -> List[dict]:
    """Held-out comparison of runs trained on the same data: per-datum IWAE log p(x), paired differences."""
    from ppl_vae.diagnostics import compare_log_likelihoods
    from ppl_vae.evaluation.likelihood import iwae_log_likelihood

    if len(run_dirs) < 2:
        raise ConfigError("compare needs at least two run directories")
    COMPARE_RULES["n"].check("n", n)
    COMPARE_RULES["samples"].check("samples", samples)
    runs, first = [], None
    for run in run_dirs:  # check every run before scoring any
        loaded = load_run(run, "auto")
        kinds.require(loaded.config.model.kind, "compare", "'compare'")
        d = loaded.config.data
        key = (d.name, d.path, d.preprocess, d.seed, list(d.columns))
        if first is not None and key != first:
            raise ConfigError(
                f"'{run}' was trained on other data ({d.name}, preprocess "
                f"'{d.preprocess}') than '{run_dirs[0]}': its log-likelihoods are not comparable"
            )
        first = key
        runs.append((Path(run), loaded.module, loaded.split(split).subset(slice(0, n))))
    scores: Dict[str, np.ndarray] = {}
    for path, module, data in runs:
        torch.manual_seed(0)
        name = path.name if path.name not in scores else str(path)
        scores[name] = iwae_log_likelihood(module, data, samples, progress=progress)["log_px"].numpy()
    return compare_log_likelihoods(scores)


def disentanglement_run(run_dir: Union[str, Path], fast: bool = False, seed: int = 0) -> dict:
    """All disentanglement metrics of a run trained on data with known factors (dSprites), with the
    kind's representation (the encoder mean); writes ``disentanglement.json`` and
    ``figures/factor_traversals.png`` (one row per factor, moving the latent most informative about it)."""
    from ppl_vae.data.dsprites import DSpritesFile, DSpritesLike
    from ppl_vae.evaluation.disentanglement_metrics import all_metrics, discretize, mutual_info_matrix
    from ppl_vae.plots import save_figures, traversal_figure

    loaded = load_run(run_dir, "auto")
    kind = kinds.require(loaded.config.model.kind, "disentanglement", "--disentanglement")
    module: Any  # the kind's Pyro module (its .device: nn.Module.__getattr__ is typed Tensor | Module)
    spec, module = loaded.spec, loaded.module
    if not spec.meta.get("factor_names"):
        raise ConfigError(
            f"--disentanglement needs data with known factors (data.name = 'dsprites'); this run was trained on '{spec.source}'"
        )
    gt = DSpritesFile(spec.path) if spec.meta.get("ground_truth") == "file" else DSpritesLike()
    shape = tuple(spec.shape)

    @torch.no_grad()
    def represent(images: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(np.asarray(images), dtype=torch.float32).reshape(len(images), *shape)
        return kind.represent(module, x.to(module.device)).cpu().numpy()

    results = all_metrics(gt, represent, seed=seed, fast=fast)
    rng = np.random.default_rng(seed)
    factors = gt.sample_factors(2000, rng)
    mi = mutual_info_matrix(discretize(represent(gt.sample_observations_from_factors(factors, rng))), factors)
    best = [int(mi[:, k].argmax()) for k in range(mi.shape[1])]
    results["factor_to_latent"] = dict(zip(gt.factor_names, best))
    out = Path(run_dir)
    _write_json(out / "disentanglement.json", results)
    assert spec.image_shape is not None  # data with known factors (dSprites) are images
    x0 = torch.as_tensor(gt.sample_observations_from_factors(factors[:1], rng)).reshape(1, *shape)
    fig = traversal_figure(
        module,
        x0,
        spec.image_shape,
        dims=best,
        title="traversal of the latent most informative about each factor",
        labels=[f"{n}: z{d}" for n, d in zip(gt.factor_names, best)],
    )
    save_figures({"factor_traversals": fig}, out / "figures")
    return results
