"""Dashboard pages (a later issue)."""
