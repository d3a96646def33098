//! The per-batch query processor: one `process` call per input batch, state kept inside.
//!
//! A [`Processor`] owns the physical plan, binds it to the input schema on the first
//! batch (and again if the schema changes), filters and projects each batch with Arrow
//! kernels and returns exactly the rows the SQL emits for that input.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, RecordBatchOptions};
use arrow::compute::FilterBuilder;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::error::{EngineError, Result};
use crate::expr::{bind, Input, PhysExpr, Scope};
use crate::plan::{Plan, SelectItem};

/// Counters of one processor (`Query.metrics()`).
#[derive(Debug, Default, Clone)]
pub struct Metrics {
    pub records_in: u64,
    pub records_out: u64,
    pub batches_in: u64,
    pub filtered_out: u64,
}

/// The plan bound to one input schema.
struct Bound {
    input_schema: SchemaRef,
    filter: Option<PhysExpr>,
    /// Input columns the projections read, in the order they are handed to them.
    needed: Vec<usize>,
    projections: Vec<PhysExpr>,
    output_schema: SchemaRef,
}

/// A compiled continuous query over one input stream.
pub struct Processor {
    plan: Plan,
    bound: Option<Bound>,
    metrics: Metrics,
}

/// Processing time now, epoch millis.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Processor {
    /// Build a processor; constructs whose execution is not built yet are rejected here.
    pub fn new(plan: Plan) -> Result<Self> {
        if plan.window.is_some() {
            return Err(EngineError::validation(
                "WINDOW is not supported yet (event-time windows arrive in a later release)",
                None,
            ));
        }
        if plan.is_aggregate() || plan.distinct || plan.having.is_some() {
            let what = if plan.distinct {
                "SELECT DISTINCT"
            } else {
                "GROUP BY / aggregate functions"
            };
            return Err(EngineError::validation(
                format!("{what} is not supported yet (streaming aggregation arrives in the next release)"),
                plan.aggregates.first().and_then(|a| a.pos),
            ));
        }
        Ok(Processor {
            plan,
            bound: None,
            metrics: Metrics::default(),
        })
    }

    /// Parse a JSON plan and build a processor.
    pub fn from_json(plan: &str) -> Result<Self> {
        Processor::new(Plan::from_json(plan)?)
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The schema of what `process` and `flush` return, once the input schema is known.
    pub fn output_schema(&self) -> Option<SchemaRef> {
        self.bound.as_ref().map(|b| b.output_schema.clone())
    }

    /// Bind the plan to an input schema (done by the first `process` call otherwise).
    pub fn bind(&mut self, schema: &SchemaRef) -> Result<SchemaRef> {
        if let Some(b) = &self.bound {
            if b.input_schema.fields() == schema.fields() {
                return Ok(b.output_schema.clone());
            }
        }
        let bound = bind_plan(&self.plan, schema)?;
        if let Some(previous) = &self.bound {
            if previous.output_schema.fields() != bound.output_schema.fields() {
                return Err(EngineError::validation(
                    format!(
                        "input schema changed in a way that changes the output schema: was {:?}, now {:?}",
                        previous.output_schema, bound.output_schema
                    ),
                    None,
                ));
            }
        }
        let out = bound.output_schema.clone();
        self.bound = Some(bound);
        Ok(out)
    }

    /// Process one batch and return the rows the query emits for it.
    pub fn process(&mut self, batch: &RecordBatch) -> Result<RecordBatch> {
        self.bind(&batch.schema())?;
        let bound = self.bound.as_ref().expect("bound above");
        let n = batch.num_rows();
        let now_ms = now_millis();
        let mut columns: Vec<ArrayRef> =
            bound.needed.iter().map(|i| batch.column(*i).clone()).collect();
        let mut rows = n;
        if let Some(filter) = &bound.filter {
            let input = Input {
                columns: batch.columns(),
                num_rows: n,
                now_ms,
            };
            let mask = filter.eval(&input)?.into_array(n)?;
            let mask = mask
                .as_any()
                .downcast_ref::<BooleanArray>()
                .expect("filter is boolean after binding");
            let kept = mask.true_count();
            if kept != n || mask.null_count() > 0 {
                let mut builder = FilterBuilder::new(mask);
                if columns.len() > 1 {
                    builder = builder.optimize();
                }
                let predicate = builder.build();
                columns = columns
                    .iter()
                    .map(|c| predicate.filter(c.as_ref()))
                    .collect::<Result<_, _>>()?;
                rows = predicate.count();
            }
        }
        let input = Input {
            columns: &columns,
            num_rows: rows,
            now_ms,
        };
        let mut out = Vec::with_capacity(bound.projections.len());
        for p in &bound.projections {
            out.push(p.eval(&input)?.into_array(rows)?);
        }
        let result = RecordBatch::try_new_with_options(
            bound.output_schema.clone(),
            out,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )?;
        self.metrics.batches_in += 1;
        self.metrics.records_in += n as u64;
        self.metrics.records_out += rows as u64;
        self.metrics.filtered_out += (n - rows) as u64;
        Ok(result)
    }

    /// End of input: return what is left (nothing, for a stateless query).
    pub fn flush(&mut self) -> Result<RecordBatch> {
        let schema = self
            .output_schema()
            .unwrap_or_else(|| Arc::new(Schema::empty()));
        Ok(RecordBatch::new_empty(schema))
    }
}

