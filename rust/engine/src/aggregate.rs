//! Aggregate accumulators, kept column-wise per aggregate: one vector slot per group
//! (in the shape of DataFusion's `GroupsAccumulator`).
//!
//! - [`Accumulator::update_and_emit`] folds a batch into the state row by row (each
//!   aggregate in its own tight loop) and returns, for every row, the aggregate's value
//!   for that row's group right after that row was added: the running aggregate that
//!   `EMIT CHANGES` emits;
//! - [`Accumulator::update`] folds without emitting (windows under `EMIT FINAL`);
//! - [`Accumulator::evaluate`] gives the current value of chosen groups (a closing
//!   window's rows);
//! - [`Accumulator::merge`] folds one group's state into another's (sessions that a row
//!   bridges), and [`Accumulator::free`] empties a group's slot for reuse (closed windows).
//!
//! State is mutated in place and serialisable for snapshots.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, AsArray, BooleanArray, BooleanBuilder, Decimal128Array,
    Decimal128Builder, Float64Array, Float64Builder, Int64Array, Int64Builder, PrimitiveArray,
    PrimitiveBuilder, StringArray, StringBuilder,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Decimal128Type, Float64Type, Int64Type};
use arrow::row::{RowConverter, SortField};
use hashbrown::HashSet;
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Pos, Result};
use crate::expr::types::{is_decimal, is_float, is_integer, is_string, sql_name};
use crate::plan::AggFunc;

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
    /// The distinct values of each group (their row encoding): a set per group, so a
    /// group's values can be merged into another's or freed on their own.
    CountDistinct {
        seen: Vec<HashSet<Box<[u8]>>>,
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
    pub fn new(func: AggFunc, arg_type: Option<&DataType>, pos: Pos) -> Result<Self> {
        let arg = arg_type.cloned().unwrap_or(DataType::Null);
        let arg = if arg == DataType::Null {
            DataType::Int64
        } else {
            arg
        };
        let bad = |what: AggFunc| {
            EngineError::validation(
                format!(
                    "{} does not apply to a value of type {}",
                    what.sql_name(),
                    sql_name(&arg)
                ),
                pos,
            )
        };
        let numeric = is_integer(&arg) || is_float(&arg) || is_decimal(&arg);
        let (state, input_type, output_type) = match func {
            AggFunc::CountStar => (AggState::CountStar(vec![]), None, DataType::Int64),
            AggFunc::Count => (AggState::Count(vec![]), Some(arg.clone()), DataType::Int64),
            AggFunc::CountDistinct => (
                AggState::CountDistinct { seen: vec![] },
                Some(arg.clone()),
                DataType::Int64,
            ),
            AggFunc::Sum | AggFunc::Avg if !numeric => return Err(bad(func)),
            AggFunc::Sum => match &arg {
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
            AggFunc::Avg => match &arg {
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
            AggFunc::Min | AggFunc::Max | AggFunc::FirstValue | AggFunc::LastValue => {
                let pick = match func {
                    AggFunc::Min => Pick::Min,
                    AggFunc::Max => Pick::Max,
                    AggFunc::FirstValue => Pick::First,
                    _ => Pick::Last,
                };
                let (values, input) = pick_class(&arg).ok_or_else(|| bad(func))?;
                let output = match &arg {
                    DataType::Dictionary(_, v) => v.as_ref().clone(),
                    t if is_string(t) => DataType::Utf8,
                    t if is_float(t) => DataType::Float64,
                    t => t.clone(),
                };
                (AggState::Pick(pick, values), Some(input), output)
            }
            AggFunc::Stddev | AggFunc::Variance | AggFunc::StddevPop | AggFunc::VarPop => {
                if !numeric {
                    return Err(bad(func));
                }
                let kind = match func {
                    AggFunc::Stddev => Moment::StddevSamp,
                    AggFunc::Variance => Moment::VarSamp,
                    AggFunc::StddevPop => Moment::StddevPop,
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
            AggState::CountDistinct { seen } => {
                if seen.len() < groups {
                    seen.resize_with(groups, HashSet::new);
                }
            }
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
        Ok(self
            .apply::<true>(gids, groups, arg)?
            .expect("emitting fold returns values"))
    }

    /// Fold rows into their groups in order, without emitting anything.
    pub fn update(&mut self, gids: &[u32], groups: usize, arg: Option<&ArrayRef>) -> Result<()> {
        self.apply::<false>(gids, groups, arg).map(|_| ())
    }

    /// The fold of [`Self::update_and_emit`] (`EMIT`) and [`Self::update`] (not `EMIT`):
    /// one loop per kind of state, the output builder compiled away when not emitting.
    fn apply<const EMIT: bool>(
        &mut self,
        gids: &[u32],
        groups: usize,
        arg: Option<&ArrayRef>,
    ) -> Result<Option<ArrayRef>> {
        self.resize(groups);
        let n = if EMIT { gids.len() } else { 0 };
        let out: ArrayRef = match &mut self.state {
            AggState::CountStar(counts) => {
                let mut b = Int64Builder::with_capacity(n);
                for &g in gids {
                    let c = &mut counts[g as usize];
                    *c += 1;
                    if EMIT {
                        b.append_value(*c);
                    }
                }
                Arc::new(b.finish())
            }
            AggState::Count(counts) => {
                let a = arg.expect("COUNT has an argument");
                let mut b = Int64Builder::with_capacity(n);
                match a.logical_nulls() {
                    None => {
                        for &g in gids {
                            let c = &mut counts[g as usize];
                            *c += 1;
                            if EMIT {
                                b.append_value(*c);
                            }
                        }
                    }
                    Some(nulls) => {
                        for (i, &g) in gids.iter().enumerate() {
                            let c = &mut counts[g as usize];
                            *c += nulls.is_valid(i) as i64;
                            if EMIT {
                                b.append_value(*c);
                            }
                        }
                    }
                }
                Arc::new(b.finish())
            }
            AggState::CountDistinct { seen } => {
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
                    let set = &mut seen[g as usize];
                    if a.is_valid(i) {
                        let value = rows.row(i);
                        if !set.contains(value.as_ref()) {
                            set.insert(value.as_ref().into());
                        }
                    }
                    if EMIT {
                        b.append_value(set.len() as i64);
                    }
                }
                Arc::new(b.finish())
            }
            AggState::SumInt(sums, has) => {
                let a = arg.expect("SUM has an argument");
                Arc::new(running_fold::<Int64Type, EMIT>(
                    gids,
                    a,
                    sums,
                    has,
                    |s, v, _| s.checked_add(v).ok_or_else(|| overflow("SUM")),
                )?)
            }
            AggState::SumFloat(sums, has) => {
                let a = arg.expect("SUM has an argument");
                Arc::new(running_fold::<Float64Type, EMIT>(
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
                let out = running_fold::<Decimal128Type, EMIT>(gids, a, sums, has, |s, v, _| {
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
                    if EMIT {
                        b.append_option(avg_int(sums[g], counts[g]));
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
                    if EMIT {
                        b.append_option(avg_float(sums[g], counts[g]));
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
                    if EMIT {
                        b.append_option(avg_decimal(sums[g], counts[g], factor)?);
                    }
                }
                Arc::new(b.finish().with_precision_and_scale(*p, *out_s)?)
            }
            AggState::Pick(pick, values) => {
                let a = arg.expect("aggregate has an argument");
                pick_update::<EMIT>(*pick, values, gids, a, &self.output_type)?
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
                    if EMIT {
                        b.append_option(moment(*kind, count[g], m2[g]));
                    }
                }
                Arc::new(b.finish())
            }
        };
        Ok(EMIT.then_some(out))
    }

    /// The current value of each group of `gids` (a closing window's rows).
    pub fn evaluate(&self, gids: &[u32]) -> Result<ArrayRef> {
        let n = gids.len();
        let ix = |g: u32| g as usize;
        let out: ArrayRef = match &self.state {
            AggState::CountStar(c) | AggState::Count(c) => Arc::new(Int64Array::from_iter_values(
                gids.iter().map(|&g| c.get(ix(g)).copied().unwrap_or(0)),
            )),
            AggState::CountDistinct { seen } => Arc::new(Int64Array::from_iter_values(
                gids.iter()
                    .map(|&g| seen.get(ix(g)).map_or(0, |s| s.len() as i64)),
            )),
            AggState::SumInt(s, h) => Arc::new(Int64Array::from_iter(
                gids.iter().map(|&g| slot(s, h, ix(g))),
            )),
            AggState::SumFloat(s, h) => Arc::new(Float64Array::from_iter(
                gids.iter().map(|&g| slot(s, h, ix(g))),
            )),
            AggState::SumDecimal(s, h) => {
                let DataType::Decimal128(p, sc) = self.output_type else {
                    unreachable!()
                };
                Arc::new(
                    Decimal128Array::from_iter(gids.iter().map(|&g| slot(s, h, ix(g))))
                        .with_precision_and_scale(p, sc)?,
                )
            }
            AggState::AvgInt(s, c) => Arc::new(Float64Array::from_iter(
                gids.iter().map(|&g| avg_int(s[ix(g)], c[ix(g)])),
            )),
            AggState::AvgFloat(s, c) => Arc::new(Float64Array::from_iter(
                gids.iter().map(|&g| avg_float(s[ix(g)], c[ix(g)])),
            )),
            AggState::AvgDecimal(s, c) => {
                let (Some(DataType::Decimal128(_, in_s)), DataType::Decimal128(p, out_s)) =
                    (&self.input_type, &self.output_type)
                else {
                    unreachable!()
                };
                let factor = 10i128.pow((*out_s - *in_s) as u32);
                let mut b = Decimal128Builder::with_capacity(n);
                for &g in gids {
                    b.append_option(avg_decimal(s[ix(g)], c[ix(g)], factor)?);
                }
                Arc::new(b.finish().with_precision_and_scale(*p, *out_s)?)
            }
            AggState::Pick(_, values) => {
                let out: ArrayRef = match values {
                    Values::Int(v, h) => Arc::new(Int64Array::from_iter(
                        gids.iter().map(|&g| slot(v, h, ix(g))),
                    )),
                    Values::Float(v, h) => Arc::new(Float64Array::from_iter(
                        gids.iter().map(|&g| slot(v, h, ix(g))),
                    )),
                    Values::Decimal(v, h) => {
                        let DataType::Decimal128(p, sc) = self.output_type else {
                            unreachable!()
                        };
                        Arc::new(
                            Decimal128Array::from_iter(gids.iter().map(|&g| slot(v, h, ix(g))))
                                .with_precision_and_scale(p, sc)?,
                        )
                    }
                    Values::Str(v) => Arc::new(StringArray::from_iter(
                        gids.iter().map(|&g| v[ix(g)].as_deref()),
                    )),
                    Values::Bool(v) => {
                        Arc::new(BooleanArray::from_iter(gids.iter().map(|&g| v[ix(g)])))
                    }
                };
                if out.data_type() == &self.output_type {
                    out
                } else {
                    cast(out.as_ref(), &self.output_type)?
                }
            }
            AggState::Moments {
                kind, count, m2, ..
            } => Arc::new(Float64Array::from_iter(
                gids.iter().map(|&g| moment(*kind, count[ix(g)], m2[ix(g)])),
            )),
        };
        Ok(out)
    }

    /// Fold group `from`'s state into group `into`'s and free `from`. `into` holds the
    /// earlier rows (FIRST_VALUE keeps its value, LAST_VALUE takes `from`'s).
    pub fn merge(&mut self, into: u32, from: u32) -> Result<()> {
        if let AggState::CountDistinct { seen } = &mut self.state {
            let moved = std::mem::take(&mut seen[from as usize]);
            seen[into as usize].extend(moved);
        } else {
            self.merge_keep(into, from)?;
        }
        self.free(from);
        Ok(())
    }

    /// Fold group `from`'s state into group `into`'s, leaving `from` as it is (a sliding
    /// window's result, merged from the panes it spans). `into` holds the earlier rows.
    pub fn merge_keep(&mut self, into: u32, from: u32) -> Result<()> {
        let (a, b) = (into as usize, from as usize);
        match &mut self.state {
            AggState::CountStar(c) | AggState::Count(c) => c[a] += c[b],
            AggState::CountDistinct { seen } => {
                let copied: Vec<Box<[u8]>> = seen[b].iter().cloned().collect();
                seen[a].extend(copied);
            }
            AggState::SumInt(s, h) => {
                s[a] = s[a].checked_add(s[b]).ok_or_else(|| overflow("SUM"))?;
                h[a] |= h[b];
            }
            AggState::SumFloat(s, h) => {
                s[a] += s[b];
                h[a] |= h[b];
            }
            AggState::SumDecimal(s, h) => {
                s[a] = s[a].checked_add(s[b]).ok_or_else(|| overflow("SUM"))?;
                h[a] |= h[b];
            }
            AggState::AvgInt(s, c) | AggState::AvgDecimal(s, c) => {
                s[a] = s[a].checked_add(s[b]).ok_or_else(|| overflow("AVG"))?;
                c[a] += c[b];
            }
            AggState::AvgFloat(s, c) => {
                s[a] += s[b];
                c[a] += c[b];
            }
            AggState::Pick(pick, values) => {
                let pick = *pick;
                match values {
                    Values::Int(v, h) => merge_pick(pick, v, h, a, b, |x, y| x < y),
                    Values::Decimal(v, h) => merge_pick(pick, v, h, a, b, |x, y| x < y),
                    Values::Float(v, h) => merge_pick(pick, v, h, a, b, |x: &f64, y: &f64| {
                        !x.is_nan() && (y.is_nan() || x < y)
                    }),
                    Values::Str(v) => {
                        let (x, y) = (v[a].take(), v[b].clone());
                        v[a] = merge_option(pick, x, y);
                    }
                    Values::Bool(v) => {
                        let (x, y) = (v[a].take(), v[b]);
                        v[a] = merge_option(pick, x, y);
                    }
                }
            }
            AggState::Moments {
                count, mean, m2, ..
            } => {
                // Chan et al.'s parallel combination of two Welford states.
                let (na, nb) = (count[a] as f64, count[b] as f64);
                if count[b] > 0 {
                    let n = na + nb;
                    let delta = mean[b] - mean[a];
                    mean[a] += delta * nb / n;
                    m2[a] += m2[b] + delta * delta * na * nb / n;
                    count[a] += count[b];
                }
            }
        }
        Ok(())
    }

    /// Empty the slots of `groups` (their windows closed), ready for reuse: one match
    /// on the kind of state, then a loop.
    pub fn free_all(&mut self, groups: &[u32]) {
        fn reset<T: Copy>(v: &mut [T], groups: &[u32], zero: T) {
            for &g in groups {
                v[g as usize] = zero;
            }
        }
        match &mut self.state {
            AggState::CountStar(c) | AggState::Count(c) => reset(c, groups, 0),
            AggState::SumInt(s, h) => {
                reset(s, groups, 0);
                reset(h, groups, false);
            }
            AggState::SumFloat(s, h) => {
                reset(s, groups, 0.0);
                reset(h, groups, false);
            }
            AggState::SumDecimal(s, h) => {
                reset(s, groups, 0);
                reset(h, groups, false);
            }
            AggState::AvgInt(s, c) | AggState::AvgDecimal(s, c) => {
                reset(s, groups, 0);
                reset(c, groups, 0);
            }
            AggState::AvgFloat(s, c) => {
                reset(s, groups, 0.0);
                reset(c, groups, 0);
            }
            AggState::Pick(_, Values::Int(v, h)) => {
                reset(v, groups, 0);
                reset(h, groups, false);
            }
            AggState::Pick(_, Values::Float(v, h)) => {
                reset(v, groups, 0.0);
                reset(h, groups, false);
            }
            AggState::Pick(_, Values::Decimal(v, h)) => {
                reset(v, groups, 0);
                reset(h, groups, false);
            }
            AggState::Pick(_, Values::Bool(v)) => reset(v, groups, None),
            AggState::Moments {
                count, mean, m2, ..
            } => {
                reset(count, groups, 0);
                reset(mean, groups, 0.0);
                reset(m2, groups, 0.0);
            }
            // Heap values: one at a time.
            AggState::CountDistinct { .. } | AggState::Pick(_, Values::Str(_)) => {
                for &g in groups {
                    self.free(g);
                }
            }
        }
    }

    /// Empty group `g`'s slot (its window closed), ready for reuse.
    pub fn free(&mut self, g: u32) {
        let g = g as usize;
        match &mut self.state {
            AggState::CountStar(c) | AggState::Count(c) => c[g] = 0,
            AggState::CountDistinct { seen } => seen[g] = HashSet::new(),
            AggState::SumInt(s, h) => (s[g], h[g]) = (0, false),
            AggState::SumFloat(s, h) => (s[g], h[g]) = (0.0, false),
            AggState::SumDecimal(s, h) => (s[g], h[g]) = (0, false),
            AggState::AvgInt(s, c) | AggState::AvgDecimal(s, c) => (s[g], c[g]) = (0, 0),
            AggState::AvgFloat(s, c) => (s[g], c[g]) = (0.0, 0),
            AggState::Pick(_, values) => match values {
                Values::Int(v, h) => (v[g], h[g]) = (0, false),
                Values::Float(v, h) => (v[g], h[g]) = (0.0, false),
                Values::Decimal(v, h) => (v[g], h[g]) = (0, false),
                Values::Str(v) => v[g] = None,
                Values::Bool(v) => v[g] = None,
            },
            AggState::Moments {
                count, mean, m2, ..
            } => (count[g], mean[g], m2[g]) = (0, 0.0, 0.0),
        }
    }

    /// Make room for `groups` groups (slots beyond the state's size are empty).
    pub fn reserve_groups(&mut self, groups: usize) {
        self.resize(groups);
    }

    /// Heap bytes held by the state.
    pub fn state_bytes(&self) -> usize {
        fn v<T>(x: &Vec<T>) -> usize {
            x.capacity() * std::mem::size_of::<T>()
        }
        match &self.state {
            AggState::CountStar(c) | AggState::Count(c) => v(c),
            AggState::CountDistinct { seen } => {
                v(seen)
                    + seen
                        .iter()
                        .map(|set| {
                            set.allocation_size() + set.iter().map(|k| k.len()).sum::<usize>()
                        })
                        .sum::<usize>()
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
/// skipping NULLs, and (when `EMIT`) emit every row's slot right after its update (NULL
/// while the group has seen no value): the running aggregate of SUM, MIN, MAX,
/// FIRST/LAST_VALUE.
fn running_fold<T: ArrowPrimitiveType, const EMIT: bool>(
    gids: &[u32],
    arg: &ArrayRef,
    slots: &mut [T::Native],
    has: &mut [bool],
    mut step: impl FnMut(T::Native, T::Native, bool) -> Result<T::Native>,
) -> Result<PrimitiveArray<T>> {
    let a = arg.as_primitive::<T>();
    let mut b = PrimitiveBuilder::<T>::with_capacity(if EMIT { gids.len() } else { 0 });
    let values = a.values();
    match a.nulls() {
        None => {
            for (i, &g) in gids.iter().enumerate() {
                let g = g as usize;
                slots[g] = step(slots[g], values[i], has[g])?;
                has[g] = true;
                if EMIT {
                    b.append_value(slots[g]);
                }
            }
        }
        Some(nulls) => {
            for (i, &g) in gids.iter().enumerate() {
                let g = g as usize;
                if nulls.is_valid(i) {
                    slots[g] = step(slots[g], values[i], has[g])?;
                    has[g] = true;
                }
                if EMIT {
                    b.append_option(has[g].then_some(slots[g]));
                }
            }
        }
    }
    Ok(b.finish())
}

/// A slot's value, NULL while its group has seen no value.
fn slot<T: Copy>(values: &[T], has: &[bool], g: usize) -> Option<T> {
    (has.get(g).copied().unwrap_or(false)).then(|| values[g])
}

fn avg_int(sum: i128, count: i64) -> Option<f64> {
    (count > 0).then(|| sum as f64 / count as f64)
}

fn avg_float(sum: f64, count: i64) -> Option<f64> {
    (count > 0).then(|| sum / count as f64)
}

fn avg_decimal(sum: i128, count: i64, factor: i128) -> Result<Option<i128>> {
    if count == 0 {
        return Ok(None);
    }
    let scaled = sum.checked_mul(factor).ok_or_else(|| overflow("AVG"))?;
    Ok(Some(divide_half_away(scaled, count as i128)))
}

fn moment(kind: Moment, c: i64, m2: f64) -> Option<f64> {
    match kind {
        Moment::StddevSamp | Moment::VarSamp if c < 2 => None,
        Moment::StddevPop | Moment::VarPop if c < 1 => None,
        Moment::StddevSamp => Some((m2 / (c - 1) as f64).sqrt()),
        Moment::VarSamp => Some(m2 / (c - 1) as f64),
        Moment::StddevPop => Some((m2 / c as f64).sqrt()),
        Moment::VarPop => Some(m2 / c as f64),
    }
}

/// Merge slot `b` into slot `a` of a MIN/MAX/FIRST/LAST state (`a` holds the earlier
/// rows); `less` orders values as SQL does.
fn merge_pick<T: Copy>(
    pick: Pick,
    v: &mut [T],
    h: &mut [bool],
    a: usize,
    b: usize,
    less: impl Fn(&T, &T) -> bool,
) {
    if !h[b] {
        return;
    }
    let take = !h[a]
        || match pick {
            Pick::First => false,
            Pick::Last => true,
            Pick::Min => less(&v[b], &v[a]),
            Pick::Max => less(&v[a], &v[b]),
        };
    if take {
        v[a] = v[b];
    }
    h[a] = true;
}

/// [`merge_pick`] for optional values (strings, booleans).
fn merge_option<T: PartialOrd>(pick: Pick, a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (None, b) => b,
        (a, None) => a,
        (Some(a), Some(b)) => Some(match pick {
            Pick::First => a,
            Pick::Last => b,
            Pick::Min => {
                if b < a {
                    b
                } else {
                    a
                }
            }
            Pick::Max => {
                if b > a {
                    b
                } else {
                    a
                }
            }
        }),
    }
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

fn pick_update<const EMIT: bool>(
    pick: Pick,
    values: &mut Values,
    gids: &[u32],
    a: &ArrayRef,
    output_type: &DataType,
) -> Result<ArrayRef> {
    let n = if EMIT { gids.len() } else { 0 };
    Ok(match values {
        Values::Int(vals, has) => {
            let out: ArrayRef = Arc::new(running_fold::<Int64Type, EMIT>(
                gids,
                a,
                vals,
                has,
                |c, v, h| Ok(if keep(pick, &c, h, &v) { v } else { c }),
            )?);
            if !EMIT || output_type == &DataType::Int64 {
                out
            } else {
                cast(out.as_ref(), output_type)?
            }
        }
        Values::Float(vals, has) => Arc::new(running_fold::<Float64Type, EMIT>(
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
            let out = running_fold::<Decimal128Type, EMIT>(gids, a, vals, has, |c, v, h| {
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
                if EMIT {
                    b.append_option(vals[g].as_deref());
                }
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
                if EMIT {
                    b.append_option(vals[g]);
                }
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
        let mut acc = Accumulator::new(AggFunc::Sum, Some(&DataType::Int64), None).unwrap();
        let arg: ArrayRef = Arc::new(Int64Array::from(vec![None, Some(2), Some(3), Some(4)]));
        let out = acc.update_and_emit(&[0, 1, 0, 1], 2, Some(&arg)).unwrap();
        let out = out.as_primitive::<Int64Type>();
        assert!(out.is_null(0));
        assert_eq!((out.value(1), out.value(2), out.value(3)), (2, 3, 6));
    }

    #[test]
    fn decimal_avg_is_exact() {
        let mut acc =
            Accumulator::new(AggFunc::Avg, Some(&DataType::Decimal128(10, 2)), None).unwrap();
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
        let mut acc =
            Accumulator::new(AggFunc::CountDistinct, Some(&DataType::Int64), None).unwrap();
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
        let mut acc = Accumulator::new(AggFunc::Variance, Some(&DataType::Float64), None).unwrap();
        let arg: ArrayRef = Arc::new(arrow::array::Float64Array::from(vec![1.0, 3.0]));
        let out = acc.update_and_emit(&[0, 0], 1, Some(&arg)).unwrap();
        let out = out.as_primitive::<Float64Type>();
        assert!(out.is_null(0));
        assert_eq!(out.value(1), 2.0);
    }
}
