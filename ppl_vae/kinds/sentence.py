"""The sentence VAE (Bowman et al. 2016) and its LSTM language-model baseline, as Pyro programs.

Data: padded token ids from the ``text`` source (``ppl_vae.data.text``): a datum is the words,
``<eos>``, then ``<pad>``; the mask is read from the padding (and an explicit mask, if given).

``SentenceVAE``: z ~ N(0, I) per sentence; p(x | z) = prod_t p(w_t | w_<t, z) by an LSTM/GRU
decoder whose initial state (and every input, with ``z_every_step``) depends on z; q(z | x) a
diagonal Gaussian from a GRU/LSTM encoder. The observation is one vectorised site ``x``: a
categorical over every position, masked at the padding (``.mask``), so padding never changes the
loss. ``model(x=None, n=N)`` generates: ``pyro.markov`` over positions, one site ``x_t`` each,
stopped per sentence at ``<eos>``. Word dropout (training only; rate 1 is the inputless decoder,
at every time) replaces decoder inputs by ``<unk>``. Free bits (``free_bits`` nats per dimension,
training only) is a guide ``pyro.factor`` that makes the KL term sum_d max(lambda, KL_d). KL
annealing is the objective's beta schedule (``schedule = "linear"``), applied to the z site.

``LanguageModel``: the same decoder with no latent (``guide`` has no sites), trained by the same
loop and ELBO objective (which is then the exact log-likelihood).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, ClassVar, Dict, List, Optional, Tuple

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import nn

from ppl_vae.components.text import SentenceDecoder, SentenceEncoder, TokenData, free_bits_penalty, word_dropout
from ppl_vae.config import Config, ModelConfig
from ppl_vae.data import Splits
from ppl_vae.data.base import ArrayDataset
from ppl_vae.data.spec import DataSpec
from ppl_vae.data.text import BOS, EOS, PAD, UNK, decode
from ppl_vae.kinds.base import ModelKind
from ppl_vae.registry import KINDS, ConfigError, remember_arguments

if TYPE_CHECKING:
    from matplotlib.figure import Figure


class _Sentences(nn.Module):
    """What the VAE and the LM share: token handling, the decoder, autoregressive unrolling."""

    latent_dim = 0
    decoder: SentenceDecoder

    def _setup(self, vocab_size: int, length: int, word_dropout: float) -> None:
        if not 0 <= word_dropout <= 1:
            raise ConfigError(f"word_dropout must be in [0, 1], got {word_dropout}")
        self.vocab_size, self.length, self.word_dropout = int(vocab_size), int(length), float(word_dropout)
        self.likelihood = TokenData(length, vocab_size)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def tokens(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """(ids as long, mask of real tokens: words and ``<eos>``)."""
        ids = x.long()
        m = ids != PAD
        return ids, m if mask is None else m & mask.bool()

    def decoder_inputs(self, ids: torch.Tensor) -> torch.Tensor:
        """``<bos>`` and the ids shifted right, with word dropout (training; at rate 1 always)."""
        inputs = torch.cat([torch.full_like(ids[:, :1], BOS), ids[:, :-1]], 1)
        rate = self.word_dropout if self.training or self.word_dropout >= 1 else 0.0
        return word_dropout(inputs, rate, UNK, keep=(inputs == BOS) | (inputs == PAD))

    def _observe(self, ids: torch.Tensor, m: torch.Tensor, z: Optional[torch.Tensor]) -> None:
        logits = self.decoder(self.decoder_inputs(ids), z)
        pyro.sample("x", dist.Categorical(logits=logits).mask(m).to_event(1), obs=ids)

    def unroll(
        self, z: Optional[torch.Tensor], n: int, pick: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """Decode ``n`` sentences word by word: ``pick(t, logits, alive)`` chooses the ids at step t."""
        state = self.decoder.initial_state(z, n, self.device)
        inp = torch.full((n, 1), BOS, dtype=torch.long, device=self.device)
        alive = torch.ones(n, dtype=torch.bool, device=self.device)
        out = []
        for t in pyro.markov(range(self.length)):
            step_in = torch.full_like(inp, UNK) if self.word_dropout >= 1 and t > 0 else inp
            logits, state = self.decoder.run(step_in, z, state)
            w = torch.where(alive, pick(t, logits[:, 0], alive), torch.full_like(alive, PAD, dtype=torch.long))
            alive = alive & (w != EOS)
            out.append(w)
            inp = w.unsqueeze(1)
        return torch.stack(out, 1)

    def _sample_words(self, n: int, z: Optional[torch.Tensor]) -> torch.Tensor:
        def pick(t: int, logits: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
            return pyro.sample(f"x_{t}", dist.Categorical(logits=logits).mask(alive))

        return self.unroll(z, n, pick)

    @torch.no_grad()
    def decode_ids(
        self, z: Optional[torch.Tensor], n: int, greedy: bool = True, temperature: float = 1.0, no_unk: bool = False
    ) -> torch.Tensor:
        """Ids (n, length) decoded from codes ``z`` (None for the LM): argmax or samples at ``temperature``;
        ``no_unk`` never picks ``<unk>`` (for reading: greedy decoding of a corpus with many rare words
        otherwise repeats it)."""

        def pick(t: int, logits: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
            if no_unk:
                logits = logits.index_fill(-1, torch.tensor([UNK], device=logits.device), float("-inf"))
            if greedy:
                return logits.argmax(-1)
            return torch.distributions.Categorical(logits=logits / temperature).sample()

        return self.unroll(z, n, pick)

    def text(self, ids: torch.Tensor, vocab: List[str]) -> List[str]:
        return [decode(row.tolist(), vocab) for row in ids]


@remember_arguments
class SentenceVAE(_Sentences):
    """``SentenceVAE(vocab_size=4004, length=51, latent_dim=32)``; see the module docstring."""

    def __init__(
        self,
        vocab_size: int,
        length: int,
        latent_dim: int = 32,
        embed_dim: int = 128,
        hidden: int = 256,
        encoder_cell: str = "gru",
        decoder_cell: str = "lstm",
        bidirectional: bool = True,
        z_every_step: bool = True,
        word_dropout: float = 0.0,
        free_bits: float = 0.0,
    ) -> None:
        super().__init__()
        if latent_dim < 1 or free_bits < 0:
            raise ConfigError(f"the sentence VAE needs latent_dim >= 1 and free_bits >= 0, got {latent_dim} and {free_bits}")
        self._setup(vocab_size, length, word_dropout)
        self.latent_dim, self.free_bits = int(latent_dim), float(free_bits)
        self.encoder = SentenceEncoder(vocab_size, latent_dim, embed_dim, hidden, encoder_cell, bidirectional, PAD)
        self.decoder = SentenceDecoder(vocab_size, latent_dim, embed_dim, hidden, decoder_cell, z_every_step, PAD)

    def prior(self, n: int) -> dist.TorchDistribution:
        zeros = torch.zeros(n, self.latent_dim, device=self.device)
        return dist.Normal(zeros, torch.ones_like(zeros)).to_event(1)

    def model(
        self, x: Optional[torch.Tensor] = None, mask: Optional[torch.Tensor] = None, beta: Any = 1.0, n: int = 1
    ) -> torch.Tensor:
        """p(z) p(x | z); with ``x=None`` it generates ``n`` sentences (ids) instead of scoring x."""
        size = n if x is None else x.shape[0]
        with pyro.plate("data", size, dim=-1):
            with poutine.scale(scale=beta):
                z = pyro.sample("z", self.prior(size))
            if x is None:
                return self._sample_words(n, z)
            ids, m = self.tokens(x, mask)
            self._observe(ids, m, z)
        return z

    def guide(
        self, x: Optional[torch.Tensor] = None, mask: Optional[torch.Tensor] = None, beta: Any = 1.0, n: int = 1
    ) -> torch.Tensor:
        """q(z | x), plus the free-bits correction while training."""
        if x is None:
            raise ConfigError("the guide q(z | x) needs sentences x")
        loc, scale = self.encode(x, mask)
        with pyro.plate("data", x.shape[0], dim=-1):
            with poutine.scale(scale=beta):
                z = pyro.sample("z", dist.Normal(loc, scale).to_event(1))
        if self.training and self.free_bits > 0:
            with poutine.scale(scale=beta):
                pyro.factor("free_bits", free_bits_penalty(loc, scale, self.free_bits), has_rsample=True)
        return z

    def encode(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """(loc, scale) of q(z | x)."""
        return self.encoder(*self.tokens(x, mask))

    def embed(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.encode(x, mask)[0]

    @torch.no_grad()
    def reconstruct_ids(self, x: torch.Tensor, greedy: bool = True, no_unk: bool = False) -> torch.Tensor:
        """Each sentence decoded from its posterior mean."""
        return self.decode_ids(self.embed(x), len(x), greedy, no_unk=no_unk)

    @torch.no_grad()
    def homotopy(self, a: torch.Tensor, b: torch.Tensor, steps: int = 5, no_unk: bool = False) -> torch.Tensor:
        """Greedy decodings along the line between the posterior means of sentences ``a`` and ``b`` (ids)."""
        za, zb = self.embed(torch.stack([a, b])).unbind(0)
        t = torch.linspace(0, 1, steps, device=za.device).unsqueeze(1)
        return self.decode_ids((1 - t) * za + t * zb, steps, no_unk=no_unk)


@remember_arguments
class LanguageModel(_Sentences):
    """The LSTM language model: ``SentenceVAE``'s decoder with no latent (the baseline)."""

    def __init__(self, vocab_size: int, length: int, embed_dim: int = 128, hidden: int = 256, cell: str = "lstm") -> None:
        super().__init__()
        self._setup(vocab_size, length, 0.0)
        self.decoder = SentenceDecoder(vocab_size, 0, embed_dim, hidden, cell, False, PAD)

    def model(self, x: Optional[torch.Tensor] = None, mask: Optional[torch.Tensor] = None, beta: Any = 1.0, n: int = 1) -> Any:
        """p(x) = prod_t p(w_t | w_<t); with ``x=None`` it generates ``n`` sentences (ids)."""
        with pyro.plate("data", n if x is None else x.shape[0], dim=-1):
            if x is None:
                return self._sample_words(n, None)
            self._observe(*self.tokens(x, mask), None)
        return None

    def guide(self, x: Optional[torch.Tensor] = None, mask: Optional[torch.Tensor] = None, beta: Any = 1.0, n: int = 1) -> None:
        """No latent variables: the ELBO is the log-likelihood."""


