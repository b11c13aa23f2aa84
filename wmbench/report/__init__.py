"""Results: the result store, its statistics, figures and the markdown report (store → stats → plots
→ markdown).

Reads run directories and the store, never checkpoints.
"""
