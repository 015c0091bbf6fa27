"""optlab: a command-line lab for optimizer research."""

__version__ = "0.1.0"
