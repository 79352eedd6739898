"""Training objectives, evaluation and the supervised-only baseline for the label-aware VAEs.

* ``SemiSupervisedObjective`` ("semi-supervised"): every step scores a batch of unlabelled data with
  the enumerated bound (``TraceEnum_ELBO``, exact sum over y) and a batch of labelled data with the
  labelled bound plus ``alpha`` times the classifier's cross-entropy (Kingma et al. 2014, eq. 9).
  The labelled batches cycle through a reshuffled labelled set, so with few labels every label is
  seen many times per epoch; the labelled batch gets the weight of the unlabelled batch.
* ``ConditionalObjective`` ("conditional"): the ELBO of p(x | y) with labels from the batches.
* ``balanced_labelled_split``: a class-balanced labelled subset, the rest unlabelled.
* ``enumerated_log_likelihood``: log p(x) = log sum_y p(y) p(x | y), each p(x | y) importance-weighted.
* ``train_classifier``: the supervised-only baseline (same classifier, labelled data only).
"""
from __future__ import annotations

import copy
import math
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from pyro.infer import Trace_ELBO, TraceEnum_ELBO

from .data.base import ArrayDataset, as_dataset
from .evaluate import per_datum_log_weights
from .importance import ModelGuide
from .registry import OBJECTIVES, ConfigError


