"""The redis-server fixtures of the adapter tests, for the cluster test (``tests`` is on
``sys.path``: both folders are packages)."""

from adapters.conftest import redis_server, redis_url

__all__ = ["redis_server", "redis_url"]
