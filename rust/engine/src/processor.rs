//! The per-batch query processor: one `process` call per input batch, state kept inside.
//!
//! A [`Processor`] owns the physical plan and binds it to the input schema on the first
//! batch (and again if the schema changes) into a chain of operators (`operator`,
//! `window`): filter, aggregate or window aggregate, HAVING, projection, DISTINCT. Before
//! the operators, the scan step converts input layouts, reads event time (`time`), and
//! advances the watermark (`watermark`) row by row. After each batch the watermark is
//! offered to the operators, so windows close in the `process` call whose input moves
//! the watermark past their end (SPEC section 12).
//!
//! The state of every operator and of the watermark can be snapshotted to bytes and
//! restored into a fresh processor of the same plan.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use arrow::array::{
    Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, RecordBatchOptions, StringArray,
    UInt32Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::expr::{bind, cast_to, resolve_column, PhysExpr, Relation, Scope};
use crate::operator::aggregate::{AggDef, GroupAggregate, GroupingDef};
use crate::operator::distinct::Distinct;
use crate::operator::filter::{Filter, FilterDef};
use crate::operator::join::{JoinDef, LookupJoin, SharedTable};
use crate::operator::project::{Project, ProjectDef};
use crate::operator::{Chunk, Ctx, OpState, Operator, Times};
use crate::plan::{
    EmitMode, JoinKind, LateStrategy, MissingStrategy, Plan, SelectItem, TimeErrorStrategy,
    TimeSpec, WatermarkStrategy, WindowKind,
};
use crate::time::parse::{parse_event_times, TimeFailure, TimeFormat};
use crate::watermark::{WatermarkState, WatermarkTracker};
use crate::window::bins::FixedWindows;
use crate::window::session::Sessions;
use crate::window::sliding::Sliding;
use crate::window::tumbling::Tumbling;
use crate::window::WindowDef;

/// Counters of one processor (`Query.metrics()`).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Metrics {
    pub records_in: u64,
    pub records_out: u64,
    pub batches_in: u64,
    pub filtered_out: u64,
    /// Late records dropped (`late.data.strategy = 'drop'`, or beyond the allowed
    /// lateness).
    pub late_dropped: u64,
    /// Records routed to the dead letters (late, or event time unreadable).
    pub dead_lettered: u64,
    /// Stream rows whose key a joined table did not hold (whatever
    /// `join.missing.strategy` then did with them).
    #[serde(default)]
    pub join_misses: u64,
}

/// The longest duration a plan may carry (about 3 000 years): event time and durations
/// then add up without overflowing.
pub const MAX_DURATION_MS: i64 = 100_000_000_000_000;

/// Event times outside years -9999..=9999 are not instants velostream computes with.
pub const MAX_EVENT_TIME_MS: i64 = 253_402_300_799_999;

/// How the scan step reads event time.
#[derive(Debug)]
struct TimeDef {
    /// The event-time field's input column (None: processing time).
    field: Option<(usize, String)>,
    format: TimeFormat,
    on_error: TimeErrorStrategy,
    /// The `_partition` input column, if any.
    partition: Option<usize>,
    /// Where `_event_time` sits in the extended input: an input column it replaces, or
    /// one appended after the input's columns (None: processing time, not a column).
    column: Option<usize>,
    /// Whether the chunks carry times (windowed queries).
    windowed: bool,
    /// The input's field names, for error messages.
    fields: Vec<String>,
}

/// One operator of a bound plan, before it gets state.
enum OpDef {
    Filter(Arc<FilterDef>),
    Aggregate(Arc<GroupingDef>),
    Window(Arc<WindowDef>),
    Project(Arc<ProjectDef>),
    Distinct(Vec<DataType>),
    Join(Arc<JoinDef>),
}

impl OpDef {
    fn instantiate(&self) -> Result<Box<dyn Operator>> {
        Ok(match self {
            OpDef::Filter(d) => Box::new(Filter::new(d.clone())),
            OpDef::Aggregate(d) => Box::new(GroupAggregate::new(d.clone())?),
            OpDef::Window(d) => match d.kind {
                WindowKind::Tumbling { size_ms } => {
                    Box::new(FixedWindows::new(Tumbling { size: size_ms }, d.clone())?)
                }
                WindowKind::Sliding {
                    size_ms,
                    advance_ms,
                } => Box::new(FixedWindows::new(
                    Sliding {
                        size: size_ms,
                        advance: advance_ms,
                    },
                    d.clone(),
                )?),
                WindowKind::Session { gap_ms } => Box::new(Sessions::new(gap_ms, d.clone())?),
            },
            OpDef::Project(d) => Box::new(Project::new(d.clone())),
            OpDef::Distinct(types) => Box::new(Distinct::new(types)?),
            OpDef::Join(d) => Box::new(LookupJoin::new(d.clone())),
        })
    }
}

/// The plan bound to one input schema.
struct Bound {
    input_schema: SchemaRef,
    /// Input columns converted before anything reads them, to the type they are
    /// computed in (see [`computed_type`]); empty for most inputs.
    conversions: Vec<(usize, DataType)>,
    time: Option<TimeDef>,
    /// Input columns appended as they are (converted columns a stateless query selects
    /// as they are, returned in the input's own layout).
    raw: Vec<usize>,
    /// The extended input's columns the first operator reads (when no WHERE narrows).
    needed: Option<Vec<usize>>,
    ops: Vec<OpDef>,
    output_schema: SchemaRef,
    /// Key and argument types of the aggregation: state carries over a re-binding only
    /// when they are unchanged.
    signature: Option<(Vec<DataType>, Vec<Option<DataType>>)>,
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
    ops: Vec<Box<dyn Operator>>,
    tracker: Option<WatermarkTracker>,
    /// The watermark last offered to the operators.
    fired: Option<i64>,
    metrics: Metrics,
    /// Records routed to the dead letters and not yet taken: (record as JSON, reason).
    dead: Vec<(String, String)>,
    /// Set by `flush`: the input has ended, and `process` is refused.
    ended: bool,
    /// The plan's fingerprint (see [`plan_fingerprint`]), stamped on snapshots.
    fingerprint: u32,
    /// Scratch: the watermark before each row.
    marks: Vec<i64>,
    /// The latest row time (event or processing time) read since [`Processor::take_max_time`].
    max_time: Option<i64>,
    /// Tables attached for the plan's joins, by name.
    tables: Vec<(String, SharedTable)>,
    /// Set when a table is attached after binding: the next call binds again.
    rebind: bool,
}

