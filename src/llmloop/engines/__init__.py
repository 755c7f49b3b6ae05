"""Engines: where tokens are generated. One small contract (``base.Engine``), several backends."""
