"""Evaluators: metrics, judges and safety detectors that score samples (offline and online)."""
