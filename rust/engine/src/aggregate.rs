//! Aggregate accumulators, kept column-wise per aggregate: one vector slot per group.
//!
//! [`Accumulator::update_and_emit`] folds a batch into the state row by row (each
//! aggregate in its own tight loop) and returns, for every row, the aggregate's value for
//! that row's group right after that row was added: the running aggregate that
//! `EMIT CHANGES` emits. State is mutated in place and serialisable for snapshots.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, AsArray, BooleanBuilder, Decimal128Builder,
    Float64Builder, Int64Builder, PrimitiveArray, PrimitiveBuilder, StringBuilder,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Decimal128Type, Float64Type, Int64Type};
use arrow::row::{RowConverter, SortField};
use hashbrown::HashSet;
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Pos, Result};
use crate::expr::types::{is_decimal, is_float, is_integer, is_string, sql_name};

/// Which value MIN / MAX / FIRST_VALUE / LAST_VALUE keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Pick {
    Min,
    Max,
    First,
    Last,
}

/// Which statistic of the moments accumulator is emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Moment {
    StddevSamp,
    VarSamp,
    StddevPop,
    VarPop,
}

/// Per-group values of one type class.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Values {
    Int(Vec<i64>, Vec<bool>),
    Float(Vec<f64>, Vec<bool>),
    Decimal(Vec<i128>, Vec<bool>),
    Str(Vec<Option<Box<str>>>),
    Bool(Vec<Option<bool>>),
}

/// The state of one aggregate over all groups.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AggState {
    CountStar(Vec<i64>),
    Count(Vec<i64>),
    /// Distinct (group, value) pairs, each as group id bytes followed by the value's row
    /// encoding, and the distinct count per group.
    CountDistinct {
        counts: Vec<i64>,
        seen: HashSet<Vec<u8>>,
    },
    SumInt(Vec<i64>, Vec<bool>),
    SumFloat(Vec<f64>, Vec<bool>),
    SumDecimal(Vec<i128>, Vec<bool>),
    AvgInt(Vec<i128>, Vec<i64>),
    AvgFloat(Vec<f64>, Vec<i64>),
    AvgDecimal(Vec<i128>, Vec<i64>),
    Pick(Pick, Values),
    Moments {
        kind: Moment,
        count: Vec<i64>,
        mean: Vec<f64>,
        m2: Vec<f64>,
    },
}

impl AggState {
    /// Whether `other` is state of the same kind, down to what it picks and the class of
    /// values it keeps (a restored snapshot must fit the accumulator it replaces).
    pub fn same_kind(&self, other: &AggState) -> bool {
        use std::mem::discriminant;
        match (self, other) {
            (AggState::Pick(p, v), AggState::Pick(q, w)) => {
                p == q && discriminant(v) == discriminant(w)
            }
            (AggState::Moments { kind: k, .. }, AggState::Moments { kind: j, .. }) => k == j,
            (a, b) => discriminant(a) == discriminant(b),
        }
    }
}

/// One aggregate: its state plus the types it reads and writes.
pub struct Accumulator {
    pub state: AggState,
    /// The type the argument is cast to before it reaches `update_and_emit`.
    pub input_type: Option<DataType>,
    pub output_type: DataType,
    /// Row encoding of COUNT(DISTINCT) values.
    converter: Option<RowConverter>,
    scratch: Vec<u8>,
}

fn overflow(what: &str) -> EngineError {
    EngineError::Data(format!("{what}: integer overflow"))
}

fn pick_class(dt: &DataType) -> Option<(Values, DataType)> {
    Some(match dt {
        t if is_integer(t) => (Values::Int(vec![], vec![]), DataType::Int64),
        DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 => {
            (Values::Int(vec![], vec![]), DataType::Int64)
        }
        t if is_float(t) => (Values::Float(vec![], vec![]), DataType::Float64),
        DataType::Decimal128(_, _) => (Values::Decimal(vec![], vec![]), dt.clone()),
        t if is_string(t) => (Values::Str(vec![]), DataType::Utf8),
        DataType::Boolean => (Values::Bool(vec![]), DataType::Boolean),
        DataType::Dictionary(_, v) => return pick_class(v),
        _ => return None,
    })
}

