//! `velostream._core.Processor`: the Rust query processor behind `velostream.Query`.
//!
//! Batches arrive through the Arrow PyCapsule interface (any object exporting
//! `__arrow_c_array__`, or `__arrow_c_stream__` for many batches in one call), are
//! processed with the GIL released, and leave as `pyarrow.RecordBatch`. The processor's
//! state lives here, behind a mutex, and is mutated in place.
//!
//! Output batches are handed to pyarrow through the C data interface with the output
//! schema already imported once and cached, so a call costs a few microseconds of
//! boundary work rather than a schema round trip per batch.

use std::sync::{Arc, Mutex};

use arrow::array::{Array, RecordBatch, RecordBatchOptions, StructArray};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::ffi::{from_ffi_and_data_type, FFI_ArrowArray};
use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyType};
use pyo3_arrow::{PyRecordBatch, PyRecordBatchReader, PySchema};
use velostream_engine::{EngineError, Processor as EngineProcessor};

use crate::errors::{catch_panic, internal_error, to_py};
use crate::table::PyKeyedTable;

/// `pyarrow.RecordBatch` and its `_import_from_c`, looked up once.
static RECORD_BATCH: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static IMPORT_FROM_C: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// A schema in both forms: Arrow's and pyarrow's.
struct BothSchemas {
    schema: SchemaRef,
    pyarrow: Py<PyAny>,
}

/// The output schema in both forms, and an empty `pyarrow.RecordBatch` of it (made on
/// first need): a call that emits nothing returns it, as pyarrow batches are immutable.
struct OutputSchema {
    schema: BothSchemas,
    empty: Option<Py<PyAny>>,
}

/// The last input schema seen, so that a batch of the same schema is imported without
/// exporting and re-parsing its schema.
type InputSchema = BothSchemas;

/// Schemas recently converted by any processor, most recent last, at most
/// [`SHARED_SCHEMAS`] of each kind: a new query over a known input (or with a known
/// output) skips the schema conversion, which is most of a first call's boundary cost.
static SHARED_INPUTS: Mutex<Vec<BothSchemas>> = Mutex::new(Vec::new());
static SHARED_OUTPUTS: Mutex<Vec<OutputSchema>> = Mutex::new(Vec::new());
const SHARED_SCHEMAS: usize = 16;

/// Remember `entry` in a shared cache (dropping the oldest entry when full).
fn share<T>(cache: &Mutex<Vec<T>>, entry: T) {
    let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
    let oldest = (cache.len() == SHARED_SCHEMAS).then(|| cache.remove(0));
    cache.push(entry);
    drop(cache);
    // Released after the lock: dropping a Python object may run arbitrary code.
    drop(oldest);
}

/// The shared input schema equal to `py_schema` (a `pyarrow.Schema`), if any.
fn shared_input(py: Python<'_>, py_schema: &Bound<'_, PyAny>) -> PyResult<Option<SchemaRef>> {
    let candidates: Vec<(SchemaRef, Py<PyAny>)> = {
        let cache = SHARED_INPUTS.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .iter()
            .rev()
            .map(|c| (c.schema.clone(), c.pyarrow.clone_ref(py)))
            .collect()
    };
    for (schema, pyarrow) in candidates {
        if py_schema
            .call_method1(intern!(py, "equals"), (pyarrow.bind(py),))?
            .is_truthy()?
        {
            return Ok(Some(schema));
        }
    }
    Ok(None)
}

/// The pyarrow form of `schema` from the shared cache, and its empty batch if one was
/// made, if any.
fn shared_output(py: Python<'_>, schema: &SchemaRef) -> Option<(Py<PyAny>, Option<Py<PyAny>>)> {
    let cache = SHARED_OUTPUTS.lock().unwrap_or_else(|p| p.into_inner());
    cache.iter().rev().find(|c| c.is_for(schema)).map(|c| {
        let empty = c.empty.as_ref().map(|e| e.clone_ref(py));
        (c.schema.pyarrow.clone_ref(py), empty)
    })
}

