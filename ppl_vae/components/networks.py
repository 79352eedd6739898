"""Encoder and decoder networks, and the contract a user's own network must meet.

Contract (checked by ``check_encoder`` / ``check_decoder`` when a VAE is built):

* encoder: ``x`` of shape ``(batch, *data_shape)`` -> ``(loc, scale)``, each ``(batch, latent_dim)``,
  scale positive;
* decoder: ``z`` of shape ``(*batch, latent_dim)`` (any number of leading dims, e.g. particles x
  data) -> likelihood parameters of shape ``(*batch, *likelihood.decoder_output_shape(data_shape))``.
"""

from __future__ import annotations

import math
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ppl_vae.registry import DECODERS, ENCODERS, ConfigError

ACTIVATIONS = {"relu": nn.ReLU, "softplus": nn.Softplus, "tanh": nn.Tanh, "elu": nn.ELU, "leaky-relu": nn.LeakyReLU, "gelu": nn.GELU}


def activation_layer(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ConfigError(f"unknown activation '{name}'; choose one of: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def mlp(sizes: Sequence[int], activation: str = "relu") -> nn.Sequential:
    layers: List[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation_layer(activation))
    return nn.Sequential(*layers)


def positive_scale(raw: torch.Tensor) -> torch.Tensor:
    return F.softplus(raw) + 1e-4


@ENCODERS.register("mlp")
class MLPEncoder(nn.Module):
    """Flattens the datum, MLP, then two heads: loc and a softplus scale."""

    def __init__(self, data_shape: Sequence[int], latent_dim: int, hidden: Sequence[int] = (256,), activation: str = "relu") -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.body = mlp([math.prod(data_shape), *hidden], activation)
        self.act = activation_layer(activation) if hidden else nn.Identity()
        self.head = nn.Linear(hidden[-1] if hidden else math.prod(data_shape), 2 * latent_dim)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        h = self.act(self.body(x.flatten(1))) if len(self.body) else x.flatten(1)
        loc, raw = self.head(h).chunk(2, -1)
        return loc, positive_scale(raw)


@DECODERS.register("mlp")
class MLPDecoder(nn.Module):
    """MLP from z to the likelihood's parameters, reshaped to ``out_shape``."""

    def __init__(self, latent_dim: int, out_shape: Sequence[int], hidden: Sequence[int] = (256,), activation: str = "relu") -> None:
        super().__init__()
        self.out_shape = tuple(out_shape)
        self.net = mlp([latent_dim, *hidden, math.prod(self.out_shape)], activation)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).unflatten(-1, self.out_shape)


def _n_halvings(size: int) -> int:
    """How many stride-2 steps take ``size`` down to a small map (>= 4) exactly."""
    n = 0
    while size % 2 == 0 and size // 2 >= 4:
        size //= 2
        n += 1
    return n


@ENCODERS.register("conv")
class ConvEncoder(nn.Module):
    """Stride-2 convolutions down to a 4x4..7x7 map (28x28: 2 steps, 64x64: 4), then a linear head."""

    def __init__(
        self,
        data_shape: Sequence[int],
        latent_dim: int,
        channels: Sequence[int] = (32, 64),
        hidden: int = 256,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if len(data_shape) != 3:
            raise ConfigError(
                f"the conv encoder needs images shaped (channels, height, width), got {tuple(data_shape)}; "
                "set data.flatten = false or use the 'mlp' encoder"
            )
        c, h, w = data_shape
        n = min(_n_halvings(h), _n_halvings(w))
        chans = (list(channels) + [channels[-1]] * n)[:n] if n else []
        layers, prev = [], c
        for ch in chans:
            layers += [nn.Conv2d(prev, ch, 4, stride=2, padding=1), activation_layer(activation)]
            prev = ch
        self.conv = nn.Sequential(*layers)
        flat = prev * (h >> n) * (w >> n)
        self.fc = nn.Sequential(nn.Linear(flat, hidden), activation_layer(activation), nn.Linear(hidden, 2 * latent_dim))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        loc, raw = self.fc(self.conv(x).flatten(1)).chunk(2, -1)
        return loc, positive_scale(raw)


@DECODERS.register("conv")
class ConvDecoder(nn.Module):
    """Linear to a small map, then stride-2 transposed convolutions up to the image size."""

    def __init__(
        self,
        latent_dim: int,
        out_shape: Sequence[int],
        channels: Sequence[int] = (32, 64),
        hidden: int = 256,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if len(out_shape) != 3:
            raise ConfigError(
                f"the conv decoder needs images shaped (channels, height, width), got {tuple(out_shape)}; "
                "set data.flatten = false or use the 'mlp' decoder"
            )
        c, h, w = out_shape
        n = min(_n_halvings(h), _n_halvings(w))
        chans = list(reversed((list(channels) + [channels[-1]] * n)[:n])) if n else [c]
        self.start = (chans[0], h >> n, w >> n)
        self.fc = nn.Sequential(
            nn.Linear(latent_dim, hidden),
            activation_layer(activation),
            nn.Linear(hidden, math.prod(self.start)),
            activation_layer(activation),
        )
        layers: List[nn.Module] = []
        for i in range(n):
            out = chans[i + 1] if i + 1 < n else c
            layers.append(nn.ConvTranspose2d(chans[i], out, 4, stride=2, padding=1))
            if i + 1 < n:
                layers.append(activation_layer(activation))
        self.deconv = nn.Sequential(*layers) if layers else nn.Conv2d(chans[0], c, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        batch = z.shape[:-1]
        y = self.deconv(self.fc(z.reshape(-1, z.shape[-1])).reshape(-1, *self.start))
        return y.reshape(*batch, *y.shape[1:])


def check_encoder(encoder: nn.Module, data_shape: Sequence[int], latent_dim: int) -> None:
    """Run a batch of 2 zeros through a (user's) encoder and check the contract."""
    expected = f"(loc, scale), each of shape (batch, {latent_dim})"
    try:
        p = next(encoder.parameters(), None)
        x = torch.zeros(2, *data_shape, device=p.device if p is not None else None)
        with torch.no_grad():
            out = encoder(x)
    except Exception as err:  # a user's module can raise anything
        raise ConfigError(f"the encoder failed on a batch shaped (2, {', '.join(map(str, data_shape))}): {err}") from None
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise ConfigError(f"the encoder must return {expected}; it returned {type(out).__name__}")
    for name, t in zip(("loc", "scale"), out):
        if tuple(t.shape) != (2, latent_dim):
            raise ConfigError(f"the encoder's {name} has shape {tuple(t.shape)} for a batch of 2; expected {expected}")
    if not bool((out[1] > 0).all()):
        raise ConfigError("the encoder's scale must be positive (apply softplus or exp to its last layer)")


def check_decoder(decoder: nn.Module, latent_dim: int, out_shape: Sequence[int]) -> None:
    """Run z of shape (3, 2, latent_dim) through a (user's) decoder and check the contract."""
    want = (3, 2, *out_shape)
    try:
        p = next(decoder.parameters(), None)
        with torch.no_grad():
            out = decoder(torch.zeros(3, 2, latent_dim, device=p.device if p is not None else None))
    except Exception as err:
        raise ConfigError(f"the decoder failed on z shaped (3, 2, {latent_dim}) (particles, batch, latent): {err}") from None
    if tuple(out.shape) != want:
        raise ConfigError(
            f"the decoder returned shape {tuple(out.shape)} for z of shape (3, 2, {latent_dim}); the likelihood "
            f"expects {want} (leading dims kept, then {tuple(out_shape)})"
        )
