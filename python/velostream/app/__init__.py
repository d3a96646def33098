"""Applications: a SQL file of statements, their connectors, dependency waves and runs."""

from velostream.app.application import Application, StatementInfo
from velostream.app.graph import dependency_waves
from velostream.runtime.report import RunReport, StatementReport

__all__ = ["Application", "RunReport", "StatementInfo", "StatementReport", "dependency_waves"]
