"""lmt-stereotype: sex and age of laboratory mice from where and when they stop."""

__version__ = "0.1.0"
