"""What the table applications share: the trained model behind a run, its schema, and turning model
output (codes, standardized numbers, per-column predictive distributions) back into DataFrames.

A "model" here is what ``ppl_vae.load(RUN)`` returns (anything with ``.module``, ``.spec`` and
``.config``) or a bare module with its ``DataSpec`` passed as ``spec=``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from ppl_vae import kinds
from ppl_vae.data.spec import DataSpec
from ppl_vae.data.tables import decode_column, schema_of
from ppl_vae.registry import ConfigError


@dataclass
class Trained:
    """A trained module, the data specification it was trained on and its kind (checked for a capability)."""

    module: Any
    spec: Optional[DataSpec]
    kind: kinds.ModelKind

    @property
    def schema(self) -> List[Dict[str, Any]]:
        if self.spec is None:
            raise ConfigError("tables need the run's schema: pass ppl_vae.load(RUN) (or spec=the run's DataSpec)")
        return schema_of(self.spec.meta)

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device


def trained(model: Any, capability: str, action: str, spec: Optional[DataSpec] = None) -> Trained:
    """The module, spec and kind behind ``model`` (a loaded run, or a module with or without ``spec``: tables
    need it for their schema), requiring ``capability``."""
    module = getattr(model, "module", model)
    spec = spec if spec is not None else getattr(model, "spec", None)
    config = getattr(model, "config", None)
    name = config.model.kind if config is not None else kinds.kind_of(module).name
    return Trained(module, spec, kinds.require(name, capability, action))


def predictive(module: Any, params: torch.Tensor) -> List[Tuple[str, torch.Tensor]]:
    """Per column, its likelihood's kind and the predictive distribution's summary given decoder output
    ``params``: the mean of a numeric column (n,), P(1) of a binary one (n,), class probabilities (n, K)."""
    columnwise = module.likelihood.elementwise(module.likelihood.split(params))
    parts, kinds_ = getattr(columnwise, "parts", None), getattr(columnwise, "kinds", None)
    if parts is None or kinds_ is None:
        raise ConfigError("this application needs a model with the 'tabular' likelihood (a run trained on a table)")
    return [(k, p.probs if k in ("categorical", "binary") else p.mean) for p, k in zip(parts, kinds_)]


def point_codes(summaries: List[Tuple[str, torch.Tensor]]) -> np.ndarray:
    """(n, d) model-space point predictions from (averaged) summaries: the mean of a numeric column, the
    most probable value of a binary or categorical one."""
    cols = []
    for k, s in summaries:
        if k == "categorical":
            cols.append(s.argmax(-1).to(torch.float32))
        elif k == "binary":
            cols.append((s > 0.5).to(torch.float32))
        else:
            cols.append(s.to(torch.float32))
    return torch.stack(cols, -1).cpu().numpy()


def decode_rows(x: np.ndarray, schema: List[Dict[str, Any]]) -> Any:
    """Model-space rows (n, d) as a DataFrame of the schema's columns and types."""
    import pandas as pd

    return pd.DataFrame({col["name"]: decode_column(x[:, j], col) for j, col in enumerate(schema)})


def fill_frame(frame: Any, filled: np.ndarray, missing: np.ndarray, schema: List[Dict[str, Any]]) -> Any:
    """A copy of ``frame`` whose missing cells (``missing``, (n, d) bool) take the decoded ``filled`` values;
    every observed cell is left as it was. Whole-number columns of a numeric dtype become pandas ``Int64``."""
    import pandas as pd

    out = frame.copy()
    for j, col in enumerate(schema):
        rows = np.flatnonzero(missing[:, j])
        if not len(rows):
            continue
        values = decode_column(filled[rows, j], col)
        name = out.columns[j]
        numeric_dtype = pd.api.types.is_numeric_dtype(out[name].dtype)
        if numeric_dtype and col["type"] in ("categorical", "boolean"):
            values = [float(v) for v in values]
        if not numeric_dtype:
            out[name] = out[name].astype(object)
            values = [str(v) for v in values]
        out.iloc[rows, j] = values
        if numeric_dtype and col["type"] == "integer":
            series = pd.to_numeric(out[name])
            if bool((series.dropna() == series.dropna().round()).all()):
                out[name] = series.round().astype("Int64")
    return out
