"""``diagnose``: every diagnostic for one trained VAE on one data set, written as a report directory.

The directory holds ``diagnostics.json`` (all numbers and settings), ``inference_data.nc`` (ArviZ
netCDF), ``figures/*.png`` and ``report.md``, which says in plain words what passed and what did not.
It is built in a temporary sibling directory and renamed into place, so an interrupted run leaves
nothing half-written.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

import numpy as np
import sklearn
import torch

from ppl_vae.data.base import ArrayDataset
from ppl_vae.registry import ConfigError
from ppl_vae.diagnostics import arviz_adapter as adapter
from ppl_vae.diagnostics.export import to_inference_data
from ppl_vae.diagnostics.figures import khat_figure, nuts_figure, ppc_figure, sbc_figure, worst_figure
from ppl_vae.diagnostics.psis import importance_diagnostics
from ppl_vae.diagnostics.predictive import ppc_pvalues, predictive_statistics
from ppl_vae.diagnostics.reference import reference_report
from ppl_vae.diagnostics.sbc import amortized_sbc

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from numpy.typing import ArrayLike

SBC_PASS_P = 0.01


def _finite(obj):
    """JSON cannot hold inf/nan: write them as null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def nuts_indices(khat: np.ndarray, n_points: int) -> list:
    """Data for the NUTS reference: spread over the k-hat ranking, the worst datum first."""
    if n_points <= 0:
        return []
    order = np.argsort(-np.where(np.isfinite(khat), khat, -np.inf), kind="stable")
    picks = np.linspace(0, len(order) - 1, min(n_points, len(order))).round().astype(int)
    return [int(order[p]) for p in picks]


