"""Guardrails: checks on requests and (streamed) responses, shared by the gateway and evaluation."""
