"""Registered models in the runtime: loading a pinned version, its input features, and prediction."""
