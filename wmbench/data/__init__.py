"""Replay: the in-memory sequence buffer and its chunk files on disk."""
