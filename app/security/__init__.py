"""Hosting the service for others: API keys (``keys``), who a request is and whether it may
come in (``access``), per-client limits on work (``quota``) and the headers every response
carries (``headers``)."""
