"""Optimizers (one module each), parameter-group routing (groups.py) and the name registry (registry.py)."""
