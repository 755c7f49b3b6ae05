"""The gateway service: routing, limits, caches and guardrails behind the OpenAI-compatible API."""
