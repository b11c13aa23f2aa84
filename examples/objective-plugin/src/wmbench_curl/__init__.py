"""A CURL-style objective for wmbench, registered as ``curl`` (see ``objective.py``)."""
