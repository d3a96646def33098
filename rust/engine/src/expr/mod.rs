//! Vectorised expression evaluation over Arrow arrays.
//!
//! A plan expression (`plan::Expr`) is *bound* once to an input schema: column names are
//! resolved to indices, operand types are coerced (casts inserted, literals folded) and
//! every node's output type is known. The bound [`PhysExpr`] then evaluates a whole batch
//! per call with Arrow compute kernels; literals stay scalars (length-1 arrays) so they
//! are never expanded to a batch's length unless a kernel needs it.

pub mod cast;
mod conditional;
pub mod functions;
pub mod types;

use std::sync::Arc;

use arrow::array::{
    new_empty_array, new_null_array, Array, ArrayRef, BooleanArray, Decimal128Array, Float64Array,
    Int64Array, StringArray, UInt32Array,
};
use arrow::array::{AsArray, Datum};
use arrow::compute::kernels::{boolean, cmp, numeric};
use arrow::compute::{cast_with_options, take, CastOptions};
use arrow::datatypes::{DataType, Field, Schema};

use crate::error::{EngineError, Pos, Result};
use crate::plan::Expr;
use functions::ScalarFunc;
use types::{arithmetic_operands, common_type, is_string, sql_name, unpack_dictionary};

/// The value of an expression over a batch: a full column, or one value for every row.
#[derive(Debug, Clone)]
pub enum Value {
    Array(ArrayRef),
    Scalar(Lit),
}

impl Value {
    /// The value as an Arrow `Datum` (kernels broadcast scalars themselves).
    pub fn datum(&self) -> &dyn Datum {
        match self {
            Value::Array(a) => a,
            Value::Scalar(s) => s,
        }
    }

    /// The underlying array: the column, or the length-1 array of a scalar.
    pub fn array(&self) -> &ArrayRef {
        match self {
            Value::Array(a) => a,
            Value::Scalar(s) => s.inner(),
        }
    }

    pub fn is_scalar(&self) -> bool {
        matches!(self, Value::Scalar(_))
    }

    /// A column of `num_rows` values (a scalar is repeated).
    pub fn into_array(self, num_rows: usize) -> Result<ArrayRef> {
        match self {
            Value::Array(a) => Ok(a),
            Value::Scalar(s) => repeat(s.inner(), num_rows),
        }
    }

    /// Wrap a kernel result: a scalar result if every input was a scalar.
    fn from_result(array: ArrayRef, all_scalar: bool) -> Value {
        if all_scalar {
            Value::Scalar(Lit::new(array))
        } else {
            Value::Array(array)
        }
    }
}

/// One value for every row: a length-1 array that kernels broadcast (an Arrow `Datum`
/// scalar that also lends out its array).
#[derive(Debug, Clone)]
pub struct Lit(ArrayRef);

impl Lit {
    pub fn new(array: ArrayRef) -> Self {
        assert_eq!(array.len(), 1, "a scalar is one value");
        Lit(array)
    }

    pub fn inner(&self) -> &ArrayRef {
        &self.0
    }
}

impl Datum for Lit {
    fn get(&self) -> (&dyn Array, bool) {
        (self.0.as_ref(), true)
    }
}

/// Repeat the single value of `single` `n` times.
pub fn repeat(single: &ArrayRef, n: usize) -> Result<ArrayRef> {
    if single.is_null(0) {
        return Ok(new_null_array(single.data_type(), n));
    }
    let indices = UInt32Array::from(vec![0u32; n]);
    Ok(take(single.as_ref(), &indices, None)?)
}

/// What an expression is evaluated over.
pub struct Input<'a> {
    pub columns: &'a [ArrayRef],
    pub num_rows: usize,
    /// Processing time of this batch, epoch millis (`NOW()`, `_timestamp`).
    pub now_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

/// A bound expression, ready to evaluate batches of one input schema.
#[derive(Debug, Clone)]
pub enum PhysExpr {
    Column(usize),
    Literal(Lit),
    Arith {
        op: ArithOp,
        left: Box<PhysExpr>,
        right: Box<PhysExpr>,
        pos: Pos,
        /// False when no value can make it fail (float operands).
        can_fail: bool,
    },
    Cmp {
        op: CmpOp,
        left: Box<PhysExpr>,
        right: Box<PhysExpr>,
    },
    And(Box<PhysExpr>, Box<PhysExpr>),
    Or(Box<PhysExpr>, Box<PhysExpr>),
    Not(Box<PhysExpr>),
    /// The operand, where it is, and whether a value can make it fail (integers).
    Neg(Box<PhysExpr>, Pos, bool),
    IsNull {
        arg: Box<PhysExpr>,
        negated: bool,
    },
    Concat(Box<PhysExpr>, Box<PhysExpr>),
    /// `out` is the type of every branch; `lazy` when a branch other than the first
    /// condition can fail, so that branches are evaluated only for the rows reaching them.
    Case {
        whens: Vec<(PhysExpr, PhysExpr)>,
        otherwise: Box<PhysExpr>,
        out: DataType,
        lazy: bool,
    },
    Cast {
        arg: Box<PhysExpr>,
        to: DataType,
        pos: Pos,
        /// False when no value of the operand's type can fail to convert.
        can_fail: bool,
    },
    Like {
        arg: Box<PhysExpr>,
        pattern: Box<PhysExpr>,
        negated: bool,
        case_insensitive: bool,
    },
    /// As `Case`: `lazy` when an argument after the first can fail.
    Coalesce {
        args: Vec<PhysExpr>,
        out: DataType,
        lazy: bool,
    },
    Func {
        func: ScalarFunc,
        args: Vec<PhysExpr>,
        pos: Pos,
    },
    /// Processing time of the batch as int64 epoch millis (`_timestamp`).
    ProcessingTimeMillis,
}

/// Where names resolve while binding.
pub struct Scope<'a> {
    /// The fields visible to column references (or to group/agg references).
    pub schema: &'a Schema,
    /// In a post-aggregation scope, group key `i` is field `i` and aggregate `j` is field
    /// `agg_offset + j`; `None` in an input scope.
    pub agg_offset: Option<usize>,
    /// In a windowed post-aggregation scope, `_window_start` is field `w` and
    /// `_window_end` field `w + 1`.
    pub window: Option<usize>,
    /// The relations the fields come from (a join's input and tables); empty: one
    /// relation, and a column's qualifier is not looked at (the planner checked it).
    pub relations: &'a [Relation],
}

/// A relation of a joined scope: the fields `columns` come from the relation `name`
/// (the name qualified column references use).
#[derive(Debug, Clone)]
pub struct Relation {
    pub name: String,
    pub columns: std::ops::Range<usize>,
}

impl<'a> Scope<'a> {
    /// The scope of input columns.
    pub fn input(schema: &'a Schema) -> Self {
        Scope {
            schema,
            agg_offset: None,
            window: None,
            relations: &[],
        }
    }

    /// The scope of a joined input: `schema`'s fields come from `relations`.
    pub fn joined(schema: &'a Schema, relations: &'a [Relation]) -> Self {
        Scope {
            schema,
            agg_offset: None,
            window: None,
            relations,
        }
    }

