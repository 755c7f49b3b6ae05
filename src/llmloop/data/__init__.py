"""Data preparation adapters: ingest, profile, clean, deduplicate, split and augment rows.

Modules: ``loaders`` (files and URLs -> batches of rows), ``shapes`` (record shapes, canonical
JSONL and content hash), ``profile`` + ``report`` (exploratory analysis and its HTML page),
``steps`` + ``recipes`` (declarative cleaning), ``dedup`` (exact and MinHash near duplicates),
``split`` (train/validation/test with leakage checks), ``augment`` (templates, paraphrase) and
``text`` (tokens, languages, toxicity). Nothing here touches the store; importing this package
imports none of them.
"""
