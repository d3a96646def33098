//! The legacy per-record path: a model of the old engine, kept to measure against
//! (SPEC section 6).
//!
//! The old engine was Rust, and ran every record on its own: take the engine lock, run
//! the record through the engine as a one-row record, send the result through the
//! engine's output channel, collect it on the other side. [`process_per_record`] does
//! exactly that, in Rust, with no Python per record, so the ratio to the direct path
//! (one call per batch) measures the architecture, not interpreter overhead. It runs the
//! same [`Processor`], so both paths return the same rows by construction of the SQL
//! semantics (a record is judged against the watermark left by the records before it
//! on both paths).

use std::sync::mpsc;
use std::sync::Mutex;

use arrow::array::RecordBatch;

use crate::error::Result;
use crate::processor::Processor;

/// Run `batch` through `engine` one record at a time, each under the engine lock, each
/// output sent through a channel; returns everything collected from the channel.
pub fn process_per_record(engine: &Mutex<Processor>, batch: &RecordBatch) -> Result<RecordBatch> {
    let lock = || engine.lock().unwrap_or_else(|p| p.into_inner());
    let schema = lock().bind(&batch.schema())?;
    let (output, collected) = mpsc::channel::<RecordBatch>();
    for i in 0..batch.num_rows() {
        let record = batch.slice(i, 1);
        let out = lock().process(&record)?;
        if out.num_rows() > 0 {
            // The receiver lives until the end of this function.
            output
                .send(out)
                .expect("the output channel's receiver is alive");
        }
    }
    drop(output);
    let outputs: Vec<RecordBatch> = collected.iter().collect();
    Ok(match outputs.len() {
        0 => RecordBatch::new_empty(schema),
        1 => outputs.into_iter().next().expect("one output"),
        _ => arrow::compute::concat_batches(&schema, &outputs)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    #[test]
    fn per_record_output_equals_the_batch_output() {
        let plan = r#"{"input": "t", "group_by": [{"op": "column", "name": "k"}],
            "aggregates": [{"fn": "count_star"}],
            "select": [{"name": "k", "expr": {"op": "group_key", "index": 0}},
                       {"name": "n", "expr": {"op": "agg", "index": 0}}]}"#;
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("x", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["a", "b", "a"])),
                Arc::new(Int64Array::from(vec![1, 2, 3])),
            ],
        )
        .unwrap();
        let direct = Processor::from_json(plan).unwrap().process(&batch).unwrap();
        let legacy = Mutex::new(Processor::from_json(plan).unwrap());
        assert_eq!(process_per_record(&legacy, &batch).unwrap(), direct);
    }
}
