"""The federation protocol: wire models, keys and signing shared by broker and member.

Nothing in this package does network I/O or imports aiohttp; both sides import it.
"""

from .version import PROTOCOL

__version__ = "0.1.0"

PROTOCOL_VERSION = str(PROTOCOL)  # MAJOR.MINOR; the rule for changing it is in fedproto.version
