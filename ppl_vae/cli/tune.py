"""``ppl-vae tune``: hyperparameter search with Optuna over the ranges a recipe declares or ``--param`` gives
(``ppl_vae.runs.tune`` owns the space, the study, the trials and best.toml; this module parses the command)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

from ppl_vae.registry import ConfigError
from ppl_vae.schema import Rule, positive_float, positive_int, seed


def register(sub: Any, number: Callable[[Rule], Callable[[str], Any]]) -> None:
    p = sub.add_parser(
        "tune",
        help="hyperparameter search with Optuna (pruned on the validation ELBO, resumable, writes best.toml)",
        description=(
            "Search the ranges of the recipe's [tune.params] table and of --param flags for the highest validation ELBO. "
            "The study is kept in OUT/study.db: re-running the same command resumes it. Each trial is a run directory "
            "OUT/trials/NNNN; the best config is written to OUT/best.toml (train it with 'ppl-vae train OUT/best.toml')."
        ),
    )
    p.add_argument("recipe", help="recipe name (see 'ppl-vae recipes') or a path to your own .toml file")
    p.add_argument(
        "--trials",
        type=number(positive_int(100_000)),
        default=None,
        metavar="N",
        help="finished (complete or pruned) trials the study should hold (default: the recipe's tune.trials, else 20)",
    )
    p.add_argument("--out", metavar="DIR", help="study folder (default: runs/tune-RECIPE; an existing study there is resumed)")
    p.add_argument(
        "--param",
        dest="params",
        action="append",
        default=[],
        metavar="KEY=SPEC",
        help="search KEY over SPEC: LOW:HIGH, LOW:HIGH:STEP, log:LOW:HIGH or choice:V1,V2,... (values as TOML); "
        "e.g. --param train.lr=log:1e-4:1e-2 --param model.latent_dim=choice:8,16,32 (repeatable; replaces the recipe's entry)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value in every trial, e.g. --set train.epochs=20 (repeatable)",
    )
    p.add_argument(
        "--seed", type=number(seed()), default=0, metavar="N", help="the sampler's seed (TPE; default 0); trials train with train.seed"
    )
    p.add_argument("--timeout", type=number(positive_float()), default=None, metavar="S", help="start no new trial after S seconds")
    p.add_argument("--figures", action="store_true", help="write each trial's figures (off by default)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ppl_vae.runs.tune import tune
    from ppl_vae.runs.tune_space import load_space

    space = load_space(args.recipe, args.params, args.overrides)
    out = Path(args.out) if args.out else Path("runs") / f"tune-{Path(args.recipe).stem}"
    try:
        result = tune(
            space,
            out,
            trials=args.trials,
            seed=args.seed,
            timeout=args.timeout,
            figures=args.figures,
            log=lambda line: print(line, flush=True),
        )
    except KeyboardInterrupt:
        print(f"ppl-vae: interrupted; the study in '{out}' is kept: run the same command to resume it", file=sys.stderr)
        return 130
    except OSError as err:
        raise ConfigError(f"could not write '{err.filename or out}': {err.strerror or err}; the study in '{out}' is kept") from None
    print(result.table)
    if result.best is None:
        print(f"no trial completed; nothing written to {out}/best.toml")
    else:
        print(f"best config: {result.best}  (train it with: ppl-vae train {result.best})")
    return 0
