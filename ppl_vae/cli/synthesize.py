"""``ppl-vae synthesize RUN -n N --out synth.csv [--report REAL.csv]``: synthetic rows of a table.

``ppl_vae.apps.synthesize`` draws the rows and computes the reports; this module checks the
arguments, computes everything first and only then writes the CSV (atomically): on any error,
nothing is written.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Callable

import numpy as np

from ppl_vae.registry import ConfigError
from ppl_vae.schema import Rule, positive_int, seed


def register(sub: Any, number: Callable[[Rule], Callable[[str], Any]]) -> None:
    p = sub.add_parser(
        "synthesize",
        help="synthetic rows of a table from a run trained on it, with a fidelity and privacy report",
        description=(
            "Draw N rows from the run's model (z from the prior, every cell from p(x | z)) in the training table's schema. "
            "--report REAL.csv adds SDMetrics' quality score (column shapes, column-pair trends) against REAL.csv and the "
            "distance to the closest training record of synthetic rows against that of the run's held-out (test) rows."
        ),
    )
    p.add_argument("run_dir")
    p.add_argument("-n", type=number(positive_int(10_000_000)), default=None, help="number of rows (>= 1; required)")
    p.add_argument("--out", help="the .csv file to write (required)")
    p.add_argument("--report", metavar="REAL.csv", help="real rows (same columns) to compare against")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--seed", type=number(seed()), default=0)
    p.set_defaults(handler=run_synthesize)


def _model_space(part: Any) -> np.ndarray:
    x = part.x.cpu().numpy().astype(np.float64)
    if part.mask is not None:
        x[~part.mask.cpu().numpy()] = np.nan
    return x


def run_synthesize(args: argparse.Namespace) -> int:
    from ppl_vae.apps.synthesize import synthesis_report, synthesize
    from ppl_vae.cli.impute import check_out, write_csv
    from ppl_vae.data.tables import encode, read_csv, schema_of
    from ppl_vae.runs import load_run

    run = load_run(args.run_dir, "auto")
    if args.n is None or not args.out:
        raise ConfigError("synthesize needs -n N (rows) and --out synth.csv")
    out = check_out(args.out)
    schema = schema_of(run.spec.meta)
    real = None
    if args.report:
        real = read_csv(args.report)
        encode(real, schema, args.report)  # the same columns, categories and numbers as the training table
    synthetic = synthesize(run, args.n, seed=args.seed)
    report = None
    if real is not None:
        train, holdout = _model_space(run.split("train")), _model_space(run.split("test"))
        report = synthesis_report(synthetic, real, schema, train, holdout, seed=args.seed)
    write_csv(synthetic, out)
    if args.json:
        print(json.dumps({"n": args.n, "out": str(out), **(report or {})}))
        return 0
    print(f"wrote {args.n} synthetic rows: {out}")
    if report is not None:
        q, p = report["quality"], report["privacy"]
        print(f"quality score (SDMetrics)    {q['quality_score']:.4f}")
        print(f"  column shapes              {q['column_shapes']:.4f}")
        print(f"  column-pair trends         {q['column_pair_trends']:.4f}")
        print(f"DCR to training, synthetic   median {p['dcr_synthetic_median']:.4f}")
        print(
            f"DCR to training, held-out    median {p['dcr_holdout_median']:.4f}  "
            f"(ratio {p['dcr_ratio']:.3f}; < 1: closer than new real rows)"
        )
        print(f"exact copies                 {p['exact_copies']:.3%} synthetic, {p['exact_copies_holdout']:.3%} held-out")
        print(f"closer than held-out's 5th percentile  {p['closer_than_holdout_p5']:.3%} (5% expected)")
    return 0