impl Accumulator {
    /// Build the accumulator of `func` over an argument of type `arg_type`.
    pub fn new(func: &str, arg_type: Option<&DataType>, pos: Pos) -> Result<Self> {
        let arg = arg_type.cloned().unwrap_or(DataType::Null);
        let arg = if arg == DataType::Null {
            DataType::Int64
        } else {
            arg
        };
        let bad = |what: &str| {
            EngineError::validation(
                format!(
                    "{} does not apply to a value of type {}",
                    what,
                    sql_name(&arg)
                ),
                pos,
            )
        };
        let numeric = is_integer(&arg) || is_float(&arg) || is_decimal(&arg);
        let (state, input_type, output_type) = match func {
            "count_star" => (AggState::CountStar(vec![]), None, DataType::Int64),
            "count" => (AggState::Count(vec![]), Some(arg.clone()), DataType::Int64),
            "count_distinct" => (
                AggState::CountDistinct {
                    counts: vec![],
                    seen: HashSet::new(),
                },
                Some(arg.clone()),
                DataType::Int64,
            ),
            "sum" | "avg" if !numeric => return Err(bad(&func.to_uppercase())),
            "sum" => match &arg {
                DataType::Decimal128(_, s) => (
                    AggState::SumDecimal(vec![], vec![]),
                    Some(arg.clone()),
                    DataType::Decimal128(38, *s),
                ),
                t if is_float(t) => (
                    AggState::SumFloat(vec![], vec![]),
                    Some(DataType::Float64),
                    DataType::Float64,
                ),
                _ => (
                    AggState::SumInt(vec![], vec![]),
                    Some(DataType::Int64),
                    DataType::Int64,
                ),
            },
            "avg" => match &arg {
                DataType::Decimal128(_, s) => (
                    AggState::AvgDecimal(vec![], vec![]),
                    Some(arg.clone()),
                    DataType::Decimal128(38, (*s).max(6)),
                ),
                t if is_float(t) => (
                    AggState::AvgFloat(vec![], vec![]),
                    Some(DataType::Float64),
                    DataType::Float64,
                ),
                _ => (
                    AggState::AvgInt(vec![], vec![]),
                    Some(DataType::Int64),
                    DataType::Float64,
                ),
            },
            "min" | "max" | "first_value" | "last_value" => {
                let pick = match func {
                    "min" => Pick::Min,
                    "max" => Pick::Max,
                    "first_value" => Pick::First,
                    _ => Pick::Last,
                };
                let (values, input) = pick_class(&arg).ok_or_else(|| bad(&func.to_uppercase()))?;
                let output = match &arg {
                    DataType::Dictionary(_, v) => v.as_ref().clone(),
                    t if is_string(t) => DataType::Utf8,
                    t if is_float(t) => DataType::Float64,
                    t => t.clone(),
                };
                (AggState::Pick(pick, values), Some(input), output)
            }
            "stddev" | "variance" | "stddev_pop" | "var_pop" => {
                if !numeric {
                    return Err(bad(&func.to_uppercase()));
                }
                let kind = match func {
                    "stddev" => Moment::StddevSamp,
                    "variance" => Moment::VarSamp,
                    "stddev_pop" => Moment::StddevPop,
                    _ => Moment::VarPop,
                };
                (
                    AggState::Moments {
                        kind,
                        count: vec![],
                        mean: vec![],
                        m2: vec![],
                    },
                    Some(DataType::Float64),
                    DataType::Float64,
                )
            }
            other => {
                return Err(EngineError::validation(
                    format!("unknown aggregate function {}", other.to_uppercase()),
                    pos,
                ))
            }
        };
        let converter = if matches!(state, AggState::CountDistinct { .. }) {
            Some(RowConverter::new(vec![SortField::new(arg.clone())])?)
        } else {
            None
        };
        Ok(Accumulator {
            state,
            input_type,
            output_type,
            converter,
            scratch: Vec::new(),
        })
    }

