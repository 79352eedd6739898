"""The semi-supervised kind: Kingma et al.'s M2 as a Pyro program, its evaluation and baseline.

The label is a discrete latent with a uniform prior p(y), observed on labelled data and latent
otherwise. The guide's classifier q(y | x) is enumerated in parallel by ``TraceEnum_ELBO`` (the guide
marks the site ``enumerate="parallel"``), so the unlabelled bound sums exactly over classes. Sites:
``y``, ``z``, ``x`` in the plate ``data`` (dim -1). It shares the conditional VAE's networks.

* ``enumerated_log_likelihood``: log p(x) = log sum_y p(y) p(x | y), each p(x | y) importance-weighted.
* ``train_classifier``: the supervised-only baseline (same classifier, labelled data only).
* ``SemiSupervisedKind`` (registered as ``"semi-supervised"``).
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any, ClassVar, Dict, Optional, Sequence, Union, cast

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro import poutine
from torch import nn

from ppl_vae.components.networks import mlp
from ppl_vae.config import Config, ModelConfig
from ppl_vae.data import Splits
from ppl_vae.data.base import ArrayDataset, as_dataset
from ppl_vae.data.spec import DataSpec
from ppl_vae.evaluation.classification import accuracy
from ppl_vae.evaluation.likelihood import bound_report, per_datum_log_weights
from ppl_vae.kinds.conditional import ConditionalKind, ConditionalVAE, with_label
from ppl_vae.kinds.vae import data_size
from ppl_vae.objectives.base import Objective
from ppl_vae.registry import KINDS, ConfigError, recipe_of, remember_arguments
from ppl_vae.schema import positive_int

if TYPE_CHECKING:
    from ppl_vae.objectives.labelled import SemiSupervisedObjective


@remember_arguments
class SemiSupervisedVAE(ConditionalVAE):
    """M2: ``SemiSupervisedVAE((784,), n_classes=10, latent_dim=50)``; y observed when given, else enumerated."""

    y_logits: torch.Tensor  # a buffer: the uniform p(y)

    def __init__(
        self,
        data_shape: Sequence[int],
        n_classes: int,
        latent_dim: int = 10,
        prior: Any = None,
        likelihood: Any = None,
        hidden: Sequence[int] = (256,),
        classifier_hidden: Sequence[int] = (256,),
        activation: str = "relu",
        classifier: Optional[nn.Module] = None,
    ) -> None:
        super().__init__(data_shape, n_classes, latent_dim, prior, likelihood, hidden, activation)
        self.classifier = (
            classifier
            if classifier is not None
            else make_classifier(math.prod(self.data_shape), n_classes, classifier_hidden, activation)
        )
        self.register_buffer("y_logits", torch.zeros(n_classes))  # uniform p(y)

    def classify(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Logits of q(y | x), shape (batch, n_classes)."""
        return self.classifier(self._flat(self.likelihood.fill_missing(x, mask)))

    def model(
        self,
        x: Optional[torch.Tensor] = None,
        mask: Optional[torch.Tensor] = None,
        y: Optional[torch.Tensor] = None,
        beta: float = 1.0,
        n: Optional[int] = None,
    ) -> None:
        """p(x, y, z) = p(y) p(z) p(x | y, z); ``model(None, n=N)`` generates N data (labels drawn from p(y))."""
        x = self.likelihood.fill_missing(x, mask) if x is not None else None
        with pyro.plate("data", len(y) if y is not None and x is None else data_size(x, n), dim=-1):
            y = pyro.sample("y", dist.Categorical(logits=self.y_logits), obs=y)
            with poutine.scale(scale=beta):
                z = pyro.sample("z", self.prior())
            pyro.sample("x", self.likelihood(self.decoder(z, y), mask), obs=x)

    def guide(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None, y: Optional[torch.Tensor] = None, beta: float = 1.0) -> None:
        with pyro.plate("data", x.shape[0], dim=-1):
            if y is None:
                y = pyro.sample("y", dist.Categorical(logits=self.classify(x, mask)), infer={"enumerate": "parallel"})
            with poutine.scale(scale=beta):
                pyro.sample("z", self.encode(x, y, mask))


def make_classifier(data_dim: int, n_classes: int, hidden: Sequence[int] = (256,), activation: str = "relu") -> nn.Module:
    """The classifier architecture of q(y | x), also used alone by the supervised-only baseline."""
    return mlp([data_dim, *hidden, n_classes], activation)


