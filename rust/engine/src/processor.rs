//! The per-batch query processor: one `process` call per input batch, state kept inside.
//!
//! A [`Processor`] owns the physical plan, binds it to the input schema on the first
//! batch (and again if the schema changes), and returns exactly the rows the SQL emits
//! for each input batch:
//!
//! - stateless queries filter and project with Arrow kernels;
//! - aggregating queries (`GROUP BY`, aggregates, `HAVING`) fold each row into its
//!   group's accumulators in place and, under `EMIT CHANGES`, emit one row per input row:
//!   the updated aggregate of that row's group;
//! - `SELECT DISTINCT` emits a row the first time it is seen.
//!
//! The state (group table, accumulators, distinct set) can be snapshotted to bytes and
//! restored into a fresh processor of the same plan.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, RecordBatchOptions, UInt32Array};
use arrow::compute::{take, FilterBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::aggregate::{Accumulator, AggState};
use crate::error::{EngineError, Result};
use crate::expr::{bind, cast_to, Input, PhysExpr, Scope};
use crate::groups::{GroupKeys, GroupTable};
use crate::plan::{Plan, SelectItem};

/// Counters of one processor (`Query.metrics()`).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Metrics {
    pub records_in: u64,
    pub records_out: u64,
    pub batches_in: u64,
    pub filtered_out: u64,
}

/// The aggregation part of a bound plan.
struct Aggregation {
    /// GROUP BY expressions over the input.
    keys: Vec<PhysExpr>,
    /// Aggregate arguments over the input, cast to each accumulator's input type.
    args: Vec<Option<PhysExpr>>,
    /// HAVING over the post-aggregation columns (group keys, then aggregates).
    having: Option<PhysExpr>,
    key_types: Vec<DataType>,
    /// The aggregate arguments' types before the cast (accumulators are built from them).
    arg_types: Vec<Option<DataType>>,
}

/// The plan bound to one input schema.
struct Bound {
    input_schema: SchemaRef,
    /// Input columns converted before anything reads them, to the type they are
    /// computed in (see [`computed_type`]); empty for most inputs.
    conversions: Vec<(usize, DataType)>,
    filter: Option<PhysExpr>,
    /// Input columns the next stage reads, in the order they are handed to it.
    needed: Vec<usize>,
    /// (output column, input column): converted input columns that a stateless query
    /// selects as they are, returned in the input's own layout.
    passthrough: Vec<(usize, usize)>,
    aggregation: Option<Aggregation>,
    /// The SELECT list: over `needed` (stateless) or over keys ++ aggregates.
    projections: Vec<PhysExpr>,
    output_schema: SchemaRef,
}

/// State that outlives re-binding: group table, accumulators, distinct set.
struct State {
    groups: Option<GroupTable>,
    accumulators: Vec<Accumulator>,
    distinct: Option<GroupTable>,
    gids: Vec<u32>,
}

/// Plans recently bound by any processor, most recent last: `(plan JSON, bound plan)`,
/// at most [`SHARED_BINDINGS`]. A bound plan is a pure function of the plan and the
/// input schema's fields, and is never mutated, so processors of the same query over the
/// same input (a query compiled again, one instance per partition) share it instead of
/// binding again, which is most of a new query's first-call cost.
static SHARED: Mutex<Vec<(Arc<str>, Arc<Bound>)>> = Mutex::new(Vec::new());
const SHARED_BINDINGS: usize = 16;

/// The shared binding of `plan` (its JSON) to `schema`, if any.
fn shared_binding(plan: &Arc<str>, schema: &SchemaRef) -> Option<Arc<Bound>> {
    let shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
    shared
        .iter()
        .rev()
        .find(|(p, b)| {
            (Arc::ptr_eq(p, plan) || p == plan) && b.input_schema.fields() == schema.fields()
        })
        .map(|(_, b)| b.clone())
}

fn share_binding(plan: &Arc<str>, bound: &Arc<Bound>) {
    let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
    if shared.len() == SHARED_BINDINGS {
        shared.remove(0);
    }
    shared.push((plan.clone(), bound.clone()));
}

/// A compiled continuous query over one input stream.
pub struct Processor {
    plan: Plan,
    /// The plan as JSON: the key of shared bindings, and of snapshots.
    plan_json: Arc<str>,
    bound: Option<Arc<Bound>>,
    state: Option<State>,
    metrics: Metrics,
    /// Set by `flush`: the input has ended, and `process` is refused.
    ended: bool,
    /// The plan's fingerprint (see [`plan_fingerprint`]), stamped on snapshots.
    fingerprint: u32,
}

/// Processing time now, epoch millis.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The state of a processor, as a snapshot's payload.
#[derive(Serialize, Deserialize)]
struct Snapshot {
    input_schema: Vec<u8>,
    groups: Option<GroupKeys>,
    accumulators: Vec<AggState>,
    distinct: Option<GroupKeys>,
    metrics: Metrics,
}