    /// Grow every per-group vector to `groups` slots.
    fn resize(&mut self, groups: usize) {
        fn grow<T: Clone>(v: &mut Vec<T>, n: usize, init: T) {
            if v.len() < n {
                v.resize(n, init);
            }
        }
        match &mut self.state {
            AggState::CountStar(c) | AggState::Count(c) => grow(c, groups, 0),
            AggState::CountDistinct { counts, .. } => grow(counts, groups, 0),
            AggState::SumInt(s, h) => {
                grow(s, groups, 0);
                grow(h, groups, false);
            }
            AggState::SumFloat(s, h) => {
                grow(s, groups, 0.0);
                grow(h, groups, false);
            }
            AggState::SumDecimal(s, h) => {
                grow(s, groups, 0);
                grow(h, groups, false);
            }
            AggState::AvgInt(s, c) | AggState::AvgDecimal(s, c) => {
                grow(s, groups, 0);
                grow(c, groups, 0);
            }
            AggState::AvgFloat(s, c) => {
                grow(s, groups, 0.0);
                grow(c, groups, 0);
            }
            AggState::Pick(_, values) => match values {
                Values::Int(v, h) => {
                    grow(v, groups, 0);
                    grow(h, groups, false);
                }
                Values::Float(v, h) => {
                    grow(v, groups, 0.0);
                    grow(h, groups, false);
                }
                Values::Decimal(v, h) => {
                    grow(v, groups, 0);
                    grow(h, groups, false);
                }
                Values::Str(v) => grow(v, groups, None),
                Values::Bool(v) => grow(v, groups, None),
            },
            AggState::Moments {
                count, mean, m2, ..
            } => {
                grow(count, groups, 0);
                grow(mean, groups, 0.0);
                grow(m2, groups, 0.0);
            }
        }
    }