/// Arrow's C data interface carries names as C strings: a NUL inside a column name would
/// cut it short (`"a\0x"` and `"a\0y"` would both arrive as `"a"`), so it is refused.
fn reject_nul_names(py: Python<'_>, py_schema: &Bound<'_, PyAny>) -> PyResult<()> {
    // The schema's text shows every name, nested struct fields' too.
    if !py_schema.str()?.to_str()?.contains('\0') {
        return Ok(());
    }
    let names: Vec<String> = py_schema.getattr(intern!(py, "names"))?.extract()?;
    match names.iter().find(|n| n.contains('\0')) {
        None => Err(crate::errors::velostream_error(
            py,
            "DataError",
            "a nested field name of the input holds a NUL character, which Arrow's C data \
             interface cannot carry: rename the field",
            None,
        )),
        Some(name) => {
            let kwargs = PyDict::new(py);
            kwargs.set_item("field", name)?;
            Err(crate::errors::velostream_error(
                py,
                "DataError",
                &format!(
                    "the input column name {name:?} holds a NUL character, which Arrow's C \
                     data interface cannot carry: rename the column"
                ),
                Some(&kwargs),
            ))
        }
    }
}

impl OutputSchema {
    fn is_for(&self, schema: &SchemaRef) -> bool {
        Arc::ptr_eq(&self.schema.schema, schema) || self.schema.schema == *schema
    }
}

#[pyclass(frozen, module = "velostream._core")]
pub struct Processor {
    inner: Mutex<EngineProcessor>,
    output: Mutex<Option<OutputSchema>>,
    input: Mutex<Option<InputSchema>>,
    /// The message of a panic that left the state unreliable, until a `restore`.
    broken: Mutex<Option<String>>,
}

/// Why a call into the engine failed.
enum Failure {
    Engine(EngineError),
    /// A panic in this call (a defect): the processor is unusable until restored.
    Panic(String),
    /// A panic in an earlier call.
    Broken(String),
}

impl From<Failure> for PyErr {
    fn from(failure: Failure) -> PyErr {
        match failure {
            Failure::Engine(e) => to_py(e),
            Failure::Panic(message) => {
                Python::attach(|py| internal_error(py, "processor", &message, false))
            }
            Failure::Broken(message) => Python::attach(|py| {
                internal_error(
                    py,
                    "processor",
                    &format!(
                        "an earlier call failed ({message}) and may have left its state \
                         half updated; restore() a snapshot or compile the query again"
                    ),
                    false,
                )
            }),
        }
    }
}

impl Processor {
    /// Import a `pyarrow.RecordBatch` whose schema equals the last one seen: only its
    /// array is exported (`_export_to_c` without a schema) and imported with the cached
    /// Arrow schema. Returns None for anything else (the generic capsule path handles it).
    fn import_pyarrow_batch(
        &self,
        py: Python<'_>,
        batch: &Bound<'_, PyAny>,
    ) -> PyResult<Option<RecordBatch>> {
        let record_batch = RECORD_BATCH.import(py, "pyarrow", "RecordBatch")?;
        if !batch.get_type().is(record_batch) {
            return Ok(None);
        }
        let py_schema = batch.getattr(intern!(py, "schema"))?;
        let cached = {
            let cache = self.input.lock().unwrap_or_else(|p| p.into_inner());
            cache
                .as_ref()
                .map(|c| (c.schema.clone(), c.pyarrow.clone_ref(py)))
        };
        let schema = match cached {
            Some((schema, pyarrow))
                if py_schema
                    .call_method1(intern!(py, "equals"), (pyarrow.bind(py),))?
                    .is_truthy()? =>
            {
                schema
            }
            _ => {
                reject_nul_names(py, &py_schema)?;
                // A new schema for this processor: another one may have imported it,
                // else import it once through the capsule interface.
                let schema = match shared_input(py, &py_schema)? {
                    Some(schema) => schema,
                    None => {
                        let schema = py_schema.extract::<PySchema>()?.into_inner();
                        share(
                            &SHARED_INPUTS,
                            BothSchemas {
                                schema: schema.clone(),
                                pyarrow: py_schema.clone().unbind(),
                            },
                        );
                        schema
                    }
                };
                *self.input.lock().unwrap_or_else(|p| p.into_inner()) = Some(InputSchema {
                    schema: schema.clone(),
                    pyarrow: py_schema.unbind(),
                });
                schema
            }
        };
        let mut ffi = Box::new(FFI_ArrowArray::empty());
        let address = &mut *ffi as *mut FFI_ArrowArray as usize;
        batch.call_method1(intern!(py, "_export_to_c"), (address,))?;
        let struct_type = DataType::Struct(schema.fields().clone());
        // SAFETY: pyarrow has just filled `ffi` with a struct array of `schema`'s fields
        // (the schema equals the cached one); ownership moves into the imported data.
        let data = unsafe { from_ffi_and_data_type(*ffi, struct_type) }
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        let columns = StructArray::from(data).into_parts().1;
        let options = RecordBatchOptions::new().with_row_count(Some(batch.len()?));
        RecordBatch::try_new_with_options(schema, columns, &options)
            .map(Some)
            .map_err(|e| PyValueError::new_err(e.to_string()))
    }

