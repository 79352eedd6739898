"""Lossless compression with bits-back coding (BB-ANS; Townsend, Bird and Barber, ICLR 2019).

A trained VAE with a factorised Gaussian prior, a diagonal Gaussian guide and a discrete likelihood
turns an array of data into a ``.ppz`` byte string and back, exactly. The entropy coder is the
stack ANS coder of the ``constriction`` library; this module computes its probability tables.

Each latent dimension is cut into ``2**latent_bits`` bins of equal mass under the prior, so the
prior codes a bin index uniformly. Per batch of data the encoder (1) pops z's bins off the stack
with the guide's quantised posterior (the bits got back), (2) pushes x with the likelihood at the
bins' centres, and (3) pushes z's bins with the prior. The decoder undoes the three steps in
reverse, batch by batch from the last. Batches share one stack (chained); the first batches grow
only as fast as the stack holds bits for their pops, so the pseudo-random initial words cover one
datum's latent and are paid once; they are reported apart (``initial_bits``). One encoder and one
decoder call per batch (a ramp-up batch: one more encoder call), in float64 on the CPU, so encoder
and decoder compute the same probabilities; a digest of the data catches arithmetic that differed.

The container (header, checksums, one-line errors for a wrong model, a truncated or a corrupted
file) is ``ppl_vae.apps.ppz``.
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Tuple, cast

import numpy as np
import pyro.distributions as dist
import torch
from torch.distributions import constraints

from ppl_vae import kinds
from ppl_vae.apps import ppz
from ppl_vae.components.likelihoods import Likelihood
from ppl_vae.registry import LIKELIHOODS, ConfigError

LATENT_BITS = 12  # 2**12 bins per latent dimension: binary data code as well with 6..10, 8-bit data need 12+ (benchmarks/)
TABLE_ENTRIES = 2**22  # the largest probability table built at once (float64: 32 MiB) sets the batch size
MARGIN_BITS = 64  # a batch pops at most the stack's bits less this margin
MAX_COUNT = 65535  # count data: the largest value coded (the alphabet grows with it)


def _constriction() -> Any:
    try:
        import constriction
    except ImportError:  # pragma: no cover - an optional dependency
        raise ConfigError("compression needs the 'constriction' package: pip install 'ppl-vae[compress]'") from None
    return constriction


def coding_likelihoods() -> List[str]:
    """The registered likelihoods that code exactly (discrete ones), one name each (the longest)."""
    by_class: Dict[Any, str] = {}
    for n in LIKELIHOODS.names():
        cls = LIKELIHOODS.get(n)
        if getattr(cls, "discrete", False) and len(n) > len(by_class.get(cls, "")):
            by_class[cls] = n
    return sorted(by_class.values())


def model_fingerprint(model: torch.nn.Module) -> str:
    """sha256 of the model's weights (names, dtypes, shapes, bytes): files name the model that decodes them."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


@dataclass
class Stats:
    """What one compression cost and took: bits in total and of the initial words, seconds in the
    networks (and probability tables) and in the coder."""

    total_bits: int = 0
    initial_bits: int = 0
    network_seconds: float = 0.0
    coder_seconds: float = 0.0
    n_batches: int = 0
    extra: Dict[str, Any] = field(default_factory=dict)


def require_compressible(model: torch.nn.Module) -> None:
    """A one-line error unless ``model`` is of a kind with the capability ``compress``."""
    kinds.require(kinds.kind_of(model).name, "compress", "compression")


