//! Fresh vs warm group-by state, measured without Python.
//!
//! ```text
//! cargo run --release -p velostream-engine --example cold_state
//! cargo run --release -p velostream-engine --example cold_state -- profile
//! ```
//!
//! (`profile`: only the fresh case, 300 rounds and nothing printed, for `perf record`.)
//!
//! The query is the `group_by_continuous` benchmark workload (`SELECT symbol, COUNT(*),
//! SUM(qty), AVG(price) ... GROUP BY symbol`, 10 K symbols drawn uniformly), in 10 K-row
//! batches. It prints the best of 30 rounds, per batch, of:
//!
//! - *fresh*: the first batch of each of 100 live queries (what the 10 K-record scaling
//!   benchmark times: each query creates most of its groups, in memory last touched a
//!   hundred queries ago);
//! - *one at a time*: the same, each query dropped before the next is created;
//! - *warm*: one query that already holds every group;
//!
//! and the group-table lookup alone for the same three cases, plus the "one at a time"
//! case with each batch's rows reordered so its new keys come first: the same work with a
//! predictable insert-or-hit branch, which shows what branch mispredictions cost when
//! new and known keys are mixed.
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, ArrayRef, Float64Array, Int64Array, StringArray};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use velostream_engine::groups::GroupTable;
use velostream_engine::Processor;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PLAN: &str = r#"{"version": 1, "input": "trades", "filter": null,
  "select": [{"name": "symbol", "expr": {"op": "group_key", "index": 0}},
             {"name": "n", "expr": {"op": "agg", "index": 0}},
             {"name": "total", "expr": {"op": "agg", "index": 1}},
             {"name": "avg_price", "expr": {"op": "agg", "index": 2}}],
  "distinct": false, "group_by": [{"op": "column", "name": "symbol"}],
  "aggregates": [{"fn": "count_star", "arg": null},
                 {"fn": "sum", "arg": {"op": "column", "name": "qty"}},
                 {"fn": "avg", "arg": {"op": "column", "name": "price"}}],
  "having": null, "emit": "changes", "window": null}"#;

const ROWS: usize = 10_000;
const QUERIES: usize = 100;
const ROUNDS: usize = 30;

/// `count` batches of trades over 10 K symbols (a fixed-seed xorshift: no dependency).
fn batches(count: usize) -> Vec<RecordBatch> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..count)
        .map(|_| {
            let draws: Vec<u64> = (0..ROWS).map(|_| next()).collect();
            let symbol =
                StringArray::from_iter_values(draws.iter().map(|d| format!("K{:04}", d % 10_000)));
            let price =
                Float64Array::from_iter_values(draws.iter().map(|d| (d >> 20) as f64 % 1e3));
            let qty = Int64Array::from_iter_values(draws.iter().map(|d| ((d >> 40) % 100) as i64));
            RecordBatch::try_from_iter([
                ("symbol", Arc::new(symbol) as ArrayRef),
                ("price", Arc::new(price) as ArrayRef),
                ("qty", Arc::new(qty) as ArrayRef),
            ])
            .expect("batch")
        })
        .collect()
}

/// Best seconds per batch of `run` over the rounds (`run` returns batches done).
fn best(mut run: impl FnMut() -> (f64, usize)) -> f64 {
    (0..ROUNDS)
        .map(|_| {
            let (secs, n) = run();
            secs / n as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn timed(f: impl FnOnce() -> usize) -> (f64, usize) {
    let t = Instant::now();
    let n = f();
    (t.elapsed().as_secs_f64(), n)
}

fn main() {
    let data = batches(3 * QUERIES);
    let query = || Processor::from_json(PLAN).expect("plan");

    if std::env::args().nth(1).as_deref() == Some("profile") {
        for _ in 0..300 {
            let mut qs: Vec<Processor> = (0..QUERIES).map(|_| query()).collect();
            for (q, b) in qs.iter_mut().zip(&data) {
                q.process(b).expect("process");
            }
        }
        return;
    }
    let fresh = best(|| {
        let mut qs: Vec<Processor> = (0..QUERIES).map(|_| query()).collect();
        timed(|| {
            for (q, b) in qs.iter_mut().zip(&data) {
                q.process(b).expect("process");
            }
            QUERIES
        })
    });
    let one_at_a_time = best(|| {
        let mut qs: Vec<Processor> = (0..QUERIES).map(|_| query()).collect();
        timed(|| {
            for b in &data[..QUERIES] {
                let mut q = qs.pop().expect("query");
                q.process(b).expect("process");
            }
            QUERIES
        })
    });
    let warm = best(|| {
        let mut q = query();
        for b in &data[..QUERIES] {
            q.process(b).expect("process");
        }
        timed(|| {
            for b in &data[QUERIES..] {
                q.process(b).expect("process");
            }
            2 * QUERIES
        })
    });
    println!(
        "whole query: fresh {:.1} us, one at a time {:.1} us, warm {:.1} us per batch",
        fresh * 1e6,
        one_at_a_time * 1e6,
        warm * 1e6
    );

    let keys: Vec<Vec<ArrayRef>> = data
        .iter()
        .map(|b| vec![b.column_by_name("symbol").expect("symbol").clone()])
        .collect();
    let table = || GroupTable::new(&[DataType::Utf8]).expect("table");
    let mut ids = Vec::new();
    let fresh = best(|| {
        let mut tables: Vec<GroupTable> = (0..QUERIES).map(|_| table()).collect();
        timed(|| {
            for (t, k) in tables.iter_mut().zip(&keys) {
                t.group_ids(k, ROWS, &mut ids).expect("ids");
            }
            QUERIES
        })
    });
    let one_at_a_time = best(|| {
        timed(|| {
            for k in &keys[..QUERIES] {
                table().group_ids(k, ROWS, &mut ids).expect("ids");
            }
            QUERIES
        })
    });
    let warm = best(|| {
        let mut t = table();
        for k in &keys[..QUERIES] {
            t.group_ids(k, ROWS, &mut ids).expect("ids");
        }
        timed(|| {
            for k in &keys[QUERIES..] {
                t.group_ids(k, ROWS, &mut ids).expect("ids");
            }
            2 * QUERIES
        })
    });
    // The same rows, each batch reordered so its new keys come before its repeats: the
    // same work, but the insert-or-hit branch is predictable.
    let reordered: Vec<Vec<ArrayRef>> = keys
        .iter()
        .map(|k| {
            let s = k[0].as_any().downcast_ref::<StringArray>().expect("utf8");
            let mut seen = HashSet::new();
            let (mut new, mut repeats) = (Vec::new(), Vec::new());
            for v in s.iter().flatten() {
                if seen.insert(v) {
                    new.push(v)
                } else {
                    repeats.push(v)
                }
            }
            new.extend(repeats);
            vec![Arc::new(StringArray::from_iter_values(new)) as ArrayRef]
        })
        .collect();
    let predictable = best(|| {
        timed(|| {
            for k in &reordered[..QUERIES] {
                table().group_ids(k, ROWS, &mut ids).expect("ids");
            }
            QUERIES
        })
    });
    println!(
        "group ids:   fresh {:.1} us, one at a time {:.1} us, warm {:.1} us per batch; \
         one at a time with new keys first {:.1} us",
        fresh * 1e6,
        one_at_a_time * 1e6,
        warm * 1e6,
        predictable * 1e6
    );
}