/// A snapshot is framed: magic, format version, the plan's fingerprint, the payload's
/// length and its CRC-32 (which catches every single-bit flip), then the payload.
const SNAPSHOT_MAGIC: &[u8; 4] = b"VSNP";
const SNAPSHOT_VERSION: u16 = 2;
const SNAPSHOT_HEADER: usize = 4 + 2 + 4 + 8 + 4;

fn snapshot_error(what: impl std::fmt::Display) -> EngineError {
    EngineError::Snapshot(what.to_string())
}

/// The fingerprint of a plan: a CRC-32 of its JSON without SQL positions, so the same
/// query written with other whitespace or comments has the same fingerprint.
fn plan_fingerprint(plan: &Plan) -> Result<u32> {
    fn strip_positions(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                map.remove("pos");
                map.values_mut().for_each(strip_positions);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip_positions),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(plan)?;
    strip_positions(&mut value);
    Ok(crc32fast::hash(value.to_string().as_bytes()))
}

/// Check a snapshot's frame against the plan's fingerprint; returns its payload.
fn open_snapshot(bytes: &[u8], fingerprint: u32) -> Result<&[u8]> {
    if bytes.len() < SNAPSHOT_HEADER || &bytes[..4] != SNAPSHOT_MAGIC {
        return Err(snapshot_error(format!(
            "not a velostream snapshot ({} bytes without the snapshot header)",
            bytes.len()
        )));
    }
    let field = |at: usize, len: usize| &bytes[at..at + len];
    let version = u16::from_le_bytes(field(4, 2).try_into().expect("2 bytes"));
    if version != SNAPSHOT_VERSION {
        return Err(snapshot_error(format!(
            "snapshot format version {version}; this velostream reads version {SNAPSHOT_VERSION}"
        )));
    }
    let length = u64::from_le_bytes(field(10, 8).try_into().expect("8 bytes"));
    let payload = &bytes[SNAPSHOT_HEADER..];
    if length != payload.len() as u64 {
        return Err(snapshot_error(format!(
            "the snapshot is truncated or has trailing bytes: {} payload bytes, the header \
             says {length}",
            payload.len()
        )));
    }
    let checksum = u32::from_le_bytes(field(18, 4).try_into().expect("4 bytes"));
    if crc32fast::hash(payload) != checksum {
        return Err(snapshot_error(
            "the snapshot is corrupted: its checksum does not match its contents",
        ));
    }
    let taken_from = u32::from_le_bytes(field(6, 4).try_into().expect("4 bytes"));
    if taken_from != fingerprint {
        return Err(snapshot_error(format!(
            "the snapshot was taken from a different query (plan fingerprint {taken_from:08x}, \
             this query's is {fingerprint:08x})"
        )));
    }
    Ok(payload)
}

impl Processor {
    /// Build a processor; constructs whose execution is not built yet are rejected here.
    pub fn new(plan: Plan) -> Result<Self> {
        if plan.window.is_some() {
            return Err(EngineError::validation(
                "WINDOW is not supported yet (event-time windows arrive in a later release)",
                None,
            ));
        }
        if plan.emit == "final" {
            return Err(EngineError::validation("EMIT FINAL needs a WINDOW", None));
        }
        if plan.having.is_some() && !plan.is_aggregate() {
            return Err(EngineError::validation(
                "HAVING needs GROUP BY or an aggregate",
                plan.having.as_ref().and_then(|h| h.pos()),
            ));
        }
        Ok(Processor {
            plan_json: serde_json::to_string(&plan)?.into(),
            fingerprint: plan_fingerprint(&plan)?,
            plan,
            bound: None,
            state: None,
            metrics: Metrics::default(),
            ended: false,
        })
    }

