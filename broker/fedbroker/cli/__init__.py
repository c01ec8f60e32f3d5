"""The ``fedbroker`` command line: the parser and dispatch in ``main``, one module per command group."""

from .main import main

__all__ = ["main"]
