//! Where a tumbling window's time goes, measured without Python.
//!
//! ```text
//! cargo run --release -p velostream-engine --example window_parts
//! cargo run --release -p velostream-engine --example window_parts -- query   # for perf
//! ```
//!
//! 1 M rows (1 000 string symbols, 10 rows per millisecond of event time) in 10 K-row
//! batches: the key lookup alone (a warm group table), then the whole `tumbling_window`
//! benchmark query (`TUMBLING(1s)` EMIT FINAL, COUNT/SUM/AVG). Best of 20 rounds.
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use velostream_engine::groups::GroupTable;
use velostream_engine::Processor;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PLAN: &str = r#"{"version": 1, "input": "trades",
  "select": [{"name": "symbol", "expr": {"op": "group_key", "index": 0}},
             {"name": "n", "expr": {"op": "agg", "index": 0}},
             {"name": "total", "expr": {"op": "agg", "index": 1}},
             {"name": "avg_price", "expr": {"op": "agg", "index": 2}}],
  "group_by": [{"op": "column", "name": "symbol"}],
  "aggregates": [{"fn": "count_star"}, {"fn": "sum", "arg": {"op": "column", "name": "qty"}},
                 {"fn": "avg", "arg": {"op": "column", "name": "price"}}],
  "emit": "final", "window": {"kind": "tumbling", "size_ms": 1000},
  "time": {"field": "ts", "max_out_of_orderness_ms": 100}}"#;

fn main() {
    let n = 1_000_000usize;
    let mut seed = 7u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let symbols: Vec<String> = (0..1000).map(|i| format!("K{i:03}")).collect();
    let sym: StringArray = (0..n)
        .map(|_| Some(symbols[(next() % 1000) as usize].as_str()))
        .collect();
    let qty = Int64Array::from_iter_values((0..n).map(|_| (next() % 1000) as i64 + 1));
    let price = Float64Array::from_iter_values((0..n).map(|_| (next() % 20000) as f64 / 100.0));
    let ts = Int64Array::from_iter_values(
        (0..n).map(|i| 1_700_000_000_000 + (i / 10) as i64 - (next() % 51) as i64),
    );
    let schema = Arc::new(arrow::datatypes::Schema::new(vec![
        arrow::datatypes::Field::new("symbol", DataType::Utf8, true),
        arrow::datatypes::Field::new("qty", DataType::Int64, true),
        arrow::datatypes::Field::new("price", DataType::Float64, true),
        arrow::datatypes::Field::new("ts", DataType::Int64, true),
    ]));
    let columns: Vec<ArrayRef> = vec![Arc::new(sym), Arc::new(qty), Arc::new(price), Arc::new(ts)];
    let batch = RecordBatch::try_new(schema, columns).unwrap();
    let batches: Vec<RecordBatch> = (0..n)
        .step_by(10_000)
        .map(|o| batch.slice(o, 10_000))
        .collect();

    let query_only = std::env::args().any(|a| a == "query");
    let mut table = GroupTable::new(&[DataType::Utf8]).unwrap();
    let mut ids = Vec::new();
    let mut best = f64::MAX;
    for _ in 0..if query_only { 0 } else { 20 } {
        let start = Instant::now();
        for b in &batches {
            table
                .group_ids(&[b.column(0).clone()], b.num_rows(), &mut ids)
                .unwrap();
        }
        best = best.min(start.elapsed().as_secs_f64());
    }
    println!(
        "key lookup (warm):      {:6.1} ns/row",
        best * 1e9 / n as f64
    );

    let mut best = f64::MAX;
    for _ in 0..if query_only { 60 } else { 20 } {
        let mut p = Processor::from_json(PLAN).unwrap();
        let start = Instant::now();
        for b in &batches {
            p.process(b).unwrap();
        }
        p.flush().unwrap();
        best = best.min(start.elapsed().as_secs_f64());
    }
    println!(
        "tumbling_window query:  {:6.1} ns/row ({:.1} M rows/s)",
        best * 1e9 / n as f64,
        n as f64 / best / 1e6
    );
}