    /// The field a column reference names: within its relation when qualified, else in
    /// the one relation that has it (a name in two relations is ambiguous).
    fn column(&self, name: &str, relation: Option<&str>, pos: Pos) -> Result<Option<usize>> {
        if self.relations.is_empty() {
            return Ok(resolve_column(self.schema, name));
        }
        let within = |r: &Relation| {
            let fields: Vec<Field> = self.schema.fields()[r.columns.clone()]
                .iter()
                .map(|f| f.as_ref().clone())
                .collect();
            resolve_column(&Schema::new(fields), name).map(|i| r.columns.start + i)
        };
        if let Some(wanted) = relation {
            let Some(r) = self
                .relations
                .iter()
                .find(|r| r.name.eq_ignore_ascii_case(wanted))
            else {
                return Err(EngineError::validation(
                    format!("unknown relation '{wanted}' in {wanted}.{name}"),
                    pos,
                ));
            };
            return match within(r) {
                Some(i) => Ok(Some(i)),
                None => Err(EngineError::validation(
                    format!(
                        "{wanted} has no column '{name}'; its columns: {}",
                        self.schema.fields()[r.columns.clone()]
                            .iter()
                            .map(|f| f.name().as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    pos,
                )),
            };
        }
        let found: Vec<(usize, &str)> = self
            .relations
            .iter()
            .filter_map(|r| within(r).map(|i| (i, r.name.as_str())))
            .collect();
        match found.as_slice() {
            [] => Ok(None),
            [(i, _)] => Ok(Some(*i)),
            several => Err(EngineError::validation(
                format!(
                    "column '{name}' is ambiguous: it is a column of {}; qualify it ({})",
                    several
                        .iter()
                        .map(|(_, r)| *r)
                        .collect::<Vec<_>>()
                        .join(" and "),
                    several
                        .iter()
                        .map(|(_, r)| format!("{r}.{name}"))
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
                pos,
            )),
        }
    }
}

/// Resolve a column name: exact match first, then a unique case-insensitive match.
pub fn resolve_column(schema: &Schema, name: &str) -> Option<usize> {
    if let Ok(i) = schema.index_of(name) {
        return Some(i);
    }
    let mut found = None;
    for (i, f) in schema.fields().iter().enumerate() {
        if f.name().eq_ignore_ascii_case(name) {
            if found.is_some() {
                return None;
            }
            found = Some(i);
        }
    }
    found
}

/// The candidate closest to `name` (case-insensitive edit distance at most a third of
/// its length, and at least 1), if any.
pub fn did_you_mean<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let wanted = name.to_lowercase();
    let limit = (wanted.chars().count() / 3).max(1);
    candidates
        .map(|c| (strsim::levenshtein(&wanted, &c.to_lowercase()), c))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

fn unknown_column(name: &str, schema: &Schema, pos: Pos) -> EngineError {
    let available: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let hint = match name {
        "_partition" | "_offset" => " (system column set by Kafka sources only)".to_string(),
        "_window_start" | "_window_end" => " (exists in windowed queries only)".to_string(),
        _ => String::new(),
    };
    let suggestion = if hint.is_empty() {
        did_you_mean(name, available.iter().copied())
            .map(|s| format!(" (did you mean '{s}'?)"))
            .unwrap_or_default()
    } else {
        String::new()
    };
    EngineError::validation(
        format!(
            "unknown column '{name}'{hint}{suggestion}; available columns: {}",
            available.join(", ")
        ),
        pos,
    )
}

/// Make a literal scalar from its plan type and JSON value.
pub fn literal(ty: &str, value: &serde_json::Value, pos: Pos) -> Result<Lit> {
    use serde_json::Value as J;
    let bad = || EngineError::validation(format!("invalid {ty} literal {value}"), pos);
    let array: ArrayRef = match (ty, value) {
        (_, J::Null) | ("null", _) => new_null_array(&DataType::Null, 1),
        ("bool", J::Bool(b)) => Arc::new(BooleanArray::from(vec![*b])),
        ("int64", J::Number(n)) => Arc::new(Int64Array::from(vec![n.as_i64().ok_or_else(bad)?])),
        ("float64", J::Number(n)) => {
            Arc::new(Float64Array::from(vec![n.as_f64().ok_or_else(bad)?]))
        }
        ("utf8", J::String(s)) => Arc::new(StringArray::from(vec![s.as_str()])),
        ("decimal", J::String(s)) => decimal_literal(s).ok_or_else(bad)?,
        ("decimal", J::Number(n)) => decimal_literal(&n.to_string()).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    Ok(Lit::new(array))
}

/// `123.450` → Decimal128(6, 3) holding 123450.
fn decimal_literal(text: &str) -> Option<ArrayRef> {
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (int_part, frac_part) = digits.split_once('.').unwrap_or((digits, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    if !int_part
        .chars()
        .chain(frac_part.chars())
        .all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let all: String = format!("{int_part}{frac_part}");
    let all = all.trim_start_matches('0');
    let mut unscaled: i128 = if all.is_empty() { 0 } else { all.parse().ok()? };
    if negative {
        unscaled = -unscaled;
    }
    let scale = frac_part.len();
    let precision = (all.len().max(scale).max(1)) as u8;
    if precision > 38 {
        return None;
    }
    let array = Decimal128Array::from(vec![unscaled])
        .with_precision_and_scale(precision, scale as i8)
        .ok()?;
    Some(Arc::new(array))
}

fn cast_options() -> CastOptions<'static> {
    CastOptions {
        safe: false,
        ..Default::default()
    }
}

/// Cast a bound expression to `to`; literals are cast right away.
pub fn cast_to(expr: PhysExpr, from: &DataType, to: &DataType, pos: Pos) -> Result<PhysExpr> {
    if from == to {
        return Ok(expr);
    }
    if let PhysExpr::Literal(s) = &expr {
        let cast = cast::cast_array(s.inner().as_ref(), to, false).map_err(|e| {
            EngineError::validation(
                format!("cannot convert literal to {}: {e}", sql_name(to)),
                pos,
            )
        })?;
        return Ok(PhysExpr::Literal(Lit::new(cast)));
    }
    Ok(PhysExpr::Cast {
        arg: Box::new(expr),
        to: to.clone(),
        pos,
        can_fail: cast::can_fail(&unpack_dictionary(from), to),
    })
}

fn literal_value_of(expr: &PhysExpr) -> Option<&ArrayRef> {
    match expr {
        PhysExpr::Literal(s) => Some(s.inner()),
        _ => None,
    }
}

/// Whether casting the literal to `narrow` and back to `wide` gives the same value, so
/// a comparison can run in the column's own type instead of widening the column.
fn literal_fits(lit: &ArrayRef, narrow: &DataType, wide: &DataType) -> bool {
    if lit.is_null(0) {
        return true;
    }
    let Ok(down) = cast_with_options(lit.as_ref(), narrow, &cast_options()) else {
        return false;
    };
    let Ok(up) = cast_with_options(down.as_ref(), wide, &cast_options()) else {
        return false;
    };
    let Ok(orig) = cast_with_options(lit.as_ref(), wide, &cast_options()) else {
        return false;
    };
    up.to_data() == orig.to_data()
}

/// Bind a plan expression to a scope, returning the bound expression and its type.
/// Sub-expressions without column references are evaluated once, here (constant folding).
pub fn bind(expr: &Expr, scope: &Scope) -> Result<(PhysExpr, DataType)> {
    let (e, dt) = bind_node(expr, scope)?;
    Ok((fold_constant(e), dt))
}

/// Whether an expression reads no column and no clock.
fn is_constant(e: &PhysExpr) -> bool {
    let reads_input = matches!(
        e,
        PhysExpr::Column(_)
            | PhysExpr::ProcessingTimeMillis
            | PhysExpr::Func {
                func: ScalarFunc::Now,
                ..
            }
    );
    let mut children = true;
    e.for_each_child(&mut |c| children &= is_constant(c));
    !reads_input && children
}

/// Replace a constant expression by its value. One that fails to evaluate (`5 % 0`) is
/// kept, so the error surfaces with the data, as for any other row.
fn fold_constant(e: PhysExpr) -> PhysExpr {
    if matches!(e, PhysExpr::Literal(_)) || !is_constant(&e) {
        return e;
    }
    let input = Input {
        columns: &[],
        num_rows: 1,
        now_ms: 0,
    };
    match e.eval(&input) {
        Ok(Value::Scalar(s)) => PhysExpr::Literal(s),
        Ok(Value::Array(a)) if a.len() == 1 => PhysExpr::Literal(Lit::new(a)),
        _ => e,
    }
}

fn bind_node(expr: &Expr, scope: &Scope) -> Result<(PhysExpr, DataType)> {
    match expr {
        Expr::WindowStart { pos } | Expr::WindowEnd { pos } => {
            let Some(w) = scope.window else {
                return Err(EngineError::validation(
                    "_window_start and _window_end exist only in windowed queries (add a WINDOW)",
                    *pos,
                ));
            };
            let i = w + matches!(expr, Expr::WindowEnd { .. }) as usize;
            Ok((PhysExpr::Column(i), DataType::Int64))
        }
        Expr::Column {
            name,
            relation,
            pos,
        } => {
            if scope.agg_offset.is_some() {
                return Err(EngineError::validation(
                    format!("column '{name}' must appear in GROUP BY or inside an aggregate"),
                    *pos,
                ));
            }
            match scope.column(name, relation.as_deref(), *pos)? {
                Some(i) => Ok((
                    PhysExpr::Column(i),
                    scope.schema.field(i).data_type().clone(),
                )),
                None if name == "_timestamp" || name == "_event_time" => {
                    Ok((PhysExpr::ProcessingTimeMillis, DataType::Int64))
                }
                None => Err(unknown_column(name, scope.schema, *pos)),
            }
        }
        Expr::GroupKey { index, pos } | Expr::Agg { index, pos } => {
            let Some(offset) = scope.agg_offset else {
                return Err(EngineError::validation(
                    "group key or aggregate reference outside an aggregation",
                    *pos,
                ));
            };
            let i = match expr {
                Expr::GroupKey { .. } => *index,
                _ => offset + index,
            };
            if i >= scope.schema.fields().len() {
                return Err(EngineError::validation("reference out of range", *pos));
            }
            Ok((
                PhysExpr::Column(i),
                scope.schema.field(i).data_type().clone(),
            ))
        }
        Expr::Literal { ty, value, pos } => {
            let s = literal(ty, value, *pos)?;
            let dt = s.inner().data_type().clone();
            Ok((PhysExpr::Literal(s), dt))
        }
        Expr::Binary {
            func,
            left,
            right,
            pos,
        } => bind_binary(func, left, right, *pos, scope),
        Expr::Not { arg, pos } => {
            let (a, dt) = bind(arg, scope)?;
            let a = expect_boolean(a, &dt, "NOT", *pos)?;
            Ok((PhysExpr::Not(Box::new(a)), DataType::Boolean))
        }
        Expr::Neg { arg, pos } => {
            let (a, dt) = bind(arg, scope)?;
            if !types::is_numeric(&dt) && dt != DataType::Null {
                return Err(EngineError::validation(
                    format!("cannot negate a value of type {}", sql_name(&dt)),
                    *pos,
                ));
            }
            let (a, dt) = if types::is_integer(&dt) || dt == DataType::Null {
                (cast_to(a, &dt, &DataType::Int64, *pos)?, DataType::Int64)
            } else {
                (a, dt)
            };
            let can_fail = types::is_integer(&dt);
            Ok((PhysExpr::Neg(Box::new(a), *pos, can_fail), dt))
        }
        Expr::IsNull { arg, negated, .. } => {
            let (a, _) = bind(arg, scope)?;
            Ok((
                PhysExpr::IsNull {
                    arg: Box::new(a),
                    negated: *negated,
                },
                DataType::Boolean,
            ))
        }
        Expr::Case {
            operand,
            whens,
            else_,
            pos,
        } => bind_case(operand.as_deref(), whens, else_.as_deref(), *pos, scope),
        Expr::Cast { arg, to, pos } => {
            let target = types::parse_type_name(to).ok_or_else(|| {
                EngineError::validation(format!("unknown type '{to}' in CAST"), *pos)
            })?;
            let (a, dt) = bind(arg, scope)?;
            let a = cast_to(a, &dt, &target, *pos)?;
            Ok((a, target))
        }
        Expr::InList {
            arg,
            list,
            negated,
            pos,
        } => {
            // x IN (a, b) is (x = a) OR (x = b): Kleene OR gives SQL's NULL semantics.
            let mut acc: Option<Expr> = None;
            for item in list {
                let eq = Expr::Binary {
                    func: "eq".into(),
                    left: arg.clone(),
                    right: Box::new(item.clone()),
                    pos: *pos,
                };
                acc = Some(match acc {
                    None => eq,
                    Some(prev) => Expr::Binary {
                        func: "or".into(),
                        left: Box::new(prev),
                        right: Box::new(eq),
                        pos: *pos,
                    },
                });
            }
            let Some(acc) = acc else {
                return Err(EngineError::validation("IN list is empty", *pos));
            };
            let (e, _) = bind(&acc, scope)?;
            Ok((negate_if(e, *negated), DataType::Boolean))
        }
        Expr::Between {
            arg,
            low,
            high,
            negated,
            pos,
        } => {
            let both = Expr::Binary {
                func: "and".into(),
                left: Box::new(Expr::Binary {
                    func: "gte".into(),
                    left: arg.clone(),
                    right: low.clone(),
                    pos: *pos,
                }),
                right: Box::new(Expr::Binary {
                    func: "lte".into(),
                    left: arg.clone(),
                    right: high.clone(),
                    pos: *pos,
                }),
                pos: *pos,
            };
            let (e, _) = bind(&both, scope)?;
            Ok((negate_if(e, *negated), DataType::Boolean))
        }
        Expr::Like {
            arg,
            pattern,
            negated,
            case_insensitive,
            pos,
        } => {
            let (a, adt) = bind(arg, scope)?;
            let (p, pdt) = bind(pattern, scope)?;
            let a = to_string_operand(a, &adt, "LIKE", *pos)?;
            let p = to_string_operand(p, &pdt, "LIKE", *pos)?;
            Ok((
                PhysExpr::Like {
                    arg: Box::new(a),
                    pattern: Box::new(p),
                    negated: *negated,
                    case_insensitive: *case_insensitive,
                },
                DataType::Boolean,
            ))
        }
        Expr::Func { name, args, pos } => {
            if name == "coalesce" {
                return bind_coalesce(args, *pos, scope);
            }
            let mut bound = Vec::with_capacity(args.len());
            for a in args {
                bound.push(bind(a, scope)?);
            }
            functions::bind_function(name, bound, *pos)
        }
    }
}

fn negate_if(e: PhysExpr, negated: bool) -> PhysExpr {
    if negated {
        PhysExpr::Not(Box::new(e))
    } else {
        e
    }
}

fn expect_boolean(e: PhysExpr, dt: &DataType, what: &str, pos: Pos) -> Result<PhysExpr> {
    match dt {
        DataType::Boolean => Ok(e),
        DataType::Null => cast_to(e, dt, &DataType::Boolean, pos),
        other => Err(EngineError::validation(
            format!("{what} needs a boolean operand, got {}", sql_name(other)),
            pos,
        )),
    }
}

/// Strings stay in their own string type; NULL becomes a string; anything else is an error.
fn to_string_operand(e: PhysExpr, dt: &DataType, what: &str, pos: Pos) -> Result<PhysExpr> {
    let dt = unpack_dictionary(dt);
    match dt {
        DataType::Utf8 => Ok(e),
        DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => {
            cast_to(e, &dt, &DataType::Utf8, pos)
        }
        other => Err(EngineError::validation(
            format!("{what} needs a string operand, got {}", sql_name(&other)),
            pos,
        )),
    }
}

fn bind_binary(
    func: &str,
    left: &Expr,
    right: &Expr,
    pos: Pos,
    scope: &Scope,
) -> Result<(PhysExpr, DataType)> {
    let (l, ldt) = bind(left, scope)?;
    let (r, rdt) = bind(right, scope)?;
    let arith = match func {
        "add" => Some(ArithOp::Add),
        "sub" => Some(ArithOp::Sub),
        "mul" => Some(ArithOp::Mul),
        "div" => Some(ArithOp::Div),
        "mod" => Some(ArithOp::Mod),
        _ => None,
    };
    if let Some(op) = arith {
        let (lt, rt) = arithmetic_operands(
            &unpack_dictionary(&ldt),
            &unpack_dictionary(&rdt),
            op == ArithOp::Div,
        )
        .ok_or_else(|| {
            EngineError::validation(
                format!(
                    "operator {} does not apply to {} and {}",
                    symbol(func),
                    sql_name(&ldt),
                    sql_name(&rdt)
                ),
                pos,
            )
        })?;
        let l = cast_to(l, &ldt, &lt, pos)?;
        let r = cast_to(r, &rdt, &rt, pos)?;
        let out = arith_result_type(op, &lt, &rt, pos)?;
        return Ok((
            PhysExpr::Arith {
                op,
                left: Box::new(l),
                right: Box::new(r),
                pos,
                can_fail: !(types::is_float(&lt) && types::is_float(&rt)),
            },
            out,
        ));
    }
    let cmp = match func {
        "eq" => Some(CmpOp::Eq),
        "neq" => Some(CmpOp::NotEq),
        "lt" => Some(CmpOp::Lt),
        "lte" => Some(CmpOp::LtEq),
        "gt" => Some(CmpOp::Gt),
        "gte" => Some(CmpOp::GtEq),
        _ => None,
    };
    if let Some(op) = cmp {
        let target = common_type(&ldt, &rdt).ok_or_else(|| {
            EngineError::validation(
                format!("cannot compare {} with {}", sql_name(&ldt), sql_name(&rdt)),
                pos,
            )
        })?;
        // A literal beside a column is cast to the column's type when it fits, so the
        // column is compared as it is, without a cast of the whole batch.
        let (lt, rt) = match (literal_value_of(&l), literal_value_of(&r)) {
            (None, Some(lit)) if comparable_without_cast(&ldt, &target, lit) => {
                (ldt.clone(), ldt.clone())
            }
            (Some(lit), None) if comparable_without_cast(&rdt, &target, lit) => {
                (rdt.clone(), rdt.clone())
            }
            _ => (target.clone(), target),
        };
        let l = cast_to(l, &ldt, &lt, pos)?;
        let r = cast_to(r, &rdt, &rt, pos)?;
        return Ok((
            PhysExpr::Cmp {
                op,
                left: Box::new(l),
                right: Box::new(r),
            },
            DataType::Boolean,
        ));
    }
    match func {
        "and" | "or" => {
            let l = expect_boolean(l, &ldt, &func.to_uppercase(), pos)?;
            let r = expect_boolean(r, &rdt, &func.to_uppercase(), pos)?;
            let e = if func == "and" {
                PhysExpr::And(Box::new(l), Box::new(r))
            } else {
                PhysExpr::Or(Box::new(l), Box::new(r))
            };
            Ok((e, DataType::Boolean))
        }
        "concat" => {
            let l = cast_to(l, &ldt, &DataType::Utf8, pos)?;
            let r = cast_to(r, &rdt, &DataType::Utf8, pos)?;
            Ok((PhysExpr::Concat(Box::new(l), Box::new(r)), DataType::Utf8))
        }
        other => Err(EngineError::validation(
            format!("unknown binary operator '{other}'"),
            pos,
        )),
    }
}

fn comparable_without_cast(column: &DataType, target: &DataType, lit: &ArrayRef) -> bool {
    if column == target {
        return true;
    }
    if matches!(column, DataType::Dictionary(_, _)) {
        return false;
    }
    let string_like = is_string(column) && is_string(target);
    (string_like || types::is_numeric(column)) && literal_fits(lit, column, target)
}

fn symbol(func: &str) -> &'static str {
    match func {
        "add" => "+",
        "sub" => "-",
        "mul" => "*",
        "div" => "/",
        "mod" => "%",
        _ => "?",
    }
}

/// The output type of an arithmetic kernel over already-coerced operands, asked of the
/// kernel itself (on empty inputs) so it always matches what evaluation produces.
fn arith_result_type(op: ArithOp, l: &DataType, r: &DataType, pos: Pos) -> Result<DataType> {
    let (le, re) = (new_empty_array(l), new_empty_array(r));
    let out = match op {
        ArithOp::Add => numeric::add(&le, &re),
        ArithOp::Sub => numeric::sub(&le, &re),
        ArithOp::Mul => numeric::mul(&le, &re),
        ArithOp::Div => numeric::div(&le, &re),
        ArithOp::Mod => numeric::rem(&le, &re),
    }
    .map_err(|e| {
        EngineError::validation(
            format!(
                "arithmetic on {} and {} is not supported: {e}",
                sql_name(l),
                sql_name(r)
            ),
            pos,
        )
    })?;
    Ok(out.data_type().clone())
}

fn bind_case(
    operand: Option<&Expr>,
    whens: &[(Expr, Expr)],
    else_: Option<&Expr>,
    pos: Pos,
    scope: &Scope,
) -> Result<(PhysExpr, DataType)> {
    let mut conds = Vec::with_capacity(whens.len());
    let mut values = Vec::with_capacity(whens.len() + 1);
    for (when, then) in whens {
        let cond = match operand {
            Some(op) => Expr::Binary {
                func: "eq".into(),
                left: Box::new(op.clone()),
                right: Box::new(when.clone()),
                pos,
            },
            None => when.clone(),
        };
        let (c, cdt) = bind(&cond, scope)?;
        conds.push(expect_boolean(c, &cdt, "CASE WHEN", pos)?);
        values.push(bind(then, scope)?);
    }
    let otherwise = match else_ {
        Some(e) => bind(e, scope)?,
        None => (
            PhysExpr::Literal(Lit::new(new_null_array(&DataType::Null, 1))),
            DataType::Null,
        ),
    };
    values.push(otherwise);
    let out = merged_type(values.iter().map(|(_, t)| t), "CASE", pos)?;
    let mut cast_values = Vec::with_capacity(values.len());
    for (v, t) in values {
        cast_values.push(cast_to(v, &t, &out, pos)?);
    }
    let otherwise = cast_values.pop().expect("else branch");
    let whens: Vec<(PhysExpr, PhysExpr)> = conds.into_iter().zip(cast_values).collect();
    // The first condition is evaluated for every row: only the others need laziness.
    let lazy = otherwise.can_fail()
        || whens
            .iter()
            .enumerate()
            .any(|(i, (c, t))| (i > 0 && c.can_fail()) || t.can_fail());
    Ok((
        PhysExpr::Case {
            whens,
            otherwise: Box::new(otherwise),
            out: out.clone(),
            lazy,
        },
        out,
    ))
}

fn merged_type<'a>(
    mut types: impl Iterator<Item = &'a DataType>,
    what: &str,
    pos: Pos,
) -> Result<DataType> {
    let first = types.next().cloned().unwrap_or(DataType::Null);
    let mut acc = unpack_dictionary(&first);
    for t in types {
        acc = common_type(&acc, t).ok_or_else(|| {
            EngineError::validation(
                format!(
                    "{what} branches have incompatible types {} and {}",
                    sql_name(&acc),
                    sql_name(t)
                ),
                pos,
            )
        })?;
    }
    if acc == DataType::Null {
        // An all-NULL CASE / COALESCE: give it a concrete, nullable type.
        acc = DataType::Int64;
    }
    Ok(acc)
}

fn bind_coalesce(args: &[Expr], pos: Pos, scope: &Scope) -> Result<(PhysExpr, DataType)> {
    if args.is_empty() {
        return Err(EngineError::validation("COALESCE needs arguments", pos));
    }
    let mut bound = Vec::with_capacity(args.len());
    for a in args {
        bound.push(bind(a, scope)?);
    }
    let out = merged_type(bound.iter().map(|(_, t)| t), "COALESCE", pos)?;
    let mut cast = Vec::with_capacity(bound.len());
    for (e, t) in bound {
        cast.push(cast_to(e, &t, &out, pos)?);
    }
    let lazy = cast.iter().skip(1).any(PhysExpr::can_fail);
    Ok((
        PhysExpr::Coalesce {
            args: cast,
            out: out.clone(),
            lazy,
        },
        out,
    ))
}

/// SQL compares floats by value: `-0.0 = 0.0`, and every NaN equals every NaN and is
/// greater than any number (as DuckDB and Postgres). Arrow's kernels use the IEEE total
/// order, where `-0.0 < 0.0` and a NaN with the sign bit set (as `0.0 / 0.0` gives on
/// x86) sorts first; mapping both to one canonical value gives SQL semantics.
pub fn canonical_float(v: Value) -> Value {
    fn canon(a: &ArrayRef) -> Option<ArrayRef> {
        match a.data_type() {
            DataType::Float64 => {
                let f = a.as_any().downcast_ref::<Float64Array>()?;
                let out: Float64Array = f.unary(|x| if x.is_nan() { f64::NAN } else { x + 0.0 });
                Some(Arc::new(out))
            }
            DataType::Float32 => {
                let f = a.as_any().downcast_ref::<arrow::array::Float32Array>()?;
                let out: arrow::array::Float32Array =
                    f.unary(|x| if x.is_nan() { f32::NAN } else { x + 0.0 });
                Some(Arc::new(out))
            }
            _ => None,
        }
    }
    match &v {
        Value::Array(a) => canon(a).map(Value::Array).unwrap_or(v),
        Value::Scalar(s) => canon(s.inner())
            .map(|a| Value::Scalar(Lit::new(a)))
            .unwrap_or(v),
    }
}

/// SQL comparison of two float64 values: `-0.0 = 0.0` (IEEE), and NaN equals NaN and is
/// greater than every number.
#[inline(always)]
fn sql_float_cmp(op: CmpOp, a: f64, b: f64) -> bool {
    let lt = |x: f64, y: f64| !x.is_nan() && (y.is_nan() || x < y);
    let eq = |x: f64, y: f64| (x.is_nan() && y.is_nan()) || x == y;
    match op {
        CmpOp::Eq => eq(a, b),
        CmpOp::NotEq => !eq(a, b),
        CmpOp::Lt => lt(a, b),
        CmpOp::LtEq => !lt(b, a),
        CmpOp::Gt => lt(b, a),
        CmpOp::GtEq => !lt(a, b),
    }
}

/// Compare float64 operands in one pass with SQL semantics (no canonicalising copy).
/// None for other types or a NULL literal (the generic path handles those).
fn float_compare(op: CmpOp, l: &Value, r: &Value) -> Option<BooleanArray> {
    let as_f64 = |v: &Value| v.array().as_any().downcast_ref::<Float64Array>().cloned();
    let (la, ra) = (as_f64(l)?, as_f64(r)?);
    // One loop per operator (the operator is not re-dispatched per row).
    fn bits(
        n: usize,
        op: CmpOp,
        value: impl Fn(usize) -> (f64, f64),
    ) -> arrow::buffer::BooleanBuffer {
        macro_rules! with {
            ($op:expr) => {
                arrow::buffer::BooleanBuffer::collect_bool(n, |i| {
                    let (a, b) = value(i);
                    sql_float_cmp($op, a, b)
                })
            };
        }
        match op {
            CmpOp::Eq => with!(CmpOp::Eq),
            CmpOp::NotEq => with!(CmpOp::NotEq),
            CmpOp::Lt => with!(CmpOp::Lt),
            CmpOp::LtEq => with!(CmpOp::LtEq),
            CmpOp::Gt => with!(CmpOp::Gt),
            CmpOp::GtEq => with!(CmpOp::GtEq),
        }
    }
    let out = match (l.is_scalar(), r.is_scalar()) {
        (false, true) | (true, true) => {
            if ra.is_null(0) {
                return None;
            }
            let (values, b) = (la.values(), ra.value(0));
            BooleanArray::new(bits(la.len(), op, |i| (values[i], b)), la.nulls().cloned())
        }
        (true, false) => {
            if la.is_null(0) {
                return None;
            }
            let (a, values) = (la.value(0), ra.values());
            BooleanArray::new(bits(ra.len(), op, |i| (a, values[i])), ra.nulls().cloned())
        }
        (false, false) => {
            let (lv, rv) = (la.values(), ra.values());
            let nulls = arrow::buffer::NullBuffer::union(la.nulls(), ra.nulls());
            BooleanArray::new(bits(la.len(), op, |i| (lv[i], rv[i])), nulls)
        }
    };
    Some(out)
}

/// `column = 'literal'` (or `<>`) on a string column, one fixed comparison per row (the
/// length test and the bytes combined without a branch). Arrow's generic kernel calls
/// memcmp for every row, which dominated filters such as `status = 'open'`.
fn string_equals_literal(op: CmpOp, l: &Value, r: &Value) -> Option<BooleanArray> {
    let negate = match op {
        CmpOp::Eq => false,
        CmpOp::NotEq => true,
        _ => return None,
    };
    let (column, literal) = match (l, r) {
        (Value::Array(a), Value::Scalar(s)) | (Value::Scalar(s), Value::Array(a)) => (a, s),
        _ => return None,
    };
    let column = column.as_any().downcast_ref::<StringArray>()?;
    let literal = literal.inner().as_any().downcast_ref::<StringArray>()?;
    if literal.is_null(0) {
        return None;
    }
    let needle = literal.value(0).as_bytes();
    let offsets = column.value_offsets();
    let bytes = column.value_data();
    // No memcmp call per row (for short strings it costs more than the comparison), and
    // no branch on the length: with values of mixed lengths (`'open'`/`'closed'`) it
    // would be mispredicted half the time. The bytes compared may run into the next
    // values; the length test masks that. Near the end of the data, a plain comparison.
    let n = needle.len();
    let bits = if n <= 8 {
        // One 8-byte load per row, compared under a mask of the literal's length.
        let mut padded = [0u8; 8];
        padded[..n].copy_from_slice(needle);
        let word = u64::from_le_bytes(padded);
        let mask = if n == 8 {
            u64::MAX
        } else {
            (1u64 << (8 * n)) - 1
        };
        arrow::buffer::BooleanBuffer::collect_bool(column.len(), |i| {
            let (start, end) = (offsets[i] as usize, offsets[i + 1] as usize);
            let equal = match bytes.get(start..start + 8) {
                Some(w) => {
                    let w = u64::from_le_bytes(w.try_into().expect("8 bytes"));
                    (end - start == n) & ((w ^ word) & mask == 0)
                }
                None => &bytes[start..end] == needle,
            };
            equal != negate
        })
    } else {
        arrow::buffer::BooleanBuffer::collect_bool(column.len(), |i| {
            let (start, end) = (offsets[i] as usize, offsets[i + 1] as usize);
            let equal = match bytes.get(start..start + n) {
                Some(window) => {
                    (end - start == n)
                        & window
                            .iter()
                            .zip(needle)
                            .fold(true, |same, (a, b)| same & (a == b))
                }
                None => &bytes[start..end] == needle,
            };
            equal != negate
        })
    };
    Some(BooleanArray::new(bits, column.nulls().cloned()))
}

/// A failed CAST, naming the first value that does not convert (found by casting again
/// leniently: the first row that is set in the input but NULL in the output).
fn cast_error(
    input: &ArrayRef,
    to: &DataType,
    pos: Pos,
    err: arrow::error::ArrowError,
) -> EngineError {
    let what = format!("{}CAST to {}", pos_prefix(pos), sql_name(to));
    let lenient = cast::cast_array(input.as_ref(), to, true);
    let bad_row = lenient
        .ok()
        .and_then(|out| (0..input.len()).find(|&i| input.is_valid(i) && out.is_null(i)));
    let Some(row) = bad_row else {
        return EngineError::data(&what, err);
    };
    let value = arrow::util::display::array_value_to_string(input.as_ref(), row)
        .unwrap_or_else(|_| "?".to_string());
    let why = cast::reason(input.data_type(), to)
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    EngineError::BadValue {
        message: format!("{what}: the value '{value}' cannot be converted{why}"),
        value,
    }
}

fn pos_prefix(pos: Pos) -> String {
    match pos {
        Some((l, c)) => format!("line {l}, column {c}: "),
        None => String::new(),
    }
}

/// A LIKE pattern for Arrow's kernels, which read `\` as an escape character: SQL's
/// LIKE has none without an `ESCAPE` clause (as DuckDB), so each `\` is doubled to stand
/// for itself. `%` and `_` keep their meaning.
fn backslashes_as_characters(pattern: Value) -> Result<Value> {
    let scalar = pattern.is_scalar();
    let array = match pattern.array().data_type() {
        DataType::Dictionary(..) => arrow::compute::cast(pattern.array(), &DataType::Utf8)?,
        _ => pattern.array().clone(),
    };
    let Some(strings) = array.as_any().downcast_ref::<StringArray>() else {
        return Ok(pattern);
    };
    if !strings.value_data().contains(&b'\\') {
        return Ok(Value::from_result(array, scalar));
    }
    let escaped: StringArray = strings
        .iter()
        .map(|p| p.map(|p| p.replace('\\', "\\\\")))
        .collect();
    Ok(Value::from_result(Arc::new(escaped), scalar))
}

pub(crate) fn as_bool(v: &Value, n: usize) -> Result<BooleanArray> {
    let a = v.clone().into_array(n)?;
    let b = a
        .as_any()
        .downcast_ref::<BooleanArray>()
        .ok_or_else(|| EngineError::Data("expected a boolean value".into()))?;
    Ok(b.clone())
}

/// The body of [`PhysExpr::for_each_child`] and its `_mut` twin: the same match, with
/// `iter` or `iter_mut` over argument lists (bindings follow `self`'s mutability).
macro_rules! visit_children {
    ($expr:expr, $f:expr, $iter:ident) => {
        match $expr {
            PhysExpr::Column(_) | PhysExpr::Literal(_) | PhysExpr::ProcessingTimeMillis => {}
            PhysExpr::Arith { left, right, .. }
            | PhysExpr::Cmp { left, right, .. }
            | PhysExpr::And(left, right)
            | PhysExpr::Or(left, right)
            | PhysExpr::Concat(left, right)
            | PhysExpr::Like {
                arg: left,
                pattern: right,
                ..
            } => {
                $f(left);
                $f(right);
            }
            PhysExpr::Not(a)
            | PhysExpr::Neg(a, ..)
            | PhysExpr::IsNull { arg: a, .. }
            | PhysExpr::Cast { arg: a, .. } => $f(a),
            PhysExpr::Case {
                whens, otherwise, ..
            } => {
                for (c, t) in whens {
                    $f(c);
                    $f(t);
                }
                $f(otherwise);
            }
            PhysExpr::Coalesce { args, .. } | PhysExpr::Func { args, .. } => {
                args.$iter().for_each($f)
            }
        }
    };
}

impl PhysExpr {
    /// Evaluate over one batch.
    pub fn eval(&self, input: &Input) -> Result<Value> {
        match self {
            PhysExpr::Column(i) => Ok(Value::Array(input.columns[*i].clone())),
            PhysExpr::Literal(s) => Ok(Value::Scalar(s.clone())),
            PhysExpr::ProcessingTimeMillis => {
                Ok(Value::Scalar(Lit::new(Arc::new(Int64Array::from(vec![
                    input.now_ms,
                ])))))
            }
            PhysExpr::Arith {
                op,
                left,
                right,
                pos,
                ..
            } => {
                let l = left.eval(input)?;
                let r = right.eval(input)?;
                let f = match op {
                    ArithOp::Add => numeric::add,
                    ArithOp::Sub => numeric::sub,
                    ArithOp::Mul => numeric::mul,
                    ArithOp::Div => numeric::div,
                    ArithOp::Mod => numeric::rem,
                };
                let what = || format!("{}arithmetic", pos_prefix(*pos));
                let out = f(l.datum(), r.datum()).map_err(|e| EngineError::data(&what(), e))?;
                // Arrow checks decimal results against i128 only: a result of 39 digits
                // would pass in a DECIMAL(38, s) (and no reader could take it).
                if let DataType::Decimal128(precision, _) = out.data_type() {
                    out.as_primitive::<arrow::datatypes::Decimal128Type>()
                        .validate_decimal_precision(*precision)
                        .map_err(|e| EngineError::data(&format!("{} overflow", what()), e))?;
                }
                Ok(Value::from_result(out, l.is_scalar() && r.is_scalar()))
            }
            PhysExpr::Cmp { op, left, right } => {
                let l = left.eval(input)?;
                let r = right.eval(input)?;
                if let Some(out) = string_equals_literal(*op, &l, &r) {
                    return Ok(Value::Array(Arc::new(out)));
                }
                if let Some(out) = float_compare(*op, &l, &r) {
                    let scalar = l.is_scalar() && r.is_scalar();
                    return Ok(Value::from_result(Arc::new(out), scalar));
                }
                let (l, r) = (canonical_float(l), canonical_float(r));
                let f = match op {
                    CmpOp::Eq => cmp::eq,
                    CmpOp::NotEq => cmp::neq,
                    CmpOp::Lt => cmp::lt,
                    CmpOp::LtEq => cmp::lt_eq,
                    CmpOp::Gt => cmp::gt,
                    CmpOp::GtEq => cmp::gt_eq,
                };
                let out = f(l.datum(), r.datum())?;
                Ok(Value::from_result(
                    Arc::new(out),
                    l.is_scalar() && r.is_scalar(),
                ))
            }
            PhysExpr::And(left, right) | PhysExpr::Or(left, right) => {
                let l = left.eval(input)?;
                let r = right.eval(input)?;
                let both_scalar = l.is_scalar() && r.is_scalar();
                let n = if both_scalar { 1 } else { input.num_rows };
                let (lb, rb) = (as_bool(&l, n)?, as_bool(&r, n)?);
                let out = if matches!(self, PhysExpr::And(..)) {
                    boolean::and_kleene(&lb, &rb)?
                } else {
                    boolean::or_kleene(&lb, &rb)?
                };
                Ok(Value::from_result(Arc::new(out), both_scalar))
            }
            PhysExpr::Not(arg) => {
                let v = arg.eval(input)?;
                let b = as_bool(&v, v.array().len())?;
                Ok(Value::from_result(
                    Arc::new(boolean::not(&b)?),
                    v.is_scalar(),
                ))
            }
            PhysExpr::Neg(arg, pos, _) => {
                let v = arg.eval(input)?;
                let out = numeric::neg(v.array().as_ref())
                    .map_err(|e| EngineError::data(&format!("{}negation", pos_prefix(*pos)), e))?;
                Ok(Value::from_result(out, v.is_scalar()))
            }
            PhysExpr::IsNull { arg, negated } => {
                let v = arg.eval(input)?;
                let a = v.array();
                let out = if *negated {
                    boolean::is_not_null(a.as_ref())?
                } else {
                    boolean::is_null(a.as_ref())?
                };
                Ok(Value::from_result(Arc::new(out), v.is_scalar()))
            }
            PhysExpr::Concat(left, right) => {
                let l = left.eval(input)?;
                let r = right.eval(input)?;
                let both_scalar = l.is_scalar() && r.is_scalar();
                let n = if both_scalar { 1 } else { input.num_rows };
                let la = l.into_array(n)?;
                let ra = r.into_array(n)?;
                let out = arrow::compute::kernels::concat_elements::concat_elements_dyn(
                    la.as_ref(),
                    ra.as_ref(),
                )?;
                Ok(Value::from_result(out, both_scalar))
            }
            PhysExpr::Case {
                whens,
                otherwise,
                out,
                lazy,
            } => conditional::eval_case(whens, otherwise, out, *lazy, input),
            PhysExpr::Cast { arg, to, pos, .. } => {
                let v = arg.eval(input)?;
                let out = cast::cast_array(v.array().as_ref(), to, false)
                    .map_err(|e| cast_error(v.array(), to, *pos, e))?;
                Ok(Value::from_result(out, v.is_scalar()))
            }
            PhysExpr::Like {
                arg,
                pattern,
                negated,
                case_insensitive,
            } => {
                use arrow::compute::kernels::comparison as k;
                let a = arg.eval(input)?;
                let p = backslashes_as_characters(pattern.eval(input)?)?;
                let f = match (negated, case_insensitive) {
                    (false, false) => k::like,
                    (true, false) => k::nlike,
                    (false, true) => k::ilike,
                    (true, true) => k::nilike,
                };
                let out = f(a.datum(), p.datum())?;
                Ok(Value::from_result(
                    Arc::new(out),
                    a.is_scalar() && p.is_scalar(),
                ))
            }
            PhysExpr::Coalesce { args, out, lazy } => {
                conditional::eval_coalesce(args, out, *lazy, input)
            }
            PhysExpr::Func { func, args, pos } => {
                let mut values = Vec::with_capacity(args.len());
                for a in args {
                    values.push(a.eval(input)?);
                }
                functions::eval_function(*func, &values, input, *pos)
            }
        }
    }

    /// Whether some input value can make evaluating this expression fail (an overflow,
    /// a division by zero, a value that does not convert). CASE and COALESCE evaluate
    /// such a branch only for the rows that reach it.
    pub fn can_fail(&self) -> bool {
        let own = match self {
            PhysExpr::Arith { can_fail, .. }
            | PhysExpr::Cast { can_fail, .. }
            | PhysExpr::Neg(_, _, can_fail) => *can_fail,
            // A pattern that is not a literal is compiled per batch and may be invalid.
            PhysExpr::Like { pattern, .. } => !matches!(**pattern, PhysExpr::Literal(_)),
            PhysExpr::Func { func, .. } => func.can_fail(),
            PhysExpr::Column(_)
            | PhysExpr::Literal(_)
            | PhysExpr::ProcessingTimeMillis
            | PhysExpr::Cmp { .. }
            | PhysExpr::And(..)
            | PhysExpr::Or(..)
            | PhysExpr::Not(_)
            | PhysExpr::IsNull { .. }
            | PhysExpr::Concat(..)
            | PhysExpr::Case { .. }
            | PhysExpr::Coalesce { .. } => false,
        };
        let mut children = false;
        self.for_each_child(&mut |c| children |= c.can_fail());
        own || children
    }

    /// Visit the direct sub-expressions.
    pub(crate) fn for_each_child(&self, f: &mut dyn FnMut(&PhysExpr)) {
        visit_children!(self, f, iter);
    }

    /// Visit the direct sub-expressions, mutably.
    fn for_each_child_mut(&mut self, f: &mut dyn FnMut(&mut PhysExpr)) {
        visit_children!(self, f, iter_mut);
    }

    /// Input column indices this expression reads.
    pub fn columns(&self, out: &mut Vec<usize>) {
        if let PhysExpr::Column(i) = self {
            out.push(*i);
        }
        self.for_each_child(&mut |c| c.columns(out));
    }

    /// Rewrite column indices through `map` (old index → new index).
    pub fn remap_columns(&mut self, map: &dyn Fn(usize) -> usize) {
        if let PhysExpr::Column(i) = self {
            *i = map(*i);
        }
        self.for_each_child_mut(&mut |c| c.remap_columns(map));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int32Array};
    use arrow::datatypes::{Field, Float64Type, Int64Type};

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("a", DataType::Int32, true),
            Field::new("s", DataType::Utf8, true),
        ])
    }