/// The larger of `current` and the largest value of `values`.
fn max_of(current: Option<i64>, values: &Int64Array) -> Option<i64> {
    match (current, arrow::compute::max(values)) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
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
    ops: Vec<OpState>,
    watermark: Option<WatermarkState>,
    fired: Option<i64>,
    metrics: Metrics,
}

/// Check the plan's durations and time settings, whose errors are the user's.
fn validate_plan(plan: &Plan) -> Result<()> {
    let window_pos = plan.window.as_ref().and_then(|w| w.pos);
    let duration = |what: &str, ms: i64, pos| {
        if ms <= 0 || ms > MAX_DURATION_MS {
            Err(EngineError::validation(
                format!("{what} must be between 1ms and {MAX_DURATION_MS}ms, got {ms}ms"),
                pos,
            ))
        } else {
            Ok(())
        }
    };
    if let Some(w) = &plan.window {
        match w.kind {
            WindowKind::Tumbling { size_ms } => duration("a TUMBLING window size", size_ms, w.pos)?,
            WindowKind::Sliding {
                size_ms,
                advance_ms,
            } => {
                duration("a SLIDING window size", size_ms, w.pos)?;
                duration("a SLIDING window advance", advance_ms, w.pos)?;
                if advance_ms > size_ms {
                    return Err(EngineError::validation(
                        format!(
                            "a SLIDING window's advance ({advance_ms}ms) must not exceed its \
                             size ({size_ms}ms)"
                        ),
                        w.pos,
                    ));
                }
                if size_ms / advance_ms > 1000 {
                    return Err(EngineError::validation(
                        format!(
                            "a SLIDING window of size {size_ms}ms every {advance_ms}ms puts each \
                             row in {} windows; at most 1000 are supported",
                            size_ms / advance_ms
                        ),
                        w.pos,
                    ));
                }
            }
            WindowKind::Session { gap_ms } => duration("a SESSION gap", gap_ms, w.pos)?,
        }
        if !plan.is_aggregate() {
            return Err(EngineError::validation(
                "WINDOW needs GROUP BY or an aggregate",
                window_pos,
            ));
        }
        if plan.distinct {
            return Err(EngineError::validation(
                "SELECT DISTINCT with a WINDOW is not supported",
                window_pos,
            ));
        }
    } else if plan.emit == EmitMode::Final {
        return Err(EngineError::validation("EMIT FINAL needs a WINDOW", None));
    }
    if let Some(t) = &plan.time {
        let bound = |what: &str, ms: i64| {
            if !(0..=MAX_DURATION_MS).contains(&ms) {
                Err(EngineError::validation(
                    format!("{what} must be between 0ms and {MAX_DURATION_MS}ms, got {ms}ms"),
                    None,
                ))
            } else {
                Ok(())
            }
        };
        bound("watermark.max_out_of_orderness", t.max_out_of_orderness_ms)?;
        bound("late.data.allowed_lateness", t.allowed_lateness_ms)?;
        if let Some(idle) = t.idle_timeout_ms {
            duration("watermark.idle_timeout", idle, None)?;
        }
        if t.allowed_lateness_ms > 0 && t.late != LateStrategy::UpdatePrevious {
            return Err(EngineError::validation(
                "late.data.allowed_lateness applies to late.data.strategy = 'update_previous' only",
                None,
            ));
        }
        if t.late == LateStrategy::UpdatePrevious
            && matches!(
                plan.window.as_ref().map(|w| w.kind),
                Some(WindowKind::Session { .. })
            )
        {
            return Err(EngineError::validation(
                "late.data.strategy = 'update_previous' is not supported for SESSION windows \
                 yet (use drop, dead_letter or include_in_next_window)",
                window_pos,
            ));
        }
        TimeFormat::parse(t.format.as_deref())
            .map_err(|message| EngineError::validation(message, None))?;
    }
    if plan.having.is_some() && !plan.is_aggregate() {
        return Err(EngineError::validation(
            "HAVING needs GROUP BY or an aggregate",
            plan.having.as_ref().and_then(|h| h.pos()),
        ));
    }
    Ok(())
}

/// The time settings in force: the plan's, or processing time for a window without
/// them. `None`: the query does not look at time.
fn time_spec(plan: &Plan) -> Option<TimeSpec> {
    let mut spec = plan.time.clone();
    if let Some(column) = plan.window.as_ref().and_then(|w| w.time_column.clone()) {
        spec.get_or_insert_with(TimeSpec::default).field = Some(column);
    }
    if spec.is_none() && plan.window.is_some() {
        spec = Some(TimeSpec {
            watermark: WatermarkStrategy::Ascending,
            ..TimeSpec::default()
        });
    }
    spec
}

