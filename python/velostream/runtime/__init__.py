"""Jobs: sources → query → sinks, with error strategies, counters and run reports."""

from velostream.runtime.job import StatementRunner, run_source
from velostream.runtime.report import RunReport, StatementReport

__all__ = ["RunReport", "StatementReport", "StatementRunner", "run_source"]
