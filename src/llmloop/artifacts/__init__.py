"""Artifacts: immutable, content-addressed blobs (datasets, weights, reports) over fsspec."""
