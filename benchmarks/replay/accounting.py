"""The replay's accounting: what happened to each launch, hourly peak load per member, and the result line.

Definitions (BENCHMARKS.md ("Routing quality") repeats them):

* a *build* is a launch that found neither the image nor a build of it at the member it landed on;
* *hourly peak load over fair share*, for member m and hour h, is m's highest number of occupied
  slots in h divided by its fair share of the federation's highest total in h, ``w_m / sum(w)``;
  hours whose total peak is below ``min_hour_load`` are left out, because with a handful of
  servers one extra session on a small member reads as "3x fair share" and says nothing;
* a launch is *refused* when every member tried (up to the attempt budget) was full, or when the
  policy had no member to offer;
* *dataset local* is the share of launches needing a dataset that landed on a member storing all
  of it; ``dataset_local_avail`` counts only launches for which such a member had a free slot,
  and ``dataset_first_local`` is the share of those the policy ranked a storing member first
  (they differ when the storing member fails the launch and the retry goes elsewhere);
* *time to ready* is the build time waited for (if any), the member's launch time, and 30 s per
  failed attempt and 1 s per refused attempt before the one that worked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

FAILED_ATTEMPT_SECONDS = 30.0
REFUSED_ATTEMPT_SECONDS = 1.0


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of ``values``; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100.0 * len(ordered)) - 1)]


class HourlyPeaks:
    """Per hour: each member's peak of occupied slots and the peak of the federation's total."""

    def __init__(self, n_members: int, start: float) -> None:
        self._n = n_members
        self._start = start
        self._hour = 0
        self.next_hour_at = start + 3600.0
        self._peaks = [0] * n_members
        self._total_peak = 0
        self.hours: list[tuple[list[int], int]] = []

    def advance(self, now: float, occupied: Sequence[int]) -> None:
        """Move to the hour of ``now``; ``occupied`` is the state since the last change (before ``now``)."""
        hour = int((now - self._start) // 3600.0)
        if hour <= self._hour:
            return
        self.hours.append((self._peaks, self._total_peak))
        total = sum(occupied)
        # Hours with no event at all kept the same occupancy throughout.
        for _ in range(hour - self._hour - 1):
            self.hours.append((list(occupied), total))
        self._hour = hour
        self.next_hour_at = self._start + (hour + 1) * 3600.0
        self._peaks, self._total_peak = list(occupied), total

    def raised(self, member: int, occupied: int, total: int) -> None:
        """Note member ``member`` now occupies ``occupied`` slots and the federation ``total``."""
        if occupied > self._peaks[member]:
            self._peaks[member] = occupied
        if total > self._total_peak:
            self._total_peak = total

    def finish(self) -> None:
        """Close the current hour (call once, after the last event)."""
        self.hours.append((self._peaks, self._total_peak))
        self._peaks = [0] * self._n
        self._total_peak = 0

    def over_fair(self, weights: Sequence[float], min_hour_load: int) -> list[float]:
        """Every member-hour's peak over its fair share, for hours busy enough to judge."""
        total_weight = sum(weights)
        ratios = []
        for peaks, total_peak in self.hours:
            if total_peak < max(1, min_hour_load):
                continue
            for m, peak in enumerate(peaks):
                if weights[m] > 0:
                    ratios.append(peak / (weights[m] / total_weight * total_peak))
        return ratios


@dataclass
class Accounting:
    """Counters and samples of one policy's replay."""

    launches: int = 0
    builds: int = 0
    refused: int = 0
    failed: int = 0
    attempts: int = 0
    dataset_launches: int = 0
    dataset_local: int = 0
    dataset_avail: int = 0
    dataset_local_avail: int = 0
    dataset_routed_avail: int = 0
    dataset_first_local: int = 0
    ready_seconds: list[float] = field(default_factory=list)

    def dataset_outcome(self, local: bool, available: bool) -> None:
        self.dataset_launches += 1
        self.dataset_local += local
        if available:
            self.dataset_avail += 1
            self.dataset_local_avail += local

    def dataset_routed(self, first_local: bool) -> None:
        """A launch needing data was ranked while a storing member had room; was it ranked first?"""
        self.dataset_routed_avail += 1
        self.dataset_first_local += first_local


@dataclass(frozen=True)
class Result:
    """The numbers printed for one policy on one trace."""

    policy: str
    launches: int
    builds_per_1000: float
    peak_over_fair_p99: float
    peak_over_fair_max: float
    refused: int
    failed: int
    dataset_local: float
    dataset_local_avail: float
    dataset_first_local: float
    ttr_mean: float
    ttr_p95: float
    seconds: float  # wall-clock time of the replay
    cpu_seconds: float  # its CPU time: what to compare on a shared machine

    @classmethod
    def of(cls, policy: str, acc: Accounting, ratios: list[float], seconds: float, cpu_seconds: float) -> Result:
        share = lambda num, den: num / den if den else math.nan  # noqa: E731
        return cls(
            policy=policy,
            launches=acc.launches,
            builds_per_1000=1000.0 * share(acc.builds, acc.launches),
            peak_over_fair_p99=percentile(ratios, 99),
            peak_over_fair_max=max(ratios, default=math.nan),
            refused=acc.refused,
            failed=acc.failed,
            dataset_local=share(acc.dataset_local, acc.dataset_launches),
            dataset_local_avail=share(acc.dataset_local_avail, acc.dataset_avail),
            dataset_first_local=share(acc.dataset_first_local, acc.dataset_routed_avail),
            ttr_mean=share(sum(acc.ready_seconds), len(acc.ready_seconds)),
            ttr_p95=percentile(acc.ready_seconds, 95),
            seconds=seconds,
            cpu_seconds=cpu_seconds,
        )

    def line(self, trace: str) -> str:
        """One machine-readable line: ``key=value`` pairs separated by spaces."""
        return (
            f"trace={trace} policy={self.policy} launches={self.launches} "
            f"builds_per_1000={self.builds_per_1000:.2f} peak_over_fair_p99={self.peak_over_fair_p99:.3f} "
            f"peak_over_fair_max={self.peak_over_fair_max:.3f} refused={self.refused} failed={self.failed} "
            f"dataset_local={self.dataset_local:.4f} dataset_local_avail={self.dataset_local_avail:.4f} "
            f"dataset_first_local={self.dataset_first_local:.4f} "
            f"ttr_mean={self.ttr_mean:.1f} ttr_p95={self.ttr_p95:.1f} sim_seconds={self.seconds:.1f} "
            f"cpu_seconds={self.cpu_seconds:.1f}"
        )
