"""The peers strata is measured against, serving the same two routes (``/healthz`` and ``/v1/users/me``).

- :mod:`benchmarks.peer.monolith`: a plain FastAPI + uvicorn + asyncpg monolith (as many workers as cores);
- :mod:`benchmarks.peer.serve_app`: the obvious Ray Serve build (a gateway ingress deployment calling a users
  deployment by handle), with Serve's defaults and its Python proxy.

Both read their configuration from ``PEER_*`` environment variables (:class:`benchmarks.peer._common.PeerConfig`).
"""
