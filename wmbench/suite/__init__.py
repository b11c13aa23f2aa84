"""Suites: YAML files of objectives × tasks × seeds, validated before any compute (``spec``), their
planned cost and status (``plan``), and their runner (``runner``; Ray tasks in ``ray_launcher``)."""
