//! The physical plan as handed over by the Python planner (`docs/plan-format.md`):
//! typed serde data (enums for the emit mode, aggregate functions, window kinds, time
//! settings; column references that name their relation), deserialised once from JSON
//! and bound to an input schema when the first batch arrives.

use serde::{Deserialize, Serialize};

use crate::error::Pos;

/// One query: filter, projection and (optionally) aggregation of a single input stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    #[serde(default = "one")]
    pub version: u32,
    pub input: String,
    /// The name column references use for the input (its alias, else `input`); absent:
    /// `input`.
    #[serde(default)]
    pub input_relation: Option<String>,
    /// Stream-table joins, applied in order before WHERE.
    #[serde(default)]
    pub joins: Vec<Join>,
    #[serde(default)]
    pub filter: Option<Expr>,
    pub select: Vec<SelectItem>,
    #[serde(default)]
    pub distinct: bool,
    #[serde(default)]
    pub group_by: Vec<Expr>,
    #[serde(default)]
    pub aggregates: Vec<Aggregate>,
    #[serde(default)]
    pub having: Option<Expr>,
    #[serde(default)]
    pub emit: EmitMode,
    #[serde(default)]
    pub window: Option<Window>,
    /// Event time, watermarks and late data; absent: processing time.
    #[serde(default)]
    pub time: Option<TimeSpec>,
}

fn one() -> u32 {
    1
}

/// When an aggregating query emits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmitMode {
    /// Every input row emits its group's (or window's) updated aggregate.
    #[default]
    Changes,
    /// One row per (window, group) when the watermark passes the window's end.
    Final,
}

/// A `WINDOW` clause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    #[serde(flatten)]
    pub kind: WindowKind,
    /// `WINDOW TUMBLING(5m, ts)`: the column holding the rows' time.
    #[serde(default)]
    pub time_column: Option<String>,
    #[serde(default)]
    pub pos: Option<(u32, u32)>,
}

/// The kinds of windows (SPEC section 12 gives their exact boundaries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WindowKind {
    /// `[k·size, (k+1)·size)`.
    Tumbling { size_ms: i64 },
    /// Windows of `size_ms` starting at every multiple of `advance_ms`.
    Sliding { size_ms: i64, advance_ms: i64 },
    /// Per group: rows closer than `gap_ms` to each other.
    Session { gap_ms: i64 },
}

/// How the watermark follows event time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatermarkStrategy {
    /// Max event time seen minus `max_out_of_orderness_ms`.
    #[default]
    BoundedOutOfOrderness,
    /// Max event time seen.
    Ascending,
    /// No watermark: windows close only at the end of input.
    None,
}

/// What happens to a record whose every window has closed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LateStrategy {
    /// Dropped and counted (`late_dropped`).
    #[default]
    Drop,
    /// Routed to the dead letters with the reason.
    DeadLetter,
    /// Counted in the window open at the watermark, as if it arrived then.
    IncludeInNextWindow,
    /// Closed windows keep their state for `allowed_lateness_ms`; a late record updates
    /// its window and re-emits the window's row.
    UpdatePrevious,
}

/// What happens to a record whose event time cannot be read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeErrorStrategy {
    /// Raise `EventTimeError`.
    #[default]
    Fail,
    /// Route the record to the dead letters with the reason, and go on.
    DeadLetter,
}

/// Event-time settings of a query (SPEC section 5).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeSpec {
    /// The field holding event time; absent: processing time.
    #[serde(default)]
    pub field: Option<String>,
    /// `event.time.format`; absent: auto-detect.
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub on_error: TimeErrorStrategy,
    #[serde(default)]
    pub watermark: WatermarkStrategy,
    #[serde(default)]
    pub max_out_of_orderness_ms: i64,
    /// A partition without records for this long (processing time) stops holding the
    /// watermark back.
    #[serde(default)]
    pub idle_timeout_ms: Option<i64>,
    #[serde(default)]
    pub late: LateStrategy,
    #[serde(default)]
    pub allowed_lateness_ms: i64,
}

