"""What routing believes of a member's own claims: its status ad may narrow the registry, never widen it.

Members are semi-trusted: an ad is signed, so it is the member speaking, but a member that
lies (or is misconfigured) must not win launches by saying more than the registry grants.

* **Datasets**: a member holds what the registry says (its record, approved by an admin,
  and dataset declarations naming it). An ad that lists datasets narrows that to what it
  also lists (a dataset taken offline); an ad listing ``10.``, ``s`` and ``h`` adds nothing.
* **Capacity**: an ad's ``capacity.total`` is capped by the member's admin-set
  ``max_capacity``, else by ``routing.max_member_capacity``.

Pure; called by routing's facts (datasets) and by the poller as each ad arrives (capacity).
"""

from __future__ import annotations

from typing import Iterable, Sequence

from fedproto.datasets import Dataset
from fedproto.status import Capacity, StatusAd


def _covers(outer: Dataset, inner: Dataset) -> bool:
    """Whether every dataset ``inner`` names is also named by ``outer``."""
    if outer.prefix:
        return outer.matches(inner.id)
    return not inner.prefix and outer.matches(inner.id)


def held_datasets(declared: Iterable[Dataset], advertised: Sequence[Dataset] | None) -> list[Dataset]:
    """The datasets routing may believe a member stores.

    ``declared`` is the registry's word; ``advertised`` the member's ad (None or empty: no
    claim, the registry's word stands). Kept: each declared dataset the ad covers whole, and
    each advertised dataset inside a declared one (the narrower of the two, with the ad's size).
    """
    declared = list(declared)
    if not advertised:
        return declared
    held = [d for d in declared if any(_covers(a, d) for a in advertised)]
    held += [a for a in advertised
             if any(_covers(d, a) for d in declared) and not any(_covers(h, a) for h in held)]
    return held


def capped_ad(ad: StatusAd, max_capacity: int) -> StatusAd:
    """``ad`` with ``capacity.total`` at most ``max_capacity`` (the same object when within it)."""
    if ad.capacity.total <= max_capacity:
        return ad
    cap = ad.capacity
    return ad.model_copy(update={"capacity": Capacity(total=max_capacity, used=cap.used, building=cap.building)})
