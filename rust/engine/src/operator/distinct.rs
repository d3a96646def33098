//! The DISTINCT operator: emits a row the first time its values are seen.

use arrow::array::{ArrayRef, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::DataType;

use super::{Chunk, Ctx, OpState, Operator};
use crate::error::{EngineError, Result};
use crate::groups::GroupTable;

/// The rows seen so far, as a group table over every output column.
pub struct Distinct {
    seen: GroupTable,
    gids: Vec<u32>,
}

impl Distinct {
    pub fn new(types: &[DataType]) -> Result<Self> {
        Ok(Distinct {
            seen: GroupTable::new(types)?,
            gids: Vec::new(),
        })
    }
}

impl Operator for Distinct {
    fn process(&mut self, chunk: Chunk, _ctx: &mut Ctx) -> Result<Chunk> {
        let before = self.seen.len();
        self.seen
            .group_ids(&chunk.columns, chunk.rows, &mut self.gids)?;
        // A row is new when its group was created by this chunk and no earlier row of
        // the chunk had it (ids of new groups are not necessarily in row order).
        let mut kept = vec![false; self.seen.len() - before];
        let mut keep = Vec::new();
        for (i, &g) in self.gids.iter().enumerate() {
            if let Some(k) = (g as usize).checked_sub(before) {
                if !kept[k] {
                    kept[k] = true;
                    keep.push(i as u32);
                }
            }
        }
        if keep.len() == chunk.rows {
            return Ok(chunk);
        }
        let indices = UInt32Array::from(keep);
        let columns: Vec<ArrayRef> = chunk
            .columns
            .iter()
            .map(|c| take(c.as_ref(), &indices, None))
            .collect::<Result<_, _>>()?;
        Ok(Chunk::new(columns, indices.len()))
    }

    fn snapshot(&self) -> OpState {
        OpState::Distinct(self.seen.keys().clone())
    }

    fn restore(&mut self, state: OpState) -> Result<()> {
        match state {
            OpState::Distinct(keys) => self.seen.restore(keys),
            other => Err(EngineError::Snapshot(format!(
                "it holds {} where this query keeps a distinct set",
                other.kind()
            ))),
        }
    }

    fn state_groups(&self) -> usize {
        self.seen.len()
    }

    fn state_bytes(&self) -> usize {
        self.seen.state_bytes()
    }
}
