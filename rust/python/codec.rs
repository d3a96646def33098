//! Python bindings of the bytes <-> Arrow codecs (`velostream-codec`).
//!
//! Exposed on `velostream._core`: `JsonDecoder`, `CsvDecoder` (frozen, hold a schema),
//! `infer_json`, `infer_csv` (schema and widenings), `infer_json_schema`,
//! `infer_csv_schema`, `csv_header`, `encode_json`, `encode_csv`. Bytes come in as `bytes`,
//! batches and schemas cross as Arrow (PyCapsule interface) and come back as `pyarrow`
//! objects. The GIL is released while decoding, inferring and encoding. Codec failures raise
//! `velostream.errors.DataError`; a Rust panic raises `velostream.errors.InternalError`
//! (component `codec`). Bad input lines are not errors but data: `decode` returns them as
//! `(index, message, raw, field, value)` tuples next to the good rows.
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3_arrow::{PyRecordBatch, PySchema};
use velostream_codec::{csv, json, CodecError, Decoded, Inferred};

use crate::errors::{catch_panic, internal_error, velostream_error};

/// A bad input line as Python sees it: (0-based index in the chunk, reason, raw bytes,
/// field, value).
type PyBadLine<'py> = (
    usize,
    String,
    Bound<'py, PyBytes>,
    Option<String>,
    Option<String>,
);

/// A widening of a column's type during inference: (column, old type, new type, 0-based
/// line index in the sample, value).
type PyWidening = (String, String, String, usize, String);

fn to_py_err(py: Python<'_>, error: CodecError) -> PyErr {
    velostream_error(py, "DataError", &error.to_string(), None)
}

/// Runs codec work with the GIL released; a codec error becomes `DataError`, a panic
/// `InternalError`.
fn run<T: Send>(
    py: Python<'_>,
    work: impl FnOnce() -> Result<T, CodecError> + Send,
) -> PyResult<T> {
    match py.detach(|| catch_panic(work)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(to_py_err(py, error)),
        Err(panic) => Err(internal_error(py, "codec", &panic, true)),
    }
}

fn decoded_to_py(
    py: Python<'_>,
    decoded: Decoded,
) -> PyResult<(Bound<'_, PyAny>, Vec<PyBadLine<'_>>)> {
    let bad_lines = decoded
        .bad_lines
        .into_iter()
        .map(|bad| {
            (
                bad.index,
                bad.message,
                PyBytes::new(py, &bad.raw),
                bad.field,
                bad.value,
            )
        })
        .collect();
    let batch = PyRecordBatch::new(decoded.batch).into_pyarrow(py)?;
    Ok((batch, bad_lines))
}

fn inferred_to_py(
    py: Python<'_>,
    inferred: Inferred,
) -> PyResult<(Bound<'_, PyAny>, Vec<PyWidening>)> {
    let widenings = inferred
        .widenings
        .into_iter()
        .map(|w| {
            (
                w.column,
                w.from.to_string(),
                w.to.to_string(),
                w.line,
                w.value,
            )
        })
        .collect();
    let schema = PySchema::new(Arc::new(inferred.schema)).into_pyarrow(py)?;
    Ok((schema, widenings))
}

/// Decodes JSON Lines chunks into `pyarrow.RecordBatch`es of a fixed schema.
#[pyclass(frozen, module = "velostream._core", name = "JsonDecoder")]
pub(crate) struct PyJsonDecoder {
    inner: json::JsonDecoder,
}

impl PyJsonDecoder {
    /// The Rust decoder (Kafka message batches decode with it: `kafka.rs`).
    pub(crate) fn inner(&self) -> &json::JsonDecoder {
        &self.inner
    }
}

#[pymethods]
impl PyJsonDecoder {
    /// A decoder for `schema`; `DataError` when a column's type cannot be read from JSON.
    #[new]
    fn new(py: Python<'_>, schema: PySchema) -> PyResult<Self> {
        let inner = json::JsonDecoder::new(schema.into_inner());
        let checked = inner.clone();
        run(py, move || checked.check())?;
        Ok(Self { inner })
    }

    /// The schema of decoded batches (`pyarrow.Schema`).
    #[getter]
    fn schema<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        PySchema::new(Arc::clone(self.inner.schema())).into_pyarrow(py)
    }

    /// Decodes a chunk of whole lines: returns (batch of the good rows, bad lines).
    fn decode<'py>(
        &self,
        py: Python<'py>,
        data: &[u8],
    ) -> PyResult<(Bound<'py, PyAny>, Vec<PyBadLine<'py>>)> {
        let decoded = run(py, || self.inner.decode(data))?;
        decoded_to_py(py, decoded)
    }
}