class _Coder:
    """The probability tables of one model, in float64 on the CPU."""

    def __init__(self, model: torch.nn.Module, latent_bits: int) -> None:
        require_compressible(model)  # a kind with the capability: its module has encode, prior, decoder, likelihood
        lik = model.likelihood
        if not isinstance(lik, Likelihood) or not lik.discrete:
            raise ConfigError(
                f"compression codes data exactly only with a discrete likelihood ({', '.join(coding_likelihoods())}); "
                f"this model's is {type(lik).__name__}"
            )
        if not 1 <= latent_bits <= 16:
            raise ConfigError(f"latent_bits must be in 1..16, got {latent_bits}")
        module: Any = copy.deepcopy(model).to("cpu", torch.float64).eval()
        self.model, self.likelihood = module, cast(Likelihood, module.likelihood)
        self.data_shape = tuple(self.likelihood.data_shape)
        self.latent_bits, self.n_bins = latent_bits, 2**latent_bits
        with torch.no_grad():
            prior = module.prior()
        base = prior.base_dist if isinstance(prior, dist.Independent) else prior
        if not isinstance(base, dist.Normal) or prior.event_shape.numel() != base.loc.numel():
            raise ConfigError(
                "compression needs a factorised Gaussian prior (model.prior 'standard-normal' or 'learned-normal'); "
                f"this model's prior is {type(self.model.prior).__name__}"
            )
        self.prior_loc, self.prior_scale = base.loc.reshape(-1), base.scale.reshape(-1)
        self.latent_dim = self.prior_loc.numel()
        k = torch.arange(self.n_bins + 1, dtype=torch.float64)
        std_edges = torch.special.ndtri(k / self.n_bins)  # -inf, ..., +inf: equal prior mass in between
        self.edges = self.prior_loc[:, None] + self.prior_scale[:, None] * std_edges  # (D, K + 1)
        std_centres = torch.special.ndtri((k[:-1] + 0.5) / self.n_bins)
        self.centres = self.prior_loc[:, None] + self.prior_scale[:, None] * std_centres  # (D, K)

    # ---- the latent ----------------------------------------------------------------------------
    @torch.no_grad()
    def posterior_table(self, x: np.ndarray) -> np.ndarray:
        """q(bin | x) for every latent dimension: (n * D, K) float64 (rows: datum-major)."""
        q = self.model.encode(torch.from_numpy(x).to(torch.float64))
        base = q.base_dist if isinstance(q, dist.Independent) else q
        if not isinstance(base, dist.Normal):
            raise ConfigError(
                "compression needs the diagonal Gaussian guide (model.posterior 'diagonal'); "
                f"this model's q(z | x) is {type(q).__name__}"
            )
        loc, scale = base.loc.reshape(len(x), -1, 1), base.scale.reshape(len(x), -1, 1)
        cdf = torch.special.ndtr((self.edges - loc) / scale)  # (n, D, K + 1)
        probs = (cdf[..., 1:] - cdf[..., :-1]).clamp_min(0.0)
        return probs.reshape(-1, self.n_bins).numpy()

    # ---- the data ------------------------------------------------------------------------------
    @torch.no_grad()
    def likelihood_table(self, bins: np.ndarray, alphabet: int) -> np.ndarray:
        """p(x_i = v | z at the bins' centres) for v in 0..alphabet-1: (n * prod(data_shape), alphabet)."""
        idx = torch.from_numpy(bins.astype(np.int64)).reshape(-1, self.latent_dim)
        z = torch.gather(self.centres.expand(len(idx), -1, -1), 2, idx[..., None])[..., 0]
        d = self.likelihood.elementwise(self.likelihood.split(self.model.decoder(z)))
        if hasattr(d, "support_probs"):  # a distribution that gives every level's probability at once
            return np.ascontiguousarray(d.support_probs().reshape(-1, alphabet).clamp_min(0.0).numpy())
        values = torch.arange(alphabet, dtype=torch.float64).reshape(alphabet, *([1] * len(d.batch_shape)))
        probs = d.log_prob(values).exp()  # (alphabet, n, *data_shape)
        probs = probs.reshape(alphabet, -1).T
        if _support(d) == "counts":  # the last symbol stands for every count >= it
            probs = torch.cat([probs[:, :-1], (1.0 - probs[:, :-1].sum(1, keepdim=True)).clamp_min(0.0)], 1)
        return np.ascontiguousarray(probs.numpy())

    def alphabet(self, x: np.ndarray) -> int:
        """The number of symbols each entry is coded over (counts: up to the largest value in ``x``)."""
        with torch.no_grad():
            z = self.prior_loc.reshape(1, -1)
            d = self.likelihood.elementwise(self.likelihood.split(self.model.decoder(z)))
        kind = _support(d)
        if kind == "counts":
            top = int(x.max()) if x.size else 0
            if top > MAX_COUNT:
                raise ConfigError(f"compression codes counts up to {MAX_COUNT}; these data reach {top}")
            return max(top, 1) + 1
        return int(kind)


