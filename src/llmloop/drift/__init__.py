"""Drift detection: two-sample tests between a reference and a current window (numpy/scipy).

Pure functions over arrays; choosing windows, embedding texts and storing results is the
drift service's job.
"""