    /// Fold rows into their groups in order; return each row's updated aggregate.
    ///
    /// `gids[i]` is row i's group; `arg` is the argument already cast to `input_type`
    /// (absent for COUNT(*)); `groups` is the number of groups in the table.
    pub fn update_and_emit(
        &mut self,
        gids: &[u32],
        groups: usize,
        arg: Option<&ArrayRef>,
    ) -> Result<ArrayRef> {
        self.resize(groups);
        let n = gids.len();
        let out: ArrayRef = match &mut self.state {
            AggState::CountStar(counts) => {
                let mut b = Int64Builder::with_capacity(n);
                for &g in gids {
                    let c = &mut counts[g as usize];
                    *c += 1;
                    b.append_value(*c);
                }
                Arc::new(b.finish())
            }
            AggState::Count(counts) => {
                let a = arg.expect("COUNT has an argument");
                let mut b = Int64Builder::with_capacity(n);
                for (i, &g) in gids.iter().enumerate() {
                    let c = &mut counts[g as usize];
                    if a.is_valid(i) {
                        *c += 1;
                    }
                    b.append_value(*c);
                }
                Arc::new(b.finish())
            }
            AggState::CountDistinct { counts, seen } => {
                let a = arg.expect("COUNT DISTINCT has an argument");
                // -0.0 and 0.0 are one value, and so is every NaN (SQL equality).
                let canonical = crate::expr::canonical_float(crate::expr::Value::Array(a.clone()));
                let rows = self
                    .converter
                    .as_ref()
                    .expect("count distinct has a converter")
                    .convert_columns(std::slice::from_ref(canonical.array()))?;
                let mut b = Int64Builder::with_capacity(n);
                for (i, &g) in gids.iter().enumerate() {
                    if a.is_valid(i) {
                        self.scratch.clear();
                        self.scratch.extend_from_slice(&g.to_le_bytes());
                        self.scratch.extend_from_slice(rows.row(i).as_ref());
                        if !seen.contains(self.scratch.as_slice()) {
                            seen.insert(self.scratch.clone());
                            counts[g as usize] += 1;
                        }
                    }
                    b.append_value(counts[g as usize]);
                }
                Arc::new(b.finish())
            }
            AggState::SumInt(sums, has) => {
                let a = arg.expect("SUM has an argument");
                Arc::new(running_fold::<Int64Type>(gids, a, sums, has, |s, v, _| {
                    s.checked_add(v).ok_or_else(|| overflow("SUM"))
                })?)
            }
            AggState::SumFloat(sums, has) => {
                let a = arg.expect("SUM has an argument");
                Arc::new(running_fold::<Float64Type>(
                    gids,
                    a,
                    sums,
                    has,
                    |s, v, _| Ok(s + v),
                )?)
            }
            AggState::SumDecimal(sums, has) => {
                let a = arg.expect("SUM has an argument");
                let DataType::Decimal128(p, s) = self.output_type else {
                    unreachable!()
                };
                let out = running_fold::<Decimal128Type>(gids, a, sums, has, |s, v, _| {
                    s.checked_add(v).ok_or_else(|| overflow("SUM"))
                })?;
                Arc::new(out.with_precision_and_scale(p, s)?)
            }
            AggState::AvgInt(sums, counts) => {
                let a = arg
                    .expect("AVG has an argument")
                    .as_primitive::<Int64Type>();
                let mut b = Float64Builder::with_capacity(n);
                for (i, &g) in gids.iter().enumerate() {
                    let g = g as usize;
                    if a.is_valid(i) {
                        sums[g] += a.value(i) as i128;
                        counts[g] += 1;
                    }
                    if counts[g] > 0 {
                        b.append_value(sums[g] as f64 / counts[g] as f64);
                    } else {
                        b.append_null();
                    }
                }
                Arc::new(b.finish())
            }
            AggState::AvgFloat(sums, counts) => {
                let a = arg
                    .expect("AVG has an argument")
                    .as_primitive::<Float64Type>();
                let mut b = Float64Builder::with_capacity(n);
                for (i, &g) in gids.iter().enumerate() {
                    let g = g as usize;
                    if a.is_valid(i) {
                        sums[g] += a.value(i);
                        counts[g] += 1;
                    }
                    if counts[g] > 0 {
                        b.append_value(sums[g] / counts[g] as f64);
                    } else {
                        b.append_null();
                    }
                }
                Arc::new(b.finish())
            }
            AggState::AvgDecimal(sums, counts) => {
                let a = arg
                    .expect("AVG has an argument")
                    .as_primitive::<Decimal128Type>();
                let (DataType::Decimal128(_, in_s), DataType::Decimal128(p, out_s)) =
                    (a.data_type(), &self.output_type)
                else {
                    unreachable!()
                };
                let factor = 10i128.pow((*out_s - *in_s) as u32);
                let mut b = Decimal128Builder::with_capacity(n);
                for (i, &g) in gids.iter().enumerate() {
                    let g = g as usize;
                    if a.is_valid(i) {
                        sums[g] = sums[g]
                            .checked_add(a.value(i))
                            .ok_or_else(|| overflow("AVG"))?;
                        counts[g] += 1;
                    }
                    if counts[g] > 0 {
                        let scaled = sums[g].checked_mul(factor).ok_or_else(|| overflow("AVG"))?;
                        b.append_value(divide_half_away(scaled, counts[g] as i128));
                    } else {
                        b.append_null();
                    }
                }
                Arc::new(b.finish().with_precision_and_scale(*p, *out_s)?)
            }
            AggState::Pick(pick, values) => {
                let a = arg.expect("aggregate has an argument");
                pick_update(*pick, values, gids, a, &self.output_type)?
            }
            AggState::Moments {
                kind,
                count,
                mean,
                m2,
            } => {
                let a = arg
                    .expect("aggregate has an argument")
                    .as_primitive::<Float64Type>();
                let mut b = Float64Builder::with_capacity(n);
                for (i, &g) in gids.iter().enumerate() {
                    let g = g as usize;
                    if a.is_valid(i) {
                        // Welford's online update: numerically stable running variance.
                        let x = a.value(i);
                        count[g] += 1;
                        let delta = x - mean[g];
                        mean[g] += delta / count[g] as f64;
                        m2[g] += delta * (x - mean[g]);
                    }
                    let c = count[g];
                    let v = match kind {
                        Moment::StddevSamp | Moment::VarSamp if c < 2 => None,
                        Moment::StddevPop | Moment::VarPop if c < 1 => None,
                        Moment::StddevSamp => Some((m2[g] / (c - 1) as f64).sqrt()),
                        Moment::VarSamp => Some(m2[g] / (c - 1) as f64),
                        Moment::StddevPop => Some((m2[g] / c as f64).sqrt()),
                        Moment::VarPop => Some(m2[g] / c as f64),
                    };
                    b.append_option(v);
                }
                Arc::new(b.finish())
            }
        };
        Ok(out)
    }

