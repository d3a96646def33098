//! Operators: the steps a query is made of, behind one trait (DataFusion's
//! `ExecutionPlan`, Arroyo's `ArrowOperator`).
//!
//! A bound plan is a chain of operators: lookup joins, filter, aggregate, window
//! aggregate, project, distinct. Each takes a [`Chunk`] and returns the
//! chunk it emits; stateful ones also react to the watermark (closing windows), to the end
//! of input, and snapshot and restore their state. A new operator is a new module that
//! implements [`Operator`], wired by `processor::bind_plan`, not a branch in a driver loop.

use arrow::array::{Array, ArrayRef, BooleanArray};
use arrow::compute::FilterBuilder;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::groups::GroupKeys;

pub mod aggregate;
pub mod distinct;
pub mod filter;
pub mod join;
pub mod project;

/// Columns of equal length flowing between operators (a record batch without a schema:
/// operators are bound to their input's layout once, at bind time).
#[derive(Debug, Clone)]
pub struct Chunk {
    pub columns: Vec<ArrayRef>,
    pub rows: usize,
    /// The rows' event time and watermark, when the query has a window.
    pub times: Option<Times>,
}

/// Per-row time columns carried beside a chunk's columns (filtered with them).
#[derive(Debug, Clone)]
pub struct Times {
    /// Event time, epoch millis (Int64, no NULLs).
    pub event: ArrayRef,
    /// The watermark left by the records before this one (Int64, `i64::MIN` when there
    /// is none yet): a record is judged against it (SPEC section 12).
    pub watermark: ArrayRef,
    /// The row's index in its input batch (UInt32), to route it to the dead letters.
    pub row: ArrayRef,
}

impl Chunk {
    /// A chunk of `columns` with `rows` rows and no time columns.
    pub fn new(columns: Vec<ArrayRef>, rows: usize) -> Self {
        Chunk {
            columns,
            rows,
            times: None,
        }
    }

    /// Keep the rows where `mask` is true (NULL counts as false), and of the columns
    /// only those listed in `keep` (all of them when `None`).
    pub fn filter(self, mask: &BooleanArray, keep: Option<&[usize]>) -> Result<Chunk> {
        let columns: Vec<ArrayRef> = match keep {
            Some(keep) => keep.iter().map(|&i| self.columns[i].clone()).collect(),
            None => self.columns,
        };
        if mask.null_count() == 0 && mask.true_count() == self.rows {
            return Ok(Chunk {
                columns,
                rows: self.rows,
                times: self.times,
            });
        }
        let mut builder = FilterBuilder::new(mask);
        if columns.len() > 1 || self.times.is_some() {
            builder = builder.optimize();
        }
        let predicate = builder.build();
        let filter = |c: &ArrayRef| predicate.filter(c.as_ref());
        let columns = columns.iter().map(filter).collect::<Result<_, _>>()?;
        let times = match self.times {
            Some(t) => Some(Times {
                event: filter(&t.event)?,
                watermark: filter(&t.watermark)?,
                row: filter(&t.row)?,
            }),
            None => None,
        };
        Ok(Chunk {
            columns,
            rows: predicate.count(),
            times,
        })
    }
}

/// What a call into the operators collects besides their output.
#[derive(Debug, Default)]
pub struct Ctx {
    /// Processing time of the call, epoch millis (`NOW()`, `_timestamp`).
    pub now_ms: i64,
    /// Rows removed by WHERE.
    pub filtered_out: u64,
    /// Late records dropped (and counted).
    pub late_dropped: u64,
    /// Stream rows whose key a joined table did not hold.
    pub join_misses: u64,
    /// Records to route to the dead letters: (row of the input batch, reason).
    pub dead: Vec<(u32, String)>,
}

/// The state of one operator, in memory or in a snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum OpState {
    /// A stateless operator.
    None,
    /// Group table and one state per aggregate.
    Groups {
        keys: GroupKeys,
        accumulators: Vec<crate::aggregate::AggState>,
    },
    /// The rows a DISTINCT has seen.
    Distinct(GroupKeys),
    /// A window aggregate's open windows.
    Window(Box<crate::window::WindowState>),
}

impl OpState {
    /// The variant's name, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            OpState::None => "no state",
            OpState::Groups { .. } => "group-by state",
            OpState::Distinct(_) => "distinct set",
            OpState::Window(_) => "window state",
        }
    }
}

/// One step of a query.
pub trait Operator: Send {
    /// Take a chunk; return the chunk this operator emits because of it.
    fn process(&mut self, chunk: Chunk, ctx: &mut Ctx) -> Result<Chunk>;

    /// The watermark reached `watermark`: emit what closes (windows).
    fn on_watermark(&mut self, _watermark: i64, _ctx: &mut Ctx) -> Result<Option<Chunk>> {
        Ok(None)
    }

    /// End of input: emit everything still held.
    fn flush(&mut self, _ctx: &mut Ctx) -> Result<Option<Chunk>> {
        Ok(None)
    }

    /// A copy of the state (for a snapshot).
    fn snapshot(&self) -> OpState {
        OpState::None
    }

    /// Replace the state (from a snapshot, or from this operator's previous binding).
    /// A state that does not fit is refused and the operator left as it was.
    fn restore(&mut self, state: OpState) -> Result<()> {
        match state {
            OpState::None => Ok(()),
            other => Err(crate::error::EngineError::Snapshot(format!(
                "it holds {} where this query keeps none",
                other.kind()
            ))),
        }
    }

    /// Live groups held (for windows: live (window, key) states).
    fn state_groups(&self) -> usize {
        0
    }

    /// Heap bytes of state.
    fn state_bytes(&self) -> usize {
        0
    }

    /// The earliest time (event time, or processing time for windows on it) of a record
    /// whose output rows are still to come because it is held in open state: a window
    /// not yet closed, a session, a running aggregate. `None` when no record is held;
    /// `i64::MIN` when every record read so far is held (a GROUP BY without a window
    /// keeps its aggregates to the end of the input). A record older than this has given
    /// every row it ever will, which is what a source may commit (SPEC section 1).
    fn held_since(&self) -> Option<i64> {
        None
    }
}

/// Evaluate a boolean predicate over a chunk into a mask.
pub fn eval_mask(
    predicate: &crate::expr::PhysExpr,
    chunk: &Chunk,
    now_ms: i64,
) -> Result<BooleanArray> {
    let input = crate::expr::Input {
        columns: &chunk.columns,
        num_rows: chunk.rows,
        now_ms,
    };
    let mask = predicate.eval(&input)?.into_array(chunk.rows)?;
    Ok(mask
        .as_any()
        .downcast_ref::<BooleanArray>()
        .expect("conditions are boolean after binding")
        .clone())
}
