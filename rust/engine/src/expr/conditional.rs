//! `CASE` and `COALESCE`, which evaluate a branch only for the rows that reach it (as
//! DuckDB, Flink and PostgreSQL): `CASE WHEN d <> 0 THEN n % d ELSE -1 END` has a value
//! for every row, and `COALESCE(a, CAST(s AS INT))` converts `s` only where `a` is NULL.
//!
//! A branch that cannot fail (column references, literals, comparisons, string
//! functions, float arithmetic, ...) is evaluated over the whole batch; so is a branch
//! that every remaining row reaches. Any other branch is tried over the whole batch too
//! (the common case, where no row fails, costs what it did before), and when that fails
//! it is evaluated over the rows that reach it only: the columns it reads are filtered
//! by the branch's mask, and its values are put back in place with `take`, so that only
//! a row that reaches the branch can make the query fail.

use arrow::array::{Array, ArrayRef, BooleanArray, UInt32Array};
use arrow::buffer::{BooleanBuffer, NullBuffer};
use arrow::compute::kernels::{boolean, zip::zip};
use arrow::compute::{prep_null_mask_filter, take, FilterBuilder};
use arrow::datatypes::DataType;

use super::{as_bool, Input, Lit, PhysExpr, Value};
use crate::error::Result;

/// A selection of the rows of a batch: a mask without NULLs and how many rows it selects.
struct Rows {
    mask: BooleanArray,
    count: usize,
}

impl Rows {
    fn new(mask: BooleanArray) -> Self {
        debug_assert_eq!(mask.null_count(), 0);
        let count = mask.true_count();
        Rows { mask, count }
    }

    fn all(n: usize) -> Self {
        Rows {
            mask: BooleanArray::new(BooleanBuffer::new_set(n), None),
            count: n,
        }
    }
}

/// Evaluate `expr` for the selected rows of `input`: a value for every row of the
/// batch, where rows not selected hold NULL or any other value (the caller masks them).
/// `out` is the expression's type (the value when no row is selected).
fn eval_selected(expr: &PhysExpr, input: &Input, rows: &Rows, out: &DataType) -> Result<Value> {
    if rows.count == input.num_rows || !expr.can_fail() {
        return expr.eval(input);
    }
    if rows.count == 0 {
        let null = arrow::array::new_null_array(out, 1);
        return Ok(Value::Scalar(Lit::new(null)));
    }
    // First over the whole batch, which is cheaper than selecting rows: the values of
    // the selected rows are the same (every expression computes row by row), and when
    // no row fails, that is all (most batches). A failure may come from a row that does
    // not reach the branch: then the selected rows only. A branch holding a lazy CASE or
    // COALESCE goes to the selected rows at once, so that nested conditionals do not
    // evaluate their branches once per level.
    if !has_lazy_conditional(expr) {
        if let Ok(v) = expr.eval(input) {
            return Ok(v);
        }
    }
    let filter = FilterBuilder::new(&rows.mask).optimize().build();
    let mut read = Vec::new();
    expr.columns(&mut read);
    read.sort_unstable();
    read.dedup();
    // Columns the expression does not read keep their full length: they are not read.
    let mut columns: Vec<ArrayRef> = input.columns.to_vec();
    for i in read {
        columns[i] = filter.filter(input.columns[i].as_ref())?;
    }
    let selected = Input {
        columns: &columns,
        num_rows: rows.count,
        now_ms: input.now_ms,
    };
    match expr.eval(&selected)? {
        Value::Scalar(s) => Ok(Value::Scalar(s)),
        Value::Array(values) => Ok(Value::Array(scatter(&values, &rows.mask)?)),
    }
}

/// Put the values of the selected rows back in place: row `i` of the result is the
/// `k`-th value when row `i` is the `k`-th selected row, NULL when it is not selected.
fn scatter(values: &ArrayRef, mask: &BooleanArray) -> Result<ArrayRef> {
    // The index of row i is the number of selected rows before it (a running count
    // without a branch); rows not selected are NULL indices, clamped to a valid value.
    let last = values.len().saturating_sub(1) as u32;
    let mut next = 0u32;
    let indices: Vec<u32> = mask
        .values()
        .iter()
        .map(|selected| {
            let index = next.min(last);
            next += selected as u32;
            index
        })
        .collect();
    let nulls = NullBuffer::new(mask.values().clone());
    let indices = UInt32Array::new(indices.into(), Some(nulls));
    Ok(take(values.as_ref(), &indices, None)?)
}

