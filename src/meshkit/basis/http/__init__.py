"""Lean HTTP/1.1 transport on asyncio protocols (client pool, used by the service client and the gateway)."""