def balanced_labelled_split(y: np.ndarray, n_labels: int, n_classes: int, seed: int = 0):
    """(labelled indices, unlabelled indices): ``n_labels`` spread evenly over the classes."""
    y = np.asarray(y)
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ConfigError(f"labels must be integers in 0..{n_classes - 1}, found {int(y.min())}..{int(y.max())}")
    if not 0 < n_labels <= len(y):
        raise ConfigError(f"data.labels must be between 1 and the {len(y)} training data, got {n_labels}")
    if n_labels < n_classes:
        raise ConfigError(f"data.labels = {n_labels} cannot cover all {n_classes} classes; use at least {n_classes}")
    rng = np.random.default_rng(seed)
    per_class = [n_labels // n_classes + (c < n_labels % n_classes) for c in range(n_classes)]
    picked = []
    for c, k in enumerate(per_class):
        members = np.flatnonzero(y == c)
        if len(members) < k:
            raise ConfigError(f"class {c} has {len(members)} training data, fewer than the {k} labels asked for")
        picked.append(rng.choice(members, k, replace=False))
    labelled = np.sort(np.concatenate(picked))
    return labelled, np.setdiff1d(np.arange(len(y)), labelled)


@OBJECTIVES.register("semi-supervised")
class SemiSupervisedObjective:
    """M2's objective: enumerated unlabelled bound + labelled bound + alpha * cross-entropy."""

    def __init__(self, alpha: float = 50.0, labelled_batch_size: int = 100, labelled: Optional[ArrayDataset] = None):
        if alpha < 0 or labelled_batch_size < 1:
            raise ConfigError("objective.alpha must be >= 0 and objective.labelled_batch_size >= 1")
        self.alpha, self.labelled_batch_size = float(alpha), int(labelled_batch_size)
        self.unlabelled_elbo = TraceEnum_ELBO(max_plate_nesting=1)
        self.labelled_elbo = Trace_ELBO(max_plate_nesting=1)
        self.labelled = labelled
        self._order, self._cursor = None, 0

    def set_labelled(self, labelled: ArrayDataset) -> None:
        if labelled is None or labelled.y is None:
            raise ConfigError("the semi-supervised objective needs a labelled subset: set data.labels")
        self.labelled = labelled

    def setup(self, vae, train) -> None:
        if not hasattr(vae, "classify"):
            raise ConfigError("the semi-supervised objective trains a semi-supervised VAE: set model.kind")
        self.set_labelled(self.labelled)
        self.labelled = self.labelled.to(vae.device)
        from . import distributed

        self._generator = torch.Generator(device=vae.device).manual_seed(distributed.rank())  # ranks differ
        self._order, self._cursor = None, 0

    def _next_labelled(self):
        n = len(self.labelled)
        b = min(self.labelled_batch_size, n)
        if self._order is None or self._cursor + b > n:
            self._order = torch.randperm(n, device=self.labelled.x.device, generator=self._generator)
            self._cursor = 0
        idx = self._order[self._cursor:self._cursor + b]
        self._cursor += b
        lab = self.labelled
        x = lab.x[idx]
        if lab.binarize:
            x = torch.bernoulli(x, generator=self._generator)
        return x, None if lab.mask is None else lab.mask[idx], lab.y[idx]

    def labelled_loss(self, vae, x, mask, y) -> torch.Tensor:
        """-ELBO(x, y) + alpha * cross-entropy of q(y | x), summed over the batch."""
        ce = F.cross_entropy(vae.classify(x, mask), y, reduction="sum")
        return self.labelled_elbo.differentiable_loss(vae.model, vae.guide, x, mask, y) + self.alpha * ce

    def loss(self, vae, x, mask=None, step: int = 0) -> torch.Tensor:
        xl, ml, yl = self._next_labelled()
        unlabelled = self.unlabelled_elbo.differentiable_loss(vae.model, vae.guide, x, mask)
        return unlabelled + (len(x) / len(xl)) * self.labelled_loss(vae, xl, ml, yl)

    def eval_loss(self, vae, x, mask=None) -> torch.Tensor:
        """The unlabelled (enumerated) negative bound, summed over the batch (no gradient: for validation)."""
        return torch.as_tensor(self.unlabelled_elbo.loss(vae.model, vae.guide, x, mask), device=x.device)

    @torch.no_grad()
    def epoch_stats(self, vae, data) -> dict:
        return {"val_accuracy": accuracy(vae.classify, data)} if data.y is not None else {}


@OBJECTIVES.register("conditional")
class ConditionalObjective:
    """The ELBO of the conditional VAE p(x | y); batches carry labels."""

    needs_labels = True

    def __init__(self, num_particles: int = 1):
        self.elbo = Trace_ELBO(num_particles=num_particles, vectorize_particles=num_particles > 1, max_plate_nesting=1)

    def loss(self, vae, x, mask=None, step: int = 0, y=None) -> torch.Tensor:
        return self.elbo.differentiable_loss(vae.model, vae.guide, x, mask, y)

    def eval_loss(self, vae, x, mask=None, y=None) -> torch.Tensor:
        return self.loss(vae, x, mask, y=y)


@torch.no_grad()
def accuracy(classify, data, batch_size: int = 1000) -> float:
    """Fraction of ``data`` whose argmax of ``classify(x, mask)`` equals its label."""
    data = as_dataset(data)
    if data.y is None:
        raise ConfigError("accuracy needs labelled data")
    correct = torch.zeros((), device=data.x.device)
    for start in range(0, len(data), batch_size):
        sl = slice(start, start + batch_size)
        logits = classify(data.x[sl], None if data.mask is None else data.mask[sl])
        correct += (logits.argmax(-1) == data.y[sl]).sum()
    return float(correct) / len(data)


@torch.no_grad()
def enumerated_log_likelihood(vae, data, num_samples: int = 1000, batch_size: int = 100) -> dict:
    """Per datum: ``log_px`` = log sum_y p(y) p(x | y) with each p(x | y) estimated from ``num_samples``
    draws of q(z | x, y) (so n_classes x num_samples decoder passes), and ``elbo``, the enumerated bound
    sum_y q(y | x) [ELBO(x, y) - log q(y | x)] estimated from the same draws."""
    data = as_dataset(data).to(vae.device)
    vae.eval()
    out_px, out_elbo = [], []
    for xb, mb in data.batches(batch_size, shuffle=False):
        per_class_px, per_class_elbo = [], []
        for c in range(vae.n_classes):
            yc = torch.full((len(xb),), c, device=xb.device, dtype=torch.long)
            log_w = torch.cat(list(per_datum_log_weights(_with_label(vae, yc), xb, mb, num_samples)), 0)
            per_class_px.append(torch.logsumexp(log_w, 0) - math.log(num_samples))
            per_class_elbo.append(log_w.mean(0))
        log_q = F.log_softmax(vae.classify(xb, mb), -1).T  # (C, n)
        out_px.append(torch.logsumexp(torch.stack(per_class_px), 0).cpu())
        out_elbo.append((log_q.exp() * (torch.stack(per_class_elbo) - log_q)).sum(0).cpu())
    return {"log_px": torch.cat(out_px), "elbo": torch.cat(out_elbo)}


def _with_label(vae, y) -> ModelGuide:
    """A label-aware VAE with y fixed, seen as a (model, guide) pair over (x, mask)."""
    return ModelGuide(lambda x, mask=None: vae.model(x, mask, y), lambda x, mask=None: vae.guide(x, mask, y),
                      vae.likelihood)


def train_classifier(classifier: torch.nn.Module, labelled: ArrayDataset, val: Optional[ArrayDataset] = None,
                     steps: int = 2000, batch_size: int = 100, lr: float = 1e-3, seed: int = 0) -> dict:
    """The supervised-only baseline: cross-entropy on the labelled data alone (Adam). With ``val``,
    the weights of the best validation accuracy (checked every 100 steps) are kept: an optimistic
    baseline, so a semi-supervised model that beats it does so honestly."""
    torch.manual_seed(seed)
    device = next(classifier.parameters()).device
    lab = labelled.to(device)
    flat = lambda x: x.flatten(1)  # noqa: E731
    opt = torch.optim.Adam(classifier.parameters(), lr=lr)
    g = torch.Generator(device=device).manual_seed(seed)
    best, best_acc = copy.deepcopy(classifier.state_dict()), -1.0
    classify = lambda x, m=None: classifier(flat(x))  # noqa: E731
    for step in range(1, steps + 1):
        idx = torch.randint(len(lab), (min(batch_size, len(lab)),), device=device, generator=g)
        x = torch.bernoulli(lab.x[idx], generator=g) if lab.binarize else lab.x[idx]
        loss = F.cross_entropy(classifier(flat(x)), lab.y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if val is not None and (step % 100 == 0 or step == steps):
            acc = accuracy(classify, val.to(device))
            if acc > best_acc:
                best, best_acc = copy.deepcopy(classifier.state_dict()), acc
    if val is not None:
        classifier.load_state_dict(best)
    return {"val_accuracy": best_acc if val is not None else None, "steps": steps, "classify": classify}


def evaluate_labelled(vae, data: ArrayDataset, num_samples: int = 1000, bin_width: float = 1 / 255,
                      batch_size: int = 100) -> dict:
    """The report of a label-aware VAE on labelled test data. M2: accuracy of q(y | x) and the
    enumerated log p(x) (``num_samples`` draws per class); conditional VAE: log p(x | y)."""
    from .evaluate import bound_report

    data = as_dataset(data).to(vae.device)
    if hasattr(vae, "classify"):
        est = enumerated_log_likelihood(vae, data, num_samples, batch_size)
        report = {"accuracy": accuracy(vae.classify, data)}
    else:
        if data.y is None:
            raise ConfigError("the conditional VAE is evaluated on labelled data; these data have no labels")
        px, el = [], []
        for start in range(0, len(data), batch_size):
            part = data.subset(slice(start, start + batch_size))
            log_w = torch.cat(list(per_datum_log_weights(_with_label(vae, part.y), part.x, part.mask, num_samples)), 0)
            px.append((torch.logsumexp(log_w, 0) - math.log(num_samples)).cpu())
            el.append(log_w.mean(0).cpu())
        est, report = {"log_px": torch.cat(px), "elbo": torch.cat(el)}, {"conditional_on_label": True}
    return {**report, **bound_report(est, data, num_samples, vae.likelihood.discrete, bin_width)}
