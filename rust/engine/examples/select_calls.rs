//! What a `process()` call costs the engine itself, measured without Python.
//!
//! ```text
//! cargo run --release -p velostream-engine --example select_calls
//! ```
//!
//! The query is the `select_where` benchmark workload (`SELECT symbol, price * qty AS
//! notional FROM trades WHERE price > 100 AND status = 'open'`) over 1 M generated rows.
//! It prints the best of 30 rounds of: the rows as one batch, and the same rows in
//! batches of 10 000 and of 100 rows (fresh processor per round, the rounds alternating),
//! with the extra time per call over the one-batch run. That extra is the engine's fixed
//! cost per call; the Python boundary adds its own on top (see docs/performance.md).
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
use arrow::record_batch::RecordBatch;
use velostream_engine::Processor;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PLAN: &str = r#"{"version": 1, "input": "trades",
  "filter": {"op": "binary", "fn": "and",
    "left": {"op": "binary", "fn": "gt", "left": {"op": "column", "name": "price"},
             "right": {"op": "literal", "type": "int64", "value": 100}},
    "right": {"op": "binary", "fn": "eq", "left": {"op": "column", "name": "status"},
              "right": {"op": "literal", "type": "utf8", "value": "open"}}},
  "select": [{"name": "symbol", "expr": {"op": "column", "name": "symbol"}},
             {"name": "notional", "expr": {"op": "binary", "fn": "mul",
               "left": {"op": "column", "name": "price"}, "right": {"op": "column", "name": "qty"}}}],
  "distinct": false, "group_by": [], "aggregates": [], "having": null,
  "emit": "changes", "window": null}"#;

const ROWS: usize = 1_000_000;
const ROUNDS: usize = 30;

/// 1 M trades over 100 symbols, half of them `'open'` (a fixed-seed xorshift).
fn trades() -> RecordBatch {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let draws: Vec<u64> = (0..ROWS)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        })
        .collect();
    let symbol = StringArray::from_iter_values(draws.iter().map(|d| format!("S{:02}", d % 100)));
    let price = Float64Array::from_iter_values(
        draws
            .iter()
            .map(|d| 1.0 + ((d >> 8) % 19_900) as f64 / 100.0),
    );
    let qty = Int64Array::from_iter_values(draws.iter().map(|d| ((d >> 32) % 1000) as i64 + 1));
    let status = StringArray::from_iter_values(draws.iter().map(|d| {
        if (d >> 40) & 1 == 0 {
            "open"
        } else {
            "closed"
        }
    }));
    RecordBatch::try_from_iter([
        ("symbol", Arc::new(symbol) as ArrayRef),
        ("price", Arc::new(price) as ArrayRef),
        ("qty", Arc::new(qty) as ArrayRef),
        ("status", Arc::new(status) as ArrayRef),
    ])
    .expect("batch")
}

fn main() {
    let table = trades();
    let runs: Vec<Vec<RecordBatch>> = [ROWS, 10_000, 100]
        .iter()
        .map(|&size| {
            (0..ROWS / size)
                .map(|i| table.slice(i * size, size))
                .collect()
        })
        .collect();
    let mut best = vec![f64::INFINITY; runs.len()];
    for _ in 0..ROUNDS {
        for (run, best) in runs.iter().zip(best.iter_mut()) {
            let mut query = Processor::from_json(PLAN).expect("plan");
            let start = Instant::now();
            for batch in run {
                std::hint::black_box(query.process(batch).expect("process"));
            }
            *best = best.min(start.elapsed().as_secs_f64());
        }
    }
    println!("one 1 M-row batch: {:.2} ms", best[0] * 1e3);
    for (run, secs) in runs.iter().zip(&best).skip(1) {
        println!(
            "{}-row batches: {:.2} ms, {:+.1} %, {:.2} us more per call",
            ROWS / run.len(),
            secs * 1e3,
            (secs / best[0] - 1.0) * 100.0,
            (secs - best[0]) / run.len() as f64 * 1e6
        );
    }
}