    /// Parse a JSON plan and build a processor.
    pub fn from_json(plan: &str) -> Result<Self> {
        Processor::new(Plan::from_json(plan)?)
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Live groups (and distinct rows) held in state.
    pub fn state_groups(&self) -> usize {
        self.state.as_ref().map_or(0, |s| {
            s.groups.as_ref().map_or(0, GroupTable::len)
                + s.distinct.as_ref().map_or(0, GroupTable::len)
        })
    }

    /// Heap bytes held in state (per-batch scratch buffers excluded).
    pub fn state_bytes(&self) -> usize {
        self.state.as_ref().map_or(0, |s| {
            s.groups.as_ref().map_or(0, GroupTable::state_bytes)
                + s.distinct.as_ref().map_or(0, GroupTable::state_bytes)
                + s.accumulators
                    .iter()
                    .map(Accumulator::state_bytes)
                    .sum::<usize>()
        })
    }

    /// The schema of what `process` and `flush` return, once the input schema is known.
    pub fn output_schema(&self) -> Option<SchemaRef> {
        self.bound.as_ref().map(|b| b.output_schema.clone())
    }

    /// Bind the plan to an input schema (done by the first `process` call otherwise).
    pub fn bind(&mut self, schema: &SchemaRef) -> Result<SchemaRef> {
        if let Some(b) = &self.bound {
            if b.input_schema.fields() == schema.fields() {
                return Ok(b.output_schema.clone());
            }
        }
        let bound = match shared_binding(&self.plan_json, schema) {
            Some(bound) => bound,
            None => {
                let bound = Arc::new(bind_plan(&self.plan, schema)?);
                share_binding(&self.plan_json, &bound);
                bound
            }
        };
        if let Some(previous) = &self.bound {
            if previous.output_schema.fields() != bound.output_schema.fields()
                || agg_types(previous) != agg_types(&bound)
            {
                return Err(EngineError::validation(
                    format!(
                        "the input schema changed in a way that changes the query's output \
                         types: {}",
                        schema_change(&previous.input_schema, schema)
                    ),
                    None,
                ));
            }
        }
        if self.state.is_none() {
            self.state = Some(new_state(&self.plan, &bound)?);
        }
        let out = bound.output_schema.clone();
        self.bound = Some(bound);
        Ok(out)
    }

    /// Process one batch and return the rows the query emits for it.
    pub fn process(&mut self, batch: &RecordBatch) -> Result<RecordBatch> {
        if self.ended {
            return Err(EngineError::Usage(
                "process() after flush(): flush() ended this query's input; compile the \
                 query again (or restore a snapshot into a new one) to process more"
                    .into(),
            ));
        }
        self.bind(&batch.schema())?;
        let bound = self.bound.as_deref().expect("bound above");
        let state = self.state.as_mut().expect("state created with the binding");
        let n = batch.num_rows();
        if n == 0 {
            // Nothing to emit, and nothing evaluated: a constant that fails (`1 % 0`)
            // fails only when a row needs it, as on the per-record path.
            self.metrics.batches_in += 1;
            return Ok(RecordBatch::new_empty(bound.output_schema.clone()));
        }
        let now_ms = now_millis();
        let converted;
        let batch_columns: &[ArrayRef] = if bound.conversions.is_empty() {
            batch.columns()
        } else {
            converted = convert_columns(batch.columns(), &bound.conversions)?;
            &converted
        };
        let mut columns: Vec<ArrayRef> = bound
            .needed
            .iter()
            .map(|i| batch_columns[*i].clone())
            .collect();
        let mut rows = n;
        let mut kept: Option<BooleanArray> = None;
        if let Some(filter) = &bound.filter {
            let input = Input {
                columns: batch_columns,
                num_rows: n,
                now_ms,
            };
            let mask = filter.eval(&input)?.into_array(n)?;
            let mask = mask
                .as_any()
                .downcast_ref::<BooleanArray>()
                .expect("filter is boolean after binding");
            (columns, rows) = filter_columns(&columns, mask, rows)?;
            if !bound.passthrough.is_empty() {
                kept = Some(mask.clone());
            }
        }
        self.metrics.batches_in += 1;
        self.metrics.records_in += n as u64;
        self.metrics.filtered_out += (n - rows) as u64;

        if let Some(agg) = &bound.aggregation {
            let input = Input {
                columns: &columns,
                num_rows: rows,
                now_ms,
            };
            let mut post: Vec<ArrayRef> = Vec::with_capacity(agg.keys.len() + agg.args.len());
            for k in &agg.keys {
                post.push(k.eval(&input)?.into_array(rows)?);
            }
            let groups = state.groups.as_mut().expect("aggregating state");
            groups.group_ids(&post, rows, &mut state.gids)?;
            let group_count = groups.len();
            for (acc, arg) in state.accumulators.iter_mut().zip(&agg.args) {
                let arg = match arg {
                    Some(a) => Some(a.eval(&input)?.into_array(rows)?),
                    None => None,
                };
                post.push(acc.update_and_emit(&state.gids, group_count, arg.as_ref())?);
            }
            if let Some(having) = &agg.having {
                let input = Input {
                    columns: &post,
                    num_rows: rows,
                    now_ms,
                };
                let mask = having.eval(&input)?.into_array(rows)?;
                let mask = mask
                    .as_any()
                    .downcast_ref::<BooleanArray>()
                    .expect("HAVING is boolean after binding");
                (post, rows) = filter_columns(&post, mask, rows)?;
            }
            columns = post;
        }

        let input = Input {
            columns: &columns,
            num_rows: rows,
            now_ms,
        };
        let mut out = Vec::with_capacity(bound.projections.len());
        for p in &bound.projections {
            out.push(p.eval(&input)?.into_array(rows)?);
        }
        for &(o, i) in &bound.passthrough {
            let original = [batch.column(i).clone()];
            out[o] = match &kept {
                Some(mask) => filter_columns(&original, mask, n)?.0.remove(0),
                None => original[0].clone(),
            };
        }
        if let Some(seen) = state.distinct.as_mut() {
            (out, rows) = first_seen(seen, &out, rows, &mut state.gids)?;
        }
        let result = RecordBatch::try_new_with_options(
            bound.output_schema.clone(),
            out,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )?;
        self.metrics.records_out += rows as u64;
        Ok(result)
    }

    /// Process several batches in turn (state carried between them) and return all the
    /// rows they emit as one batch.
    pub fn process_all(
        &mut self,
        batches: impl IntoIterator<Item = Result<RecordBatch>>,
    ) -> Result<RecordBatch> {
        let mut outputs = Vec::new();
        for batch in batches {
            let out = self.process(&batch?)?;
            if out.num_rows() > 0 || outputs.is_empty() {
                outputs.push(out);
            }
        }
        match outputs.len() {
            0 => self.flush_empty(),
            1 => Ok(outputs.pop().expect("one output")),
            _ => Ok(arrow::compute::concat_batches(
                &outputs[0].schema(),
                &outputs,
            )?),
        }
    }

    fn flush_empty(&self) -> Result<RecordBatch> {
        let schema = self
            .output_schema()
            .unwrap_or_else(|| Arc::new(Schema::empty()));
        Ok(RecordBatch::new_empty(schema))
    }

    /// End of input: return what is left. Without windows nothing is held back:
    /// `EMIT CHANGES` already emitted every update.
    pub fn flush(&mut self) -> Result<RecordBatch> {
        self.ended = true;
        let schema = self
            .output_schema()
            .unwrap_or_else(|| Arc::new(Schema::empty()));
        Ok(RecordBatch::new_empty(schema))
    }

    /// Serialise the state (and the input schema it was built for) to bytes, framed
    /// with a format version, the plan's fingerprint and a checksum.
    pub fn snapshot(&self) -> Result<Vec<u8>> {
        let (input_schema, groups, accumulators, distinct) = match (&self.bound, &self.state) {
            (Some(b), Some(s)) => (
                schema_to_bytes(&b.input_schema)?,
                s.groups.as_ref().map(|g| g.keys().clone()),
                s.accumulators.iter().map(|a| a.state.clone()).collect(),
                s.distinct.as_ref().map(|g| g.keys().clone()),
            ),
            _ => (Vec::new(), None, Vec::new(), None),
        };
        let snapshot = Snapshot {
            input_schema,
            groups,
            accumulators,
            distinct,
            metrics: self.metrics.clone(),
        };
        let payload = postcard::to_allocvec(&snapshot).map_err(snapshot_error)?;
        let mut out = Vec::with_capacity(SNAPSHOT_HEADER + payload.len());
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        out.extend_from_slice(&self.fingerprint.to_le_bytes());
        out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
        Ok(out)
    }

    /// Replace the state with a snapshot taken from a processor of the same plan.
    ///
    /// All or nothing: a snapshot that is corrupt, of another format version or of
    /// another query is refused with an error naming what is wrong, and the state is
    /// left as it was.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<()> {
        let payload = open_snapshot(bytes, self.fingerprint)?;
        // A well-framed payload can still be foreign (made by hand, or by a defect): a
        // panic while decoding or binding it refuses it like any other bad snapshot, and
        // leaves this processor as it was.
        let restored =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.restored_from(payload)))
                .unwrap_or_else(|panic| {
                    let message = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    Err(snapshot_error(format!(
                        "its state does not fit this query ({message})"
                    )))
                })?;
        *self = restored;
        Ok(())
    }

    /// A processor of this plan with the state of a snapshot's payload.
    fn restored_from(&self, payload: &[u8]) -> Result<Processor> {
        let snapshot: Snapshot = postcard::from_bytes(payload)
            .map_err(|e| snapshot_error(format!("its state does not decode: {e}")))?;
        let mut restored = Processor {
            plan: self.plan.clone(),
            plan_json: self.plan_json.clone(),
            fingerprint: self.fingerprint,
            bound: None,
            state: None,
            metrics: snapshot.metrics,
            ended: false,
        };
        if !snapshot.input_schema.is_empty() {
            let schema = schema_from_bytes(&snapshot.input_schema)
                .map_err(|e| snapshot_error(format!("its input schema does not decode: {e}")))?;
            restored.bind(&schema).map_err(|e| {
                snapshot_error(format!("its input schema does not fit this query: {e}"))
            })?;
            let state = restored.state.as_mut().expect("bound");
            match (state.groups.as_mut(), snapshot.groups) {
                (Some(table), Some(keys)) => table.restore(keys)?,
                (None, None) => {}
                _ => return Err(snapshot_error("its group table does not fit this query")),
            }
            match (state.distinct.as_mut(), snapshot.distinct) {
                (Some(table), Some(keys)) => table.restore(keys)?,
                (None, None) => {}
                _ => return Err(snapshot_error("its distinct set does not fit this query")),
            }
            if state.accumulators.len() != snapshot.accumulators.len() {
                return Err(snapshot_error("aggregate count differs"));
            }
            for (acc, saved) in state.accumulators.iter_mut().zip(snapshot.accumulators) {
                if !acc.state.same_kind(&saved) {
                    return Err(snapshot_error("its aggregate state is of another kind"));
                }
                acc.state = saved;
            }
        }
        Ok(restored)
    }
}

