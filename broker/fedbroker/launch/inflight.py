"""Background work per member: at most one task per member id, forgotten when it ends.

The poller (one poll per member) and the canary runner (one canary per member) both start
tasks keyed by member and cancel them all on shutdown; this is that bookkeeping, once.
"""

from __future__ import annotations

import asyncio
from typing import Coroutine


class MemberTasks:
    """Tasks in flight, one per member id."""

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def __contains__(self, member_id: object) -> bool:
        return member_id in self._tasks

    def start(self, member_id: str, coro: Coroutine[object, object, None], name: str) -> asyncio.Task[None]:
        """Run ``coro`` for ``member_id``; the entry goes away when the task ends."""
        task = asyncio.create_task(coro, name=name)
        self._tasks[member_id] = task
        task.add_done_callback(lambda _t, m=member_id: self._tasks.pop(m, None))
        return task

    async def cancel_all(self) -> None:
        """Cancel every task in flight and wait for them to finish."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
