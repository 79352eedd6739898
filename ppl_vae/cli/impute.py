"""``ppl-vae impute RUN IN.csv --out OUT.csv``: fill the missing cells of a table with a run trained on it.

``ppl_vae.apps.impute`` owns the sampler; this module reads the CSV (every cell as text, so observed
cells are written back exactly as read) and writes the completed table(s) atomically: on any error
nothing is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable, List

from ppl_vae.registry import ConfigError
from ppl_vae.schema import Rule, positive_int, seed


def register(sub: Any, number: Callable[[Rule], Callable[[str], Any]]) -> None:
    p = sub.add_parser(
        "impute",
        help="fill the missing cells of a CSV table with a run trained on its columns",
        description=(
            "Fill every empty cell of IN.csv (same columns as the run's training table) by Metropolis-within-Gibbs "
            "sampling of p(missing | observed): the posterior-predictive mean (numbers) or mode (categories). "
            "--multiple M writes M completed tables drawn from p(missing | observed) into --out-dir."
        ),
    )
    p.add_argument("run_dir")
    p.add_argument("input", nargs="?", help="a .csv table with a header row; empty cells are missing")
    p.add_argument("--out", help="the completed .csv table to write (single imputation)")
    p.add_argument(
        "--multiple", type=number(positive_int(1000)), default=None, metavar="M", help="multiple imputation: M completed tables"
    )
    p.add_argument("--out-dir", help="with --multiple: the folder for imputed-1.csv ... imputed-M.csv")
    p.add_argument("--seed", type=number(seed()), default=0)
    p.set_defaults(handler=run_impute)


def write_csv(frame: Any, path: Path) -> None:
    """Write a DataFrame as CSV atomically (a temporary file renamed into place)."""
    from ppl_vae.training.checkpoint import atomic_write

    atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


def check_out(path: str, suffix: str = ".csv") -> Path:
    out = Path(path)
    if out.suffix.lower() != suffix:
        raise ConfigError(f"--out must name a {suffix} file, got '{out}'")
    if not out.parent.is_dir():
        raise ConfigError(f"cannot write '{out}': folder '{out.parent}' does not exist")
    return out


def run_impute(args: argparse.Namespace) -> int:
    from ppl_vae.apps.impute import impute, impute_multiple
    from ppl_vae.data.tables import encode, read_csv, schema_of
    from ppl_vae.runs import load_run

    run = load_run(args.run_dir, "auto")
    if not args.input:
        raise ConfigError("impute needs the table to fill in: ppl-vae impute RUN IN.csv --out OUT.csv")
    if args.multiple is None and not args.out:
        raise ConfigError("impute needs --out OUT.csv (or --multiple M --out-dir DIR)")
    if args.multiple is not None and not args.out_dir:
        raise ConfigError("--multiple M needs --out-dir DIR for the M completed tables")
    if args.out_dir and args.multiple is None:
        raise ConfigError("--out-dir is for multiple imputation: add --multiple M")
    out = check_out(args.out) if args.out else None
    frame = read_csv(args.input)
    encode(frame, schema_of(run.spec.meta), args.input)  # one-line errors name the file's row and column
    written: List[Path] = []
    if out is not None:
        write_later = impute(run, frame, seed=args.seed)
        if args.multiple is None:
            write_csv(write_later, out)
            print(f"imputed {_n_missing(frame)} missing cells of {len(frame)} rows: {out}")
            return 0
    tables = impute_multiple(run, frame, args.multiple, seed=args.seed)
    folder = Path(args.out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    if out is not None:
        write_csv(write_later, out)
        written.append(out)
    for i, table in enumerate(tables, 1):
        write_csv(table, folder / f"imputed-{i}.csv")
        written.append(folder / f"imputed-{i}.csv")
    print(f"imputed {_n_missing(frame)} missing cells of {len(frame)} rows, {args.multiple} times: {folder}")
    return 0


def _n_missing(frame: Any) -> int:
    from ppl_vae.data.tables import _missing

    return int(sum(_missing(v) for v in frame.to_numpy().ravel()))