def _support(d: Any) -> Any:
    """'counts' for unbounded non-negative integers, else the alphabet size of a bounded integer support."""
    support = d.support
    if support is constraints.boolean:
        return 2
    if isinstance(support, constraints.integer_interval) and support.lower_bound == 0:
        return int(support.upper_bound) + 1
    if support is constraints.nonnegative_integer:
        return "counts"
    raise ConfigError(f"compression cannot code a likelihood whose support is {support}")


def _runs(sizes: List[int]) -> List[List[int]]:
    """Batch sizes run-length encoded for the header: [[size, count], ...]."""
    runs: List[List[int]] = []
    for size in sizes:
        if runs and runs[-1][0] == size:
            runs[-1][1] += 1
        else:
            runs.append([size, 1])
    return runs


def _bounds(runs: List[List[int]], n: int) -> List[Tuple[int, int]]:
    bounds, start = [], 0
    for size, count in runs:
        for _ in range(count):
            bounds.append((start, start + size))
            start += size
    if start != n or any(b <= a for a, b in bounds):
        raise ppz.PpzError("the .ppz header's batches do not add up to its data: the file is corrupted")
    return bounds


def _entropy_bits(q: np.ndarray, n: int) -> np.ndarray:
    """The entropy in bits of each datum's quantised posterior (the bits its pop takes off the stack)."""
    return -(q * np.log2(np.where(q > 0, q, 1.0))).reshape(n, -1).sum(1)


def _initial_words(n: int) -> np.ndarray:
    """``n`` pseudo-random words (sha256 in counter mode: the same on every machine), the top one nonzero."""
    raw = b"".join(hashlib.sha256(b"ppz-initial-bits:%d" % i).digest() for i in range(math.ceil(n / 8)))
    words = np.frombuffer(raw, dtype="<u4")[:n].astype(np.uint32)
    if n:
        words[-1] |= 1
    return words


