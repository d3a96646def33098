//! The filter operator: `WHERE` over input rows, `HAVING` over aggregated rows.

use std::sync::Arc;

use super::{eval_mask, Chunk, Ctx, Operator};
use crate::error::Result;
use crate::expr::PhysExpr;

/// A bound filter.
#[derive(Debug)]
pub struct FilterDef {
    pub predicate: PhysExpr,
    /// The columns passed on (the ones later operators read), or all of them.
    pub keep: Option<Vec<usize>>,
    /// Whether removed rows count as `filtered_out` (WHERE, not HAVING).
    pub counts: bool,
}

/// Keeps the rows where the predicate is true.
pub struct Filter {
    def: Arc<FilterDef>,
}

impl Filter {
    pub fn new(def: Arc<FilterDef>) -> Self {
        Filter { def }
    }
}

impl Operator for Filter {
    fn process(&mut self, chunk: Chunk, ctx: &mut Ctx) -> Result<Chunk> {
        let rows = chunk.rows;
        let mask = eval_mask(&self.def.predicate, &chunk, ctx.now_ms)?;
        let out = chunk.filter(&mask, self.def.keep.as_deref())?;
        if self.def.counts {
            ctx.filtered_out += (rows - out.rows) as u64;
        }
        Ok(out)
    }
}
