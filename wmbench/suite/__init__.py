"""Suites: YAML files of objectives × tasks × seeds, validated before any compute, and their runner."""