/// The columns that differ between two input schemas, in words.
fn schema_change(old: &Schema, new: &Schema) -> String {
    use crate::expr::types::sql_name;
    let mut changes = Vec::new();
    for f in old.fields() {
        match new.field_with_name(f.name()) {
            Ok(g) if g.data_type() != f.data_type() => changes.push(format!(
                "column '{}' was {}, now {}",
                f.name(),
                sql_name(f.data_type()),
                sql_name(g.data_type())
            )),
            Ok(_) => {}
            Err(_) => changes.push(format!("column '{}' is gone", f.name())),
        }
    }
    for g in new.fields() {
        if old.field_with_name(g.name()).is_err() {
            changes.push(format!(
                "column '{}' ({}) is new",
                g.name(),
                sql_name(g.data_type())
            ));
        }
    }
    if changes.is_empty() {
        "the columns' order changed".to_string()
    } else {
        changes.join("; ")
    }
}

fn agg_types(b: &Bound) -> Option<(Vec<DataType>, Vec<Option<DataType>>)> {
    b.aggregation
        .as_ref()
        .map(|a| (a.key_types.clone(), a.arg_types.clone()))
}

fn new_state(plan: &Plan, bound: &Bound) -> Result<State> {
    let (groups, accumulators) = match &bound.aggregation {
        Some(agg) => {
            let mut accs = Vec::with_capacity(plan.aggregates.len());
            for (a, arg_type) in plan.aggregates.iter().zip(&agg.arg_types) {
                accs.push(Accumulator::new(&a.func, arg_type.as_ref(), a.pos)?);
            }
            (Some(GroupTable::new(&agg.key_types)?), accs)
        }
        None => (None, Vec::new()),
    };
    let distinct = if plan.distinct {
        let types: Vec<DataType> = bound
            .output_schema
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        Some(GroupTable::new(&types)?)
    } else {
        None
    };
    Ok(State {
        groups,
        accumulators,
        distinct,
        gids: Vec::new(),
    })
}

