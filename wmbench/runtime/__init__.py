"""Running agents in environments: the synchronous collect-then-update loop."""
