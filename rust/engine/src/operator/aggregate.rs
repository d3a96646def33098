//! The group-by operator without a window: every input row folds into its group's
//! accumulators in place and emits the updated aggregate of that group (`EMIT CHANGES`).
//!
//! Its output columns are the group keys, then the aggregates (the scope in which
//! `HAVING` and the SELECT list are bound).

use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::DataType;

use super::{Chunk, Ctx, OpState, Operator};
use crate::aggregate::Accumulator;
use crate::error::{EngineError, Pos, Result};
use crate::expr::{Input, PhysExpr};
use crate::groups::GroupTable;
use crate::plan::AggFunc;

/// One aggregate call, bound.
#[derive(Debug)]
pub struct AggDef {
    pub func: AggFunc,
    /// The argument over the input, cast to the accumulator's input type.
    pub arg: Option<PhysExpr>,
    /// The argument's type before the cast (the accumulator is built from it).
    pub arg_type: Option<DataType>,
    pub pos: Pos,
}

/// The grouping part shared by every operator that groups.
#[derive(Debug)]
pub struct GroupingDef {
    /// GROUP BY expressions over the input.
    pub keys: Vec<PhysExpr>,
    pub key_types: Vec<DataType>,
    pub aggs: Vec<AggDef>,
}

impl GroupingDef {
    /// Fresh accumulators, one per aggregate call.
    pub fn accumulators(&self) -> Result<Vec<Accumulator>> {
        self.aggs
            .iter()
            .map(|a| Accumulator::new(a.func, a.arg_type.as_ref(), a.pos))
            .collect()
    }

    /// The key columns of a chunk.
    pub fn eval_keys(&self, input: &Input) -> Result<Vec<ArrayRef>> {
        self.keys
            .iter()
            .map(|k| k.eval(input)?.into_array(input.num_rows))
            .collect()
    }

    /// The argument column of every aggregate (None for COUNT(*)).
    pub fn eval_args(&self, input: &Input) -> Result<Vec<Option<ArrayRef>>> {
        self.aggs
            .iter()
            .map(|a| match &a.arg {
                Some(e) => Ok(Some(e.eval(input)?.into_array(input.num_rows)?)),
                None => Ok(None),
            })
            .collect()
    }
}

/// Running aggregates per group.
pub struct GroupAggregate {
    def: Arc<GroupingDef>,
    groups: GroupTable,
    accumulators: Vec<Accumulator>,
    gids: Vec<u32>,
}

impl GroupAggregate {
    pub fn new(def: Arc<GroupingDef>) -> Result<Self> {
        Ok(GroupAggregate {
            groups: GroupTable::new(&def.key_types)?,
            accumulators: def.accumulators()?,
            def,
            gids: Vec::new(),
        })
    }
}

/// Put saved accumulator states back, refusing states of another kind.
pub fn restore_accumulators(
    accumulators: &mut [Accumulator],
    saved: Vec<crate::aggregate::AggState>,
) -> Result<()> {
    if accumulators.len() != saved.len() {
        return Err(EngineError::Snapshot("aggregate count differs".into()));
    }
    if accumulators
        .iter()
        .zip(&saved)
        .any(|(acc, s)| !acc.state.same_kind(s))
    {
        return Err(EngineError::Snapshot(
            "its aggregate state is of another kind".into(),
        ));
    }
    for (acc, s) in accumulators.iter_mut().zip(saved) {
        acc.state = s;
    }
    Ok(())
}

impl Operator for GroupAggregate {
    fn process(&mut self, chunk: Chunk, ctx: &mut Ctx) -> Result<Chunk> {
        let rows = chunk.rows;
        let input = Input {
            columns: &chunk.columns,
            num_rows: rows,
            now_ms: ctx.now_ms,
        };
        let mut post = self.def.eval_keys(&input)?;
        self.groups.group_ids(&post, rows, &mut self.gids)?;
        let group_count = self.groups.len();
        for (acc, a) in self.accumulators.iter_mut().zip(&self.def.aggs) {
            let arg = match &a.arg {
                Some(e) => Some(e.eval(&input)?.into_array(rows)?),
                None => None,
            };
            post.push(acc.update_and_emit(&self.gids, group_count, arg.as_ref())?);
        }
        Ok(Chunk::new(post, rows))
    }

    fn snapshot(&self) -> OpState {
        OpState::Groups {
            keys: self.groups.keys().clone(),
            accumulators: self.accumulators.iter().map(|a| a.state.clone()).collect(),
        }
    }

    fn restore(&mut self, state: OpState) -> Result<()> {
        let OpState::Groups { keys, accumulators } = state else {
            return Err(EngineError::Snapshot(format!(
                "it holds {} where this query keeps group-by state",
                state.kind()
            )));
        };
        let mut fresh = self.def.accumulators()?;
        restore_accumulators(&mut fresh, accumulators)?;
        self.groups.restore(keys)?;
        self.accumulators = fresh;
        Ok(())
    }

    fn state_groups(&self) -> usize {
        self.groups.len()
    }

    fn held_since(&self) -> Option<i64> {
        // Running aggregates are never final: every record counted so far is needed to
        // compute the next change after a restart (until state is made durable).
        (!self.groups.is_empty()).then_some(i64::MIN)
    }

    fn state_bytes(&self) -> usize {
        self.groups.state_bytes()
            + self
                .accumulators
                .iter()
                .map(Accumulator::state_bytes)
                .sum::<usize>()
    }
}
