//! The engine's one error type. The Python bindings map each variant to a specific
//! exception of `velostream.errors` (validation → `SqlValidationError`, data → `DataError`).

use arrow::error::ArrowError;

use crate::time::parse::{EventTimeError, TimeErrorKind, TimeFormat};

/// A 1-based (line, column) position in the SQL text.
pub type Pos = Option<(u32, u32)>;

/// Everything that can go wrong inside the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The plan is well formed but cannot run against this input: unknown column,
    /// operand types that do not fit an operator, a construct not built yet.
    #[error("{message}")]
    Validation { message: String, pos: Pos },
    /// A value could not be processed: a failed CAST, an integer overflow, division of
    /// an integer by zero.
    #[error("{0}")]
    Data(String),
    /// A value that could not be converted (`CAST('x1' AS DOUBLE)`): names the value.
    #[error("{message}")]
    BadValue { message: String, value: String },
    /// The plan handed over by the planner is not valid JSON of the expected shape.
    #[error("invalid physical plan: {0}")]
    Plan(#[from] serde_json::Error),
    /// A snapshot could not be restored.
    #[error("invalid state snapshot: {0}")]
    Snapshot(String),
    /// The API was used out of order (`process` after `flush`).
    #[error("{0}")]
    Usage(String),
    /// Event time cannot be read from a record (SPEC sections 2 and 5), with the fields of
    /// `velostream.errors.EventTimeError`. Boxed: inline, its six fields would nearly triple
    /// the size of every `Result` of the engine (136 bytes, over clippy's limit of 128).
    #[error("{}", .0.message)]
    EventTime(Box<EventTimeError>),
    /// An Arrow kernel failed for a reason not attributable to a value.
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
}

impl EngineError {
    /// A validation error at a position of the SQL text.
    pub fn validation(message: impl Into<String>, pos: Pos) -> Self {
        EngineError::Validation {
            message: message.into(),
            pos,
        }
    }

    /// An event-time error of `kind` for the field `field` whose value is `value` (the
    /// failure's value text, `""` for a missing field), expected in `format`; the message
    /// names all of them and `available_fields`, the fields the record does have. It does
    /// not name a row: `time::parse::TimeFailure::to_error` is this with the row index.
    pub fn event_time(
        kind: TimeErrorKind,
        field: &str,
        value: &str,
        format: &TimeFormat,
        available_fields: Vec<String>,
    ) -> Self {
        EventTimeError::new(kind, field, value, format, available_fields, None).into()
    }

    /// Wrap an Arrow kernel error raised while evaluating `what` on data.
    pub fn data(what: &str, err: ArrowError) -> Self {
        let detail = match err {
            ArrowError::ComputeError(m)
            | ArrowError::CastError(m)
            | ArrowError::InvalidArgumentError(m)
            | ArrowError::ArithmeticOverflow(m) => m,
            ArrowError::DivideByZero => "division by zero".to_string(),
            other => other.to_string(),
        };
        EngineError::Data(format!("{what}: {detail}"))
    }
}

/// Result alias of the engine.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
