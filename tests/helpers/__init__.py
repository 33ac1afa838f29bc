"""Helpers the tests share: cohorts and the CLI, hand-built LMT files, servers, parameters.

Plain functions and constants only: fixtures live in conftest.py, used by name."""
