//! `velostream._core`: the PyO3 bindings of the Rust engine and codecs.
//!
//! Thin and typed: Python wrappers in `python/velostream` add docstrings, argument checks
//! and conversions. Data crosses this boundary only as Arrow (PyCapsule interface).
use pyo3::prelude::*;

// Batches allocate and free column buffers at a high rate; mimalloc reuses them without
// returning pages to the OS between batches (glibc malloc re-faulted them: ~12% of time).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod codec;
mod errors;
mod kafka;
mod processor;
mod table;
mod time;

/// Panics reach Python as `InternalError` carrying their message (`errors::catch_panic`),
/// so Rust's default report (a message and a backtrace on stderr) is kept for debugging
/// only: with `VELOSTREAM_DEBUG` set.
fn quiet_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::env::var_os("VELOSTREAM_DEBUG").is_some() {
            default(info);
        }
    }));
}

#[pymodule(gil_used = false)]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add(
        "build_profile",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
    )?;
    m.add_function(wrap_pyfunction!(errors::_panic_at_boundary, m)?)?;
    quiet_panics();
    processor::register(m)?;
    codec::register(m)?;
    kafka::register(m)?;
    time::register(m)?;
    table::register(m)?;
    Ok(())
}
