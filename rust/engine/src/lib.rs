//! velostream-engine: the streaming SQL processor over Arrow record batches.
//!
//! The Python package compiles SQL into a physical plan (`plan`), and a [`Processor`]
//! binds it into a chain of operators (`operator`, `window`) and runs it batch by batch:
//! expressions (`expr`) are evaluated with Arrow kernels, event time is read by `time`
//! and tracked by `watermark`, and all state stays inside the operators. This crate
//! knows nothing about Python.

pub mod aggregate;
pub mod error;
pub mod expr;
pub mod groups;
pub mod legacy;
pub mod operator;
pub mod plan;
pub mod processor;
pub mod table;
pub mod time;
pub mod watermark;
pub mod window;

pub use error::{EngineError, Result};
pub use plan::Plan;
pub use processor::{Metrics, Processor};
