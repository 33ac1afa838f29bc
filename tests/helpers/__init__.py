"""Helpers the tests share: cohorts, servers, parameters (no fixtures: those live in conftest.py)."""
