"""Which repositories may be launched: allow and deny regular expressions on ``provider/spec``.

Like BinderHub's ``banned_specs``, a pattern matches from the start of the string
(``re.match``), so ``gh/evil-org/.*`` bans a whole organisation.
"""

from __future__ import annotations

import re

from ..config import SpecFilter as SpecFilterSettings


class SpecFilter:
    """Compiled allow/deny lists; an empty allow list allows everything not denied."""

    def __init__(self, settings: SpecFilterSettings) -> None:
        try:
            self._allow = [re.compile(p) for p in settings.allow]
            self._deny = [re.compile(p) for p in settings.deny]
        except re.error as exc:
            raise ValueError(f"invalid spec filter pattern {exc.pattern!r}: {exc}") from None

    def refusal(self, provider: str, spec: str) -> str | None:
        """Why ``provider/spec`` may not launch, or None when it may."""
        if not self._deny and not self._allow:  # the default: nothing to match
            return None
        target = f"{provider}/{spec}"
        if any(p.match(target) for p in self._deny):
            return f"Sorry, {target} has been temporarily disabled from launching. Please contact admins for more info!"
        if self._allow and not any(p.match(target) for p in self._allow):
            return f"{target} is not in the list of repositories this federation launches."
        return None
