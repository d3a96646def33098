//! `velostream._core`: the PyO3 bindings of the Rust engine and codecs.
//!
//! Thin and typed: Python wrappers in `python/velostream` add docstrings, argument checks
//! and conversions. Data crosses this boundary only as Arrow (PyCapsule interface).
use pyo3::prelude::*;

mod codec;
mod errors;
mod processor;

#[pymodule(gil_used = false)]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add(
        "build_profile",
        if cfg!(debug_assertions) { "debug" } else { "release" },
    )?;
    processor::register(m)?;
    codec::register(m)?;
    Ok(())
}