def _args(table: Dict[str, Any], what: str, allowed: Tuple[str, ...]) -> Dict[str, Any]:
    """The arguments of an ``rnn`` table; the config's own default table (an MLP) means the RNN defaults."""
    if table == getattr(ModelConfig(), what.split(".")[-1]):
        return {}
    args = dict(table)
    if args.pop("name", "rnn") != "rnn":
        raise ConfigError(f"{what}.name must be 'rnn' for the sentence models, got '{table.get('name')}'")
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        raise ConfigError(f"{what} has no argument '{unknown[0]}'; it accepts: name, {', '.join(allowed)}")
    return args


def _vocab(spec: DataSpec, kind: str) -> List[str]:
    vocab = spec.meta.get("vocab")
    if not vocab:
        raise ConfigError(f"model.kind '{kind}' models text: set data.name = 'text' (its vocabulary goes into the checkpoint)")
    return list(vocab)


class _SentenceKind(ModelKind):
    objectives: ClassVar[Tuple[str, ...]] = ("elbo", "iwae")
    capabilities = frozenset({"sample", "compare"})  # compare: paired per-sentence IWAE log p(x) of two runs

    def validate(self, cfg: Config) -> None:
        super().validate(cfg)
        if cfg.data.preprocess != "none":
            raise ConfigError(f"model.kind '{self.name}' reads token ids: set data.preprocess = 'none', not '{cfg.data.preprocess}'")

    def evaluate(self, module: Any, data: ArrayDataset, spec: DataSpec, num_samples: int, progress: bool = False) -> dict:
        """NLL per sentence (IWAE, K samples), per-word perplexity, KL, active units, I(x; z)."""
        from ppl_vae.evaluation.text import sentence_report

        return sentence_report(module, data, num_samples, progress=progress)

    def extra_metrics(self, module: nn.Module, splits: Splits, cfg: Config) -> Dict[str, Any]:
        return {"examples": examples(module, splits)}

    def figures(self, module: nn.Module, splits: Splits, history: list) -> dict:
        from ppl_vae.plots import loss_curves_figure

        return {"loss_curves": loss_curves_figure(history), "sentences": text_figure(examples(module, splits))}

    def sample_text(self, module: Any, spec: DataSpec, n: int) -> List[str]:
        return module.text(module.model(None, n=n), _vocab(spec, self.name))

    def sample_figure(self, module: nn.Module, spec: DataSpec, n: int) -> Figure:
        return text_figure({"samples": self.sample_text(module, spec, n)})