    /// Run `f` on the engine processor. A Rust panic is caught here: it becomes
    /// `Failure::Panic`, and the processor is marked broken (its state may be half
    /// updated) until a successful `restore`.
    fn with<R>(
        &self,
        f: impl FnOnce(&mut EngineProcessor) -> Result<R, EngineError>,
    ) -> Result<R, Failure> {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(cause) = self
            .broken
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Err(Failure::Broken(cause));
        }
        match catch_panic(|| f(&mut guard)) {
            Ok(result) => result.map_err(Failure::Engine),
            Err(message) => {
                *self.broken.lock().unwrap_or_else(|p| p.into_inner()) = Some(message.clone());
                Err(Failure::Panic(message))
            }
        }
    }

    /// Hand a batch to pyarrow (`RecordBatch._import_from_c`) with the cached schema.
    ///
    /// The caches' locks are never held while Python runs (another thread could hold
    /// the GIL and wait for the lock).
    fn to_pyarrow<'py>(&self, py: Python<'py>, batch: RecordBatch) -> PyResult<Bound<'py, PyAny>> {
        let schema = batch.schema();
        let empty = batch.num_rows() == 0;
        let cached = {
            let cache = self.output.lock().unwrap_or_else(|p| p.into_inner());
            match cache.as_ref() {
                Some(c) if c.is_for(&schema) => match (&c.empty, empty) {
                    (Some(out), true) => return Ok(out.bind(py).clone()),
                    _ => Some(c.schema.pyarrow.clone_ref(py)),
                },
                _ => None,
            }
        };
        let py_schema = match cached {
            Some(pyarrow) => pyarrow,
            None => {
                let (pyarrow, shared_empty) = match shared_output(py, &schema) {
                    Some(found) => found,
                    None => {
                        let pyarrow = PySchema::new(schema.clone()).into_pyarrow(py)?.unbind();
                        share(
                            &SHARED_OUTPUTS,
                            OutputSchema {
                                schema: BothSchemas {
                                    schema: schema.clone(),
                                    pyarrow: pyarrow.clone_ref(py),
                                },
                                empty: None,
                            },
                        );
                        (pyarrow, None)
                    }
                };
                let out = match (&shared_empty, empty) {
                    (Some(out), true) => Some(out.clone_ref(py)),
                    _ => None,
                };
                let previous = self
                    .output
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .replace(OutputSchema {
                        schema: BothSchemas {
                            schema: schema.clone(),
                            pyarrow: pyarrow.clone_ref(py),
                        },
                        empty: shared_empty,
                    });
                drop(previous); // after the lock: dropping Python objects runs Python
                if let Some(out) = out {
                    return Ok(out.into_bound(py));
                }
                pyarrow
            }
        };
        let data = StructArray::from(batch).into_data();
        let ffi = Box::new(FFI_ArrowArray::new(&data));
        let address = &*ffi as *const FFI_ArrowArray as usize;
        // pyarrow moves the array out of `ffi` (taking over its release callback); the
        // emptied struct is dropped here.
        let import = IMPORT_FROM_C.get_or_try_init(py, || {
            PyResult::Ok(
                RECORD_BATCH
                    .import(py, "pyarrow", "RecordBatch")?
                    .getattr(intern!(py, "_import_from_c"))?
                    .unbind(),
            )
        })?;
        let out = import.bind(py).call1((address, py_schema))?;
        if empty {
            // Kept for this processor's next empty result, and for other processors'.
            let keep = |c: &mut OutputSchema| {
                if c.is_for(&schema) && c.empty.is_none() {
                    c.empty = Some(out.clone().unbind());
                }
            };
            if let Some(c) = self
                .output
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_mut()
            {
                keep(c);
            }
            let mut shared = SHARED_OUTPUTS.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(c) = shared.iter_mut().rev().find(|c| c.is_for(&schema)) {
                keep(c);
            }
        }
        Ok(out)
    }
}

