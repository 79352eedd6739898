"""Worker of ``tests/test_recipes.py``: trains many tiny recipe runs in one process (one interpreter
start and one torch import for all of them).

    python tests/recipe_worker.py straight ROOT RECIPE...  # ROOT/RECIPE/straight: EPOCHS epochs in one go
    python tests/recipe_worker.py first ROOT RECIPE...     # ROOT/RECIPE/resumed: the first HALF epochs, and a
                                                           #   copy of that checkpoint in ROOT/RECIPE/half.pt
    python tests/recipe_worker.py resume ROOT RECIPE...    # ROOT/RECIPE/resumed: continued up to EPOCHS exactly
                                                           #   as `ppl-vae train --resume RUN --set train.epochs=EPOCHS`

Each run is the real ``ppl_vae.runs.train_run`` (checkpoint after every epoch, then evaluation and the
kind's extra metrics) on the recipe's own networks and objective, with tiny data (``tiny_overrides``).
A recipe that fails leaves its traceback in ``ROOT/RECIPE/MODE.error`` and the worker goes on with
the next one, so the test reports every recipe on its own. Prints ``RECIPE MODE SECONDS`` per run.

Two things are fixed for every mode, so that runs in different processes can be compared bitwise:
one CPU thread (results of multi-threaded CPU kernels may depend on the thread count; one thread
also lets two workers share a 2-core machine) and the semi-supervised kind's supervised-only
baseline cut from 3000 to ``BASELINE_STEPS`` classifier steps (``model.classifier.baseline_steps``;
``kind.extra_metrics`` trains it
after the last checkpoint, so it cannot change what is compared; at 3000 steps it alone would take
minutes per Fashion-MNIST run on 2 cores).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import List

EPOCHS = 2  # "N steps": fit reseeds every epoch from seed + epoch, so epoch boundaries are where runs resume
HALF = EPOCHS // 2
LIMIT, BATCH = 96, 32  # 3 optimizer steps per epoch
LABELS, LABELLED_BATCH = 20, 8  # 2 labels per class; 3 x 8 labelled draws per epoch wrap the labelled order mid-epoch
LARGE_SOURCES = ("fashion-mnist", "mnist")  # fixed data sets where 10% validation data would be thousands of images
BASELINE_STEPS = 100
MODES = ("straight", "first", "resume")


def tiny_overrides(recipe: str) -> List[str]:
    """``--set`` overrides that make any recipe tiny without changing its model or objective."""
    from ppl_vae.runs import load_config

    cfg = load_config(recipe)
    out = [f"data.limit={LIMIT}", f"train.batch_size={BATCH}", "train.device=cpu", "eval.iwae_samples=4", "eval.n_test=16"]
    if cfg.data.name in LARGE_SOURCES:
        out.append("data.val_fraction=0.005")
    if cfg.data.labels:  # the semi-supervised kind: a class-balanced labelled subset of the limited training data
        out += [
            f"data.labels={LABELS}",
            f"objective.labelled_batch_size={LABELLED_BATCH}",
            f"model.classifier.baseline_steps={BASELINE_STEPS}",
        ]
    return out


def run_one(mode: str, root: Path, recipe: str) -> None:
    from ppl_vae.runs import CHECKPOINT, CONFIG, load_config, train_run

    resumed = root / recipe / "resumed"
    if mode == "resume":  # what `ppl-vae train --resume RUN --set train.epochs=EPOCHS` does
        cfg = load_config(str(resumed / CONFIG), [f"train.epochs={EPOCHS}"])
        train_run(cfg, resumed, progress=False, resume=True, figures=False)
        return
    epochs = EPOCHS if mode == "straight" else HALF
    cfg = load_config(recipe, [*tiny_overrides(recipe), f"train.epochs={epochs}"])
    out = root / recipe / ("straight" if mode == "straight" else "resumed")
    train_run(cfg, out, progress=False, figures=False)
    if mode == "first":
        shutil.copyfile(out / CHECKPOINT, root / recipe / "half.pt")


def main(argv: List[str]) -> int:
    mode, root, recipes = argv[0], Path(argv[1]), argv[2:]
    if mode not in MODES:
        raise SystemExit(f"unknown mode '{mode}'; choose one of: {', '.join(MODES)}")
    import torch

    torch.set_num_threads(1)
    failed = 0
    for recipe in recipes:
        start = time.perf_counter()
        try:
            run_one(mode, root, recipe)
        except Exception:
            failed += 1
            (root / recipe).mkdir(parents=True, exist_ok=True)
            (root / recipe / f"{mode}.error").write_text(traceback.format_exc())
            print(traceback.format_exc(), file=sys.stderr, flush=True)
        print(f"{recipe} {mode} {time.perf_counter() - start:.2f}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main(sys.argv[1:]))
