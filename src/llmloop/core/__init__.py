"""Pure domain values of llmloop: no I/O, no frameworks; the standard library and pydantic only."""
