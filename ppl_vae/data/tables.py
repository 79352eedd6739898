"""Tables with a schema: the ``table`` data source and the reading and writing of rows through it.

A schema is plain data (stored in the run as ``DataSpec.meta["schema"]``): one entry per column,
``{"name", "type", "categories", "mean", "std", "min", "max", "levels"}`` where ``type`` is ``numeric``,
``integer`` (a count or any whole-number column: written back as whole numbers in the observed
range), ``categorical`` or ``boolean``. Types are inferred from the cells and can be overridden by
name (``data.options.types = {occupation = "categorical"}``). Empty cells (and ``NA``, ``nan``,
``null``, ``none``, ``?``) are missing: they become NaN and are masked out of the likelihood.

Rows are encoded for the model as floats: numeric and integer columns standardized with the
table's mean and standard deviation, categorical columns as codes 0..K-1 (the categories in sorted
order), boolean columns as 0/1. ``encode`` checks a new table against a schema with one-line errors
naming the column and row; ``decode_column`` turns model output back into cells of the schema's types
(a numeric column with at most ``MAX_LEVELS`` distinct values, ``levels``, is decoded to the nearest).
Nothing here knows about models.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ppl_vae.data.sources import Raw
from ppl_vae.registry import DATASETS, ConfigError

TYPES = ("numeric", "integer", "categorical", "boolean")
MISSING = {"", "na", "nan", "null", "none", "?", "<na>"}
_TRUE, _FALSE = {"true", "yes", "y", "t"}, {"false", "no", "n", "f"}
BUNDLED = "statsmodels:"  # data.path = "statsmodels:fair" reads a table shipped with statsmodels
MAX_LEVELS = 20  # a numeric column with at most this many distinct values is decoded to the nearest of them


def _missing(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    return str(v).strip().lower() in MISSING


def _key(v: Any) -> str:
    """A cell as a category key: numbers compare by value (``2``, ``2.0`` and ``2.00`` are one category)."""
    text = str(v).strip()
    try:
        return repr(float(text))
    except ValueError:
        return text


def read_csv(path: str) -> Any:
    """A CSV file with a header as a pandas DataFrame of strings (missing cells: None); one-line errors."""
    import pandas as pd

    p = Path(path)
    if not path or not p.is_file():
        raise ConfigError(f"CSV file '{path}' not found")
    if p.stat().st_size == 0:
        raise ConfigError(f"CSV file '{path}' is empty; it needs a header row and at least one data row")
    try:
        frame = pd.read_csv(p, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read '{path}' as CSV: {str(err).splitlines()[0]}") from None
    if len(frame) == 0:
        raise ConfigError(f"CSV file '{path}' has a header but no data rows")
    return frame


def _bundled(name: str) -> Any:
    try:
        import importlib

        module = importlib.import_module(f"statsmodels.datasets.{name}")
    except ImportError:
        raise ConfigError(
            f"data.path '{BUNDLED}{name}' needs statsmodels with its dataset '{name}': pip install 'ppl-vae[apps]'"
        ) from None
    return module.load_pandas().data


def _infer(values: List[Any]) -> str:
    present = [v for v in values if not _missing(v)]
    try:
        nums = np.array([float(v) for v in present], dtype=float)
    except (TypeError, ValueError):
        low = {str(v).strip().lower() for v in present}
        return "boolean" if len(low) == 2 and (low <= _TRUE | _FALSE) and low & _TRUE and low & _FALSE else "categorical"
    if len(nums) and set(np.unique(nums)) <= {0.0, 1.0}:
        return "boolean"
    if len(nums) and np.all(nums == np.round(nums)):
        return "integer"
    return "numeric"


def infer_schema(frame: Any, types: Optional[Dict[str, str]] = None, positional: Sequence[str] = ()) -> List[Dict[str, Any]]:
    """The schema of a DataFrame: each column's type (inferred, or from ``types`` by name / ``positional``),
    categories, and (numeric, integer) mean, standard deviation and range over the observed cells."""
    names = [str(c) for c in frame.columns]
    types = dict(types or {})
    unknown = [n for n in types if n not in names]
    if unknown:
        raise ConfigError(
            f"data.options.types names column '{unknown[0]}', which the table does not have; its columns: {', '.join(names)}"
        )
    if positional and len(positional) != len(names):
        raise ConfigError(f"data.columns lists {len(positional)} types but the table has {len(names)} columns")
    legacy = {"binary": "boolean", "numeric": "numeric"}
    schema = []
    for j, name in enumerate(names):
        values = list(frame.iloc[:, j])
        given = types.get(name) or (legacy.get(positional[j], positional[j].partition(":")[0]) if positional else "")
        kind = given or _infer(values)
        if kind not in TYPES:
            raise ConfigError(f"column '{name}': unknown type '{kind}'; use one of: {', '.join(TYPES)}")
        present = [v for v in values if not _missing(v)]
        col: Dict[str, Any] = {"name": name, "type": kind}
        if kind in ("categorical", "boolean"):
            by_key: Dict[str, str] = {}
            for v in present:
                by_key.setdefault(_key(v), str(v).strip())
            cats = sorted(by_key.values(), key=lambda c: (c.lower() in _TRUE, _key(c)))
            if kind == "boolean" and len(cats) > 2:
                raise ConfigError(f"column '{name}' is boolean but holds {len(cats)} values: {', '.join(cats[:5])}")
            col["categories"] = cats
        else:
            nums = _numbers(values, name, None)
            seen = nums[~np.isnan(nums)]
            if kind == "integer" and len(seen) and np.any(seen != np.round(seen)):
                raise ConfigError(f"column '{name}' is integer but holds e.g. {seen[seen != np.round(seen)][0]:g}")
            std = float(seen.std()) if len(seen) else 1.0
            levels = np.unique(seen)
            if kind == "numeric" and 1 < len(levels) <= MAX_LEVELS:  # a number with few values: ages in 5-year steps
                col["levels"] = [float(v) for v in levels]
            col.update(
                mean=float(seen.mean()) if len(seen) else 0.0,
                std=std if std > 0 else 1.0,
                min=float(seen.min()) if len(seen) else 0.0,
                max=float(seen.max()) if len(seen) else 0.0,
            )
        schema.append(col)
    return schema


def _numbers(values: List[Any], name: str, where: Optional[str]) -> np.ndarray:
    out = np.full(len(values), np.nan)
    for i, v in enumerate(values):
        if _missing(v):
            continue
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            out[i] = np.nan
        if not np.isfinite(out[i]):
            raise ConfigError(f"column '{name}' is numeric but {_row(i, where)} holds '{v}'")
    return out


def _row(i: int, where: Optional[str]) -> str:
    return f"row {i + 2} of '{where}'" if where else f"row {i}"


def check_columns(names: Sequence[str], schema: List[Dict[str, Any]], where: Optional[str] = None) -> None:
    """One-line error unless ``names`` are the schema's columns in the schema's order."""
    want = [c["name"] for c in schema]
    got = [str(n) for n in names]
    if got == want:
        return
    what = f"'{where}'" if where else "the table"
    missing, extra = [n for n in want if n not in got], [n for n in got if n not in want]
    if missing and extra:
        raise ConfigError(
            f"{what} has column '{extra[0]}' where the model was trained on '{missing[0]}' (renamed?); "
            f"expected columns: {', '.join(want)}"
        )
    if missing:
        raise ConfigError(f"{what} lacks column '{missing[0]}' of the model's schema; expected columns: {', '.join(want)}")
    if extra:
        raise ConfigError(f"{what} has column '{extra[0]}', which the model was not trained on; expected columns: {', '.join(want)}")
    dup = next((n for n in got if got.count(n) > 1), None)
    if dup is not None:
        raise ConfigError(f"{what} has column '{dup}' more than once")
    raise ConfigError(f"{what} has the model's columns in another order; expected: {', '.join(want)}")


def encode(frame: Any, schema: List[Dict[str, Any]], where: Optional[str] = None) -> np.ndarray:
    """A DataFrame as model input (n_rows, n_columns) float32, NaN where a cell is missing; one-line
    errors for columns that differ from the schema, unseen categories and non-numbers."""
    check_columns(list(frame.columns), schema, where)
    if len(frame) == 0:
        raise ConfigError(f"{where and repr(where) or 'the table'} has no rows")
    x = np.full((len(frame), len(schema)), np.nan, np.float32)
    for j, col in enumerate(schema):
        values = list(frame.iloc[:, j])
        if col["type"] in ("categorical", "boolean"):
            codes = {_key(c): k for k, c in enumerate(col["categories"])}
            for i, v in enumerate(values):
                if _missing(v):
                    continue
                code = codes.get(_key(v))
                if code is None:
                    known = ", ".join(col["categories"][:10])
                    raise ConfigError(
                        f"column '{col['name']}' {_row(i, where)} holds '{v}', a category not seen in training ({known})"
                    )
                x[i, j] = code
        else:
            x[:, j] = (_numbers(values, col["name"], where) - col["mean"]) / col["std"]
    return x


def decode_column(values: np.ndarray, col: Dict[str, Any]) -> List[Any]:
    """Model-space values of one column (codes, standardized numbers) as cells of the column's type:
    categories by name, integers rounded into the observed range, numbers de-standardized."""
    if col["type"] in ("categorical", "boolean"):
        k = len(col["categories"])
        return [col["categories"][min(max(int(round(float(v))), 0), k - 1)] for v in values]
    raw = values.astype(float) * col["std"] + col["mean"]
    if col.get("levels"):  # the nearest of the few values the column holds
        levels = np.asarray(col["levels"])
        return [float(v) for v in levels[np.abs(raw[:, None] - levels[None, :]).argmin(1)]]
    if col["type"] == "integer":
        return [int(v) for v in np.clip(np.round(raw), col["min"], col["max"])]
    return [float(v) for v in raw]


def likelihood_columns(schema: List[Dict[str, Any]], modes: int = 1) -> List[str]:
    """The ``tabular`` likelihood's column types for a schema (numbers: ``gmm:modes``, or ``numeric`` for 1)."""
    out = []
    for col in schema:
        if col["type"] == "boolean":
            out.append("binary")
        elif col["type"] == "categorical":
            out.append(f"categorical:{max(len(col['categories']), 2)}")
        else:
            out.append(f"gmm:{modes}" if modes > 1 else "numeric")
    return out


