"""The shipped recipes: TOML files installed as the package data of ``ppl_vae.recipes``.

This folder is that package (``pyproject.toml`` maps it); ``ppl_vae.runs.recipes`` reads it with
``importlib.resources``. Add a recipe by adding a ``NAME.toml`` file here.
"""
