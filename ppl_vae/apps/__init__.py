"""Applications built on a trained model: what people use a VAE for, one module each.

This layer sits above the model kinds, objectives and evaluation (it asks a kind for a capability
with ``ppl_vae.kinds.require``) and below the run directories and the CLI, which load a run and
call these functions. Nothing here reads a recipe or parses arguments.
"""
