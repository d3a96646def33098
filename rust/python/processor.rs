//! `velostream._core.Processor`: the Rust query processor behind `velostream.Query`.
//!
//! Batches arrive through the Arrow PyCapsule interface (any object exporting
//! `__arrow_c_array__`), are processed with the GIL released, and leave as
//! `pyarrow.RecordBatch`. The processor's state lives here, behind a mutex, and is
//! mutated in place.

use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use pyo3_arrow::{PyRecordBatch, PySchema};
use velostream_engine::Processor as EngineProcessor;

use crate::errors::to_py;

#[pyclass(frozen, module = "velostream._core")]
pub struct Processor {
    inner: Mutex<EngineProcessor>,
}

impl Processor {
    fn with<R>(&self, f: impl FnOnce(&mut EngineProcessor) -> R) -> R {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }
}

#[pymethods]
impl Processor {
    /// Build a processor from a physical plan (JSON text, see docs/plan-format.md).
    #[new]
    fn new(plan_json: &str) -> PyResult<Self> {
        let inner = EngineProcessor::from_json(plan_json).map_err(to_py)?;
        Ok(Processor {
            inner: Mutex::new(inner),
        })
    }

    /// Process one batch; returns the rows the query emits for it.
    fn process<'py>(&self, py: Python<'py>, batch: PyRecordBatch) -> PyResult<Bound<'py, PyAny>> {
        let batch = batch.into_inner();
        let out = py
            .detach(|| self.with(|p| p.process(&batch)))
            .map_err(to_py)?;
        PyRecordBatch::new(out).into_pyarrow(py)
    }

    /// End of input: the rows still held (closed windows, ...).
    fn flush<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let out = py.detach(|| self.with(|p| p.flush())).map_err(to_py)?;
        PyRecordBatch::new(out).into_pyarrow(py)
    }

    /// Bind to an input schema and return the output schema.
    fn bind<'py>(&self, py: Python<'py>, schema: PySchema) -> PyResult<Bound<'py, PyAny>> {
        let schema = schema.into_inner();
        let out = self.with(|p| p.bind(&schema)).map_err(to_py)?;
        PySchema::new(out).into_pyarrow(py)
    }

    /// The output schema, or None before the input schema is known.
    #[getter]
    fn output_schema<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        match self.with(|p| p.output_schema()) {
            Some(s) => Ok(Some(PySchema::new(s).into_pyarrow(py)?)),
            None => Ok(None),
        }
    }

    /// Counters: records_in, records_out, batches_in, filtered_out, state_groups, state_bytes.
    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let m = self.with(|p| p.metrics().clone());
        let d = PyDict::new(py);
        d.set_item("records_in", m.records_in)?;
        d.set_item("records_out", m.records_out)?;
        d.set_item("batches_in", m.batches_in)?;
        d.set_item("filtered_out", m.filtered_out)?;
        let (groups, bytes) = self.with(|p| (p.state_groups(), p.state_bytes()));
        d.set_item("state_groups", groups)?;
        d.set_item("state_bytes", bytes)?;
        Ok(d)
    }

    /// The state as bytes (restorable into a processor of the same plan).
    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = py.detach(|| self.with(|p| p.snapshot())).map_err(to_py)?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// Replace the state with a snapshot.
    fn restore(&self, py: Python<'_>, blob: &[u8]) -> PyResult<()> {
        let blob = blob.to_vec();
        py.detach(|| self.with(|p| p.restore(&blob))).map_err(to_py)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Processor>()
}