impl Processor {
    /// Build a processor; constructs whose execution is not built yet are rejected here.
    pub fn new(plan: Plan) -> Result<Self> {
        validate_plan(&plan)?;
        if let (Some(column), Some(field)) = (
            plan.window.as_ref().and_then(|w| w.time_column.as_ref()),
            plan.time.as_ref().and_then(|t| t.field.as_ref()),
        ) {
            if column != field {
                return Err(EngineError::validation(
                    format!(
                        "the WINDOW's time column '{column}' differs from event.time.field \
                         '{field}': name one of them"
                    ),
                    plan.window.as_ref().and_then(|w| w.pos),
                ));
            }
        }
        let tracker = time_spec(&plan).map(|t| {
            WatermarkTracker::new(t.watermark, t.max_out_of_orderness_ms, t.idle_timeout_ms)
        });
        Ok(Processor {
            plan_json: serde_json::to_string(&plan)?.into(),
            fingerprint: plan_fingerprint(&plan)?,
            plan,
            bound: None,
            ops: Vec::new(),
            tracker,
            fired: None,
            metrics: Metrics::default(),
            dead: Vec::new(),
            ended: false,
            marks: Vec::new(),
            max_time: None,
            tables: Vec::new(),
            rebind: false,
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

    /// The current watermark, epoch millis (`None` before the first record, or when the
    /// query does not use event time).
    pub fn watermark(&self) -> Option<i64> {
        self.tracker.as_ref().and_then(WatermarkTracker::watermark)
    }

    /// Live groups (for windows: live (window, key) states, closed windows excluded)
    /// and distinct rows held in state.
    pub fn state_groups(&self) -> usize {
        self.ops.iter().map(|o| o.state_groups()).sum()
    }

    /// Heap bytes held in state (per-batch scratch buffers excluded).
    pub fn state_bytes(&self) -> usize {
        self.ops.iter().map(|o| o.state_bytes()).sum()
    }

    /// Partitions (their `_source_partition` or `_partition` ids) with records to come:
    /// each holds the watermark back until its first record, or until it is idle.
    pub fn expect_partitions(&mut self, ids: &[i64]) {
        if let Some(tracker) = self.tracker.as_mut() {
            tracker.expect(ids, now_millis());
        }
    }

    /// The earliest row time of a record still held in open state (see
    /// [`Operator::held_since`]); `None` when none is, `i64::MIN` when all are.
    pub fn held_since(&self) -> Option<i64> {
        self.ops.iter().filter_map(|o| o.held_since()).min()
    }

    /// The latest row time (event time, or processing time for windows on it) of the
    /// records read since the last call, and reset. A runtime pairs it with the input
    /// it just processed: once [`Processor::held_since`] is above it, that input holds
    /// nothing open any more. `None` when the query reads no time.
    pub fn take_max_time(&mut self) -> Option<i64> {
        self.max_time.take()
    }

    /// Take the records routed to the dead letters since the last call:
    /// `(record as JSON, reason)` each.
    pub fn take_dead_letters(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.dead)
    }

    /// The dead letters as a batch of (`record`, `reason`) strings, emptied.
    pub fn dead_letters(&mut self) -> Result<RecordBatch> {
        let dead = self.take_dead_letters();
        let schema = Arc::new(Schema::new(vec![
            Field::new("record", DataType::Utf8, false),
            Field::new("reason", DataType::Utf8, false),
        ]));
        let records = StringArray::from_iter_values(dead.iter().map(|d| d.0.as_str()));
        let reasons = StringArray::from_iter_values(dead.iter().map(|d| d.1.as_str()));
        Ok(RecordBatch::try_new(
            schema,
            vec![Arc::new(records), Arc::new(reasons)],
        )?)
    }

    /// Attach the table a join of the plan reads (`JOIN name`), replacing one attached
    /// before under that name. A table attached after the first batch takes effect from
    /// the next one.
    pub fn attach_table(&mut self, name: &str, table: SharedTable) {
        self.tables.retain(|(n, _)| n != name);
        self.tables.push((name.to_string(), table));
        self.rebind = self.bound.is_some();
    }

    /// The names of the tables the plan joins.
    pub fn joined_tables(&self) -> Vec<&str> {
        self.plan.joins.iter().map(|j| j.table.as_str()).collect()
    }

    /// The schema of what `process` and `flush` return, once the input schema is known.
    pub fn output_schema(&self) -> Option<SchemaRef> {
        self.bound.as_ref().map(|b| b.output_schema.clone())
    }

    /// Bind the plan to an input schema (done by the first `process` call otherwise).
    pub fn bind(&mut self, schema: &SchemaRef) -> Result<SchemaRef> {
        if let Some(b) = &self.bound {
            if b.input_schema.fields() == schema.fields() && !self.rebind {
                return Ok(b.output_schema.clone());
            }
        }
        // A join's binding holds its tables: it is this processor's own.
        let joins = !self.plan.joins.is_empty();
        let bound = match shared_binding(&self.plan_json, schema).filter(|_| !joins) {
            Some(bound) => bound,
            None => {
                let bound = Arc::new(bind_plan(&self.plan, schema, &self.tables)?);
                if !joins {
                    share_binding(&self.plan_json, &bound);
                }
                bound
            }
        };
        self.rebind = false;
        let ops = bound
            .ops
            .iter()
            .map(OpDef::instantiate)
            .collect::<Result<Vec<_>>>()?;
        if let Some(previous) = &self.bound {
            if previous.output_schema.fields() != bound.output_schema.fields()
                || previous.signature != bound.signature
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
            // The state carries over to the new binding's operators.
            let mut ops = ops;
            for (new, old) in ops.iter_mut().zip(&self.ops) {
                new.restore(old.snapshot())?;
            }
            self.ops = ops;
        } else {
            self.ops = ops;
        }
        let out = bound.output_schema.clone();
        self.bound = Some(bound);
        Ok(out)
    }

    /// The chunk the first operator reads: converted columns, event time and watermark.
    fn scan(&mut self, batch: &RecordBatch, ctx: &mut Ctx) -> Result<Option<Chunk>> {
        let bound = self.bound.clone().expect("bound");
        let n = batch.num_rows();
        let mut columns: Vec<ArrayRef> = if bound.conversions.is_empty() {
            batch.columns().to_vec()
        } else {
            convert_columns(batch.columns(), &bound.conversions)?
        };
        let mut times = None;
        let mut keep_rows: Option<BooleanArray> = None;
        if let Some(time) = &bound.time {
            let (event, failed) = self.event_times(batch, time, ctx.now_ms)?;
            let event: ArrayRef = Arc::new(Int64Array::from(event));
            if let Some(c) = time.column {
                if c < columns.len() {
                    columns[c] = event.clone();
                } else {
                    columns.push(event.clone());
                }
            }
            if let Some(failed) = failed {
                keep_rows = Some(failed);
            }

            if time.field.is_some() || time.windowed {
                times = Some((event, time.partition));
            }
        }
        for &r in &bound.raw {
            columns.push(batch.column(r).clone());
        }
        let mut chunk = Chunk::new(columns, n);
        if let Some((event, partition)) = times {
            let tracker = self.tracker.as_mut().expect("a timed query has a tracker");
            let partitions = partition.map(|p| batch.column(p).as_ref());
            let values = event
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("event time is Int64");
            // Rows whose event time failed do not move the watermark.
            match &keep_rows {
                None => {
                    self.max_time = max_of(self.max_time, values);
                    tracker.advance(values.values(), partitions, ctx.now_ms, &mut self.marks)?
                }
                Some(keep) => {
                    let kept = arrow::compute::filter(values, keep)?;
                    let kept_parts = match partitions {
                        Some(p) => Some(arrow::compute::filter(p, keep)?),
                        None => None,
                    };
                    let kept = kept.as_any().downcast_ref::<Int64Array>().expect("Int64");
                    self.max_time = max_of(self.max_time, kept);
                    tracker.advance(
                        kept.values(),
                        kept_parts.as_deref(),
                        ctx.now_ms,
                        &mut self.marks,
                    )?;
                    // Spread back over every row (failed rows are removed below).
                    let mut all = vec![i64::MIN; n];
                    let mut k = 0;
                    for (i, slot) in all.iter_mut().enumerate() {
                        if keep.value(i) {
                            *slot = self.marks[k];
                            k += 1;
                        }
                    }
                    self.marks = all;
                }
            }
            // Only window operators read the rows' times; other queries just move the
            // watermark (`Query.watermark`).
            if bound.time.as_ref().is_some_and(|t| t.windowed) {
                chunk.times = Some(Times {
                    event,
                    watermark: Arc::new(Int64Array::from(std::mem::take(&mut self.marks))),
                    row: Arc::new(UInt32Array::from_iter_values(0..n as u32)),
                });
            }
        }
        if let Some(keep) = &keep_rows {
            chunk = chunk.filter(keep, None)?;
        }
        if let Some(needed) = &bound.needed {
            chunk.columns = needed.iter().map(|&i| chunk.columns[i].clone()).collect();
        }
        Ok(Some(chunk))
    }

    /// Event time of every row; rows whose event time cannot be read fail the call or
    /// (under `dead_letter`) are routed and masked out (the mask is returned).
    fn event_times(
        &mut self,
        batch: &RecordBatch,
        time: &TimeDef,
        now_ms: i64,
    ) -> Result<(Vec<i64>, Option<BooleanArray>)> {
        let n = batch.num_rows();
        let Some((index, name)) = &time.field else {
            return Ok((vec![now_ms; n], None));
        };
        let mut out = Vec::new();
        let mut failures: Vec<TimeFailure> = Vec::new();
        parse_event_times(
            batch.column(*index).as_ref(),
            &time.format,
            &mut out,
            &mut failures,
        );
        // Beyond years -9999..=9999 is not an instant to compute windows with.
        for (row, &t) in out.iter().enumerate() {
            if !(-MAX_EVENT_TIME_MS..=MAX_EVENT_TIME_MS).contains(&t)
                && failures.binary_search_by_key(&row, |f| f.row).is_err()
            {
                failures.push(TimeFailure {
                    row,
                    kind: crate::time::parse::TimeErrorKind::InvalidTimestamp,
                    value: t.to_string(),
                });
            }
        }
        if failures.is_empty() {
            return Ok((out, None));
        }
        failures.sort_by_key(|f| f.row);
        match time.on_error {
            TimeErrorStrategy::Fail => {
                Err(failures[0].to_error(name, &time.format, time.fields.clone()))
            }
            TimeErrorStrategy::DeadLetter => {
                let mut keep = vec![true; n];
                let mut rows = Vec::with_capacity(failures.len());
                let mut reasons = Vec::with_capacity(failures.len());
                for f in &failures {
                    keep[f.row] = false;
                    rows.push(f.row as u32);
                    reasons.push(f.to_error(name, &time.format, Vec::new()).to_string());
                }
                self.route(batch, &rows, reasons)?;
                Ok((out, Some(BooleanArray::from(keep))))
            }
        }
    }

    /// Route rows of `batch` to the dead letters with their reasons.
    fn route(&mut self, batch: &RecordBatch, rows: &[u32], reasons: Vec<String>) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let indices = UInt32Array::from(rows.to_vec());
        let picked = arrow::compute::take_record_batch(batch, &indices)?;
        let records = records_as_json(&picked);
        self.metrics.dead_lettered += rows.len() as u64;
        self.dead.extend(records.into_iter().zip(reasons));
        Ok(())
    }

    /// Pass `chunk` through the operators from `from` on.
    fn run_ops(&mut self, from: usize, mut chunk: Chunk, ctx: &mut Ctx) -> Result<Chunk> {
        for op in &mut self.ops[from..] {
            chunk = op.process(chunk, ctx)?;
        }
        Ok(chunk)
    }

    /// Offer the watermark to the operators (when it moved, or at the end of input);
    /// returns what they emit.
    fn fire(&mut self, end: bool, ctx: &mut Ctx, outputs: &mut Vec<Chunk>) -> Result<()> {
        let watermark = if end {
            Some(i64::MAX)
        } else {
            self.watermark()
        };
        let Some(watermark) = watermark else {
            return Ok(());
        };
        if !end && self.fired.is_some_and(|f| f >= watermark) {
            return Ok(());
        }
        self.fired = Some(watermark);
        for i in 0..self.ops.len() {
            let emitted = if end {
                self.ops[i].flush(ctx)?
            } else {
                self.ops[i].on_watermark(watermark, ctx)?
            };
            if let Some(chunk) = emitted {
                outputs.push(self.run_ops(i + 1, chunk, ctx)?);
            }
        }
        Ok(())
    }

    /// Count what a call's context collected, route its dead letters.
    fn settle(&mut self, batch: Option<&RecordBatch>, ctx: &mut Ctx) -> Result<()> {
        self.metrics.filtered_out += ctx.filtered_out;
        self.metrics.late_dropped += ctx.late_dropped;
        self.metrics.join_misses += ctx.join_misses;
        if !ctx.dead.is_empty() {
            let (rows, reasons): (Vec<u32>, Vec<String>) =
                std::mem::take(&mut ctx.dead).into_iter().unzip();
            if let Some(batch) = batch {
                self.route(batch, &rows, reasons)?;
            }
        }
        Ok(())
    }

    /// Output chunks as one batch of the output schema.
    fn assemble(&mut self, outputs: Vec<Chunk>) -> Result<RecordBatch> {
        let schema = self
            .output_schema()
            .unwrap_or_else(|| Arc::new(Schema::empty()));
        let mut batches = Vec::with_capacity(outputs.len());
        for chunk in outputs {
            if chunk.rows == 0 && !batches.is_empty() {
                continue;
            }
            batches.push(RecordBatch::try_new_with_options(
                schema.clone(),
                chunk.columns,
                &RecordBatchOptions::new().with_row_count(Some(chunk.rows)),
            )?);
        }
        let out = match batches.len() {
            0 => RecordBatch::new_empty(schema),
            1 => batches.pop().expect("one batch"),
            _ => arrow::compute::concat_batches(&schema, &batches)?,
        };
        self.metrics.records_out += out.num_rows() as u64;
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
        self.metrics.batches_in += 1;
        let mut ctx = Ctx {
            now_ms: now_millis(),
            ..Ctx::default()
        };
        let mut outputs = Vec::new();
        if batch.num_rows() == 0 {
            // Nothing evaluated: a constant that fails (`1 % 0`) fails only when a row
            // needs it, as on the per-record path. Idle partitions may still release
            // the watermark.
            if let Some(t) = self.tracker.as_mut() {
                t.tick(ctx.now_ms);
            }
        } else if let Some(chunk) = self.scan(batch, &mut ctx)? {
            // Counted once the batch's event time was read (a failing batch is not in).
            self.metrics.records_in += batch.num_rows() as u64;
            let out = self.run_ops(0, chunk, &mut ctx)?;
            outputs.push(out);
        }
        if self.bound.as_ref().is_some_and(|b| {
            b.time
                .as_ref()
                .is_some_and(|t| t.windowed && t.field.is_none())
        }) {
            // Processing time: the clock moves the watermark, with or without rows.
            if let Some(t) = self.tracker.as_mut() {
                t.observe(ctx.now_ms);
            }
        }
        if self
            .bound
            .as_ref()
            .is_some_and(|b| b.time.as_ref().is_some_and(|t| t.windowed))
        {
            self.fire(false, &mut ctx, &mut outputs)?;
        }
        self.settle(Some(batch), &mut ctx)?;
        self.assemble(outputs)
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

    /// End of input: close every window and return what is left. `EMIT CHANGES`
    /// without a window already emitted every update.
    pub fn flush(&mut self) -> Result<RecordBatch> {
        if self.ended || self.bound.is_none() {
            self.ended = true;
            return self.flush_empty();
        }
        self.ended = true;
        let mut ctx = Ctx {
            now_ms: now_millis(),
            ..Ctx::default()
        };
        let mut outputs = Vec::new();
        self.fire(true, &mut ctx, &mut outputs)?;
        self.settle(None, &mut ctx)?;
        self.assemble(outputs)
    }

    /// Serialise the state (and the input schema it was built for) to bytes, framed
    /// with a format version, the plan's fingerprint and a checksum.
    pub fn snapshot(&self) -> Result<Vec<u8>> {
        let input_schema = match &self.bound {
            Some(b) => schema_to_bytes(&b.input_schema)?,
            None => Vec::new(),
        };
        let snapshot = Snapshot {
            input_schema,
            ops: self.ops.iter().map(|o| o.snapshot()).collect(),
            watermark: self.tracker.as_ref().map(WatermarkTracker::state),
            fired: self.fired,
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
        let mut restored = Processor::new(self.plan.clone())?;
        restored.tables = self.tables.clone();
        restored.metrics = snapshot.metrics;
        restored.fired = snapshot.fired;
        match (restored.tracker.as_mut(), snapshot.watermark) {
            (Some(t), Some(state)) => t.restore(state),
            (None, None) => {}
            _ => return Err(snapshot_error("its watermark does not fit this query")),
        }
        if !snapshot.input_schema.is_empty() {
            let schema = schema_from_bytes(&snapshot.input_schema)
                .map_err(|e| snapshot_error(format!("its input schema does not decode: {e}")))?;
            restored.bind(&schema).map_err(|e| {
                snapshot_error(format!("its input schema does not fit this query: {e}"))
            })?;
            if restored.ops.len() != snapshot.ops.len() {
                return Err(snapshot_error("its operators do not fit this query"));
            }
            for (op, state) in restored.ops.iter_mut().zip(snapshot.ops) {
                op.restore(state)?;
            }
        } else if !snapshot.ops.is_empty() {
            return Err(snapshot_error("it holds state without an input schema"));
        }
        Ok(restored)
    }
}

/// Records as JSON objects, one string each (dead letters): every field, NULL ones
/// too, non-finite doubles as `NaN`/`Infinity` (the sinks' JSON), and times, dates and
/// timestamps as their integer value, which any value of them has (a value beyond the
/// calendar, which cannot be shown as a date, is often why a record is here).
fn records_as_json(batch: &RecordBatch) -> Vec<String> {
    let columns: Result<Vec<ArrayRef>> = batch
        .columns()
        .iter()
        .map(|c| {
            let as_int = match c.data_type() {
                DataType::Timestamp(_, _) | DataType::Date64 | DataType::Time64(_) => {
                    Some(DataType::Int64)
                }
                DataType::Date32 | DataType::Time32(_) => Some(DataType::Int32),
                _ => None,
            };
            Ok(match as_int {
                Some(t) => arrow::compute::cast(c.as_ref(), &t)?,
                None => c.clone(),
            })
        })
        .collect();
    let encoded = columns.and_then(|columns| {
        let fields: Vec<Field> = batch
            .schema()
            .fields()
            .iter()
            .zip(&columns)
            .map(|(f, c)| Field::new(f.name(), c.data_type().clone(), true))
            .collect();
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
        velostream_codec::json::encode(&batch).map_err(|e| EngineError::Data(e.to_string()))
    });
    match encoded {
        Ok(bytes) => String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_string)
            .collect(),
        Err(e) => (0..batch.num_rows())
            .map(|_| {
                serde_json::json!({ "error": format!("the record cannot be written as JSON: {e}") })
                    .to_string()
            })
            .collect(),
    }
}

/// A snapshot is framed: magic, format version, the plan's fingerprint, the payload's
/// length and its CRC-32 (which catches every single-bit flip), then the payload.
const SNAPSHOT_MAGIC: &[u8; 4] = b"VSNP";
const SNAPSHOT_VERSION: u16 = 4;
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

fn schema_to_bytes(schema: &SchemaRef) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    {
        let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut buf, schema)?;
        w.finish()?;
    }
    Ok(buf)
}