/// Keep the rows where `mask` is true (NULL counts as false).
fn filter_columns(
    columns: &[ArrayRef],
    mask: &BooleanArray,
    rows: usize,
) -> Result<(Vec<ArrayRef>, usize)> {
    if mask.null_count() == 0 && mask.true_count() == rows {
        return Ok((columns.to_vec(), rows));
    }
    let mut builder = FilterBuilder::new(mask);
    if columns.len() > 1 {
        builder = builder.optimize();
    }
    let predicate = builder.build();
    let filtered = columns
        .iter()
        .map(|c| predicate.filter(c.as_ref()))
        .collect::<Result<_, _>>()?;
    Ok((filtered, predicate.count()))
}

/// Keep the rows of `columns` whose value combination was never seen before.
fn first_seen(
    seen: &mut GroupTable,
    columns: &[ArrayRef],
    rows: usize,
    gids: &mut Vec<u32>,
) -> Result<(Vec<ArrayRef>, usize)> {
    let before = seen.len();
    seen.group_ids(columns, rows, gids)?;
    // A row is new when its group was created by this batch and no earlier row of the
    // batch had it (ids of new groups are not necessarily in row order).
    let mut kept = vec![false; seen.len() - before];
    let mut keep = Vec::new();
    for (i, &g) in gids.iter().enumerate() {
        if let Some(k) = (g as usize).checked_sub(before) {
            if !kept[k] {
                kept[k] = true;
                keep.push(i as u32);
            }
        }
    }
    if keep.len() == rows {
        return Ok((columns.to_vec(), rows));
    }
    let indices = UInt32Array::from(keep);
    let out = columns
        .iter()
        .map(|c| take(c.as_ref(), &indices, None))
        .collect::<Result<_, _>>()?;
    Ok((out, indices.len()))
}

fn schema_to_bytes(schema: &SchemaRef) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    {
        let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut buf, schema)?;
        w.finish()?;
    }
    Ok(buf)
}

fn schema_from_bytes(bytes: &[u8]) -> Result<SchemaRef> {
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)?;
    Ok(reader.schema())
}

fn bind_filter(plan: &Plan, scope: &Scope) -> Result<Option<PhysExpr>> {
    let Some(f) = &plan.filter else {
        return Ok(None);
    };
    let (e, dt) = bind(f, scope)?;
    Ok(Some(condition(e, &dt, "WHERE", f.pos())?))
}

/// A WHERE or HAVING condition: boolean, or a bare NULL made a boolean NULL (which
/// keeps no row, as in every SQL engine).
fn condition(e: PhysExpr, dt: &DataType, clause: &str, pos: crate::error::Pos) -> Result<PhysExpr> {
    match dt {
        DataType::Boolean => Ok(e),
        DataType::Null => cast_to(e, dt, &DataType::Boolean, pos),
        other => Err(EngineError::validation(
            format!(
                "{clause} needs a boolean condition, got {}",
                crate::expr::types::sql_name(other)
            ),
            pos,
        )),
    }
}

