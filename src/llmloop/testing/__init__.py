"""Fakes, fixtures and contract suites shipped for tests and plugin authors."""
