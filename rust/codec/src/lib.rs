//! Bytes <-> Arrow record batches for velostream sources and sinks.
//!
//! The crate owns the data formats of files and of Kafka message values:
//!
//! - [`json`]: JSON Lines inference, decoding with a given schema, encoding a batch to JSON
//!   Lines (one object per row, nulls written as `null`, NaN and infinities as `NaN`,
//!   `Infinity`, `-Infinity`).
//! - [`csv`]: CSV (with a header row) header reading, inference, decoding and encoding.
//! - [`values`]: the one grammar values are read with, exactly, in both formats.
//! - [`infer`]: column types that never lose a value, and the widenings that led to them.
//! - [`lines`]: bad-line isolation shared by both decoders: every bad line is named
//!   (0-based index in the chunk, reason, raw bytes, field and value when one value is the
//!   problem) while every good line is still decoded.
//!
//! No Python here: the PyO3 bindings live in `rust/python/codec.rs`.

pub mod csv;
pub mod error;
pub mod infer;
pub mod json;
pub mod lines;
pub mod messages;
pub(crate) mod values;

pub use error::CodecError;
pub use infer::{Inferred, Widening};
pub use lines::{BadLine, Decoded};

/// A sample value type wins over a minority of values that do not fit it when those are
/// fewer than 1 in 10: one corrupt record must not turn a numeric column into a string
/// column (the record is reported as a bad line when decoded instead).
pub(crate) fn is_minority(outliers: usize, total: usize) -> bool {
    outliers * 10 < total
}