/// Bind the SELECT list to `scope`, expanding `*` (stateless queries only).
fn bind_select(plan: &Plan, scope: &Scope) -> Result<(Vec<PhysExpr>, Vec<Field>)> {
    let mut projections = Vec::new();
    let mut fields = Vec::new();
    for item in &plan.select {
        match item {
            SelectItem::Star { pos, .. } => {
                if scope.agg_offset.is_some() {
                    return Err(EngineError::validation(
                        "SELECT * cannot be combined with GROUP BY or aggregates",
                        *pos,
                    ));
                }
                for (i, f) in scope.schema.fields().iter().enumerate() {
                    if is_system_column(f.name()) {
                        continue;
                    }
                    projections.push(PhysExpr::Column(i));
                    fields.push(Field::new(f.name(), f.data_type().clone(), true));
                }
            }
            SelectItem::Column { name, expr } => {
                let (mut e, dt) = bind(expr, scope)?;
                let dt = if dt == DataType::Null {
                    // A bare NULL gets a concrete (nullable) type.
                    e = cast_to(e, &DataType::Null, &DataType::Int64, expr.pos())?;
                    DataType::Int64
                } else {
                    dt
                };
                projections.push(e);
                fields.push(Field::new(name, dt, true));
            }
        }
        // Names are checked as `*` expands: the planner cannot see the input's columns.
        if let Some(duplicate) = fields
            .iter()
            .enumerate()
            .find(|(i, f)| fields[..*i].iter().any(|g| g.name() == f.name()))
            .map(|(_, f)| f.name().clone())
        {
            let pos = match item {
                SelectItem::Star { pos, .. } => *pos,
                SelectItem::Column { expr, .. } => expr.pos(),
            };
            return Err(EngineError::validation(
                format!(
                    "duplicate output column name '{duplicate}' (SELECT * brings every \
                     input column): give the other one another alias with AS"
                ),
                pos,
            ));
        }
    }
    Ok((projections, fields))
}

/// Restrict `exprs` to the input columns they read; returns those columns' indices.
fn narrow_inputs(exprs: &mut [&mut PhysExpr]) -> Vec<usize> {
    let mut needed = Vec::new();
    for e in exprs.iter() {
        e.columns(&mut needed);
    }
    needed.sort_unstable();
    needed.dedup();
    let position = |i: usize| needed.binary_search(&i).expect("collected above");
    for e in exprs.iter_mut() {
        e.remap_columns(&position);
    }
    needed
}

/// The type a column of type `dt` is computed in, when it is not `dt` itself:
/// dictionaries are decoded, large and view strings and binaries become plain ones, so
/// every kernel sees the few layouts it is written for.
fn computed_type(dt: &DataType) -> Option<DataType> {
    match dt {
        DataType::Dictionary(_, values) => {
            Some(computed_type(values).unwrap_or_else(|| values.as_ref().clone()))
        }
        DataType::LargeUtf8 | DataType::Utf8View => Some(DataType::Utf8),
        DataType::LargeBinary | DataType::BinaryView => Some(DataType::Binary),
        _ => None,
    }
}

/// `columns` with the listed ones converted (a string too long for a plain string
/// array is a `DataError`).
fn convert_columns(
    columns: &[ArrayRef],
    conversions: &[(usize, DataType)],
) -> Result<Vec<ArrayRef>> {
    let mut out = columns.to_vec();
    for (i, to) in conversions {
        out[*i] = arrow::compute::cast(columns[*i].as_ref(), to)
            .map_err(|e| EngineError::data("converting an input column", e))?;
    }
    Ok(out)
}