    /// Heap bytes held by the state.
    pub fn state_bytes(&self) -> usize {
        fn v<T>(x: &Vec<T>) -> usize {
            x.capacity() * std::mem::size_of::<T>()
        }
        match &self.state {
            AggState::CountStar(c) | AggState::Count(c) => v(c),
            AggState::CountDistinct { counts, seen } => {
                v(counts)
                    + seen.allocation_size()
                    + seen.iter().map(|k| k.capacity()).sum::<usize>()
            }
            AggState::SumInt(s, h) => v(s) + v(h),
            AggState::SumFloat(s, h) => v(s) + v(h),
            AggState::SumDecimal(s, h) => v(s) + v(h),
            AggState::AvgInt(s, c) | AggState::AvgDecimal(s, c) => v(s) + v(c),
            AggState::AvgFloat(s, c) => v(s) + v(c),
            AggState::Pick(_, values) => match values {
                Values::Int(x, h) => v(x) + v(h),
                Values::Float(x, h) => v(x) + v(h),
                Values::Decimal(x, h) => v(x) + v(h),
                Values::Str(x) => v(x) + x.iter().flatten().map(|s| s.len()).sum::<usize>(),
                Values::Bool(x) => v(x),
            },
            AggState::Moments {
                count, mean, m2, ..
            } => v(count) + v(mean) + v(m2),
        }
    }
}

/// Fold each row's value into its group's slot with `step(slot, value, slot_is_set)`,
/// skipping NULLs, and emit every row's slot right after its update (NULL while the group
/// has seen no value): the running aggregate of SUM, MIN, MAX, FIRST/LAST_VALUE.
fn running_fold<T: ArrowPrimitiveType>(
    gids: &[u32],
    arg: &ArrayRef,
    slots: &mut [T::Native],
    has: &mut [bool],
    mut step: impl FnMut(T::Native, T::Native, bool) -> Result<T::Native>,
) -> Result<PrimitiveArray<T>> {
    let a = arg.as_primitive::<T>();
    let mut b = PrimitiveBuilder::<T>::with_capacity(gids.len());
    for (i, &g) in gids.iter().enumerate() {
        let g = g as usize;
        if a.is_valid(i) {
            slots[g] = step(slots[g], a.value(i), has[g])?;
            has[g] = true;
        }
        b.append_option(has[g].then_some(slots[g]));
    }
    Ok(b.finish())
}

/// `a / b` for b > 0, rounded half away from zero.
fn divide_half_away(a: i128, b: i128) -> i128 {
    let q = a / b;
    let r = a % b;
    if r.abs() * 2 >= b {
        q + a.signum()
    } else {
        q
    }
}

fn keep<T: PartialOrd>(pick: Pick, current: &T, has: bool, new: &T) -> bool {
    match pick {
        Pick::First => !has,
        Pick::Last => true,
        Pick::Min => !has || new < current,
        Pick::Max => !has || new > current,
    }
}

/// [`keep`] for doubles in SQL order (SPEC section 12, as DuckDB): NaN is greater than
/// every other value, so `MAX` of a group with a NaN is NaN and `MIN` skips it unless
/// every value is NaN; -0.0 and 0.0 are equal, so the first one seen stays.
fn keep_float(pick: Pick, current: f64, has: bool, new: f64) -> bool {
    let less = |a: f64, b: f64| !a.is_nan() && (b.is_nan() || a < b);
    match pick {
        Pick::First => !has,
        Pick::Last => true,
        Pick::Min => !has || less(new, current),
        Pick::Max => !has || less(current, new),
    }
}

