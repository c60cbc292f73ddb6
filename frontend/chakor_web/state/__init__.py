"""Reflex states, one per feature; all derive from the session state."""
