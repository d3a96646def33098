//! The codec error type: failures that are not about one bad input line.
//!
//! Bad lines are *data* ([`crate::BadLine`]), returned next to the decoded batch; a
//! [`CodecError`] means the call itself cannot proceed (an unusable schema, an encoder
//! failure).
use arrow::error::ArrowError;

/// An error of the codec crate.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The schema cannot be used or inferred.
    #[error("schema error: {0}")]
    Schema(String),
    /// Encoding a record batch failed.
    #[error("encode error: {0}")]
    Encode(String),
    /// Any other Arrow failure.
    #[error("{0}")]
    Arrow(#[from] ArrowError),
}

/// The message of an Arrow error without its `Json error: ` / `Parser error: ` prefix.
pub(crate) fn arrow_message(error: &ArrowError) -> String {
    match error {
        ArrowError::JsonError(m)
        | ArrowError::CsvError(m)
        | ArrowError::ParseError(m)
        | ArrowError::CastError(m)
        | ArrowError::InvalidArgumentError(m)
        | ArrowError::SchemaError(m) => m.clone(),
        other => other.to_string(),
    }
}
