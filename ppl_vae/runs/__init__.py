"""Runs: recipes, run directories (train, resume, load, evaluate, sample) and analyses of finished runs.

The layer the command line calls; it asks model kinds for what differs between them.
"""

from ppl_vae.runs.analysis import compare_runs, diagnose_run, disentanglement_run
from ppl_vae.runs.recipes import DEFAULT_RECIPE, describe, load_config, recipe_names, recipe_source
from ppl_vae.runs.saving import load, save
from ppl_vae.runs.rundir import CHECKPOINT, CONFIG, HISTORY, METRICS, LoadedRun, evaluate_run, load_run, prepare, sample_run, train_run

__all__ = [
    "compare_runs",
    "diagnose_run",
    "disentanglement_run",
    "DEFAULT_RECIPE",
    "describe",
    "load_config",
    "recipe_names",
    "recipe_source",
    "CHECKPOINT",
    "CONFIG",
    "HISTORY",
    "METRICS",
    "LoadedRun",
    "evaluate_run",
    "load_run",
    "prepare",
    "sample_run",
    "train_run",
    "save",
    "load",
]
