//! Event time (SPEC section 5): everything the engine needs to read time from data.
//!
//! - [`parse`]: the vectorised kernels that turn one event-time column (integers, floats,
//!   strings, Arrow timestamps and dates) into epoch milliseconds, in every format of
//!   `event.time.format`, reporting each failing row with its `EventTimeError` kind.
//!
//! Watermarks and windows build on these kernels; they live with the operators.

pub mod parse;

pub use parse::{parse_event_times, EventTimeError, TimeErrorKind, TimeFailure, TimeFormat};