fn bind_plan(plan: &Plan, original: &SchemaRef) -> Result<Bound> {
    let mut conversions = Vec::new();
    let fields: Vec<Field> = original
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| match computed_type(f.data_type()) {
            Some(to) => {
                conversions.push((i, to.clone()));
                f.as_ref().clone().with_data_type(to)
            }
            None => f.as_ref().clone(),
        })
        .collect();
    let schema = &if conversions.is_empty() {
        original.clone()
    } else {
        Arc::new(Schema::new(fields))
    };
    let scope = Scope {
        schema: schema.as_ref(),
        agg_offset: None,
    };
    let filter = bind_filter(plan, &scope)?;
    if !plan.is_aggregate() {
        let (mut projections, mut fields) = bind_select(plan, &scope)?;
        let needed = narrow_inputs(&mut projections.iter_mut().collect::<Vec<_>>());
        // A converted column selected as it is leaves in its own layout (`SELECT *`
        // returns the input's columns unchanged).
        let mut passthrough = Vec::new();
        for (out, projection) in projections.iter().enumerate() {
            if let PhysExpr::Column(k) = projection {
                let input = needed[*k];
                if conversions.iter().any(|(i, _)| *i == input) {
                    passthrough.push((out, input));
                    fields[out] = fields[out]
                        .clone()
                        .with_data_type(original.field(input).data_type().clone());
                }
            }
        }
        return Ok(Bound {
            input_schema: original.clone(),
            conversions,
            filter,
            needed,
            passthrough,
            aggregation: None,
            projections,
            output_schema: Arc::new(Schema::new(fields)),
        });
    }

    // Aggregation: keys and aggregate arguments read the input; SELECT and HAVING read
    // the post-aggregation columns (keys, then aggregates).
    let mut keys = Vec::with_capacity(plan.group_by.len());
    let mut post_fields = Vec::new();
    let mut key_types = Vec::new();
    for (i, k) in plan.group_by.iter().enumerate() {
        let (e, dt) = bind(k, &scope)?;
        let (e, dt) = if dt == DataType::Null {
            (cast_to(e, &dt, &DataType::Int64, k.pos())?, DataType::Int64)
        } else {
            (e, dt)
        };
        keys.push(e);
        post_fields.push(Field::new(format!("__key{i}"), dt.clone(), true));
        key_types.push(dt);
    }
    let mut args = Vec::with_capacity(plan.aggregates.len());
    let mut arg_types = Vec::with_capacity(plan.aggregates.len());
    for (j, a) in plan.aggregates.iter().enumerate() {
        let bound_arg = match &a.arg {
            Some(arg) => Some(bind(arg, &scope)?),
            None => None,
        };
        let arg_type = bound_arg.as_ref().map(|(_, t)| t.clone());
        // Probe the accumulator for the type its argument is cast to, and its output.
        let probe = Accumulator::new(&a.func, arg_type.as_ref(), a.pos)?;
        args.push(match bound_arg {
            Some((e, t)) => {
                let target = probe.input_type.clone().unwrap_or_else(|| t.clone());
                Some(cast_to(e, &t, &target, a.pos)?)
            }
            None => None,
        });
        arg_types.push(arg_type);
        post_fields.push(Field::new(
            format!("__agg{j}"),
            probe.output_type.clone(),
            true,
        ));
    }
    let post_schema = Schema::new(post_fields);
    let post_scope = Scope {
        schema: &post_schema,
        agg_offset: Some(plan.group_by.len()),
    };
    let having = match &plan.having {
        Some(h) => {
            let (e, dt) = bind(h, &post_scope)?;
            Some(condition(e, &dt, "HAVING", h.pos())?)
        }
        None => None,
    };
    let (projections, fields) = bind_select(plan, &post_scope)?;
    let mut input_exprs: Vec<&mut PhysExpr> = keys.iter_mut().collect();
    input_exprs.extend(args.iter_mut().flatten());
    let needed = narrow_inputs(&mut input_exprs);
    Ok(Bound {
        input_schema: original.clone(),
        conversions,
        filter,
        needed,
        passthrough: Vec::new(),
        aggregation: Some(Aggregation {
            keys,
            args,
            having,
            key_types,
            arg_types,
        }),
        projections,
        output_schema: Arc::new(Schema::new(fields)),
    })
}