/// Decodes header-less CSV chunks into `pyarrow.RecordBatch`es of a fixed schema.
#[pyclass(frozen, module = "velostream._core", name = "CsvDecoder")]
struct PyCsvDecoder {
    inner: csv::CsvDecoder,
}

#[pymethods]
impl PyCsvDecoder {
    /// A decoder for `schema`. With `columns` and `width`, the file has `width` columns and
    /// field `i` of `schema` is file column `columns[i]`; without, the file's columns are
    /// the schema's.
    #[new]
    #[pyo3(signature = (schema, columns=None, width=None))]
    fn new(
        py: Python<'_>,
        schema: PySchema,
        columns: Option<Vec<usize>>,
        width: Option<usize>,
    ) -> PyResult<Self> {
        let schema = schema.into_inner();
        let inner = run(py, move || match (columns, width) {
            (None, None) => Ok(csv::CsvDecoder::new(schema)),
            (Some(columns), Some(width)) => csv::CsvDecoder::with_columns(schema, columns, width),
            _ => Err(CodecError::Schema(
                "CsvDecoder needs both columns and width, or neither".to_string(),
            )),
        })?;
        Ok(Self { inner })
    }

    /// The schema of decoded batches (`pyarrow.Schema`).
    #[getter]
    fn schema<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        PySchema::new(Arc::clone(self.inner.schema())).into_pyarrow(py)
    }

    /// Decodes a chunk of whole data lines: returns (batch of the good rows, bad lines).
    fn decode<'py>(
        &self,
        py: Python<'py>,
        data: &[u8],
    ) -> PyResult<(Bound<'py, PyAny>, Vec<PyBadLine<'py>>)> {
        let decoded = run(py, || self.inner.decode(data))?;
        decoded_to_py(py, decoded)
    }
}

/// Infers a schema from a JSON Lines sample (bad lines are skipped): returns
/// (`pyarrow.Schema`, widenings).
#[pyfunction]
#[pyo3(signature = (data, max_records=None))]
fn infer_json<'py>(
    py: Python<'py>,
    data: &[u8],
    max_records: Option<usize>,
) -> PyResult<(Bound<'py, PyAny>, Vec<PyWidening>)> {
    let inferred = run(py, || json::infer(data, max_records))?;
    inferred_to_py(py, inferred)
}

/// Infers a schema from a CSV sample whose first line is the header: returns
/// (`pyarrow.Schema`, widenings).
#[pyfunction]
#[pyo3(signature = (data, max_records=None))]
fn infer_csv<'py>(
    py: Python<'py>,
    data: &[u8],
    max_records: Option<usize>,
) -> PyResult<(Bound<'py, PyAny>, Vec<PyWidening>)> {
    let inferred = run(py, || csv::infer(data, max_records))?;
    inferred_to_py(py, inferred)
}

/// Infers a `pyarrow.Schema` from a JSON Lines sample (bad lines are skipped).
#[pyfunction]
#[pyo3(signature = (data, max_records=None))]
fn infer_json_schema<'py>(
    py: Python<'py>,
    data: &[u8],
    max_records: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    let schema = run(py, || json::infer_schema(data, max_records))?;
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
    let schema = run(py, || csv::infer_schema(data, max_records))?;
    PySchema::new(Arc::new(schema)).into_pyarrow(py)
}

/// The column names of a CSV header line; `DataError` when it is not UTF-8 text.
#[pyfunction]
fn csv_header(py: Python<'_>, line: &[u8]) -> PyResult<Vec<String>> {
    run(py, || csv::header(line))
}

/// Encodes a record batch as JSON Lines bytes (one object per row, nulls as `null`, NaN
/// and infinities as `NaN`, `Infinity`, `-Infinity`).
#[pyfunction]
fn encode_json<'py>(py: Python<'py>, batch: PyRecordBatch) -> PyResult<Bound<'py, PyBytes>> {
    let batch = batch.into_inner();
    let bytes = run(py, || json::encode(&batch))?;
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
    let bytes = run(py, || csv::encode(&batch, header))?;
    Ok(PyBytes::new(py, &bytes))
}

/// Adds the codec classes and functions to `velostream._core`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyJsonDecoder>()?;
    m.add_class::<PyCsvDecoder>()?;
    m.add_function(wrap_pyfunction!(infer_json, m)?)?;
    m.add_function(wrap_pyfunction!(infer_csv, m)?)?;
    m.add_function(wrap_pyfunction!(infer_json_schema, m)?)?;
    m.add_function(wrap_pyfunction!(infer_csv_schema, m)?)?;
    m.add_function(wrap_pyfunction!(csv_header, m)?)?;
    m.add_function(wrap_pyfunction!(encode_json, m)?)?;
    m.add_function(wrap_pyfunction!(encode_csv, m)?)?;
    Ok(())
}
