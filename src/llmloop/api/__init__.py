"""The HTTP edge: REST API over the services (and, in ``gateway/``, the OpenAI-compatible API)."""
