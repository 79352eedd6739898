"""The ``ppl-vae`` command line: parses arguments, resolves a recipe, calls ``ppl_vae.runs``.

It chooses matplotlib's non-interactive backend for itself (the library leaves it alone).
Every user error (bad recipe, data, checkpoint, output directory) is printed as one line
``ppl-vae: error: ...`` with exit code 2; nothing is left half-written.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from ppl_vae.cli.common import _number, _Parser, where as _where
from ppl_vae.registry import ConfigError


def _parser() -> argparse.ArgumentParser:
    from ppl_vae.config import EvalConfig
    from ppl_vae.runs.analysis import COMPARE_RULES, DIAGNOSE_RULES
    from ppl_vae.runs.rundir import SAMPLE_N
    from ppl_vae.schema import iter_rules, seed

    evaluation = dict(iter_rules(EvalConfig))
    p = _Parser(prog="ppl-vae", description="Variational autoencoders as Pyro programs.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a recipe (default: vae-digits) into a run directory")
    t.add_argument(
        "recipe",
        nargs="?",
        default=None,
        help="recipe name (see 'ppl-vae recipes') or a path to your own .toml file (default: vae-digits)",
    )
    t.add_argument("--out", help="run directory (default: runs/RECIPE-TIMESTAMP)")
    t.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.epochs=5 (repeatable)",
    )
    t.add_argument("--seed", type=_number(seed()), default=None, help="the same as --set train.seed=N")
    t.add_argument(
        "--data",
        metavar="PATH",
        default=None,
        help="train on this file or folder: .csv (a table), .npy/.npz (an array), a folder of images, .txt (text); "
        "sets data.name, data.path and clears the recipe's data.options (--set data.* still applies after it)",
    )
    t.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    t.add_argument(
        "--dry-run",
        action="store_true",
        help="check the recipe, the overrides, the data and the model, then stop without writing anything",
    )
    t.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    t.add_argument("--no-figures", action="store_true", help="skip writing figures")
    t.add_argument(
        "--distributed", action="store_true", help="data-parallel training under torchrun (DDP: NCCL on GPUs, gloo on CPUs)"
    )

    e = sub.add_parser("evaluate", help="test-set ELBO, log p(x), bits/dim, reconstruction, active units")
    e.add_argument("run_dir")
    e.add_argument(
        "--iwae-samples",
        type=_number(evaluation["iwae_samples"]),
        default=None,
        metavar="K",
        help="importance samples per datum (default: the run's eval.iwae_samples)",
    )
    e.add_argument(
        "--n-test",
        type=_number(evaluation["n_test"]),
        default=None,
        metavar="N",
        help="evaluate on the first N test data (0 = all; default: the run's eval.n_test)",
    )
    e.add_argument("--json", action="store_true", help="print JSON instead of a table")
    e.add_argument(
        "--checkpoint",
        choices=["last", "best"],
        default="last",
        help="the model of the last epoch (default) or of the best validation ELBO",
    )
    e.add_argument(
        "--disentanglement",
        action="store_true",
        help="disentanglement metrics (runs on dsprites): BetaVAE, FactorVAE, MIG, DCI, SAP, modularity",
    )
    e.add_argument("--fast", action="store_true", help="with --disentanglement: small sample sizes (quick look)")

    s = sub.add_parser("sample", help="a grid of generated samples")
    s.add_argument("run_dir")
    s.add_argument("-n", type=_number(SAMPLE_N), default=64, help="number of samples (default 64)")
    s.add_argument("--out", help="PNG file (default: RUN_DIR/figures/samples.png)")
    s.add_argument("--seed", type=_number(seed()), default=0)

    d = sub.add_parser("diagnose", help="can the amortized posterior be trusted? writes a report directory")
    d.add_argument("run_dir")
    d.add_argument("--data", default="test", choices=["train", "val", "test"], help="which split (default: test)")
    d.add_argument(
        "--n", type=_number(DIAGNOSE_RULES["n"]), default=1000, help="diagnose the first N data of the split (default 1000)"
    )
    d.add_argument(
        "--samples", type=_number(DIAGNOSE_RULES["samples"]), default=1000, metavar="S", help="guide draws per datum (default 1000)"
    )
    d.add_argument(
        "--nuts",
        type=_number(DIAGNOSE_RULES["nuts_points"]),
        default=2,
        metavar="N_POINTS",
        help="data with a NUTS reference (default 2)",
    )
    d.add_argument(
        "--nuts-draws",
        type=_number(DIAGNOSE_RULES["nuts_samples"]),
        default=500,
        metavar="D",
        help="NUTS warm-up and kept draws per chain, 4 chains (default 500)",
    )
    d.add_argument(
        "--sbc", type=_number(DIAGNOSE_RULES["sbc_sims"]), default=500, metavar="M", help="simulations for amortized SBC (default 500)"
    )
    d.add_argument("--out", help="report directory (default: RUN_DIR/diagnostics-SPLIT)")
    d.add_argument("--seed", type=_number(seed()), default=0)

    c = sub.add_parser("compare", help="held-out log p(x) of two or more runs, paired differences")
    c.add_argument("run_dirs", nargs="+")
    c.add_argument("--data", default="test", choices=["train", "val", "test"])
    c.add_argument("--n", type=_number(COMPARE_RULES["n"]), default=1000, help="the first N data of the split (default 1000)")
    c.add_argument("--samples", type=_number(COMPARE_RULES["samples"]), default=1000, metavar="K", help="importance samples per datum")
    c.add_argument("--json", action="store_true", help="print JSON instead of a table")

    sub.add_parser("recipes", help="list the named recipes")
    for module in _command_modules():
        module.register(sub, _number)
    return p


def _command_modules() -> list:
    """The command modules of this package: each adds its sub-command(s) with ``register(sub, number)``.

    A new command is one module here with ``register`` setting ``handler=`` on its parser; nothing else changes.
    """
    import importlib
    import pkgutil

    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "common")
    return [importlib.import_module(f"{__name__}.{name}") for name in names]


def _table(report: dict) -> str:
    px = "log p(x | y)" if report.get("conditional_on_label") else "log p(x)"
    rows = [("test data", f"{report['n']}")]
    if "accuracy" in report:
        rows.append(("accuracy of q(y|x)", f"{report['accuracy']:.4f}"))
    if "baseline_accuracy" in report:
        rows.append((f"supervised-only baseline ({report['labels']} labels)", f"{report['baseline_accuracy']:.4f}"))
    if "elbo" in report:  # a model without latent variables (the sequence kind rnn) reports its exact log p(x) only
        rows.append(("ELBO (nats)", f"{report['elbo']:.3f} ± {report['elbo_se']:.3f}"))
    rows.append((f"{px}, K={report['iwae_samples']}", f"{report['log_px']:.3f} ± {report['log_px_se']:.3f}"))
    if "gap" in report:
        rows.append((f"gap {px} - ELBO", f"{report['gap']:.3f}"))
    if "nll_per_step" in report:  # sequence kinds: nats per time step over all test steps
        rows.append((f"NLL per time step ({report['steps']} steps)", f"{report['nll_per_step']:.3f}"))
    if "bits_per_dim" in report:  # kinds of text or sequences report per-token figures instead
        rows.append(("bits/dim", f"{report['bits_per_dim']:.4f}"))
    if "perplexity" in report:
        rows += [("perplexity per token", f"{report['perplexity']:.2f}"), ("KL (nats)", f"{report['kl']:.3f}")]
        rows += [("active units", f"{report['active_units']}"), ("I(x; z) (nats)", f"{report['mutual_information']:.3f}")]
    if "mse" in report:
        rows += [("reconstruction MSE", f"{report['mse']:.5f}"), ("active units", f"{report['active_units']}")]
    if "seconds_per_epoch" in report:
        rows.append(("seconds per epoch", f"{report['seconds_per_epoch']:.2f}"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def cmd_train(args: argparse.Namespace) -> int:
    from ppl_vae.runs import CHECKPOINT, CONFIG, DEFAULT_RECIPE, load_config, prepare, train_run

    overrides = list(args.overrides) + ([f"train.seed={args.seed}"] if args.seed is not None else [])
    if args.data:
        from ppl_vae.data import source_for_path

        overrides = [f"data.name={source_for_path(args.data)}", f"data.path={json.dumps(args.data)}", "data.options={}"] + overrides
    if args.resume:
        run = Path(args.resume)
        if not (run / CONFIG).is_file():
            raise ConfigError(f"'{run}' is not a run directory (no {CONFIG}); nothing to resume")
        cfg = load_config(str(run / CONFIG), overrides)
        out = run
    else:
        name = args.recipe or DEFAULT_RECIPE
        cfg = load_config(name, overrides)
        out = Path(args.out) if args.out else Path("runs") / f"{Path(name).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    if args.dry_run:
        kind, splits, module, objective = prepare(cfg)
        n_params = sum(p.numel() for p in module.parameters())
        print(
            f"ok: model.kind '{kind.name}' with {n_params} parameters, objective '{cfg.objective.get('name')}', "
            f"data '{splits.spec.source}' {splits.spec.sizes}; nothing written"
        )
        return 0
    if args.distributed:
        from ppl_vae.training import distributed

        distributed.init_from_env()
        if args.out is None and not args.resume:  # every rank must agree on the directory
            raise ConfigError("--distributed needs an explicit --out (or --resume RUN_DIR)")
    try:
        metrics = train_run(cfg, out, progress=not args.no_progress, resume=bool(args.resume), figures=not args.no_figures)
    except KeyboardInterrupt:
        if (out / CHECKPOINT).is_file():
            print(
                f"ppl-vae: interrupted; the last checkpoint in '{out}' is intact: continue with 'ppl-vae train --resume {out}'",
                file=sys.stderr,
            )
        else:
            print("ppl-vae: interrupted before the first checkpoint; nothing was kept", file=sys.stderr)
        return 130
    except OSError as err:
        kept = (
            f"; the last checkpoint in '{out}' is intact: continue with 'ppl-vae train --resume {out}'"
            if (out / CHECKPOINT).is_file()
            else "; nothing was kept"
        )
        raise ConfigError(f"could not write {_where(err)}: {err.strerror or err}{kept}") from None
    finally:
        if args.distributed:
            distributed.shutdown()
    if metrics:  # rank 0 (or a single process)
        print(f"run directory: {out}")
        print(_table(metrics))
    return 0


def _metrics_table(r: dict) -> str:
    rows = [
        ("BetaVAE score", r["beta_vae"]["eval_accuracy"]),
        ("FactorVAE score", r["factor_vae"]["eval_accuracy"]),
        ("MIG", r["mig"]["mig"]),
        ("DCI disentanglement", r["dci"]["disentanglement"]),
        ("DCI completeness", r["dci"]["completeness"]),
        ("DCI informativeness", r["dci"]["informativeness_test"]),
        ("SAP", r["sap"]["sap"]),
        ("modularity", r["modularity_explicitness"]["modularity"]),
        ("explicitness", r["modularity_explicitness"]["explicitness"]),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v:.4f}" for k, v in rows) + f"\n(scikit-learn {r['mig']['sklearn']})"


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ppl_vae.runs import evaluate_run

    if args.disentanglement:
        from ppl_vae.runs import disentanglement_run

        r = disentanglement_run(args.run_dir, fast=args.fast)
        print(json.dumps(r, indent=2) if args.json else _metrics_table(r))
        return 0

    report = evaluate_run(args.run_dir, args.iwae_samples, args.n_test, progress=not args.json, checkpoint=args.checkpoint)
    print(json.dumps(report, indent=2) if args.json else _table(report))
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from ppl_vae.runs import sample_run

    out = sample_run(args.run_dir, args.n, args.out, args.seed)
    if out.suffix == ".txt":  # kinds whose data are text write lines: show them too
        print(out.read_text(encoding="utf-8"), end="")
    print(out)
    return 0


def cmd_diagnose(args: argparse.Namespace) -> int:
    from ppl_vae.runs import diagnose_run

    results, out = diagnose_run(
        args.run_dir,
        args.data,
        args.n,
        args.samples,
        args.nuts,
        args.sbc,
        args.out,
        progress=True,
        seed=args.seed,
        nuts_samples=args.nuts_draws,
        nuts_warmup=args.nuts_draws,
    )
    for name, v in results["verdicts"].items():
        print(f"{'PASS' if v['passed'] else 'FAIL'}  {name}: {v['message']}")
    print(f"report: {out / 'report.md'}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from ppl_vae.diagnostics import comparison_table
    from ppl_vae.runs import compare_runs

    rows = compare_runs(args.run_dirs, args.data, args.n, args.samples, progress=not args.json)
    print(json.dumps(rows, indent=2) if args.json else comparison_table(rows))
    return 0


def cmd_recipes(args: argparse.Namespace) -> int:
    from ppl_vae.runs import describe, recipe_names

    names = recipe_names()
    width = max(map(len, names), default=0)
    for name in names:
        print(f"{name:<{width}}  {describe(name)}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as stop:  # --help, or a bad argument already reported in one line
        return int(stop.code or 0)
    handler = (
        getattr(args, "handler", None)
        or {
            "train": cmd_train,
            "evaluate": cmd_evaluate,
            "sample": cmd_sample,
            "diagnose": cmd_diagnose,
            "compare": cmd_compare,
            "recipes": cmd_recipes,
        }[args.command]
    )
    import matplotlib

    matplotlib.use("Agg")  # figures go to files; the library itself leaves the backend alone
    from ppl_vae.training.fit import TrainingDiverged

    try:
        return handler(args)
    except (ConfigError, TrainingDiverged) as err:
        print(f"ppl-vae: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk or an unwritable folder while writing results
        print(f"ppl-vae: error: could not write {_where(err)}: {err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ppl-vae: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
