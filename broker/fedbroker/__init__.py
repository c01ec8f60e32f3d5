"""The broker: registry, health, routing, launch relay, admin API and web pages."""

from fedproto import __version__

__all__ = ["__version__"]
