"""Where a member (or a client) is: coordinates, region, country, and distances between them."""

from __future__ import annotations

import math

from pydantic import Field

from .wire import WireModel

EARTH_RADIUS_KM = 6371.0


class Location(WireModel):
    """A place. Every part is optional: routing gives missing parts a neutral value."""

    lat: float | None = Field(default=None, ge=-90, le=90, description="Latitude in degrees.")
    lon: float | None = Field(default=None, ge=-180, le=180, description="Longitude in degrees.")
    region: str | None = Field(default=None, max_length=64, description="Free-form region, e.g. 'eu-west'.")
    country: str | None = Field(
        default=None, pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2 country code."
    )

    def distance_km(self, other: Location) -> float | None:
        """Great-circle distance, or None when either side lacks coordinates."""
        if self.lat is None or self.lon is None or other.lat is None or other.lon is None:
            return None
        lat1, lon1, lat2, lon2 = map(math.radians, (self.lat, self.lon, other.lat, other.lon))
        h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
        return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))
