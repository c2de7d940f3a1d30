"""Operator tooling: local services for development, demos and tests (not loaded by Dagster)."""
