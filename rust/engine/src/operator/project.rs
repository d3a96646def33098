//! The projection operator: the SELECT list, evaluated over its input chunk.

use std::sync::Arc;

use super::{Chunk, Ctx, Operator};
use crate::error::Result;
use crate::expr::{Input, PhysExpr};

/// A bound SELECT list.
#[derive(Debug)]
pub struct ProjectDef {
    pub exprs: Vec<PhysExpr>,
}

/// Computes the output columns.
pub struct Project {
    def: Arc<ProjectDef>,
}

impl Project {
    pub fn new(def: Arc<ProjectDef>) -> Self {
        Project { def }
    }
}

impl Operator for Project {
    fn process(&mut self, chunk: Chunk, ctx: &mut Ctx) -> Result<Chunk> {
        let input = Input {
            columns: &chunk.columns,
            num_rows: chunk.rows,
            now_ms: ctx.now_ms,
        };
        let columns = self
            .def
            .exprs
            .iter()
            .map(|p| p.eval(&input)?.into_array(chunk.rows))
            .collect::<Result<_>>()?;
        Ok(Chunk::new(columns, chunk.rows))
    }
}
