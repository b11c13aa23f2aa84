"""Representation diagnostics of a trained world model, for every objective.

One module per job: ``episodes`` (held-out episodes with the true physics state, and their latent
features), ``probe`` (ridge state probe and R²), ``probe_decoder`` (an image decoder trained on
detached features), ``open_loop`` (k observed frames, n imagined steps, errors per horizon step),
``config`` (its settings) and ``run`` (``wmbench diagnose RUN_DIR``: all of them on a run's
checkpoint, results into the run directory), ``section`` (the report's diagnostics section from run
directories).
"""
