//! Python bindings of the bytes <-> Arrow codecs (`velostream-codec`).
//!
//! Exposed on `velostream._core`: `JsonDecoder`, `CsvDecoder` (frozen, hold a schema),
//! `infer_json_schema`, `infer_csv_schema`, `encode_json`, `encode_csv`. Bytes come in as
//! `bytes`, batches and schemas cross as Arrow (PyCapsule interface) and come back as
//! `pyarrow` objects. The GIL is released while decoding, inferring and encoding. Codec
//! failures raise `velostream.errors.DataError`; bad input lines are not errors but data:
//! `decode` returns them as `(index, message, raw)` tuples next to the good rows.
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3_arrow::{PyRecordBatch, PySchema};
use velostream_codec::{csv, json, CodecError, Decoded};

/// A bad input line as Python sees it: (0-based index in the chunk, reason, raw bytes).
type PyBadLine<'py> = (usize, String, Bound<'py, PyBytes>);

fn to_py_err(py: Python<'_>, error: CodecError) -> PyErr {
    let message = error.to_string();
    match py
        .import("velostream.errors")
        .and_then(|m| m.getattr("DataError"))
        .and_then(|cls| cls.call1((message,)))
    {
        Ok(instance) => PyErr::from_value(instance),
        Err(import_error) => import_error,
    }
}

fn decoded_to_py(
    py: Python<'_>,
    decoded: Decoded,
) -> PyResult<(Bound<'_, PyAny>, Vec<PyBadLine<'_>>)> {
    let bad_lines = decoded
        .bad_lines
        .into_iter()
        .map(|bad| (bad.index, bad.message, PyBytes::new(py, &bad.raw)))
        .collect();
    let batch = PyRecordBatch::new(decoded.batch).into_pyarrow(py)?;
    Ok((batch, bad_lines))
}

/// A Python decoder class over one of the codec's decoders (they share their interface:
/// `new(schema)`, `schema()`, `decode(bytes)`).
macro_rules! decoder_class {
    ($class:ident, $name:literal, $decoder:ty, $doc:literal, $decode_doc:literal) => {
        #[doc = $doc]
        #[pyclass(frozen, module = "velostream._core", name = $name)]
        struct $class {
            inner: $decoder,
        }

        #[pymethods]
        impl $class {
            #[new]
            fn new(schema: PySchema) -> Self {
                Self {
                    inner: <$decoder>::new(schema.into_inner()),
                }
            }

            /// The schema of decoded batches (`pyarrow.Schema`).
            #[getter]
            fn schema<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                PySchema::new(Arc::clone(self.inner.schema())).into_pyarrow(py)
            }

            #[doc = $decode_doc]
            fn decode<'py>(
                &self,
                py: Python<'py>,
                data: &[u8],
            ) -> PyResult<(Bound<'py, PyAny>, Vec<PyBadLine<'py>>)> {
                let decoded = py
                    .detach(|| self.inner.decode(data))
                    .map_err(|e| to_py_err(py, e))?;
                decoded_to_py(py, decoded)
            }
        }
    };
}

decoder_class!(
    PyJsonDecoder,
    "JsonDecoder",
    json::JsonDecoder,
    "Decodes JSON Lines chunks into `pyarrow.RecordBatch`es of a fixed schema.",
    "Decodes a chunk of whole lines: returns (batch of the good rows, bad lines)."
);

decoder_class!(
    PyCsvDecoder,
    "CsvDecoder",
    csv::CsvDecoder,
    "Decodes header-less CSV chunks into `pyarrow.RecordBatch`es of a fixed schema.",
    "Decodes a chunk of whole data lines: returns (batch of the good rows, bad lines)."
);

/// Infers a `pyarrow.Schema` from a JSON Lines sample (bad lines are skipped).
#[pyfunction]
#[pyo3(signature = (data, max_records=None))]
fn infer_json_schema<'py>(
    py: Python<'py>,
    data: &[u8],
    max_records: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    let schema = py
        .detach(|| json::infer_schema(data, max_records))
        .map_err(|e| to_py_err(py, e))?;
    PySchema::new(Arc::new(schema)).into_pyarrow(py)
}

/// Infers a `pyarrow.Schema` from a CSV sample whose first line is the header.
#[pyfunction]
#[pyo3(signature = (data, max_records=None))]
fn infer_csv_schema<'py>(
    py: Python<'py>,
    data: &[u8],
    max_records: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    let schema = py
        .detach(|| csv::infer_schema(data, max_records))
        .map_err(|e| to_py_err(py, e))?;
    PySchema::new(Arc::new(schema)).into_pyarrow(py)
}

/// Encodes a record batch as JSON Lines bytes (one object per row, nulls as `null`).
#[pyfunction]
fn encode_json<'py>(py: Python<'py>, batch: PyRecordBatch) -> PyResult<Bound<'py, PyBytes>> {
    let batch = batch.into_inner();
    let bytes = py
        .detach(|| json::encode(&batch))
        .map_err(|e| to_py_err(py, e))?;
    Ok(PyBytes::new(py, &bytes))
}

/// Encodes a record batch as CSV bytes, with a header row first when `header` is true.
#[pyfunction]
#[pyo3(signature = (batch, header=true))]
fn encode_csv<'py>(
    py: Python<'py>,
    batch: PyRecordBatch,
    header: bool,
) -> PyResult<Bound<'py, PyBytes>> {
    let batch = batch.into_inner();
    let bytes = py
        .detach(|| csv::encode(&batch, header))
        .map_err(|e| to_py_err(py, e))?;
    Ok(PyBytes::new(py, &bytes))
}

/// Adds the codec classes and functions to `velostream._core`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyJsonDecoder>()?;
    m.add_class::<PyCsvDecoder>()?;
    m.add_function(wrap_pyfunction!(infer_json_schema, m)?)?;
    m.add_function(wrap_pyfunction!(infer_csv_schema, m)?)?;
    m.add_function(wrap_pyfunction!(encode_json, m)?)?;
    m.add_function(wrap_pyfunction!(encode_csv, m)?)?;
    Ok(())
}
