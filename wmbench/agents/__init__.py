"""RSSM, networks, imagination actor-critic and the Lightning module."""
