"""Sources and sinks: bytes in and out of files (Kafka later), Arrow batches inside.

The decoding and encoding of records happens in Rust (``velostream._core`` codec
bindings); this package reads and writes bytes in chunks, builds the connectors from
their ``WITH`` properties, and applies the bad-record strategy. It knows nothing about
SQL.
"""

from velostream.io.bad_records import BadRecordPolicy, DeadLetterWriter
from velostream.io.base import Sink, Source
from velostream.io.connectors import create_sink, create_source, resolve_path
from velostream.io.file_sink import FileSink
from velostream.io.file_source import DEFAULT_INFERENCE_ROWS, FileSource
from velostream.io.paths import sink_overlaps_source

__all__ = [
    "DEFAULT_INFERENCE_ROWS",
    "BadRecordPolicy",
    "DeadLetterWriter",
    "FileSink",
    "FileSource",
    "Sink",
    "Source",
    "create_sink",
    "create_source",
    "resolve_path",
    "sink_overlaps_source",
]