impl Plan {
    /// Parse a plan from its JSON text.
    pub fn from_json(text: &str) -> crate::error::Result<Plan> {
        Ok(serde_json::from_str(text)?)
    }

    /// Whether the query aggregates (GROUP BY or aggregate calls).
    pub fn is_aggregate(&self) -> bool {
        !self.group_by.is_empty() || !self.aggregates.is_empty()
    }
}

/// A stream-table join: `[LEFT] JOIN table [alias] ON stream_expr = alias.col [AND ...]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Join {
    /// The attached table's name (`Query.attach_table`).
    pub table: String,
    /// The name column references use for the table (its alias, else `table`).
    pub relation: String,
    #[serde(default)]
    pub kind: JoinKind,
    /// The equalities of `ON`: an expression over the stream (and earlier joins) and the
    /// table's key column it must equal.
    pub on: Vec<JoinKey>,
    /// What a row whose key the table does not hold becomes.
    #[serde(default)]
    pub missing: Option<MissingStrategy>,
    /// With [`MissingStrategy::UseDefaults`]: table column → its value as text (cast to
    /// the column's type at bind time).
    #[serde(default)]
    pub defaults: Vec<(String, String)>,
    /// With [`MissingStrategy::WaitAndRetry`]: how long a batch waits for missing keys.
    #[serde(default)]
    pub wait_timeout_ms: i64,
    #[serde(default)]
    pub pos: Option<(u32, u32)>,
}

/// One equality of a join's `ON`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinKey {
    pub stream: Expr,
    pub table: String,
    #[serde(default)]
    pub pos: Option<(u32, u32)>,
}

/// `JOIN` (inner) or `LEFT JOIN`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinKind {
    #[default]
    Inner,
    Left,
}

/// `'join.missing.strategy'`: what happens to a stream row whose key the table does not
/// hold (SPEC section 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingStrategy {
    /// The row goes on with NULL table columns (the default of LEFT JOIN).
    EmitWithNulls,
    /// The row is dropped (the default of an inner JOIN), and counted.
    SkipRecord,
    /// The row goes on with the `join.defaults.<col>` values (NULL for columns without
    /// one).
    UseDefaults,
    /// The batch waits (bounded by `join.wait.timeout`) for the keys to arrive, probing
    /// again; rows still missing then go as the join's kind says (LEFT: NULLs, inner:
    /// dropped), and are counted.
    WaitAndRetry,
    /// A missing key fails the call with a `DataError` naming the key.
    Fail,
}

/// An output column, or `*` (of every relation, or of one: `t.*`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SelectItem {
    Star {
        star: bool,
        #[serde(default)]
        relation: Option<String>,
        #[serde(default)]
        pos: Option<(u32, u32)>,
    },
    Column {
        name: String,
        expr: Expr,
    },
}

/// An aggregate function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AggFunc {
    CountStar,
    Count,
    CountDistinct,
    Sum,
    Avg,
    Min,
    Max,
    FirstValue,
    LastValue,
    Stddev,
    Variance,
    StddevPop,
    VarPop,
}

impl AggFunc {
    /// The function's SQL name, for messages.
    pub fn sql_name(self) -> &'static str {
        match self {
            AggFunc::CountStar | AggFunc::Count => "COUNT",
            AggFunc::CountDistinct => "COUNT(DISTINCT)",
            AggFunc::Sum => "SUM",
            AggFunc::Avg => "AVG",
            AggFunc::Min => "MIN",
            AggFunc::Max => "MAX",
            AggFunc::FirstValue => "FIRST_VALUE",
            AggFunc::LastValue => "LAST_VALUE",
            AggFunc::Stddev => "STDDEV",
            AggFunc::Variance => "VARIANCE",
            AggFunc::StddevPop => "STDDEV_POP",
            AggFunc::VarPop => "VAR_POP",
        }
    }
}