fn pick_update(
    pick: Pick,
    values: &mut Values,
    gids: &[u32],
    a: &ArrayRef,
    output_type: &DataType,
) -> Result<ArrayRef> {
    let n = gids.len();
    Ok(match values {
        Values::Int(vals, has) => {
            let out: ArrayRef =
                Arc::new(running_fold::<Int64Type>(gids, a, vals, has, |c, v, h| {
                    Ok(if keep(pick, &c, h, &v) { v } else { c })
                })?);
            if output_type == &DataType::Int64 {
                out
            } else {
                cast(out.as_ref(), output_type)?
            }
        }
        Values::Float(vals, has) => Arc::new(running_fold::<Float64Type>(
            gids,
            a,
            vals,
            has,
            |c, v, h| Ok(if keep_float(pick, c, h, v) { v } else { c }),
        )?),
        Values::Decimal(vals, has) => {
            let DataType::Decimal128(p, s) = output_type else {
                unreachable!()
            };
            let out = running_fold::<Decimal128Type>(gids, a, vals, has, |c, v, h| {
                Ok(if keep(pick, &c, h, &v) { v } else { c })
            })?;
            Arc::new(out.with_precision_and_scale(*p, *s)?)
        }
        Values::Str(vals) => {
            let a = a.as_string::<i32>();
            let mut b = StringBuilder::with_capacity(n, n * 8);
            for (i, &g) in gids.iter().enumerate() {
                let g = g as usize;
                if a.is_valid(i) {
                    let x = a.value(i);
                    let replace = match (&vals[g], pick) {
                        (None, _) => true,
                        (Some(_), Pick::First) => false,
                        (Some(cur), Pick::Last) => cur.as_ref() != x,
                        (Some(cur), Pick::Min) => x < cur.as_ref(),
                        (Some(cur), Pick::Max) => x > cur.as_ref(),
                    };
                    if replace {
                        vals[g] = Some(x.into());
                    }
                }
                b.append_option(vals[g].as_deref());
            }
            Arc::new(b.finish())
        }
        Values::Bool(vals) => {
            let a = a.as_boolean();
            let mut b = BooleanBuilder::with_capacity(n);
            for (i, &g) in gids.iter().enumerate() {
                let g = g as usize;
                if a.is_valid(i) {
                    let x = a.value(i);
                    let has = vals[g].is_some();
                    if keep(pick, &vals[g].unwrap_or(false), has, &x) {
                        vals[g] = Some(x);
                    }
                }
                b.append_option(vals[g]);
            }
            Arc::new(b.finish())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Decimal128Array, Int64Array};

    #[test]
    fn running_sum_per_group_with_nulls() {
        let mut acc = Accumulator::new("sum", Some(&DataType::Int64), None).unwrap();
        let arg: ArrayRef = Arc::new(Int64Array::from(vec![None, Some(2), Some(3), Some(4)]));
        let out = acc.update_and_emit(&[0, 1, 0, 1], 2, Some(&arg)).unwrap();
        let out = out.as_primitive::<Int64Type>();
        assert!(out.is_null(0));
        assert_eq!((out.value(1), out.value(2), out.value(3)), (2, 3, 6));
    }

    #[test]
    fn decimal_avg_is_exact() {
        let mut acc = Accumulator::new("avg", Some(&DataType::Decimal128(10, 2)), None).unwrap();
        assert_eq!(acc.output_type, DataType::Decimal128(38, 6));
        let arg: ArrayRef = Arc::new(
            Decimal128Array::from(vec![10, 20, 20])
                .with_precision_and_scale(10, 2)
                .unwrap(),
        );
        let out = acc.update_and_emit(&[0, 0, 0], 1, Some(&arg)).unwrap();
        let out = out.as_primitive::<Decimal128Type>();
        // 0.10, 0.15, 0.166667 (half away from zero)
        assert_eq!(
            (out.value(0), out.value(1), out.value(2)),
            (100000, 150000, 166667)
        );
    }

    #[test]
    fn count_distinct_counts_each_value_once_per_group() {
        let mut acc = Accumulator::new("count_distinct", Some(&DataType::Int64), None).unwrap();
        let arg: ArrayRef = Arc::new(Int64Array::from(vec![
            Some(1),
            Some(1),
            None,
            Some(2),
            Some(1),
        ]));
        let out = acc
            .update_and_emit(&[0, 0, 0, 0, 1], 2, Some(&arg))
            .unwrap();
        let out = out.as_primitive::<Int64Type>();
        assert_eq!(out.values().to_vec(), vec![1, 1, 1, 2, 1]);
    }

    #[test]
    fn sample_variance_needs_two_values() {
        let mut acc = Accumulator::new("variance", Some(&DataType::Float64), None).unwrap();
        let arg: ArrayRef = Arc::new(arrow::array::Float64Array::from(vec![1.0, 3.0]));
        let out = acc.update_and_emit(&[0, 0], 1, Some(&arg)).unwrap();
        let out = out.as_primitive::<Float64Type>();
        assert!(out.is_null(0));
        assert_eq!(out.value(1), 2.0);
    }
}
