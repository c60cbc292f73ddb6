"""The backend's log: one line per expected refusal, a traceback only for what went wrong.

Everything goes to stderr, which `chakor up` writes to `<var>/logs/backend.log` and rotates.
"""

from __future__ import annotations

import logging
import sys

LOGGER = "chakor"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging() -> None:
    """Send the `chakor.*` loggers' INFO and above to stderr, once per process (uvicorn configures only
    its own loggers; without this, INFO lines are dropped and WARNING ones lose their time stamp)."""
    logger = logging.getLogger(LOGGER)
    if logger.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