def table_meta(schema: List[Dict[str, Any]], modes: int) -> Dict[str, Any]:
    """The ``DataSpec.meta`` of a table: the schema and what the likelihood and older readers need."""
    return {
        "tabular": True,
        "schema": schema,
        "columns": likelihood_columns(schema, modes),
        "column_names": [c["name"] for c in schema],
        "categories": {c["name"]: c["categories"] for c in schema if "categories" in c},
    }


def schema_of(meta: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The schema stored in a run's data metadata (a one-line error when the run is not a table)."""
    schema = meta.get("schema")
    if not schema:
        raise ConfigError("this run was not trained on a table with a schema (data.name = 'table'); retrain with --data PATH.csv")
    return list(schema)


@DATASETS.register("table")
def load_table_raw(
    path: str = "", columns: Optional[Sequence[str]] = None, limit: int = 0, types: Optional[Dict[str, str]] = None, modes: int = 5
) -> Raw:
    """A CSV file (``data.path``), or a table bundled with statsmodels (``data.path = "statsmodels:fair"``):
    types inferred unless given (``data.options.types`` by name, ``data.columns`` by position);
    numeric columns get a ``modes``-component Gaussian mixture likelihood (1: a single Gaussian)."""
    if not isinstance(modes, int) or not 1 <= modes <= 50:
        raise ConfigError(f"data.options.modes must be an integer in 1..50, got {modes!r}")
    if types is not None and not isinstance(types, dict):
        raise ConfigError("data.options.types must be a table {column = type}")
    if path.startswith(BUNDLED):
        frame = _bundled(path[len(BUNDLED) :])
    elif not path:
        raise ConfigError("data.name = 'table' needs data.path: a .csv file with a header row (or 'statsmodels:fair')")
    else:
        frame = read_csv(path)
    schema = infer_schema(frame, types, list(columns or []))
    x = encode(frame, schema, path)
    return Raw(x, None, None, None, None, table_meta(schema, modes))


def split_frame(frame: Any, schema: List[Dict[str, Any]]) -> Tuple[np.ndarray, np.ndarray]:
    """(encoded rows, observed mask) of a DataFrame under a schema."""
    x = encode(frame, schema)
    return x, ~np.isnan(x)
