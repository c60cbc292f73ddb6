"""Settings access for the backend (the process-wide `common.settings` object)."""

from __future__ import annotations

from common.settings import Settings, get_settings

__all__ = ["Settings", "get_settings"]