/// System columns are not part of `SELECT *`.
pub fn is_system_column(name: &str) -> bool {
    matches!(
        name,
        "_event_time" | "_timestamp" | "_partition" | "_offset" | "_window_start" | "_window_end"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{Float64Type, Int64Type};

    fn trades() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("symbol", DataType::Utf8, true),
            Field::new("price", DataType::Float64, true),
            Field::new("qty", DataType::Int64, true),
            Field::new("status", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["A", "B", "A", "D"])),
                Arc::new(Float64Array::from(vec![
                    Some(150.0),
                    Some(90.0),
                    None,
                    Some(101.0),
                ])),
                Arc::new(Int64Array::from(vec![2, 3, 4, 5])),
                Arc::new(StringArray::from(vec!["open", "open", "open", "closed"])),
            ],
        )
        .unwrap()
    }

    const FILTER_PLAN: &str = r#"{
        "input": "trades",
        "filter": {"op": "binary", "fn": "and",
            "left": {"op": "binary", "fn": "gt", "left": {"op": "column", "name": "price"},
                     "right": {"op": "literal", "type": "int64", "value": 100}},
            "right": {"op": "binary", "fn": "eq", "left": {"op": "column", "name": "status"},
                      "right": {"op": "literal", "type": "utf8", "value": "open"}}},
        "select": [
            {"name": "symbol", "expr": {"op": "column", "name": "symbol"}},
            {"name": "notional", "expr": {"op": "binary", "fn": "mul",
                "left": {"op": "column", "name": "price"}, "right": {"op": "column", "name": "qty"}}}
        ]
    }"#;

    const COUNT_PLAN: &str = r#"{
        "input": "trades",
        "group_by": [{"op": "column", "name": "symbol"}],
        "aggregates": [{"fn": "count_star"}, {"fn": "sum", "arg": {"op": "column", "name": "qty"}}],
        "having": {"op": "binary", "fn": "gt", "left": {"op": "agg", "index": 1},
                   "right": {"op": "literal", "type": "int64", "value": 2}},
        "select": [
            {"name": "symbol", "expr": {"op": "group_key", "index": 0}},
            {"name": "n", "expr": {"op": "agg", "index": 0}},
            {"name": "total", "expr": {"op": "agg", "index": 1}}
        ]
    }"#;

    #[test]
    fn filter_and_project() {
        let mut p = Processor::from_json(FILTER_PLAN).unwrap();
        let out = p.process(&trades()).unwrap();
        assert_eq!(out.num_rows(), 1);
        assert_eq!(out.column(0).as_string::<i32>().value(0), "A");
        assert_eq!(out.column(1).as_primitive::<Float64Type>().value(0), 300.0);
        assert_eq!(p.metrics().records_in, 4);
        assert_eq!(p.metrics().records_out, 1);
        assert_eq!(p.flush().unwrap().num_rows(), 0);
    }

    /// Processors of one plan over one input share a binding; another input schema or
    /// another plan gets its own, also with more plans than the shared cache holds.
    #[test]
    fn bindings_are_shared_per_plan_and_input_schema() {
        let batch = trades();
        let mut a = Processor::from_json(FILTER_PLAN).unwrap();
        let mut b = Processor::from_json(FILTER_PLAN).unwrap();
        assert_eq!(a.process(&batch).unwrap(), b.process(&batch).unwrap());
        assert!(Arc::ptr_eq(
            a.bound.as_ref().unwrap(),
            b.bound.as_ref().unwrap()
        ));
        // The same column names with integer prices: an integer product.
        let mut columns = batch.columns().to_vec();
        columns[1] = Arc::new(Int64Array::from(vec![Some(150), Some(90), None, Some(101)]));
        let mut fields: Vec<Field> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| (**f).clone())
            .collect();
        fields[1] = Field::new("price", DataType::Int64, true);
        let ints = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
        let mut c = Processor::from_json(FILTER_PLAN).unwrap();
        let out = c.process(&ints).unwrap();
        assert_eq!(
            out.column(1).as_primitive::<Int64Type>().values().to_vec(),
            vec![300]
        );
        assert!(!Arc::ptr_eq(
            a.bound.as_ref().unwrap(),
            c.bound.as_ref().unwrap()
        ));
        // Twice as many plans as shared bindings, cycled twice: each filters by its own
        // threshold.
        for _ in 0..2 {
            for threshold in 0..2 * SHARED_BINDINGS as i64 {
                let plan = FILTER_PLAN
                    .replace("\"value\": 100", &format!("\"value\": {}", 80 + threshold));
                let mut p = Processor::from_json(&plan).unwrap();
                let expected = if 80 + threshold < 90 { 2 } else { 1 };
                assert_eq!(
                    p.process(&batch).unwrap().num_rows(),
                    expected,
                    "{threshold}"
                );
            }
        }
    }

    #[test]
    fn star_skips_system_columns() {
        let plan = r#"{"input": "t", "select": [{"star": true}]}"#;
        let mut p = Processor::from_json(plan).unwrap();
        let out = p.process(&trades()).unwrap();
        assert_eq!(out.num_columns(), 4);
        assert_eq!(out.num_rows(), 4);
    }

    #[test]
    fn emit_changes_with_having_emits_running_aggregates() {
        let mut p = Processor::from_json(COUNT_PLAN).unwrap();
        let out = p.process(&trades()).unwrap();
        // Rows: A(2) -> total 2 fails HAVING; B(3) -> 3; A(4) -> 6; D(5) -> 5.
        let symbols: Vec<&str> = out.column(0).as_string::<i32>().iter().flatten().collect();
        assert_eq!(symbols, vec!["B", "A", "D"]);
        let n = out.column(1).as_primitive::<Int64Type>();
        assert_eq!(n.values().to_vec(), vec![1, 2, 1]);
        let totals = out.column(2).as_primitive::<Int64Type>();
        assert_eq!(totals.values().to_vec(), vec![3, 6, 5]);
        assert_eq!(p.state_groups(), 3);
    }

    #[test]
    fn snapshot_and_restore_continue_the_same_state() {
        let mut p = Processor::from_json(COUNT_PLAN).unwrap();
        p.process(&trades()).unwrap();
        let blob = p.snapshot().unwrap();
        let mut restored = Processor::from_json(COUNT_PLAN).unwrap();
        restored.restore(&blob).unwrap();
        let a = p.process(&trades()).unwrap();
        let b = restored.process(&trades()).unwrap();
        assert_eq!(a, b);
        assert_eq!(restored.state_groups(), 3);
        let other = Processor::from_json(FILTER_PLAN).unwrap().restore(&blob);
        assert!(matches!(other, Err(EngineError::Snapshot(_))));
    }

    #[test]
    fn distinct_emits_first_occurrences_only() {
        let plan = r#"{"input": "t", "distinct": true,
            "select": [{"name": "status", "expr": {"op": "column", "name": "status"}}]}"#;
        let mut p = Processor::from_json(plan).unwrap();
        let first = p.process(&trades()).unwrap();
        let values: Vec<&str> = first
            .column(0)
            .as_string::<i32>()
            .iter()
            .flatten()
            .collect();
        assert_eq!(values, vec!["open", "closed"]);
        assert_eq!(p.process(&trades()).unwrap().num_rows(), 0);
    }

    #[test]
    fn emit_final_without_window_is_rejected() {
        let plan = r#"{"input": "t", "select": [], "emit": "final"}"#;
        assert!(matches!(
            Processor::from_json(plan),
            Err(EngineError::Validation { .. })
        ));
    }
}