@torch.no_grad()
def enumerated_log_likelihood(
    vae: Any, data: Union[ArrayDataset, torch.Tensor], num_samples: int = 1000, batch_size: int = 100
) -> dict:
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
            log_w = torch.cat(list(per_datum_log_weights(with_label(vae, yc), xb, mb, num_samples)), 0)
            per_class_px.append(torch.logsumexp(log_w, 0) - math.log(num_samples))
            per_class_elbo.append(log_w.mean(0))
        log_q = F.log_softmax(vae.classify(xb, mb), -1).T  # (C, n)
        out_px.append(torch.logsumexp(torch.stack(per_class_px), 0).cpu())
        out_elbo.append((log_q.exp() * (torch.stack(per_class_elbo) - log_q)).sum(0).cpu())
    return {"log_px": torch.cat(out_px), "elbo": torch.cat(out_elbo)}


def train_classifier(
    classifier: torch.nn.Module,
    labelled: ArrayDataset,
    val: Optional[ArrayDataset] = None,
    steps: int = 2000,
    batch_size: int = 100,
    lr: float = 1e-3,
    seed: int = 0,
) -> dict:
    """The supervised-only baseline: cross-entropy on the labelled data alone (Adam). With ``val``,
    the weights of the best validation accuracy (checked every 100 steps) are kept: an optimistic
    baseline, so a semi-supervised model that beats it does so honestly."""
    torch.manual_seed(seed)
    device = next(classifier.parameters()).device
    lab = labelled.to(device)
    if lab.y is None:
        raise ConfigError("the supervised-only baseline needs labelled data; these data have no labels")
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


BASELINE_STEPS = positive_int(1_000_000, note="classifier steps of the supervised-only baseline")


@KINDS.register("semi-supervised")
class SemiSupervisedKind(ConditionalKind):
    """M2 on a labelled subset (``data.labels``) and the unlabelled rest; reports accuracy and the
    supervised-only baseline beside log p(x)."""

    name = "semi-supervised"
    description = "M2: y a latent class enumerated in the guide, observed on the labelled subset"
    capabilities = frozenset({"sample", "conditional-sample", "reconstruct", "classify"})
    objectives = ("semi-supervised",)
    module_type: ClassVar[Optional[type]] = SemiSupervisedVAE

    def describe(self, module: Any) -> Dict[str, Any]:
        args = recipe_of(module) or {}
        if args.get("classifier") is not None:
            raise ConfigError("model.classifier is a custom module, which a recipe cannot name; use the built-in classifier")
        return {**super().describe(module), "classifier": {"hidden": [int(h) for h in args.get("classifier_hidden", (256,))]}}

    uses_labelled_subset = True

    def build(self, model: ModelConfig, spec: DataSpec) -> nn.Module:
        return SemiSupervisedVAE(**self._parts(model, spec), classifier_hidden=tuple(model.classifier.get("hidden", [256])))

    def prepare(self, splits: Splits, objective: Objective) -> None:
        cast("SemiSupervisedObjective", objective).set_labelled(splits.labelled)  # validate() checked the objective

    def evaluate(self, module: Any, data: ArrayDataset, spec: DataSpec, num_samples: int, progress: bool = False) -> Dict[str, Any]:
        data = as_dataset(data).to(module.device)
        est = enumerated_log_likelihood(module, data, num_samples)
        return {
            "accuracy": accuracy(module.classify, data),
            **bound_report(est, data, num_samples, module.likelihood.discrete, spec.bin_width),
        }

    def extra_metrics(self, module: Any, splits: Splits, cfg: Config) -> Dict[str, Any]:
        """The same classifier architecture trained on the labelled subset alone (best validation epoch)."""
        if splits.labelled is None:
            raise ConfigError(f"model.kind '{self.name}' needs data.labels > 0 (the size of the labelled subset)")
        steps = BASELINE_STEPS.check("model.classifier.baseline_steps", cfg.model.classifier.get("baseline_steps", 3000))
        torch.manual_seed(cfg.train.seed)
        clf = make_classifier(
            splits.labelled.x[0].numel(),
            splits.spec.n_classes,
            tuple(cfg.model.classifier.get("hidden", [256])),
            cfg.model.encoder.get("activation", "relu"),
        )
        clf.to(module.device)
        res = train_classifier(
            clf,
            splits.labelled,
            splits.val,
            steps=steps,
            batch_size=cfg.objective.get("labelled_batch_size", 100),
            lr=cfg.train.lr,
            seed=cfg.train.seed,
        )
        test = splits.test if not cfg.eval.n_test else splits.test.subset(slice(0, cfg.eval.n_test))
        return {
            "labels": len(splits.labelled),
            "baseline_accuracy": accuracy(res["classify"], test.to(module.device)),
            "baseline_val_accuracy": res["val_accuracy"],
            "baseline_steps": steps,
        }