@KINDS.register("sentence-vae")
class SentenceVAEKind(_SentenceKind):
    """Bowman et al.'s sentence VAE on the ``text`` source."""

    name = "sentence-vae"
    description = "a Gaussian code per sentence; GRU/LSTM encoder, autoregressive LSTM decoder given z"
    module_type = SentenceVAE

    def build(self, model: ModelConfig, spec: DataSpec) -> SentenceVAE:
        enc = _args(model.encoder, "model.encoder", ("cell", "hidden", "embed_dim", "bidirectional"))
        dec = _args(model.decoder, "model.decoder", ("cell", "hidden", "embed_dim", "z_every_step", "word_dropout"))
        post = dict(model.posterior)
        if post.pop("name", "diagonal") != "diagonal" or set(post) - {"free_bits"}:
            raise ConfigError("model.posterior for the sentence VAE is { name = 'diagonal', free_bits = NATS }")
        if enc.get("hidden", 256) != dec.get("hidden", 256) or enc.get("embed_dim", 128) != dec.get("embed_dim", 128):
            raise ConfigError("model.encoder and model.decoder must have the same hidden and embed_dim")
        return SentenceVAE(
            len(_vocab(spec, self.name)),
            spec.shape[0],
            model.latent_dim,
            embed_dim=int(dec.get("embed_dim", 128)),
            hidden=int(dec.get("hidden", 256)),
            encoder_cell=str(enc.get("cell", "gru")),
            decoder_cell=str(dec.get("cell", "lstm")),
            bidirectional=bool(enc.get("bidirectional", True)),
            z_every_step=bool(dec.get("z_every_step", True)),
            word_dropout=float(dec.get("word_dropout", 0.0)),
            free_bits=float(post.get("free_bits", 0.0)),
        )

    def describe(self, module: Any) -> dict:
        common = {"name": "rnn", "hidden": module.decoder.hidden, "embed_dim": module.decoder.embed.embedding_dim}
        return {
            "kind": self.name,
            "latent_dim": module.latent_dim,
            "encoder": {
                **common,
                "cell": module.encoder.forward_rnn.mode.lower(),
                "bidirectional": module.encoder.backward_rnn is not None,
            },
            "decoder": {
                **common,
                "cell": module.decoder.cell,
                "z_every_step": module.decoder.z_every_step,
                "word_dropout": module.word_dropout,
            },
            "posterior": {"name": "diagonal", "free_bits": module.free_bits},
        }


