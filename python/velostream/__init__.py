"""velostream: streaming SQL for Kafka and Arrow, with a Rust core."""

from velostream import _core
from velostream.app import Application, RunReport
from velostream.errors import (
    CircuitOpenError,
    CircularDependencyError,
    ConfigError,
    DataError,
    EventTimeError,
    InternalError,
    MissingDependencyError,
    SinkError,
    SnapshotError,
    SourceError,
    SqlSyntaxError,
    SqlValidationError,
    TableNotReadyError,
    TopicNotFoundError,
    VelostreamError,
)
from velostream.partitioned import PartitionedQuery, compile_partitioned
from velostream.query import Query, compile
from velostream.runtime.resilience import RetryPolicy
from velostream.tables import (
    LoadResult,
    ParallelLoader,
    TableDefinition,
    TableHandle,
    TableRegistry,
    TableStatus,
)

__version__ = "0.1.0"

__all__ = [
    "Application",
    "CircuitOpenError",
    "CircularDependencyError",
    "ConfigError",
    "DataError",
    "EventTimeError",
    "InternalError",
    "LoadResult",
    "MissingDependencyError",
    "ParallelLoader",
    "PartitionedQuery",
    "Query",
    "RetryPolicy",
    "RunReport",
    "SinkError",
    "SnapshotError",
    "SourceError",
    "SqlSyntaxError",
    "SqlValidationError",
    "TableDefinition",
    "TableHandle",
    "TableNotReadyError",
    "TableRegistry",
    "TableStatus",
    "TopicNotFoundError",
    "VelostreamError",
    "compile",
    "compile_partitioned",
]

if _core.build_profile != "release":  # pragma: no cover - depends on the build
    import warnings

    warnings.warn(
        "velostream was built in debug mode: it runs 10-50x slower than a release build; "
        "do not benchmark it (build with `maturin develop --release`)",
        RuntimeWarning,
        stacklevel=2,
    )
