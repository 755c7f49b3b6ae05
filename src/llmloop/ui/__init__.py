"""The dashboard: server-rendered pages under ``/ui`` over the services (see ``web.py``)."""