@KINDS.register("lstm-lm")
class LanguageModelKind(_SentenceKind):
    """The LSTM language model (no latent): the sentence VAE's baseline."""

    name = "lstm-lm"
    description = "an LSTM language model (the sentence VAE's decoder with no latent): the baseline"
    objectives: ClassVar[Tuple[str, ...]] = ("elbo",)
    module_type = LanguageModel

    def build(self, model: ModelConfig, spec: DataSpec) -> LanguageModel:
        dec = _args(model.decoder, "model.decoder", ("cell", "hidden", "embed_dim"))
        return LanguageModel(
            len(_vocab(spec, self.name)),
            spec.shape[0],
            embed_dim=int(dec.get("embed_dim", 128)),
            hidden=int(dec.get("hidden", 256)),
            cell=str(dec.get("cell", "lstm")),
        )

    def describe(self, module: Any) -> dict:
        d = module.decoder
        return {"kind": self.name, "decoder": {"name": "rnn", "cell": d.cell, "hidden": d.hidden, "embed_dim": d.embed.embedding_dim}}


@torch.no_grad()
def examples(module: Any, splits: Splits, n: int = 5, seed: int = 0) -> Dict[str, List[str]]:
    """Greedy and sampled sentences from the prior; for the VAE also test reconstructions and a homotopy
    (all greedy but ``sampled``; ``<unk>`` is never picked, so that they can be read)."""
    vocab = _vocab(splits.spec, "sentence")
    module.eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        z = module.prior(n).sample() if module.latent_dim else None
        out = {"greedy": module.text(module.decode_ids(z, n, greedy=True, no_unk=True), vocab)}
        out["sampled"] = module.text(module.decode_ids(z, n, greedy=False, no_unk=True), vocab)
        if module.latent_dim:
            x = splits.test.x[:n].to(module.device)
            recon = module.text(module.reconstruct_ids(x, no_unk=True), vocab)
            out["reconstructions"] = [f"{a}  ->  {b}" for a, b in zip(module.text(x.long(), vocab), recon)]
            out["homotopy"] = module.text(module.homotopy(x[0], x[1], 5, no_unk=True), vocab)
    return out


def text_figure(sections: Dict[str, List[str]]) -> Figure:
    """Sections of sentences rendered as a figure (the run's ``figures/sentences.png``)."""
    import textwrap

    import matplotlib.pyplot as plt

    lines: List[str] = []
    for title, items in sections.items():
        lines.append(f"[{title}]")
        lines += [textwrap.shorten(s, 150, placeholder=" ...") or "(empty)" for s in items]
        lines.append("")
    fig, ax = plt.subplots(figsize=(12, 0.25 * len(lines) + 0.5))  # an axes: notebooks show figures that have one
    ax.axis("off")
    ax.text(0, 1, "\n".join(lines), va="top", ha="left", family="monospace", fontsize=9, parse_math=False, transform=ax.transAxes)
    return fig
