"""Results: the tidy result store and comparison tables (reads run directories, never checkpoints)."""
