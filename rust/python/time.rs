//! `velostream._core.parse_timestamps`: the event-time parsing kernels of the engine
//! (`velostream_engine::time::parse`) over one Arrow array or chunked array.
//!
//! The values arrive through the Arrow PyCapsule interface (`__arrow_c_array__` or
//! `__arrow_c_stream__`), are parsed with the GIL released, and come back as a
//! `pyarrow.Int64Array` of epoch milliseconds. The first failing row raises
//! `velostream.errors.EventTimeError` (its message names the row, counted over all chunks);
//! a bad format raises `ConfigError(key="event.time.format")`; a panic `InternalError`.
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int64Array};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3_arrow::input::AnyArray;
use pyo3_arrow::PyArray;
use velostream_engine::time::parse::{
    parse_event_times, TimeFailure, TimeFormat, FORMAT_NAMES, PATTERN_HINT,
};

use crate::errors::{catch_panic, internal_error, to_py, velostream_error};

/// `ConfigError` for a bad `event.time.format` text.
fn format_error(py: Python<'_>, message: &str, text: Option<&str>) -> PyErr {
    let kwargs = PyDict::new(py);
    let _ = kwargs.set_item("key", "event.time.format");
    let _ = kwargs.set_item("value", text);
    let mut allowed: Vec<&str> = FORMAT_NAMES.to_vec();
    allowed.push(PATTERN_HINT);
    let _ = kwargs.set_item("allowed", allowed);
    velostream_error(py, "ConfigError", message, Some(&kwargs))
}

/// Parse every chunk; the first failure (its row counted over all chunks) stops.
fn parse_chunks(chunks: &[ArrayRef], format: &TimeFormat) -> Result<Vec<i64>, TimeFailure> {
    let mut out = Vec::new();
    let mut failures = Vec::new();
    if let [only] = chunks {
        parse_event_times(only.as_ref(), format, &mut out, &mut failures);
        return match failures.into_iter().next() {
            Some(failure) => Err(failure),
            None => Ok(out),
        };
    }
    let mut all = Vec::with_capacity(chunks.iter().map(|c| c.len()).sum());
    for chunk in chunks {
        parse_event_times(chunk.as_ref(), format, &mut out, &mut failures);
        if let Some(failure) = failures.first() {
            return Err(TimeFailure {
                row: all.len() + failure.row,
                ..failure.clone()
            });
        }
        all.extend_from_slice(&out);
    }
    Ok(all)
}

/// Parse an event-time column into epoch milliseconds (`pyarrow.Int64Array`).
///
/// `format` is an `event.time.format` text (`None` = auto-detect); `field` names the
/// column in error messages.
#[pyfunction]
#[pyo3(signature = (values, format=None, field=""))]
fn parse_timestamps<'py>(
    py: Python<'py>,
    values: AnyArray,
    format: Option<&str>,
    field: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let time_format = TimeFormat::parse(format).map_err(|m| format_error(py, &m, format))?;
    let (chunks, _) = values
        .into_chunked_array()
        .map_err(|e| {
            let e: PyErr = e.into();
            velostream_error(
                py,
                "DataError",
                &format!("parse_timestamps(): the Arrow data cannot be imported: {e}"),
                None,
            )
        })?
        .into_inner();
    let outcome = py.detach(|| catch_panic(|| parse_chunks(&chunks, &time_format)));
    match outcome {
        Ok(Ok(millis)) => {
            let array: ArrayRef = Arc::new(Int64Array::from(millis));
            let exported = PyArray::from_array_ref(array);
            let imported = exported.to_pyarrow(py)?.unbind();
            Ok(imported.into_bound(py))
        }
        Ok(Err(failure)) => Err(to_py(failure.to_error(field, &time_format, Vec::new()))),
        Err(message) => Err(internal_error(py, "time", &message, true)),
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(parse_timestamps, m)?)
}
