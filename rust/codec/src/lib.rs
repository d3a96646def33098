//! Bytes <-> Arrow record batches for velostream sources and sinks.
//!
//! The crate owns the data formats of files (and, later, Kafka message values):
//!
//! - [`json`]: JSON Lines decoding with a given schema, schema inference from a sample,
//!   encoding a batch to JSON Lines (one object per row, nulls written as `null`).
//! - [`csv`]: CSV (with a header row) schema inference, decoding and encoding.
//! - [`lines`]: bad-line isolation shared by both decoders: a chunk is decoded in one
//!   call; only when that fails is it bisected line by line, so every bad line is named
//!   (0-based index in the chunk, reason, raw bytes) while every good line is still decoded.
//!
//! No Python here: the PyO3 bindings live in `rust/python/codec.rs`.

pub mod csv;
pub mod error;
pub mod json;
pub mod lines;

pub use error::CodecError;
pub use lines::{BadLine, Decoded};

use arrow::datatypes::{DataType, Field, Schema};

/// A sample value type wins over a minority of values that do not fit it when those are
/// fewer than 1 in 10: one corrupt record must not turn a numeric column into a string
/// column (the record is reported as a bad line when decoded instead).
pub(crate) fn is_minority(outliers: usize, total: usize) -> bool {
    outliers * 10 < total
}

/// Replaces top-level `Null` columns (all values null in the sample) by nullable `Utf8`,
/// so that a later non-null value still decodes instead of failing every line.
pub(crate) fn widen_null_fields(schema: Schema) -> Schema {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            if f.data_type() == &DataType::Null {
                Field::new(f.name(), DataType::Utf8, true)
            } else {
                f.as_ref().clone().with_nullable(true)
            }
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}
