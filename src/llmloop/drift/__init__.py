"""Drift detection over windows of traces (a later issue)."""
