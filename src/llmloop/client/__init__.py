"""The Python SDK: ``Client()`` in process on the local store, ``Client(url=..., api_key=...)``
over HTTP, with the same methods and the same return values."""

from llmloop.client.sdk import Client

__all__ = ["Client"]