def diagnose(
    vae: Any,
    data: ArrayDataset,
    out_dir: Union[str, Path],
    *,
    samples: int = 1000,
    sbc_sims: int = 500,
    sbc_samples: int = 100,
    nuts_points: int = 2,
    nuts_samples: int = 500,
    nuts_warmup: int = 500,
    ppc_draws: int = 100,
    image_shape: Optional[Sequence[int]] = None,
    columns: Optional[Sequence[str]] = None,
    obs_dim: str = "image",
    index: Optional[ArrayLike] = None,
    title: str = "",
    progress: bool = False,
    seed: int = 0,
) -> dict:
    """Run the diagnostics of ``ppl_vae.diagnostics`` on ``data`` and write the report to ``out_dir``."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"report directory '{out}' already exists and is not empty; choose another --out")
    data = data.to(vae.device)
    if data.binarize:  # dynamically binarized data: diagnose one fixed draw
        data = data.fixed_binarized(seed)
    x, mask = data.x, data.mask
    torch.manual_seed(seed)
    vae.eval()
    timings, results = (
        {},
        {
            "title": title,
            "n": len(x),
            "images": image_shape is not None,
            "arviz": adapter.version(),
            "sklearn": sklearn.__version__,
            "torch": torch.__version__,
        },
    )

    t0 = time.perf_counter()
    diag = importance_diagnostics(vae, data, samples, keep_weights=True, progress=progress)
    timings["importance"] = time.perf_counter() - t0
    results["importance"] = diag.summary()

    t0 = time.perf_counter()
    sbc = amortized_sbc(vae, sbc_sims, sbc_samples, generator_seed=seed)
    timings["sbc"] = time.perf_counter() - t0
    results["sbc"] = {"num_sims": sbc_sims, "num_samples": sbc_samples, "per_dim": sbc.summary()}

    t0 = time.perf_counter()
    pred = predictive_statistics(vae, x, mask, ppc_draws, columns)
    results["ppc"] = {"draws": ppc_draws, "posterior_pvalue": ppc_pvalues(pred), "prior_pvalue": ppc_pvalues(pred, "prior_predictive")}
    timings["predictive"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    refs, ref_draws = [], []
    for i in nuts_indices(diag.khat, nuts_points):
        xi, mi = x[i : i + 1], None if mask is None else mask[i : i + 1]
        rep, draws = reference_report(vae, xi, mi, nuts_samples, nuts_warmup, seed=seed + i)
        rep.update({"datum": int(i), "khat": float(diag.khat[i])})
        refs.append(rep)
        ref_draws.append((i, draws))
    timings["nuts"] = time.perf_counter() - t0
    results["nuts"] = {"num_samples": nuts_samples, "warmup": nuts_warmup, "chains": 4, "points": refs}

    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent if out.parent.exists() else None))
    try:
        t0 = time.perf_counter()
        idata = to_inference_data(
            vae,
            x,
            mask,
            labels=None if data.y is None else data.y.cpu().numpy(),
            index=index,
            diagnostics=diag,
            predictive=pred,
            obs_dim=obs_dim,
            attrs={"title": title, "num_samples": samples},
        )
        adapter.to_netcdf(idata, tmp / "inference_data.nc")
        figs = tmp / "figures"
        figs.mkdir()
        _save(khat_figure(diag), figs / "khat.png")
        _save(sbc_figure(sbc), figs / "sbc.png")
        _save(ppc_figure(idata, list(pred["observed"])), figs / "ppc.png")
        if image_shape is not None:
            _save(worst_figure(vae, x, mask, diag, image_shape), figs / "worst.png")
        for i, draws in ref_draws:
            _save(nuts_figure(vae, x[i : i + 1], None if mask is None else mask[i : i + 1], draws, i), figs / f"nuts_{i}.png")
        timings["export_and_figures"] = time.perf_counter() - t0
        results["seconds"] = {k: round(v, 2) for k, v in timings.items()}
        results["verdicts"] = verdicts(results)
        (tmp / "diagnostics.json").write_text(json.dumps(_finite(results), indent=2))
        (tmp / "report.md").write_text(markdown_report(results, sorted(p.name for p in figs.iterdir())))
        if out.exists():
            out.rmdir()
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return results


def _save(fig: Figure, path: Path) -> None:
    from ppl_vae.plots import plt

    fig.savefig(path, dpi=100)
    plt.close(fig)


def verdicts(r: dict) -> dict:
    """One pass/fail line per check, in plain words."""
    imp = r["importance"]
    out = {}
    frac = imp["fraction_flagged"]
    out["importance"] = (
        frac <= 0.05,
        (
            f"{100 * (1 - frac):.1f}% of the {imp['n']} data have k-hat <= {imp['khat_threshold']:.2f} "
            f"(median {imp['khat_median']:.2f}): importance sampling from the guide "
            + (
                "is reliable for almost all data."
                if frac <= 0.05
                else f"cannot be trusted for {imp['n_flagged']} data" + ("; see figures/worst.png." if r.get("images") else ".")
            )
        ),
    )
    dims = r["sbc"]["per_dim"]
    bad = [d for d in dims if d["chi2_pvalue"] < SBC_PASS_P]
    out["sbc"] = (
        not bad,
        f"{len(dims) - len(bad)} of {len(dims)} latent dimensions have uniform SBC ranks"
        + (
            "."
            if not bad
            else "; not: " + ", ".join(f"z{d['dim']} ({d['verdict']})" for d in bad[:8]) + (" ..." if len(bad) > 8 else "") + "."
        ),
    )
    if r["nuts"]["points"]:
        worst_r = max(p["rhat_max"] for p in r["nuts"]["points"])
        worst_m = max(max(abs(v) for v in p["mean_diff_in_sd"]) for p in r["nuts"]["points"])
        ok = worst_r < 1.01 and worst_m < 0.5
        out["nuts"] = (
            ok,
            f"NUTS on {len(r['nuts']['points'])} data (R-hat max {worst_r:.3f}): guide means within "
            f"{worst_m:.2f} posterior sds of NUTS's"
            + (" (good)." if worst_m < 0.5 else " (biased guide).")
            + ("" if worst_r < 1.01 else " R-hat >= 1.01: the reference itself did not converge."),
        )
    pv = r["ppc"]["posterior_pvalue"]
    extreme = [k for k, p in pv.items() if p < 0.025 or p > 0.975]
    out["ppc"] = (
        not extreme,
        "posterior predictive p-values "
        + ", ".join(f"{k} {p:.2f}" for k, p in pv.items())
        + ("." if not extreme else f": the model misses {', '.join(extreme)}."),
    )
    return {k: {"passed": bool(v[0]), "message": v[1]} for k, v in out.items()}


def markdown_report(r: dict, figures: list) -> str:
    imp = r["importance"]
    lines = [
        f"# Diagnostics: {r['title'] or 'VAE'}",
        "",
        f"{r['n']} data; ArviZ {r['arviz']}, torch {r['torch']}.",
        "",
        "## Verdicts",
        "",
    ]
    for name, v in r["verdicts"].items():
        lines.append(f"- **{'PASS' if v['passed'] else 'FAIL'}** ({name}): {v['message']}")
    lines += [
        "",
        "## Importance sampling from the guide (per datum)",
        "",
        f"S = {imp['num_samples']} guide draws per datum. k-hat threshold min(1 - 1/log10(S), 0.7) = {imp['khat_threshold']:.3f}.",
        "",
        "| quantity | value |",
        "|---|---|",
        f"| median k-hat | {imp['khat_median']:.3f} |",
        f"| max k-hat | {imp['khat_max']:.3f} |",
        f"| flagged data | {imp['n_flagged']} ({100 * imp['fraction_flagged']:.1f}%) |",
        f"| median importance ESS | {imp['ess_median']:.1f} of {imp['num_samples']} |",
        f"| mean ELBO | {imp['elbo_mean']:.3f} |",
        f"| mean log p(x) (IWAE, S draws) | {imp['log_px_mean']:.3f} |",
        f"| mean gap log p(x) - ELBO | {imp['gap_mean']:.3f} (max {imp['gap_max']:.3f}) |",
        "",
        "k-hat catches guides that are too narrow; a guide that is too wide shows in the gap instead.",
        "",
        "## Amortized simulation-based calibration",
        "",
        f"{r['sbc']['num_sims']} simulated data, {r['sbc']['num_samples']} guide draws each. "
        "Normalized ranks are uniform (mean 0.5, sd 0.289) for an exact posterior.",
        "",
        "| dim | mean rank | sd rank | chi2 p | verdict |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| z{d['dim']} | {d['mean_rank']:.3f} | {d['sd_rank']:.3f} | {d['chi2_pvalue']:.3g} | {d['verdict']} |"
        for d in r["sbc"]["per_dim"]
    ]
    lines += ["", "## NUTS reference on single data", ""]
    if r["nuts"]["points"]:
        lines += [
            "| datum | k-hat | R-hat max | ESS min | max abs mean diff (sd) | sd ratio range | log p(x) | "
            "ELBO amortized | ELBO re-optimized | amortization gap | approximation gap |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for p in r["nuts"]["points"]:
            lines.append(
                f"| {p['datum']} | {p['khat']:.2f} | {p['rhat_max']:.3f} | {p['ess_bulk_min']:.0f} | "
                f"{max(abs(v) for v in p['mean_diff_in_sd']):.2f} | {min(p['sd_ratio']):.2f}-{max(p['sd_ratio']):.2f} | "
                f"{p['log_px']:.2f} | {p['elbo_amortized']:.2f} | {p['elbo_reoptimized']:.2f} | "
                f"{p['amortization_gap']:.2f} | {p['approximation_gap']:.2f} |"
            )
        lines += [
            "",
            "sd ratio is guide sd / NUTS sd per dimension (below 1: the guide is too narrow). log p(x) is "
            "the larger of two importance-weighted estimates (5000 draws from the amortized guide, 1000 from "
            "the re-optimized one); amortization gap = re-optimized ELBO - amortized ELBO, approximation "
            "gap = log p(x) - re-optimized ELBO.",
        ]
    else:
        lines.append("Not run (use --nuts N).")
    lines += [
        "",
        "## Predictive checks",
        "",
        "P(mean of the statistic over replicated data >= observed mean); near 0 or 1 means misfit.",
        "",
        "| statistic | posterior predictive p | prior predictive p |",
        "|---|---|---|",
    ]
    lines += [f"| {k} | {v:.3f} | {r['ppc']['prior_pvalue'][k]:.3f} |" for k, v in r["ppc"]["posterior_pvalue"].items()]
    lines += (
        ["", "## Time (seconds)", "", ", ".join(f"{k} {v}" for k, v in r["seconds"].items()), "", "## Figures", ""]
        + [f"![{f}](figures/{f})" for f in figures]
        + [""]
    )
    return "\n".join(lines)
