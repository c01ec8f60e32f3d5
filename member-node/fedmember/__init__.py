"""The member agent: a signed API in front of whatever runs notebooks at a site."""

from fedproto import __version__

__all__ = ["__version__"]
