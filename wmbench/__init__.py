"""Compare world-model representation objectives on one RSSM and one imagination learner."""

__version__ = "0.1.0"
