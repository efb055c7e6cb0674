"""geo_lead: site selection, hotspots and zone checks for Louisville Metro's LEAD pilot."""

from __future__ import annotations

__version__ = "0.1.0"