#[pymethods]
impl Processor {
    /// Build a processor from a physical plan (JSON text, see docs/plan-format.md).
    #[new]
    fn new(plan_json: &str) -> PyResult<Self> {
        let inner = match catch_panic(|| EngineProcessor::from_json(plan_json)) {
            Ok(built) => built.map_err(to_py)?,
            Err(message) => {
                return Err(Python::attach(|py| {
                    internal_error(py, "processor", &message, false)
                }))
            }
        };
        Ok(Processor {
            inner: Mutex::new(inner),
            output: Mutex::new(None),
            input: Mutex::new(None),
            broken: Mutex::new(None),
        })
    }

    /// Process one batch; returns the rows the query emits for it.
    fn process<'py>(
        &self,
        py: Python<'py>,
        batch: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let batch = match self.import_pyarrow_batch(py, batch)? {
            Some(b) => b,
            None => batch.extract::<PyRecordBatch>()?.into_inner(),
        };
        let out = py.detach(|| self.with(|p| p.process(&batch)))?;
        self.to_pyarrow(py, out)
    }

    /// The legacy path (SPEC section 6): the batch's records one at a time, each under
    /// the engine lock, each output through a channel; no Python per record.
    fn process_per_record<'py>(
        &self,
        py: Python<'py>,
        batch: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let batch = match self.import_pyarrow_batch(py, batch)? {
            Some(b) => b,
            None => batch.extract::<PyRecordBatch>()?.into_inner(),
        };
        let out = py.detach(|| -> Result<RecordBatch, Failure> {
            if let Some(cause) = self
                .broken
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
            {
                return Err(Failure::Broken(cause));
            }
            match catch_panic(|| velostream_engine::legacy::process_per_record(&self.inner, &batch))
            {
                Ok(result) => result.map_err(Failure::Engine),
                Err(message) => {
                    *self.broken.lock().unwrap_or_else(|p| p.into_inner()) = Some(message.clone());
                    Err(Failure::Panic(message))
                }
            }
        })?;
        self.to_pyarrow(py, out)
    }

    /// Process every batch of a stream in turn, in one call; returns all emitted rows.
    fn process_stream<'py>(
        &self,
        py: Python<'py>,
        stream: PyRecordBatchReader,
    ) -> PyResult<Bound<'py, PyAny>> {
        let reader = stream.into_reader()?;
        let schema = reader.schema();
        let out = py.detach(|| {
            self.with(|p| {
                // Bind to the stream's schema first: a stream of no batches still
                // has one, and the (empty) output must carry the output schema.
                p.bind(&schema)?;
                p.process_all(reader.map(|b| b.map_err(EngineError::from)))
            })
        })?;
        self.to_pyarrow(py, out)
    }

    /// End of input: the rows still held (closed windows, ...).
    fn flush<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let out = py.detach(|| self.with(|p| p.flush()))?;
        self.to_pyarrow(py, out)
    }

    /// Bind to an input schema and return the output schema.
    fn bind<'py>(&self, py: Python<'py>, schema: PySchema) -> PyResult<Bound<'py, PyAny>> {
        let schema = schema.into_inner();
        let out = self.with(|p| p.bind(&schema))?;
        PySchema::new(out).into_pyarrow(py)
    }

    /// The output schema, or None before the input schema is known.
    #[getter]
    fn output_schema<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        match self.with(|p| Ok(p.output_schema()))? {
            Some(s) => Ok(Some(PySchema::new(s).into_pyarrow(py)?)),
            None => Ok(None),
        }
    }

    /// The current watermark in epoch millis, or None (before the first record, or
    /// without event time).
    #[getter]
    fn watermark(&self) -> PyResult<Option<i64>> {
        Ok(self.with(|p| Ok(p.watermark()))?)
    }

    /// Declare partitions (`_source_partition` or `_partition` ids) with records to
    /// come: each holds the watermark back until its first record (or until idle).
    fn expect_partitions(&self, ids: Vec<i64>) -> PyResult<()> {
        Ok(self.with(|p| {
            p.expect_partitions(&ids);
            Ok(())
        })?)
    }

    /// `(latest row time read since the last call, earliest row time still held in
    /// open state)`, epoch millis or None; the first is reset. `held` is `-2**63` when
    /// every record read so far is held (a GROUP BY without a window).
    fn take_progress(&self) -> PyResult<(Option<i64>, Option<i64>)> {
        Ok(self.with(|p| Ok((p.take_max_time(), p.held_since())))?)
    }

    /// The records routed to the dead letters since the last call, as a batch of
    /// (`record` JSON text, `reason`); the buffer is emptied.
    fn dead_letters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let out = self.with(|p| p.dead_letters())?;
        self.to_pyarrow(py, out)
    }

    /// Counters: records_in, records_out, batches_in, filtered_out, late_dropped,
    /// dead_lettered, join_misses, state_groups, state_bytes.
    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (m, groups, bytes) =
            self.with(|p| Ok((p.metrics().clone(), p.state_groups(), p.state_bytes())))?;
        let d = PyDict::new(py);
        d.set_item("records_in", m.records_in)?;
        d.set_item("records_out", m.records_out)?;
        d.set_item("batches_in", m.batches_in)?;
        d.set_item("filtered_out", m.filtered_out)?;
        d.set_item("late_dropped", m.late_dropped)?;
        d.set_item("dead_lettered", m.dead_lettered)?;
        d.set_item("join_misses", m.join_misses)?;
        d.set_item("state_groups", groups)?;
        d.set_item("state_bytes", bytes)?;
        Ok(d)
    }

    /// Attach the keyed table the plan's `JOIN name` reads (shared: its later upserts
    /// are seen by later batches).
    fn attach_table(&self, name: String, table: &Bound<'_, PyKeyedTable>) -> PyResult<()> {
        let shared = table.get().shared();
        Ok(self.with(|p| {
            p.attach_table(&name, shared);
            Ok(())
        })?)
    }

    /// The names of the tables the plan joins, in order.
    fn joined_tables(&self) -> PyResult<Vec<String>> {
        Ok(self.with(|p| Ok(p.joined_tables().into_iter().map(String::from).collect()))?)
    }

    /// The state as bytes (restorable into a processor of the same plan).
    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = py.detach(|| self.with(|p| p.snapshot()))?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// Replace the state with a snapshot.
    fn restore(&self, py: Python<'_>, blob: &[u8]) -> PyResult<()> {
        let blob = blob.to_vec();
        // A snapshot replaces the whole state, so it also repairs a broken processor.
        let restored = py.detach(|| {
            let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            catch_panic(|| guard.restore(&blob))
        });
        match restored {
            Ok(Ok(())) => {
                *self.broken.lock().unwrap_or_else(|p| p.into_inner()) = None;
                Ok(())
            }
            Ok(Err(e)) => Err(to_py(e)),
            Err(message) => Err(internal_error(py, "processor", &message, true)),
        }
    }
}

