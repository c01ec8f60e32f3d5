"""The version-skew tests play one side against the other side's real app, with the kits the
broker and member tests already have (a member double, signed-request helpers)."""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
for kit in ("broker", "member"):
    if str(TESTS / kit) not in sys.path:
        sys.path.append(str(TESTS / kit))