def _batch_size(coder: _Coder, alphabet: int) -> int:
    per_datum = max(math.prod(coder.data_shape) * alphabet, coder.latent_dim * coder.n_bins)
    return max(1, min(4096, TABLE_ENTRIES // per_datum))


def _symbols(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.reshape(-1), dtype=np.int32)


def encode(model: torch.nn.Module, x: np.ndarray, latent_bits: int = LATENT_BITS) -> Tuple[ppz.Header, np.ndarray, Stats]:
    """BB-ANS encode ``x`` (n, *data_shape), integer values in the likelihood's support; returns the
    file header, the compressed words and the statistics. ``compress`` wraps it into bytes."""
    c = _constriction()
    coder = _Coder(model, latent_bits)
    flat = _as_data(x, coder)
    alphabet = coder.alphabet(flat)
    batch_size = _batch_size(coder, alphabet)
    cat, uniform = c.stream.model.Categorical(perfect=False), c.stream.model.Uniform(coder.n_bins)
    stats = Stats()
    entropy = float(_entropy_bits(coder.posterior_table(flat[:1]), 1)[0])
    n_init = math.ceil((entropy + MARGIN_BITS) / 32) + 1  # enough for the first datum's pop
    ans = c.stream.stack.AnsCoder(_initial_words(n_init))
    sizes: List[int] = []
    start = 0
    while start < len(flat):
        t0 = time.perf_counter()
        q = coder.posterior_table(flat[start : start + min(batch_size, 4 * sizes[-1] if sizes else 1)])
        # Ramp up: take as many data as the stack holds bits for their pops (then batch_size each).
        fits = np.cumsum(_entropy_bits(q, len(q) // coder.latent_dim)) <= ans.num_bits() - MARGIN_BITS
        size = max(1, int(fits.sum()) if not fits.all() else len(fits))
        if size < len(fits):  # recompute on exactly this batch, as the decoder will
            q = coder.posterior_table(flat[start : start + size])
        a, b = start, start + size
        t1 = time.perf_counter()
        bins = ans.decode(cat, q)  # pop z with q(z | x): the bits got back
        t2 = time.perf_counter()
        px = coder.likelihood_table(bins, alphabet)
        t3 = time.perf_counter()
        ans.encode_reverse(_symbols(flat[a:b]), cat, px)  # push x with p(x | z)
        ans.encode_reverse(bins, uniform)  # push z with p(z): uniform over equal-mass bins
        t4 = time.perf_counter()
        stats.network_seconds += (t1 - t0) + (t3 - t2)
        stats.coder_seconds += (t2 - t1) + (t4 - t3)
        sizes.append(size)
        start = b
    words = ans.get_compressed()
    stats.total_bits, stats.initial_bits, stats.n_batches = 32 * len(words), 32 * n_init, len(sizes)
    header = ppz.Header(
        model=model_fingerprint(model),
        likelihood=type(coder.likelihood).__name__,
        dtype=x.dtype.str,
        shape=tuple(int(s) for s in x.shape),
        latent_bits=latent_bits,
        batch_size=batch_size,
        batches=_runs(sizes),
        alphabet=alphabet,
        initial_words=n_init,
        data_digest=ppz.digest(np.ascontiguousarray(x).tobytes()),
    )
    return header, words, stats


def decode(model: torch.nn.Module, header: ppz.Header, words: np.ndarray) -> Tuple[np.ndarray, Stats]:
    """Undo ``encode``: the data array (dtype and shape of the header) and the statistics."""
    c = _constriction()
    coder = _Coder(model, header.latent_bits)
    n = header.shape[0]
    if math.prod(header.shape[1:]) != math.prod(coder.data_shape):
        raise ppz.PpzError(
            f"the .ppz file holds data of shape {header.shape}, which this model ({coder.data_shape} per datum) cannot decode"
        )
    cat, uniform = c.stream.model.Categorical(perfect=False), c.stream.model.Uniform(coder.n_bins)
    stats = Stats()
    out = np.empty((n, *coder.data_shape), dtype=np.int64)
    bounds = _bounds(header.batches, n)
    try:
        ans = c.stream.stack.AnsCoder(np.ascontiguousarray(words, dtype=np.uint32))
        for a, b in reversed(bounds):
            t0 = time.perf_counter()
            bins = ans.decode(uniform, (b - a) * coder.latent_dim)  # pop z with p(z)
            t1 = time.perf_counter()
            px = coder.likelihood_table(bins, header.alphabet)
            t2 = time.perf_counter()
            out[a:b] = ans.decode(cat, px).reshape(b - a, *coder.data_shape)  # pop x with p(x | z)
            t3 = time.perf_counter()
            q = coder.posterior_table(out[a:b].astype(np.float64))
            t4 = time.perf_counter()
            ans.encode_reverse(bins, cat, q)  # push z with q(z | x): give the bits back
            t5 = time.perf_counter()
            stats.network_seconds += (t2 - t1) + (t4 - t3)
            stats.coder_seconds += (t1 - t0) + (t3 - t2) + (t5 - t4)
        rest = ans.get_compressed()
    except (ValueError, RuntimeError, OverflowError) as err:
        raise ppz.PpzError(f"the compressed data do not decode ({str(err).splitlines()[0]}): the file is corrupted") from None
    if not np.array_equal(rest, _initial_words(header.initial_words)):
        raise ppz.PpzError(
            "the compressed data did not decode back to their initial words: the file is corrupted or the decoder's arithmetic differs"
        )
    stats.n_batches = len(bounds)
    data = out.reshape(header.shape).astype(np.dtype(header.dtype))
    if ppz.digest(np.ascontiguousarray(data).tobytes()) != header.data_digest:
        raise ppz.PpzError(
            "the decoded data fail their checksum: the file is corrupted or this machine's arithmetic differs from the encoder's"
        )
    return data, stats


def _as_data(x: np.ndarray, coder: _Coder) -> np.ndarray:
    """``x`` as float64 (n, *data_shape) after checking its shape, dtype and values (one-line errors)."""
    if not isinstance(x, np.ndarray):
        raise ConfigError(f"compression takes a numpy array, got {type(x).__name__}")
    if x.dtype.kind not in "biuf":
        raise ConfigError(f"compression takes numeric arrays; got dtype {x.dtype}")
    size = math.prod(coder.data_shape)
    if x.ndim < 2 or len(x) == 0 or math.prod(x.shape[1:]) != size:
        raise ConfigError(
            f"the data must be shaped (n_data, ...) with n_data > 0 and {size} values per datum "
            f"(the model's datum shape is {coder.data_shape}); got {x.shape}"
        )
    flat = x.reshape(len(x), *coder.data_shape).astype(np.float64)
    coder.likelihood.check_support(torch.from_numpy(flat))
    if flat.astype(np.int64).reshape(x.shape).astype(x.dtype).tobytes() != np.ascontiguousarray(x).tobytes():
        raise ConfigError("the data hold values (such as -0.0) whose bits an integer code cannot give back")
    return flat


def compress_with_stats(model: torch.nn.Module, x: np.ndarray, latent_bits: int = LATENT_BITS) -> Tuple[bytes, Dict[str, Any]]:
    """``compress`` plus a report: sizes, bits per dimension (with and without the initial bits), times."""
    t0 = time.perf_counter()
    header, words, stats = encode(model, x, latent_bits)
    data = ppz.pack(header, words)
    seconds = time.perf_counter() - t0
    dims = int(x.size)
    report = {
        "n": int(x.shape[0]),
        "dims": dims,
        "input_bytes": int(x.nbytes),
        "output_bytes": len(data),
        "bits_per_dim": 8 * len(data) / dims,
        "payload_bits_per_dim": (stats.total_bits - stats.initial_bits) / dims,
        "initial_bits": stats.initial_bits,
        "header_bytes": len(data) - 4 * len(words),
        "latent_bits": latent_bits,
        "batch_size": header.batch_size,
        "seconds": seconds,
        "network_seconds": stats.network_seconds,
        "coder_seconds": stats.coder_seconds,
    }
    return data, report


def compress(model: torch.nn.Module, x: np.ndarray, latent_bits: int = LATENT_BITS) -> bytes:
    """``x`` (n_data, *datum) compressed with bits-back ANS under ``model``: the bytes of a .ppz file."""
    return compress_with_stats(model, x, latent_bits)[0]


def decompress_with_stats(model: torch.nn.Module, data: bytes) -> Tuple[np.ndarray, Dict[str, Any]]:
    """``decompress`` plus a report of the seconds in total, in the networks and in the coder."""
    t0 = time.perf_counter()
    header, words = ppz.unpack(data)
    fingerprint = model_fingerprint(model)
    if header.model != fingerprint:
        raise ppz.PpzError(
            f"these data were compressed with another model (weights sha256 {header.model[:12]}), "
            f"not this one ({fingerprint[:12]}); decompress with the run that compressed them"
        )
    x, stats = decode(model, header, words)
    report = {"seconds": time.perf_counter() - t0, "network_seconds": stats.network_seconds, "coder_seconds": stats.coder_seconds}
    return x, report


def decompress(model: torch.nn.Module, data: bytes) -> np.ndarray:
    """The array that ``compress(model, x)`` compressed into ``data``, bit for bit (dtype and shape)."""
    return decompress_with_stats(model, data)[0]