impl Processor {
    /// The batch as a Rust record batch (the cached-schema path first).
    fn import(&self, py: Python<'_>, batch: &Bound<'_, PyAny>) -> PyResult<RecordBatch> {
        match self.import_pyarrow_batch(py, batch)? {
            Some(b) => Ok(b),
            None => Ok(batch.extract::<PyRecordBatch>()?.into_inner()),
        }
    }
}

/// One processor's batches, in order, and what each gave.
type Job<'a> = (&'a Processor, Vec<RecordBatch>);
type Outcome = Result<Vec<RecordBatch>, Failure>;

fn run_job((processor, batches): &Job<'_>) -> Outcome {
    batches
        .iter()
        .map(|batch| processor.with(|p| p.process(batch)))
        .collect()
}

/// Process the batches of several processors (the partitions of a partitioned query),
/// in parallel on `threads` threads, with the GIL released once for all of them.
///
/// Each job is a processor, its batches (processed in order) and the worker it belongs
/// to: a worker's jobs run on thread `worker % threads` (the calling thread is thread 0),
/// so a partition always runs on the thread its worker names. Returns each
/// job's outputs, in the jobs' order; the first failure (in job order) is raised once
/// every job has run, as a call of each processor on its own would.
#[pyfunction]
#[pyo3(signature = (jobs, threads))]
fn process_many<'py>(
    py: Python<'py>,
    jobs: Vec<(Bound<'py, Processor>, Vec<Bound<'py, PyAny>>, usize)>,
    threads: usize,
) -> PyResult<Vec<Vec<Bound<'py, PyAny>>>> {
    let mut imported: Vec<Job<'_>> = Vec::with_capacity(jobs.len());
    let workers: Vec<usize> = jobs.iter().map(|(_, _, worker)| *worker).collect();
    for (processor, batches, _) in &jobs {
        let processor = processor.get();
        let batches = batches
            .iter()
            .map(|b| processor.import(py, b))
            .collect::<PyResult<Vec<_>>>()?;
        imported.push((processor, batches));
    }
    let threads = threads.max(1);
    let outcomes: Vec<Outcome> = py.detach(|| {
        if threads == 1 {
            return imported.iter().map(run_job).collect();
        }
        let mut slots: Vec<Option<Outcome>> = (0..imported.len()).map(|_| None).collect();
        let shares: Vec<Vec<usize>> = (0..threads)
            .map(|t| {
                (0..imported.len())
                    .filter(|&i| workers[i] % threads == t)
                    .collect()
            })
            .collect();
        std::thread::scope(|scope| {
            let jobs = &imported;
            let handles: Vec<_> = shares[1..]
                .iter()
                .filter(|share| !share.is_empty())
                .map(|share| {
                    scope.spawn(move || {
                        share
                            .iter()
                            .map(|&i| (i, run_job(&jobs[i])))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for &i in &shares[0] {
                slots[i] = Some(run_job(&jobs[i]));
            }
            for handle in handles {
                // run_job catches panics itself: a thread cannot panic.
                for (i, outcome) in handle.join().unwrap_or_default() {
                    slots[i] = Some(outcome);
                }
            }
        });
        slots
            .into_iter()
            .map(|slot| slot.unwrap_or_else(|| Err(Failure::Panic("a job did not run".into()))))
            .collect()
    });
    let mut out = Vec::with_capacity(outcomes.len());
    let mut first_error: Option<Failure> = None;
    for (outcome, (processor, _)) in outcomes.into_iter().zip(&imported) {
        match outcome {
            Ok(batches) => out.push(
                batches
                    .into_iter()
                    .map(|b| processor.to_pyarrow(py, b))
                    .collect::<PyResult<Vec<_>>>()?,
            ),
            Err(failure) => {
                first_error.get_or_insert(failure);
                out.push(Vec::new());
            }
        }
    }
    match first_error {
        Some(failure) => Err(failure.into()),
        None => Ok(out),
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Processor>()?;
    m.add_function(wrap_pyfunction!(process_many, m)?)
}