fn schema_from_bytes(bytes: &[u8]) -> Result<SchemaRef> {
    // The stream's first message length must lie within the bytes (a corrupted length
    // would make the reader allocate it before finding out).
    let word = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| i32::from_le_bytes(b.try_into().expect("4 bytes")))
    };
    let length = match word(0) {
        Some(-1) => word(4),
        other => other,
    };
    if !length.is_some_and(|n| n >= 0 && (n as usize) <= bytes.len()) {
        return Err(snapshot_error(
            "its input schema's length does not fit its bytes",
        ));
    }
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)?;
    Ok(reader.schema())
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
            SelectItem::Star { pos, relation, .. } => {
                if scope.agg_offset.is_some() {
                    return Err(EngineError::validation(
                        "SELECT * cannot be combined with GROUP BY or aggregates",
                        *pos,
                    ));
                }
                // `t.*`: the columns of one relation of a join.
                let columns = match relation {
                    Some(r) if !scope.relations.is_empty() => scope
                        .relations
                        .iter()
                        .find(|x| x.name.eq_ignore_ascii_case(r))
                        .map(|x| x.columns.clone())
                        .ok_or_else(|| {
                            EngineError::validation(
                                format!("unknown relation '{r}' in {r}.*"),
                                *pos,
                            )
                        })?,
                    _ => 0..scope.schema.fields().len(),
                };
                for i in columns {
                    let f = scope.schema.field(i);
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

/// System columns are not part of `SELECT *`.
pub fn is_system_column(name: &str) -> bool {
    matches!(
        name,
        "_event_time"
            | "_timestamp"
            | "_partition"
            | "_offset"
            | "_window_start"
            | "_window_end"
            | "_source_partition"
            | "_topic"
            | "_key"
            | "_kafka_timestamp"
            | "_headers"
    )
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

/// How the scan reads time, and the scope's fields with `_event_time` in place.
fn bind_time(
    plan: &Plan,
    original: &SchemaRef,
    fields: &mut Vec<Field>,
) -> Result<Option<TimeDef>> {
    let Some(spec) = time_spec(plan) else {
        return Ok(None);
    };
    let format = TimeFormat::parse(spec.format.as_deref())
        .map_err(|message| EngineError::validation(message, None))?;
    let names: Vec<String> = original.fields().iter().map(|f| f.name().clone()).collect();
    let field = match &spec.field {
        Some(name) => match resolve_column(original, name) {
            Some(i) => Some((i, name.clone())),
            None => {
                return Err(EngineError::event_time(
                    crate::time::parse::TimeErrorKind::MissingField,
                    name,
                    "",
                    &format,
                    names,
                ))
            }
        },
        None => None,
    };
    let column = if field.is_some() {
        let event = Field::new("_event_time", DataType::Int64, false);
        match fields.iter().position(|f| f.name() == "_event_time") {
            Some(i) => {
                fields[i] = event;
                Some(i)
            }
            None => {
                fields.push(event);
                Some(fields.len() - 1)
            }
        }
    } else {
        None
    };
    Ok(Some(TimeDef {
        field,
        format,
        on_error: spec.on_error,
        // The watermark is tracked per source partition: `_source_partition` when the
        // runtime numbers the partitions of several topics or sources, else `_partition`.
        partition: ["_source_partition", "_partition"].iter().find_map(|name| {
            original
                .index_of(name)
                .ok()
                .filter(|&i| original.field(i).data_type().is_integer())
        }),
        column,
        windowed: plan.window.is_some(),
        fields: names,
    }))
}

/// A join of the plan with its table, before its operator is made.
struct PendingJoin {
    def: JoinDef,
    /// Where the table's columns start in the joined scope.
    start: usize,
}

/// The joined scope's fields and relations (the input's, then each table's), and the
/// joins bound to it. No joins: the input's fields alone, no relations.
fn bind_joins(
    plan: &Plan,
    fields: &mut Vec<Field>,
    tables: &[(String, SharedTable)],
) -> Result<(Vec<Relation>, Vec<PendingJoin>)> {
    if plan.joins.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let mut relations = vec![Relation {
        name: plan
            .input_relation
            .clone()
            .unwrap_or_else(|| plan.input.clone()),
        columns: 0..fields.len(),
    }];
    let mut found = Vec::new();
    for join in &plan.joins {
        let table = tables
            .iter()
            .find(|(n, _)| *n == join.table)
            .or_else(|| {
                tables
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(&join.table))
            })
            .map(|(_, t)| t.clone())
            .ok_or_else(|| {
                EngineError::validation(
                    format!(
                        "JOIN {}: no table of that name is attached (attach it with \
                         Query.attach_table('{}', data))",
                        join.table, join.table
                    ),
                    join.pos,
                )
            })?;
        let (schema, key_columns) = {
            let t = table.read().map_err(|_| {
                EngineError::Usage(format!(
                    "the table {} is unusable: an internal error interrupted an update of it",
                    join.table
                ))
            })?;
            (t.schema().clone(), t.key_columns().to_vec())
        };
        let start = fields.len();
        fields.extend(
            schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true)),
        );
        relations.push(Relation {
            name: join.relation.clone(),
            columns: start..fields.len(),
        });
        found.push((table, schema, key_columns, start));
    }
    let joined = Schema::new(fields.clone());
    let mut pending = Vec::with_capacity(found.len());
    for (k, (join, (table, schema, key_columns, start))) in plan.joins.iter().zip(found).enumerate()
    {
        // ON reads the input and the tables joined before this one.
        let scope = Scope::joined(&joined, &relations[..=k]);
        let on_column = |key: &crate::plan::JoinKey| {
            resolve_column(&schema, &key.table).ok_or_else(|| {
                EngineError::validation(
                    format!(
                        "JOIN {}: the table has no column '{}'; its columns: {}",
                        join.table,
                        key.table,
                        column_names(&schema)
                    ),
                    key.pos.or(join.pos),
                )
            })
        };
        let mut on: Vec<(usize, &crate::plan::JoinKey)> = Vec::new();
        for key in &join.on {
            on.push((on_column(key)?, key));
        }
        let mut keyed: Vec<usize> = key_columns
            .iter()
            .map(|k| schema.index_of(k).expect("key columns are table columns"))
            .collect();
        let mut named: Vec<usize> = on.iter().map(|(c, _)| *c).collect();
        keyed.sort_unstable();
        named.sort_unstable();
        named.dedup();
        if keyed != named || on.len() != key_columns.len() {
            return Err(EngineError::validation(
                format!(
                    "JOIN {}: a stream-table join looks rows up by the table's key ({}); ON \
                     must equate each key column once, and only them (it names {})",
                    join.table,
                    key_columns.join(", "),
                    on.iter()
                        .map(|(c, _)| schema.field(*c).name().as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                join.pos,
            ));
        }
        let mut probes = Vec::with_capacity(key_columns.len());
        let mut probe_text = Vec::with_capacity(key_columns.len());
        for key in &key_columns {
            let c = schema.index_of(key).expect("key columns are table columns");
            let (_, on_key) = on.iter().find(|(i, _)| *i == c).expect("checked above");
            let (probe, dt) = bind(&on_key.stream, &scope)?;
            let key_type = schema.field(c).data_type();
            if !crate::table::probe_fits(&dt, key_type) {
                return Err(EngineError::validation(
                    format!(
                        "JOIN {}: ON compares {} with the key column {} of type {}; cast it \
                         to that type",
                        join.table,
                        crate::expr::types::sql_name(&dt),
                        key,
                        crate::expr::types::sql_name(key_type)
                    ),
                    on_key.pos.or(join.pos),
                ));
            }
            probes.push(probe);
            probe_text.push(format!("{}.{key}", join.relation));
        }
        let missing = join.missing.unwrap_or(match join.kind {
            JoinKind::Left => MissingStrategy::EmitWithNulls,
            JoinKind::Inner => MissingStrategy::SkipRecord,
        });
        let mut defaults: Vec<Option<ArrayRef>> = vec![None; schema.fields().len()];
        for (column, text) in &join.defaults {
            if missing != MissingStrategy::UseDefaults {
                return Err(EngineError::validation(
                    format!(
                        "join.defaults.{column} applies with 'join.missing.strategy' = \
                         'use_defaults'"
                    ),
                    join.pos,
                ));
            }
            let Some(c) = resolve_column(&schema, column) else {
                return Err(EngineError::validation(
                    format!(
                        "join.defaults.{column}: the table {} has no column '{column}'; its \
                         columns: {}",
                        join.table,
                        column_names(&schema)
                    ),
                    join.pos,
                ));
            };
            let to = schema.field(c).data_type();
            let value = arrow::array::StringArray::from(vec![text.as_str()]);
            let options = arrow::compute::CastOptions {
                safe: false,
                ..Default::default()
            };
            let cast = arrow::compute::cast_with_options(&value, to, &options).map_err(|e| {
                EngineError::validation(
                    format!(
                        "join.defaults.{column} = '{text}' is not a value of the column's type \
                         {}: {e}",
                        crate::expr::types::sql_name(to)
                    ),
                    join.pos,
                )
            })?;
            defaults[c] = Some(cast);
        }
        if missing == MissingStrategy::WaitAndRetry
            && !(0..=crate::processor::MAX_DURATION_MS).contains(&join.wait_timeout_ms)
        {
            return Err(EngineError::validation(
                format!(
                    "join.wait.timeout must be between 0ms and {MAX_DURATION_MS}ms, got {}ms",
                    join.wait_timeout_ms
                ),
                join.pos,
            ));
        }
        pending.push(PendingJoin {
            def: JoinDef {
                name: join.table.clone(),
                table,
                probes,
                probe_text,
                take: Vec::new(),
                types: schema
                    .fields()
                    .iter()
                    .map(|f| f.data_type().clone())
                    .collect(),
                kind: join.kind,
                missing,
                defaults,
                wait_timeout: std::time::Duration::from_millis(join.wait_timeout_ms.max(0) as u64),
                keep: None,
            },
            start,
        });
    }
    Ok((relations, pending))
}

fn column_names(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Put the joins first in `ops`: each takes the table columns that the first operator
/// after them (`reads`, or the later joins' keys) reads; the last one narrows to
/// `needed` (which the scan would narrow to without joins).
fn place_joins(
    ops: &mut Vec<OpDef>,
    joins: Vec<PendingJoin>,
    mut reads: Vec<usize>,
    needed: &mut Option<Vec<usize>>,
) {
    if joins.is_empty() {
        return;
    }
    for j in &joins {
        for p in &j.def.probes {
            p.columns(&mut reads);
        }
    }
    reads.sort_unstable();
    reads.dedup();
    let last = joins.len() - 1;
    let defs = joins.into_iter().enumerate().map(|(k, mut j)| {
        let end = j.start + j.def.types.len();
        j.def.take = reads
            .iter()
            .filter(|&&c| c >= j.start && c < end)
            .map(|&c| c - j.start)
            .collect();
        if k == last {
            j.def.keep = needed.take();
        }
        OpDef::Join(Arc::new(j.def))
    });
    ops.splice(0..0, defs);
}

/// The columns the first operator reads: `needed`, and the WHERE's.
fn first_reads(filter: &Option<PhysExpr>, needed: &[usize]) -> Vec<usize> {
    let mut reads = needed.to_vec();
    if let Some(f) = filter {
        f.columns(&mut reads);
    }
    reads
}

fn bind_plan(plan: &Plan, original: &SchemaRef, tables: &[(String, SharedTable)]) -> Result<Bound> {
    let mut conversions = Vec::new();
    let mut fields: Vec<Field> = original
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
    let time = bind_time(plan, original, &mut fields)?;
    let (relations, joins) = bind_joins(plan, &mut fields, tables)?;
    let schema = Schema::new(fields);
    let scope = Scope::joined(&schema, &relations);
    let mut filter = match &plan.filter {
        Some(f) => {
            let (e, dt) = bind(f, &scope)?;
            Some(condition(e, &dt, "WHERE", f.pos())?)
        }
        None => None,
    };
    let mut ops = Vec::new();

    if !plan.is_aggregate() {
        let (mut projections, mut out_fields) = bind_select(plan, &scope)?;
        let mut needed = narrow_inputs(&mut projections.iter_mut().collect::<Vec<_>>());
        // A converted column selected as it is leaves in its own layout (`SELECT *`
        // returns the input's columns unchanged): the original is appended to the
        // extended input and selected instead.
        let mut raw = Vec::new();
        let extended = schema.fields().len();
        for (out, projection) in projections.iter_mut().enumerate() {
            if let (PhysExpr::Column(k), true) = (&*projection, joins.is_empty()) {
                let input = needed[*k];
                if conversions.iter().any(|(i, _)| *i == input) {
                    raw.push(input);
                    needed.push(extended + raw.len() - 1);
                    *projection = PhysExpr::Column(needed.len() - 1);
                    out_fields[out] = out_fields[out]
                        .clone()
                        .with_data_type(original.field(input).data_type().clone());
                }
            }
        }
        let reads = first_reads(&filter, &needed);
        let mut needed = match filter.take() {
            Some(predicate) => {
                ops.push(OpDef::Filter(Arc::new(FilterDef {
                    predicate,
                    keep: Some(needed),
                    counts: true,
                })));
                None
            }
            None => Some(needed),
        };
        let output_schema = Arc::new(Schema::new(out_fields));
        ops.push(OpDef::Project(Arc::new(ProjectDef { exprs: projections })));
        if plan.distinct {
            ops.push(OpDef::Distinct(
                output_schema
                    .fields()
                    .iter()
                    .map(|f| f.data_type().clone())
                    .collect(),
            ));
        }
        place_joins(&mut ops, joins, reads, &mut needed);
        return Ok(Bound {
            input_schema: original.clone(),
            conversions,
            time,
            raw,
            needed,
            ops,
            output_schema,
            signature: None,
        });
    }

    // Aggregation: keys and aggregate arguments read the input; SELECT and HAVING read
    // the post-aggregation columns (keys, aggregates, then the window's bounds).
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
    let mut aggs = Vec::with_capacity(plan.aggregates.len());
    for (j, a) in plan.aggregates.iter().enumerate() {
        let bound_arg = match &a.arg {
            Some(arg) => Some(bind(arg, &scope)?),
            None => None,
        };
        let arg_type = bound_arg.as_ref().map(|(_, t)| t.clone());
        // Probe the accumulator for the type its argument is cast to, and its output.
        let probe = crate::aggregate::Accumulator::new(a.func, arg_type.as_ref(), a.pos)?;
        let arg = match bound_arg {
            Some((e, t)) => {
                let target = probe.input_type.clone().unwrap_or_else(|| t.clone());
                Some(cast_to(e, &t, &target, a.pos)?)
            }
            None => None,
        };
        aggs.push(AggDef {
            func: a.func,
            arg,
            arg_type,
            pos: a.pos,
        });
        post_fields.push(Field::new(
            format!("__agg{j}"),
            probe.output_type.clone(),
            true,
        ));
    }
    let window = plan.window.as_ref().map(|_| post_fields.len());
    if window.is_some() {
        post_fields.push(Field::new("_window_start", DataType::Int64, false));
        post_fields.push(Field::new("_window_end", DataType::Int64, false));
    }
    let post_schema = Schema::new(post_fields);
    let post_scope = Scope {
        schema: &post_schema,
        agg_offset: Some(plan.group_by.len()),
        window,
        relations: &[],
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
    input_exprs.extend(aggs.iter_mut().filter_map(|a| a.arg.as_mut()));
    let needed = narrow_inputs(&mut input_exprs);
    let reads = first_reads(&filter, &needed);
    let mut needed = match filter.take() {
        Some(predicate) => {
            ops.push(OpDef::Filter(Arc::new(FilterDef {
                predicate,
                keep: Some(needed),
                counts: true,
            })));
            None
        }
        None => Some(needed),
    };
    let signature = Some((
        key_types.clone(),
        aggs.iter().map(|a| a.arg_type.clone()).collect(),
    ));
    let grouping = Arc::new(GroupingDef {
        keys,
        key_types,
        aggs,
    });
    match &plan.window {
        Some(w) => {
            let spec = time_spec(plan).unwrap_or_default();
            ops.push(OpDef::Window(Arc::new(WindowDef {
                grouping,
                kind: w.kind,
                emit: plan.emit,
                late: spec.late,
                allowed_lateness_ms: spec.allowed_lateness_ms,
            })));
        }
        None => ops.push(OpDef::Aggregate(grouping)),
    }
    if let Some(predicate) = having {
        ops.push(OpDef::Filter(Arc::new(FilterDef {
            predicate,
            keep: None,
            counts: false,
        })));
    }
    ops.push(OpDef::Project(Arc::new(ProjectDef { exprs: projections })));
    place_joins(&mut ops, joins, reads, &mut needed);
    Ok(Bound {
        input_schema: original.clone(),
        conversions,
        time,
        raw: Vec::new(),
        needed,
        ops,
        output_schema: Arc::new(Schema::new(fields)),
        signature,
    })
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
