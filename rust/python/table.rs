//! `_core.KeyedTable`: the engine's keyed table (latest row per key) for Python.
//!
//! Upserts take the table's write lock, lookups and snapshots its read lock, all with the
//! GIL released, so lookups from several threads run concurrently. A panic inside the
//! engine reaches Python as `InternalError`; it leaves the table unusable (its state may
//! be half updated), and every later call says so.

use std::sync::{Arc, RwLock};

use arrow::array::{ArrayRef, BooleanArray, RecordBatch};
use pyo3::prelude::*;
use pyo3_arrow::{PyArray, PyRecordBatch, PySchema};
use velostream_engine::table::KeyedTable as EngineTable;
use velostream_engine::Result;

use crate::errors::{catch_panic, internal_error, to_py};

/// A table of the latest row per key (see `velostream_engine::table`).
#[pyclass(frozen, module = "velostream._core", name = "KeyedTable")]
pub(crate) struct PyKeyedTable {
    /// Shared with the queries that join the table (`Processor.attach_table`).
    inner: Arc<RwLock<EngineTable>>,
}

const BROKEN: &str = "the keyed table is unusable: an internal error interrupted an upsert";

impl PyKeyedTable {
    /// The table, shared.
    pub(crate) fn shared(&self) -> Arc<RwLock<EngineTable>> {
        self.inner.clone()
    }

    /// Run `work` under the write lock, GIL released, panics caught (a panic poisons the
    /// lock: the table is unusable after it).
    fn write<T: Send>(
        &self,
        py: Python<'_>,
        work: impl FnOnce(&mut EngineTable) -> Result<T> + Send,
    ) -> PyResult<T> {
        let outcome = py.detach(|| {
            let mut table = self.inner.write().map_err(|_| None)?;
            catch_panic(|| work(&mut table)).map_err(Some)
        });
        finish(py, outcome)
    }

    /// Run a read-only `work` under the read lock, GIL released, panics caught.
    fn read<T: Send>(
        &self,
        py: Python<'_>,
        work: impl FnOnce(&EngineTable) -> Result<T> + Send,
    ) -> PyResult<T> {
        let outcome = py.detach(|| {
            let table = self.inner.read().map_err(|_| None)?;
            catch_panic(|| work(&table)).map_err(Some)
        });
        finish(py, outcome)
    }
}

/// The Python result of a locked call: `None` as the error is a poisoned lock.
fn finish<T>(
    py: Python<'_>,
    outcome: std::result::Result<Result<T>, Option<String>>,
) -> PyResult<T> {
    match outcome {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(to_py(error)),
        Err(Some(panic)) => Err(internal_error(py, "keyed table", &panic, false)),
        Err(None) => Err(internal_error(py, "keyed table", BROKEN, false)),
    }
}

#[pymethods]
impl PyKeyedTable {
    /// An empty table of `schema` keyed by `key_columns`; `SqlValidationError` naming the
    /// column when one is unknown or of a type that cannot be a key.
    #[new]
    fn new(py: Python<'_>, schema: PySchema, key_columns: Vec<String>) -> PyResult<Self> {
        let schema = schema.into_inner();
        let made = py.detach(|| catch_panic(|| EngineTable::new(schema, key_columns)));
        match made {
            Ok(Ok(table)) => Ok(Self {
                inner: Arc::new(RwLock::new(table)),
            }),
            Ok(Err(error)) => Err(to_py(error)),
            Err(panic) => Err(internal_error(py, "keyed table", &panic, true)),
        }
    }

    /// Insert or replace each row's key (a later row of the batch wins); returns the
    /// number of rows upserted.
    fn upsert(&self, py: Python<'_>, batch: PyRecordBatch) -> PyResult<usize> {
        let batch = batch.into_inner();
        self.write(py, |t| t.upsert(&batch).map(|s| s.rows))
    }

    /// For each row of `keys` (one column per key column, in key-column order): the
    /// table's row of that key, and whether it was found. Returns `(batch, found)`: a
    /// `pyarrow.RecordBatch` of the table's columns (all nullable; NULL where not found)
    /// and a `pyarrow.BooleanArray`.
    fn lookup<'py>(
        &self,
        py: Python<'py>,
        keys: PyRecordBatch,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        let keys = keys.into_inner();
        let (rows, found) = self.read(py, |t| {
            let ids = t.lookup(keys.columns())?;
            let found: BooleanArray = ids.iter().map(|id| Some(id.is_some())).collect();
            Ok((t.take(&ids)?, Arc::new(found) as ArrayRef))
        })?;
        let rows = PyRecordBatch::new(rows).into_pyarrow(py)?;
        let found = PyArray::from_array_ref(found);
        let found = found.to_pyarrow(py)?.unbind().into_bound(py);
        Ok((rows, found))
    }

    /// Rewrite the live rows into one batch in key-id order: lookups then gather with a
    /// plain `take` (done after a bulk load).
    fn compact(&self, py: Python<'_>) -> PyResult<()> {
        self.write(py, |t| t.compact())
    }

    /// The live rows, one per key, in the order keys were first inserted.
    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let batch: RecordBatch = self.read(py, |t| t.snapshot())?;
        PyRecordBatch::new(batch).into_pyarrow(py)
    }

    /// Heap bytes held by the table.
    #[getter]
    fn bytes(&self, py: Python<'_>) -> PyResult<usize> {
        self.read(py, |t| Ok(t.bytes()))
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        self.read(py, |t| Ok(t.len()))
    }
}

/// Add `KeyedTable` to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyKeyedTable>()
}
