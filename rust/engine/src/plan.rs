//! The physical plan as handed over by the Python planner (`docs/plan-format.md`):
//! plain serde data, deserialised from JSON, bound to an input schema by `expr::bind`.

use serde::{Deserialize, Serialize};

use crate::error::Pos;

/// One query: filter, projection and (optionally) aggregation of a single input stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    #[serde(default = "one")]
    pub version: u32,
    pub input: String,
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
    #[serde(default = "changes")]
    pub emit: String,
    #[serde(default)]
    pub window: Option<serde_json::Value>,
}

fn one() -> u32 {
    1
}

fn changes() -> String {
    "changes".to_string()
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

/// An output column, or `*`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SelectItem {
    Star {
        star: bool,
        #[serde(default)]
        pos: Option<(u32, u32)>,
    },
    Column {
        name: String,
        expr: Expr,
    },
}

/// An aggregate call of the query.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Aggregate {
    #[serde(rename = "fn")]
    pub func: String,
    #[serde(default)]
    pub arg: Option<Expr>,
    #[serde(default)]
    pub pos: Option<(u32, u32)>,
}

/// A scalar expression of the plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Expr {
    Column {
        name: String,
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
            | Expr::Agg { pos, .. } => *pos,
        }
    }
}
