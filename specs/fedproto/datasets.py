"""Datasets stored at a member, and whether one of them satisfies what a launch needs."""

from __future__ import annotations

from pydantic import Field

from .wire import WireModel


def normalise_dataset_id(value: str) -> str:
    """One spelling per dataset: DOIs without resolver prefix and lower-cased, URLs without trailing slash."""
    value = value.strip()
    lowered = value.lower()
    for prefix in ("https://doi.org/", "http://doi.org/", "https://dx.doi.org/", "doi:"):
        if lowered.startswith(prefix):
            value, lowered = value[len(prefix):], lowered[len(prefix):]
            break
    if lowered.startswith("10."):
        return lowered
    return value.rstrip("/")


class Dataset(WireModel):
    """A dataset (or a family of them, when ``prefix`` is true) stored at a member."""

    id: str = Field(min_length=1, max_length=512, description="Identifier: a DOI, URL, bucket path or prefix of them.")
    prefix: bool = Field(default=False, description="Match every dataset id that starts with `id`.")
    size_bytes: int | None = Field(default=None, ge=0, description="Size on disk, when known.")
    mount_path: str | None = Field(
        default=None, max_length=1024, description="Where launched servers see it (read-only), when mounted."
    )

    def matches(self, wanted: str) -> bool:
        mine, theirs = normalise_dataset_id(self.id), normalise_dataset_id(wanted)
        if self.prefix:
            return theirs.startswith(mine)
        return mine == theirs