/// An aggregate call of the query.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Aggregate {
    #[serde(rename = "fn")]
    pub func: AggFunc,
    #[serde(default)]
    pub arg: Option<Expr>,
    #[serde(default)]
    pub pos: Option<(u32, u32)>,
}

/// A scalar expression of the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Expr {
    /// A column of a relation: `relation` names it when the SQL qualified it (the
    /// input's or a joined table's relation name); unqualified, it is looked up in every
    /// relation and must be in exactly one.
    Column {
        name: String,
        #[serde(default)]
        relation: Option<String>,
        #[serde(default)]
        pos: Pos,
    },
    Literal {
        #[serde(rename = "type")]
        ty: String,
        value: serde_json::Value,
        #[serde(default)]
        pos: Pos,
    },
    Binary {
        #[serde(rename = "fn")]
        func: String,
        left: Box<Expr>,
        right: Box<Expr>,
        #[serde(default)]
        pos: Pos,
    },
    Not {
        arg: Box<Expr>,
        #[serde(default)]
        pos: Pos,
    },
    Neg {
        arg: Box<Expr>,
        #[serde(default)]
        pos: Pos,
    },
    IsNull {
        arg: Box<Expr>,
        #[serde(default)]
        negated: bool,
        #[serde(default)]
        pos: Pos,
    },
    Case {
        #[serde(default)]
        operand: Option<Box<Expr>>,
        whens: Vec<(Expr, Expr)>,
        #[serde(default, rename = "else")]
        else_: Option<Box<Expr>>,
        #[serde(default)]
        pos: Pos,
    },
    Cast {
        arg: Box<Expr>,
        to: String,
        #[serde(default)]
        pos: Pos,
    },
    InList {
        arg: Box<Expr>,
        list: Vec<Expr>,
        #[serde(default)]
        negated: bool,
        #[serde(default)]
        pos: Pos,
    },
    Between {
        arg: Box<Expr>,
        low: Box<Expr>,
        high: Box<Expr>,
        #[serde(default)]
        negated: bool,
        #[serde(default)]
        pos: Pos,
    },
    Like {
        arg: Box<Expr>,
        pattern: Box<Expr>,
        #[serde(default)]
        negated: bool,
        #[serde(default)]
        case_insensitive: bool,
        #[serde(default)]
        pos: Pos,
    },
    Func {
        name: String,
        #[serde(default)]
        args: Vec<Expr>,
        #[serde(default)]
        pos: Pos,
    },
    GroupKey {
        index: usize,
        #[serde(default)]
        pos: Pos,
    },
    Agg {
        index: usize,
        #[serde(default)]
        pos: Pos,
    },
    /// `_window_start` / `TUMBLE_START` of the row's window (windowed aggregation only).
    WindowStart {
        #[serde(default)]
        pos: Pos,
    },
    /// `_window_end` / `TUMBLE_END` of the row's window (windowed aggregation only).
    WindowEnd {
        #[serde(default)]
        pos: Pos,
    },
}

impl Expr {
    /// The position of this node in the SQL text, when the planner recorded it.
    pub fn pos(&self) -> Pos {
        match self {
            Expr::Column { pos, .. }
            | Expr::Literal { pos, .. }
            | Expr::Binary { pos, .. }
            | Expr::Not { pos, .. }
            | Expr::Neg { pos, .. }
            | Expr::IsNull { pos, .. }
            | Expr::Case { pos, .. }
            | Expr::Cast { pos, .. }
            | Expr::InList { pos, .. }
            | Expr::Between { pos, .. }
            | Expr::Like { pos, .. }
            | Expr::Func { pos, .. }
            | Expr::GroupKey { pos, .. }
            | Expr::Agg { pos, .. }
            | Expr::WindowStart { pos }
            | Expr::WindowEnd { pos } => *pos,
        }
    }
}
