"""Settings access for the backend (the process-wide `chakor.settings` object)."""

from __future__ import annotations

from chakor.settings import Settings, get_settings

__all__ = ["Settings", "get_settings"]