    fn columns() -> Vec<ArrayRef> {
        vec![
            Arc::new(Int32Array::from(vec![Some(1), None, Some(7)])),
            Arc::new(StringArray::from(vec![Some("x"), Some("yy"), None])),
        ]
    }

    fn run(json: &str) -> ArrayRef {
        let expr: Expr = serde_json::from_str(json).unwrap();
        let schema = schema();
        let scope = Scope::input(&schema);
        let (e, _) = bind(&expr, &scope).unwrap();
        let cols = columns();
        let input = Input {
            columns: &cols,
            num_rows: 3,
            now_ms: 0,
        };
        e.eval(&input).unwrap().into_array(3).unwrap()
    }

    #[test]
    fn string_equals_literal_at_every_length_and_position() {
        // Literals of every length around the 8-byte fast path; values shorter, longer
        // and as long as each, prefixes, NULLs, and last values ending before a
        // comparison window would (it runs past the data there); sliced arrays too.
        let words = [
            "",
            "o",
            "op",
            "ope",
            "open",
            "opene",
            "opened",
            "openedx",
            "openedxy",
            "openedxyz",
            "OPEN",
            "closed",
        ];
        let mut values: Vec<Option<&str>> = words.iter().map(|w| Some(*w)).collect();
        values.insert(3, None);
        values.extend([Some("open"), Some("op")]);
        let array: ArrayRef = Arc::new(StringArray::from(values.clone()));
        for needle in words {
            let literal = Value::Scalar(Lit(Arc::new(StringArray::from(vec![needle]))));
            for offset in 0..values.len() {
                let column = Value::Array(array.slice(offset, values.len() - offset));
                for (op, negate) in [(CmpOp::Eq, false), (CmpOp::NotEq, true)] {
                    let out = string_equals_literal(op, &column, &literal).expect("fast path");
                    let want: Vec<Option<bool>> = values[offset..]
                        .iter()
                        .map(|v| v.map(|v| (v == needle) != negate))
                        .collect();
                    let got: Vec<Option<bool>> = out.iter().collect();
                    assert_eq!(got, want, "{needle:?} at offset {offset}");
                }
            }
        }
    }

