"""datatrove's local executor, with each task's console log kept in its log file only."""

from __future__ import annotations

import contextlib
import io

from datatrove.executor import LocalPipelineExecutor
from datatrove.utils.stats import PipelineStats


class QuietExecutor(LocalPipelineExecutor):
    """`LocalPipelineExecutor` whose tasks log to `logging_dir/logs/` but not to the console."""

    def _run_for_rank(self, rank: int, local_rank: int = 0, node_rank: int = -1) -> PipelineStats:
        with contextlib.redirect_stderr(io.StringIO()):
            return super()._run_for_rank(rank, local_rank, node_rank)