/// A boolean value as a mask of the batch's rows, NULL as false.
fn true_rows(v: &Value, n: usize) -> Result<BooleanArray> {
    let b = as_bool(v, n)?;
    Ok(if b.null_count() > 0 {
        prep_null_mask_filter(&b)
    } else {
        b
    })
}

/// `CASE WHEN c1 THEN v1 ... ELSE e END`, each condition and value evaluated only for
/// the rows that reach it.
pub(super) fn eval_case(
    whens: &[(PhysExpr, PhysExpr)],
    otherwise: &PhysExpr,
    out: &DataType,
    lazy: bool,
    input: &Input,
) -> Result<Value> {
    let n = input.num_rows;
    if !lazy {
        // Nothing can fail: every branch over the whole batch, merged from the last.
        let mut result = otherwise.eval(input)?;
        for (cond, then) in whens.iter().rev() {
            let mask = true_rows(&cond.eval(input)?, n)?;
            let t = then.eval(input)?;
            result = Value::Array(zip(&mask, t.datum(), result.datum())?);
        }
        return Ok(result);
    }
    let mut remaining = Rows::all(n);
    let mut taken: Vec<(BooleanArray, Value)> = Vec::with_capacity(whens.len());
    for (cond, then) in whens {
        if remaining.count == 0 {
            break;
        }
        let c = eval_selected(cond, input, &remaining, &DataType::Boolean)?;
        let reached = Rows::new(boolean::and(&true_rows(&c, n)?, &remaining.mask)?);
        if reached.count > 0 {
            let value = eval_selected(then, input, &reached, out)?;
            remaining = Rows::new(boolean::and_not(&remaining.mask, &reached.mask)?);
            taken.push((reached.mask, value));
        }
    }
    let mut result = eval_selected(otherwise, input, &remaining, out)?;
    for (mask, value) in taken.into_iter().rev() {
        result = Value::Array(zip(&mask, value.datum(), result.datum())?);
    }
    Ok(result)
}

/// `COALESCE(a, b, ...)`: each argument evaluated only for the rows where all the
/// arguments before it are NULL.
pub(super) fn eval_coalesce(
    args: &[PhysExpr],
    out: &DataType,
    lazy: bool,
    input: &Input,
) -> Result<Value> {
    if !lazy {
        let mut values = Vec::with_capacity(args.len());
        for a in args {
            values.push(a.eval(input)?);
        }
        let all_scalar = values.iter().all(Value::is_scalar);
        let n = if all_scalar { 1 } else { input.num_rows };
        let mut iter = values.into_iter().rev();
        let mut result = iter.next().expect("coalesce has arguments").into_array(n)?;
        for v in iter {
            let a = v.into_array(n)?;
            let present = boolean::is_not_null(a.as_ref())?;
            result = zip(&present, &a, &result)?;
        }
        return Ok(Value::from_result(result, all_scalar));
    }
    let n = input.num_rows;
    let (first, rest) = args.split_first().expect("coalesce has arguments");
    let mut result = first.eval(input)?.into_array(n)?;
    for arg in rest {
        let missing = Rows::new(boolean::is_null(result.as_ref())?);
        if missing.count == 0 {
            break;
        }
        let value = eval_selected(arg, input, &missing, out)?;
        result = zip(&missing.mask, value.datum(), &result)?;
    }
    Ok(Value::Array(result))
}

/// Whether `e` holds a CASE or COALESCE with a branch that can fail.
fn has_lazy_conditional(e: &PhysExpr) -> bool {
    if matches!(
        e,
        PhysExpr::Case { lazy: true, .. } | PhysExpr::Coalesce { lazy: true, .. }
    ) {
        return true;
    }
    let mut found = false;
    e.for_each_child(&mut |c| found |= has_lazy_conditional(c));
    found
}