    #[test]
    fn integer_division_is_float_division() {
        let out = run(
            r#"{"op":"binary","fn":"div","left":{"op":"column","name":"a"},"right":{"op":"literal","type":"int64","value":2}}"#,
        );
        let f = out.as_primitive::<Float64Type>();
        assert_eq!(f.value(0), 0.5);
        assert!(f.is_null(1));
        assert_eq!(f.value(2), 3.5);
    }

    #[test]
    fn in_list_has_sql_null_semantics() {
        let out = run(
            r#"{"op":"in_list","arg":{"op":"column","name":"a"},"list":[{"op":"literal","type":"int64","value":7},{"op":"literal","type":"null","value":null}]}"#,
        );
        let b = out.as_boolean();
        assert!(b.is_null(0)); // 1 IN (7, NULL) is NULL
        assert!(b.is_null(1));
        assert!(b.value(2));
    }

    #[test]
    fn case_picks_first_true_branch() {
        let out = run(
            r#"{"op":"case","whens":[[{"op":"binary","fn":"gt","left":{"op":"column","name":"a"},"right":{"op":"literal","type":"int64","value":5}},{"op":"literal","type":"int64","value":10}]],"else":{"op":"column","name":"a"}}"#,
        );
        let i = out.as_primitive::<Int64Type>();
        assert_eq!(i.value(0), 1);
        assert!(i.is_null(1));
        assert_eq!(i.value(2), 10);
    }

