"""``fedbroker serve`` with routing decisions replayed: what the front door costs apart from ranking.

Run as ``python benchmarks/replayserve.py serve --config ...`` (as ``fedbroker``). The first 300
real decisions that choose a member are kept; after that each decision is one of them again (same
candidates, a fresh decision id), while the routing index is still brought up to date before each
one as a real decision does, so health views and provisional load stay as they would be. The
process CPU spent inside decisions (index upkeep, ranking or replay) is written, in seconds, to
the file named by ``REPLAY_CPU_FILE`` whenever the process gets SIGUSR1: the benchmark subtracts
it to get the front door's own CPU per request.
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
import time
from typing import Any, Iterator

from fedbroker.cli import main
from fedbroker.routing import live

KEPT = 300
_real_decide = live.LiveRouter.decide
_kept: list[Any] = []
_replay: Iterator[Any] | None = None
_spent = [0.0]


def _decide(self: live.LiveRouter, request: Any, decision_id: str, detail: int) -> Any:
    global _replay
    self._sync()  # as a real decision: the members changed since the last one are re-indexed
    if len(_kept) < KEPT:
        decision = _real_decide(self, request, decision_id, detail)
        if decision.chosen is not None:
            _kept.append(decision)
        return decision
    if _replay is None:
        _replay = itertools.cycle(_kept)
    return next(_replay).model_copy(update={"decision_id": decision_id})


def _timed_decide(self: live.LiveRouter, request: Any, decision_id: str, detail: int) -> Any:
    started = time.thread_time()
    try:
        return _decide(self, request, decision_id, detail)
    finally:
        _spent[0] += time.thread_time() - started


def _report(*_: Any) -> None:
    with open(os.environ["REPLAY_CPU_FILE"], "w") as out:
        out.write(repr(_spent[0]))


if __name__ == "__main__":
    live.LiveRouter.decide = _timed_decide  # type: ignore[method-assign]
    signal.signal(signal.SIGUSR1, _report)
    sys.exit(main())
