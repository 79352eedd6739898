"""A composite likelihood for tables: each column gets its own family.

Columns are described by strings: ``"numeric"`` (Normal, mean and scale from the decoder),
``"binary"`` (Bernoulli), ``"categorical:K"`` (K categories coded 0..K-1), ``"gmm:K"`` (a K-component
Gaussian mixture whose weights, means and scales all come from the decoder: a numeric column with
several modes, the per-column mixture of CTGAN/TVAE's mode-specific normalisation). The datum is a row
of floats of shape ``(n_columns,)``; the decoder returns the concatenated parameters of all
columns (``sum of per-column sizes`` values).
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple, Union

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch.distributions import constraints

from ppl_vae.components.likelihoods import DataSupportError, Likelihood, is_integer
from ppl_vae.registry import LIKELIHOODS, ConfigError

# The smallest scale of a mixture component, in the column's standard deviations: a continuous density on a
# column with few distinct values (ages in 5-year steps) would otherwise collapse onto them without bound.
GMM_MIN_SCALE = 0.05


def parse_column(spec: str) -> Tuple[str, int, int]:
    """'numeric' -> ('numeric', 2 params); 'binary' -> ('binary', 1); 'categorical:K' -> ('categorical', K)."""
    kind, _, k = spec.partition(":")
    if kind == "numeric" and not k:
        return kind, 2, 0
    if kind == "binary" and not k:
        return kind, 1, 0
    if kind == "categorical" and k.isdigit() and int(k) >= 2:
        return kind, int(k), int(k)
    if kind == "gmm" and k.isdigit() and int(k) >= 1:
        return kind, 3 * int(k), int(k)
    raise ConfigError(f"bad column type '{spec}': use 'numeric', 'binary', 'categorical:K' with K >= 2 or 'gmm:K' with K >= 1")


class ColumnwiseDistribution(dist.TorchDistribution):
    """Independent columns of different families; batch shape (..., n_columns), event shape ()."""

    arg_constraints = {}
    support = constraints.real

    def __init__(self, parts: List[dist.TorchDistribution], kinds: Sequence[str]) -> None:
        self.parts, self.kinds = parts, list(kinds)
        batch = torch.broadcast_shapes(*[p.batch_shape for p in parts]) + (len(parts),)
        super().__init__(batch_shape=batch, validate_args=False)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        cols = value.unbind(-1)
        return torch.stack([p.log_prob(c.long() if k == "categorical" else c) for p, c, k in zip(self.parts, cols, self.kinds)], -1)

    def sample(self, sample_shape: Union[torch.Size, List[int], Tuple[int, ...]] = torch.Size()) -> torch.Tensor:
        return torch.stack([p.sample(sample_shape).to(torch.get_default_dtype()) for p in self.parts], -1)

    @property
    def mean(self) -> torch.Tensor:
        """Point predictions: the mean of numeric columns, P(1) for binary, the mode of categorical."""
        out = []
        for p, k in zip(self.parts, self.kinds):
            out.append(p.probs.argmax(-1).to(p.probs.dtype) if k == "categorical" else p.mean)
        return torch.stack(out, -1)

    def expand(self, batch_shape: Any, _instance: Any = None) -> ColumnwiseDistribution:
        batch_shape = torch.Size(batch_shape)
        parts = [p.expand(batch_shape[:-1]) for p in self.parts]
        return ColumnwiseDistribution(parts, self.kinds)


@LIKELIHOODS.register("tabular")
class TabularLikelihood(Likelihood):
    """Numeric, binary and categorical columns, each with its own likelihood; masks allowed."""

    def __init__(self, columns: Sequence[str]) -> None:
        super().__init__()
        if not columns:
            raise ConfigError("TabularLikelihood needs a list of column types, e.g. ['numeric', 'binary', 'categorical:3']")
        self.columns = [parse_column(c) for c in columns]
        self.sizes = [n for _, n, _ in self.columns]

    @classmethod
    def data_defaults(cls, meta: dict) -> dict:
        return {"columns": list(meta.get("columns") or [])}

    def _build(self) -> None:
        if self.data_shape != (len(self.columns),):
            raise ConfigError(f"TabularLikelihood describes {len(self.columns)} columns but the data have shape {self.data_shape}")

    def decoder_output_shape(self, data_shape: Optional[Sequence[int]] = None) -> tuple:
        return (sum(self.sizes),)

    def split(self, params: torch.Tensor) -> list:
        return list(params.split(self.sizes, dim=-1))

    def elementwise(self, params: list) -> dist.TorchDistribution:
        parts: List[dist.TorchDistribution] = []
        for (kind, _, _), p in zip(self.columns, params):
            if kind == "numeric":
                parts.append(dist.Normal(p[..., 0], F.softplus(p[..., 1]) + 1e-3, validate_args=False))
            elif kind == "binary":
                parts.append(dist.Bernoulli(logits=p[..., 0], validate_args=False))
            elif kind == "gmm":
                logits, loc, scale = p.chunk(3, dim=-1)
                parts.append(
                    dist.MixtureSameFamily(
                        dist.Categorical(logits=logits, validate_args=False),
                        dist.Normal(loc, F.softplus(scale) + GMM_MIN_SCALE, validate_args=False),
                        validate_args=False,
                    )
                )
            else:
                parts.append(dist.Categorical(logits=p, validate_args=False))
        return ColumnwiseDistribution(parts, [k for k, _, _ in self.columns])

    def in_support(self, x: torch.Tensor) -> torch.Tensor:
        ok = []
        for j, (kind, _, k) in enumerate(self.columns):
            c = x[..., j]
            if kind == "binary":
                ok.append((c == 0) | (c == 1))
            elif kind == "categorical":
                ok.append(is_integer(c) & (c >= 0) & (c < k))
            else:
                ok.append(torch.isfinite(c))
        return torch.stack(ok, -1)

    def check_support(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> None:
        try:
            super().check_support(x, mask)
        except DataSupportError:
            bad = ~self.in_support(torch.nan_to_num(x)) & (torch.ones_like(x, dtype=torch.bool) if mask is None else mask.bool())
            col = int(bad.any(0).nonzero()[0]) if bad.any() else None
            if col is None:
                raise
            kind, _, k = self.columns[col]
            want = {"binary": "0 or 1", "categorical": f"integer codes 0..{k - 1}"}.get(kind, "finite numbers")
            raise DataSupportError(
                f"column {col} is declared '{kind}' and needs {want}, but holds e.g. "
                f"{float(x[:, col][bad[:, col]][0]):g}; fix the column types or the data"
            ) from None
