"""`fedbroker serve` runs with the broker's garbage-collector setting (see fedbroker.serve.GC_YOUNG_THRESHOLD)."""

from __future__ import annotations

import gc

from fedbroker import serve


def test_fedbroker_serve_raises_the_young_gc_threshold_and_keeps_the_others(monkeypatch) -> None:
    before = gc.get_threshold()
    seen: list[tuple[int, int, int]] = []
    # The blocking entry point, up to the event loop it would start: the setting is in place by then.
    monkeypatch.setattr(serve.asyncio, "run", lambda coro: (coro.close(), seen.append(gc.get_threshold())))
    try:
        serve.run(object())  # type: ignore[arg-type]
        assert seen == [(serve.GC_YOUNG_THRESHOLD, before[1], before[2])]
    finally:
        gc.set_threshold(*before)
