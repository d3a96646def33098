//! velostream-engine: the streaming SQL processor over Arrow record batches.
//!
//! The Python package compiles SQL into a physical plan (`plan`), and a [`Processor`]
//! runs it batch by batch: expressions (`expr`) are evaluated with Arrow kernels and all
//! state stays inside the processor. This crate knows nothing about Python.

pub mod aggregate;
pub mod error;
pub mod expr;
pub mod groups;
pub mod plan;
pub mod processor;
pub mod time;

pub use error::{EngineError, Result};
pub use plan::Plan;
pub use processor::{Metrics, Processor};
