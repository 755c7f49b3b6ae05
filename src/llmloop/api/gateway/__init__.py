"""api/gateway."""