    #[test]
    fn case_evaluates_a_branch_only_where_it_is_reached() {
        // a = [1, NULL, 7]: 10 % (a - 1) divides by zero on the first row, which takes
        // the ELSE branch.
        let a = r#"{"op":"column","name":"a"}"#;
        let int = |v: i64| format!(r#"{{"op":"literal","type":"int64","value":{v}}}"#);
        let guarded = format!(
            r#"{{"op":"binary","fn":"mod","left":{ten},"right":{{"op":"binary","fn":"sub","left":{a},"right":{one}}}}}"#,
            ten = int(10),
            one = int(1),
        );
        let case = format!(
            r#"{{"op":"case","whens":[[{{"op":"binary","fn":"gt","left":{a},"right":{five}}},{guarded}]],"else":{zero}}}"#,
            five = int(5),
            zero = int(0),
        );
        let out = run(&case);
        let i = out.as_primitive::<Int64Type>();
        assert_eq!((i.value(0), i.value(1), i.value(2)), (0, 0, 4));
        assert_eq!(i.null_count(), 0);
        // COALESCE(a, 10 % (a - 1)): the second argument only for the NULL row (where it
        // is NULL), not for the first (where it divides by zero).
        let coalesce = format!(r#"{{"op":"func","name":"coalesce","args":[{a},{guarded}]}}"#);
        let out = run(&coalesce);
        let i = out.as_primitive::<Int64Type>();
        assert_eq!((i.value(0), i.is_null(1), i.value(2)), (1, true, 7));
    }

    #[test]
    fn branches_that_cannot_fail_are_evaluated_over_the_whole_batch() {
        let schema = schema();
        let scope = Scope::input(&schema);
        let bound = |json: &str| {
            bind(&serde_json::from_str(json).unwrap(), &scope)
                .unwrap()
                .0
        };
        let safe = bound(
            r#"{"op":"case","whens":[[{"op":"binary","fn":"gt","left":{"op":"column","name":"a"},"right":{"op":"literal","type":"int64","value":5}},{"op":"func","name":"upper","args":[{"op":"column","name":"s"}]}]],"else":{"op":"column","name":"s"}}"#,
        );
        assert!(matches!(safe, PhysExpr::Case { lazy: false, .. }));
        let risky = bound(
            r#"{"op":"func","name":"coalesce","args":[{"op":"column","name":"a"},{"op":"cast","arg":{"op":"column","name":"s"},"to":"int64"}]}"#,
        );
        assert!(matches!(risky, PhysExpr::Coalesce { lazy: true, .. }));
    }

    #[test]
    fn like_reads_a_backslash_as_itself() {
        let like = |value: &str, pattern: &str| {
            let v = Value::Scalar(Lit(Arc::new(StringArray::from(vec![value]))));
            let p =
                backslashes_as_characters(Value::Scalar(Lit(Arc::new(StringArray::from(vec![
                    pattern,
                ])))))
                .unwrap();
            let out = arrow::compute::kernels::comparison::like(v.datum(), p.datum()).unwrap();
            out.value(0)
        };
        assert!(like("a\\b", "a\\b"));
        assert!(!like("ab", "a\\b"));
        assert!(like("a\\xyz", "a\\%"));
        assert!(!like("a%", "a\\%"));
        assert!(like("\\", "_"));
        assert!(like("a\\", "a\\"));
    }

    #[test]
    fn decimal_arithmetic_beyond_38_digits_is_an_error() {
        // 6e37 + 6e37 fits an i128 but not 38 digits.
        let big = || {
            Value::Array(Arc::new(
                Decimal128Array::from(vec![6 * 10i128.pow(37), 1])
                    .with_precision_and_scale(38, 0)
                    .unwrap(),
            ))
        };
        let schema = Schema::new(vec![Field::new("d", DataType::Decimal128(38, 0), true)]);
        let scope = Scope::input(&schema);
        let expr: Expr = serde_json::from_str(
            r#"{"op":"binary","fn":"add","left":{"op":"column","name":"d"},"right":{"op":"column","name":"d"}}"#,
        )
        .unwrap();
        let (e, _) = bind(&expr, &scope).unwrap();
        let cols = vec![big().into_array(2).unwrap()];
        let input = Input {
            columns: &cols,
            num_rows: 2,
            now_ms: 0,
        };
        let err = e.eval(&input).unwrap_err().to_string();
        assert!(
            err.contains("overflow") && err.contains("precision"),
            "{err}"
        );
    }

    #[test]
    fn unknown_column_names_the_available_ones() {
        let expr: Expr =
            serde_json::from_str(r#"{"op":"column","name":"nope","pos":[2,7]}"#).unwrap();
        let schema = schema();
        let err = bind(&expr, &Scope::input(&schema)).unwrap_err();
        match err {
            EngineError::Validation { message, pos } => {
                assert!(message.contains("nope") && message.contains("a, s"));
                assert_eq!(pos, Some((2, 7)));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn decimal_literals_are_exact() {
        let a = decimal_literal("-100.50").unwrap();
        assert_eq!(a.data_type(), &DataType::Decimal128(5, 2));
        assert_eq!(
            a.as_primitive::<arrow::datatypes::Decimal128Type>()
                .value(0),
            -10050
        );
    }
}
