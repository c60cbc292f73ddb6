"""datatrove's local executor, with its console log kept in the task log files only."""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Iterator

from datatrove.executor import LocalPipelineExecutor
from datatrove.utils.logging import logger
from datatrove.utils.stats import PipelineStats


@contextlib.contextmanager
def _console_log_silenced() -> Iterator[None]:
    with contextlib.redirect_stderr(io.StringIO()):
        logger.remove()
        logger.add(sys.stderr, level="ERROR")
        try:
            yield
        finally:
            logger.remove()
    logger.add(sys.stderr, level="WARNING")


class QuietExecutor(LocalPipelineExecutor):
    """`LocalPipelineExecutor` whose tasks log to `logging_dir/logs/` but not to the console."""

    def run(self) -> PipelineStats:
        with _console_log_silenced():
            return super().run()

    def _run_for_rank(self, rank: int, local_rank: int = 0, node_rank: int = -1) -> PipelineStats:
        with _console_log_silenced():
            return super()._run_for_rank(rank, local_rank, node_rank)