fn bind_plan(plan: &Plan, schema: &SchemaRef) -> Result<Bound> {
    let scope = Scope {
        schema: schema.as_ref(),
        agg_offset: None,
    };
    let filter = match &plan.filter {
        Some(f) => {
            let (e, dt) = bind(f, &scope)?;
            if !matches!(dt, DataType::Boolean | DataType::Null) {
                return Err(EngineError::validation(
                    format!("WHERE needs a boolean condition, got {dt}"),
                    f.pos(),
                ));
            }
            Some(e)
        }
        None => None,
    };
    let mut projections = Vec::new();
    let mut fields = Vec::new();
    for item in &plan.select {
        match item {
            SelectItem::Star { .. } => {
                for (i, f) in schema.fields().iter().enumerate() {
                    if is_system_column(f.name()) {
                        continue;
                    }
                    projections.push(PhysExpr::Column(i));
                    fields.push(Field::new(f.name(), f.data_type().clone(), true));
                }
            }
            SelectItem::Column { name, expr } => {
                let (e, dt) = bind(expr, &scope)?;
                let dt = if dt == DataType::Null { DataType::Int64 } else { dt };
                projections.push(e);
                fields.push(Field::new(name, dt, true));
            }
        }
    }
    // Null-typed projections (a bare NULL literal) are given int64 so the output has a
    // concrete type; cast them now that the field says so.
    for (p, f) in projections.iter_mut().zip(&fields) {
        if let PhysExpr::Literal(s) = p {
            if s.inner().data_type() == &DataType::Null {
                let cast = arrow::compute::cast(s.inner().as_ref(), f.data_type())?;
                *p = PhysExpr::Literal(crate::expr::Lit::new(cast));
            }
        }
    }
    let mut needed = Vec::new();
    for p in &projections {
        p.columns(&mut needed);
    }
    needed.sort_unstable();
    needed.dedup();
    let position = |i: usize| needed.binary_search(&i).expect("collected above");
    for p in &mut projections {
        p.remap_columns(&position);
    }
    Ok(Bound {
        input_schema: schema.clone(),
        filter,
        needed,
        projections,
        output_schema: Arc::new(Schema::new(fields)),
    })
}

/// System columns are not part of `SELECT *`.
pub fn is_system_column(name: &str) -> bool {
    matches!(
        name,
        "_event_time" | "_timestamp" | "_partition" | "_offset" | "_window_start" | "_window_end"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Float64Array, Int64Array, StringArray};
    use arrow::datatypes::Float64Type;

    fn trades() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("symbol", DataType::Utf8, true),
            Field::new("price", DataType::Float64, true),
            Field::new("qty", DataType::Int64, true),
            Field::new("status", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["A", "B", "C", "D"])),
                Arc::new(Float64Array::from(vec![Some(150.0), Some(90.0), None, Some(101.0)])),
                Arc::new(Int64Array::from(vec![2, 3, 4, 5])),
                Arc::new(StringArray::from(vec!["open", "open", "open", "closed"])),
            ],
        )
        .unwrap()
    }

    const PLAN: &str = r#"{
        "input": "trades",
        "filter": {"op": "binary", "fn": "and",
            "left": {"op": "binary", "fn": "gt", "left": {"op": "column", "name": "price"},
                     "right": {"op": "literal", "type": "int64", "value": 100}},
            "right": {"op": "binary", "fn": "eq", "left": {"op": "column", "name": "status"},
                      "right": {"op": "literal", "type": "utf8", "value": "open"}}},
        "select": [
            {"name": "symbol", "expr": {"op": "column", "name": "symbol"}},
            {"name": "notional", "expr": {"op": "binary", "fn": "mul",
                "left": {"op": "column", "name": "price"}, "right": {"op": "column", "name": "qty"}}}
        ]
    }"#;

    #[test]
    fn filter_and_project() {
        let mut p = Processor::from_json(PLAN).unwrap();
        let out = p.process(&trades()).unwrap();
        assert_eq!(out.num_rows(), 1);
        assert_eq!(out.column(0).as_string::<i32>().value(0), "A");
        assert_eq!(out.column(1).as_primitive::<Float64Type>().value(0), 300.0);
        assert_eq!(p.metrics().records_in, 4);
        assert_eq!(p.metrics().records_out, 1);
        assert_eq!(p.flush().unwrap().num_rows(), 0);
    }

    #[test]
    fn star_skips_system_columns() {
        let plan = r#"{"input": "t", "select": [{"star": true}]}"#;
        let mut p = Processor::from_json(plan).unwrap();
        let out = p.process(&trades()).unwrap();
        assert_eq!(out.num_columns(), 4);
        assert_eq!(out.num_rows(), 4);
    }

    #[test]
    fn aggregation_is_rejected_until_built() {
        let plan = r#"{"input": "t", "select": [], "aggregates": [{"fn": "count_star", "pos": [1, 8]}]}"#;
        assert!(matches!(
            Processor::from_json(plan),
            Err(EngineError::Validation { .. })
        ));
    }
}
