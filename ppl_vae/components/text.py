"""Networks and the data contract of the sentence models (``ppl_vae.kinds.sentence``).

* ``TokenData``: what the run layer's data checks ask of a model's ``likelihood`` for padded token
  ids (datum shape ``(length,)``, integer ids below the vocabulary size).
* ``SentenceEncoder``: embedding, a GRU or LSTM (optionally a second one reading each sentence
  backwards), the hidden state at each sentence's last token -> (loc, scale) of q(z | x). Padding
  never reaches the states that are read, so it cannot change the code.
* ``SentenceDecoder``: an autoregressive GRU / LSTM language model whose initial state (and, with
  ``z_every_step``, every input) is conditioned on z; ``latent_dim = 0`` is the plain LSTM LM.
* ``word_dropout``: Bowman et al.'s word dropout of the decoder's inputs (rate 1: inputless).
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from ppl_vae.components.networks import positive_scale
from ppl_vae.registry import ConfigError

CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}
State = Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]


def _cell(name: str) -> type:
    if name not in CELLS:
        raise ConfigError(f"unknown recurrent cell '{name}'; choose one of: {', '.join(CELLS)}")
    return CELLS[name]


class TokenData:
    """The data contract of a model over padded token ids: ``data_shape`` and ``check_support``."""

    discrete = True

    def __init__(self, length: int, vocab_size: int) -> None:
        self.data_shape, self.vocab_size = (int(length),), int(vocab_size)

    def check_support(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> None:
        ok = (x == x.round()) & (x >= 0) & (x < self.vocab_size)
        if not bool(ok.all()):
            raise ConfigError(f"token data must be integer ids in [0, {self.vocab_size}); these hold other values")

    def fill_missing(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return x

    def decoder_output_shape(self, data_shape: Optional[Tuple[int, ...]] = None) -> Tuple[int, int]:
        """Logits per datum, (length, vocabulary): what bounds the memory of a chunk of importance samples."""
        return (self.data_shape[0], self.vocab_size)

    def init_from_data(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> None:
        """Nothing to start from the data (``fit`` calls this on a model's first step)."""


def word_dropout(inputs: torch.Tensor, rate: float, unk: int, keep: torch.Tensor) -> torch.Tensor:
    """``inputs`` with each position where ``keep`` is False replaced by ``unk`` with probability
    ``rate`` (rate 1: every such position, with no random draw)."""
    if rate <= 0:
        return inputs
    drop = ~keep if rate >= 1 else (torch.rand(inputs.shape, device=inputs.device) < rate) & ~keep
    return torch.where(drop, torch.full_like(inputs, unk), inputs)


def reverse_within_length(tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each row's first ``lengths[i]`` entries reversed in place; the padding after them stays."""
    t = torch.arange(tokens.shape[1], device=tokens.device).expand_as(tokens)
    last = (lengths - 1).unsqueeze(1)
    return tokens.gather(1, torch.where(t <= last, last - t, t))


class SentenceEncoder(nn.Module):
    """Token ids (batch, length) and their mask -> (loc, scale), each (batch, latent_dim)."""

    def __init__(
        self,
        vocab_size: int,
        latent_dim: int,
        embed_dim: int = 128,
        hidden: int = 256,
        cell: str = "gru",
        bidirectional: bool = True,
        pad_id: int = 0,
    ) -> None:
        super().__init__()
        rnn = _cell(cell)
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.forward_rnn = rnn(embed_dim, hidden, batch_first=True)
        self.backward_rnn = rnn(embed_dim, hidden, batch_first=True) if bidirectional else None
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), 2 * latent_dim)

    def _last(self, rnn: nn.Module, tokens: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        out, _ = rnn(self.embed(tokens))
        return out.gather(1, last.view(-1, 1, 1).expand(-1, 1, out.shape[-1])).squeeze(1)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        lengths = mask.sum(1).clamp(min=1)
        h = self._last(self.forward_rnn, tokens, lengths - 1)
        if self.backward_rnn is not None:
            h = torch.cat([h, self._last(self.backward_rnn, reverse_within_length(tokens, lengths), lengths - 1)], -1)
        loc, raw = self.head(h).chunk(2, -1)
        return loc, positive_scale(raw)


class SentenceDecoder(nn.Module):
    """p(w_t | w_<t, z): logits (*batch, length, vocab) for input ids (*batch, length) and z (*batch, latent_dim)."""

    def __init__(
        self,
        vocab_size: int,
        latent_dim: int = 0,
        embed_dim: int = 128,
        hidden: int = 256,
        cell: str = "lstm",
        z_every_step: bool = True,
        pad_id: int = 0,
    ) -> None:
        super().__init__()
        self.cell, self.hidden, self.latent_dim = cell, int(hidden), int(latent_dim)
        self.z_every_step = bool(z_every_step) and latent_dim > 0
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.rnn = _cell(cell)(embed_dim + (latent_dim if self.z_every_step else 0), hidden, batch_first=True)
        parts = 2 if cell == "lstm" else 1
        self.init = nn.Linear(latent_dim, parts * hidden) if latent_dim > 0 else None
        self.out = nn.Linear(hidden, vocab_size)

    def initial_state(self, z: Optional[torch.Tensor], n: int, device: torch.device) -> Optional[State]:
        """The RNN state before the first word: a function of z (None: zeros, for the LM)."""
        if self.init is None or z is None:
            return None
        h = torch.tanh(self.init(z)).unsqueeze(0)
        if self.cell == "lstm":
            hh, cc = h.chunk(2, -1)
            return hh.contiguous(), cc.contiguous()
        return h.contiguous()

    def run(self, inputs: torch.Tensor, z: Optional[torch.Tensor], state: Optional[State]) -> Tuple[torch.Tensor, State]:
        """Logits (n, length, vocab) for inputs (n, length), continuing from ``state``."""
        e = self.embed(inputs)
        if self.z_every_step and z is not None:
            e = torch.cat([e, z.unsqueeze(1).expand(-1, e.shape[1], -1)], -1)
        out, state = self.rnn(e, state)
        return self.out(out), state

    def forward(self, inputs: torch.Tensor, z: Optional[torch.Tensor] = None) -> torch.Tensor:
        batch = inputs.shape[:-1] if z is None else z.shape[:-1]
        flat_in = inputs.expand(*batch, inputs.shape[-1]).reshape(-1, inputs.shape[-1])
        flat_z = None if z is None else z.reshape(-1, z.shape[-1])
        logits, _ = self.run(flat_in, flat_z, self.initial_state(flat_z, len(flat_in), inputs.device))
        return logits.reshape(*batch, *logits.shape[-2:])


def kl_to_standard_normal(loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """KL(N(loc, scale^2) || N(0, 1)) per dimension, in closed form."""
    return 0.5 * (loc.pow(2) + scale.pow(2) - 1) - torch.log(scale)


def free_bits_penalty(loc: torch.Tensor, scale: torch.Tensor, free_bits: float) -> torch.Tensor:
    """sum_d relu(lambda - mean_batch KL_d) times the batch size: added to the ELBO loss, it turns
    the batch's KL term sum_d KL_d into sum_d max(lambda, KL_d) (Kingma et al. 2016's free bits),
    so that no dimension is pushed below ``free_bits`` nats."""
    kl = kl_to_standard_normal(loc, scale).mean(0)
    return F.relu(free_bits - kl).sum() * loc.shape[0]
