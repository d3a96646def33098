//! Mapping of engine errors to the exceptions of `velostream.errors` (defined in Python,
//! so both sides raise the same classes with the same fields).

use pyo3::prelude::*;
use pyo3::types::PyDict;
use velostream_engine::EngineError;

/// Build an instance of `velostream.errors.<class>(message, **kwargs)` as a `PyErr`.
pub fn velostream_error(
    py: Python<'_>,
    class: &str,
    message: &str,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let module = py.import("velostream.errors")?;
        let cls = module.getattr(class)?;
        let exc = cls.call((message,), kwargs)?;
        Ok(PyErr::from_value(exc))
    };
    build().unwrap_or_else(|e| e)
}

/// Run `f`, turning a Rust panic into `Err(message)`: no panic may leave the package.
///
/// Use it inside `py.detach` closures (no Python needed) and map the message with
/// [`internal_error`].
pub fn catch_panic<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_string())
    })
}

/// `velostream.errors.InternalError(message, component=..., usable=...)` as a `PyErr`.
pub fn internal_error(py: Python<'_>, component: &str, message: &str, usable: bool) -> PyErr {
    let kwargs = PyDict::new(py);
    let _ = kwargs.set_item("component", component);
    let _ = kwargs.set_item("usable", usable);
    velostream_error(py, "InternalError", message, Some(&kwargs))
}

/// Convert an engine error to the matching Python exception.
pub fn to_py(err: EngineError) -> PyErr {
    Python::attach(|py| match &err {
        EngineError::Validation { message, pos } => {
            let kwargs = PyDict::new(py);
            if let Some((line, column)) = pos {
                let _ = kwargs.set_item("line", line);
                let _ = kwargs.set_item("column", column);
            }
            velostream_error(py, "SqlValidationError", message, Some(&kwargs))
        }
        EngineError::Data(message) => velostream_error(py, "DataError", message, None),
        EngineError::BadValue { message, value } => {
            let kwargs = PyDict::new(py);
            let _ = kwargs.set_item("value", value);
            velostream_error(py, "DataError", message, Some(&kwargs))
        }
        EngineError::EventTime(error) => {
            let kwargs = PyDict::new(py);
            let _ = kwargs.set_item("kind", error.kind);
            let _ = kwargs.set_item("field", &error.field);
            let _ = kwargs.set_item("value", &error.value);
            let _ = kwargs.set_item("format", &error.format);
            let _ = kwargs.set_item("available_fields", &error.available_fields);
            let _ = kwargs.set_item("row", error.row);
            velostream_error(py, "EventTimeError", &error.message, Some(&kwargs))
        }
        EngineError::Snapshot(message) => velostream_error(py, "SnapshotError", message, None),
        EngineError::Usage(message) => velostream_error(py, "VelostreamError", message, None),
        EngineError::Plan(e) => {
            internal_error(py, "planner", &format!("invalid physical plan: {e}"), false)
        }
        EngineError::Arrow(e) => velostream_error(py, "DataError", &e.to_string(), None),
    })
}

/// Panic inside the boundary's panic guard, as any defect would: the boundary's test
/// that a panic reaches Python as `InternalError` (not `PanicException`).
#[pyfunction]
pub fn _panic_at_boundary(py: Python<'_>, message: &str) -> PyResult<()> {
    let outcome = py.detach(|| catch_panic(|| panic!("{message}")));
    match outcome {
        Ok(()) => Ok(()),
        Err(message) => Err(internal_error(py, "boundary test", &message, true)),
    }
}
