//! The probe side of a stream-table join, measured without Python.
//!
//! ```text
//! cargo run --release -p velostream-engine --example join_probe
//! ```
//!
//! A 100 000-row table keyed by a short string (`K00000`..`K99999`) or an integer, probed
//! by 10 K-row batches of keys drawn uniformly from it (the `stream_table_join` benchmark
//! workload). It prints ns per probe row, best of 20 rounds over 1 M rows, of:
//! `lookup` (key ids), `take` (one string and one integer column for those ids), and the
//! whole join operator through a processor (`SELECT t.k, t.x * 2, i.sector, i.lot`).
use std::sync::{Arc, RwLock};
use std::time::Instant;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use velostream_engine::table::KeyedTable;
use velostream_engine::Processor;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const KEYS: usize = 100_000;
const ROWS: usize = 1_000_000;
const BATCH: usize = 10_000;

/// A small deterministic generator (xorshift).
fn draws(n: usize, bound: usize, mut state: u64) -> Vec<usize> {
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % bound as u64) as usize
        })
        .collect()
}

fn best_ns_per_row(rounds: usize, mut run: impl FnMut()) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..rounds {
        let start = Instant::now();
        run();
        best = best.min(start.elapsed().as_secs_f64());
    }
    best * 1e9 / ROWS as f64
}

fn main() {
    for string_keys in [true, false] {
        let key_of = |i: usize| -> ArrayRef {
            if string_keys {
                Arc::new(StringArray::from_iter_values(
                    (0..1).map(|_| format!("K{i:05}")),
                ))
            } else {
                Arc::new(Int64Array::from(vec![i as i64]))
            }
        };
        let key_type = if string_keys {
            DataType::Utf8
        } else {
            DataType::Int64
        };
        let table_keys: ArrayRef = if string_keys {
            Arc::new(StringArray::from_iter_values(
                (0..KEYS).map(|i| format!("K{i:05}")),
            ))
        } else {
            Arc::new(Int64Array::from_iter_values(0..KEYS as i64))
        };
        let _ = key_of;
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", key_type.clone(), false),
            Field::new("sector", DataType::Utf8, true),
            Field::new("lot", DataType::Int64, true),
        ]));
        let sectors = ["tech", "energy", "health", "fin"];
        let table_batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                table_keys.clone(),
                Arc::new(StringArray::from_iter_values(
                    draws(KEYS, 4, 7).into_iter().map(|s| sectors[s]),
                )),
                Arc::new(Int64Array::from_iter_values(
                    draws(KEYS, 100, 9).into_iter().map(|x| x as i64),
                )),
            ],
        )
        .unwrap();
        let mut table = KeyedTable::new(schema.clone(), vec!["k".into()]).unwrap();
        table.upsert(&table_batch).unwrap();
        table.compact().unwrap();
        let picks = draws(ROWS, KEYS, 3);
        let probes: Vec<ArrayRef> = picks
            .chunks(BATCH)
            .map(|c| {
                let idx = arrow::array::UInt32Array::from_iter_values(c.iter().map(|&i| i as u32));
                arrow::compute::take(table_keys.as_ref(), &idx, None).unwrap()
            })
            .collect();
        let lookup = best_ns_per_row(20, || {
            for p in &probes {
                std::hint::black_box(table.lookup(std::slice::from_ref(p)).unwrap());
            }
        });
        let mut groups =
            velostream_engine::groups::GroupTable::new(&[schema.field(0).data_type().clone()])
                .unwrap();
        groups.enable_probe_index();
        let mut scratch = Vec::new();
        groups
            .group_ids(std::slice::from_ref(&table_keys), KEYS, &mut scratch)
            .unwrap();
        let mut found = Vec::new();
        let find = best_ns_per_row(20, || {
            for p in &probes {
                groups
                    .find_ids(std::slice::from_ref(p), p.len(), &mut found)
                    .unwrap();
                std::hint::black_box(&found);
            }
        });
        println!("find_ids alone {find:.1} ns/row");
        let ids: Vec<_> = probes
            .iter()
            .map(|p| table.lookup(std::slice::from_ref(p)).unwrap())
            .collect();
        let take = best_ns_per_row(20, || {
            for i in &ids {
                std::hint::black_box(table.take_columns(i, &[1, 2]).unwrap());
            }
        });
        let stream_schema = Arc::new(Schema::new(vec![
            Field::new("k", key_type, false),
            Field::new("x", DataType::Int64, false),
        ]));
        let batches: Vec<RecordBatch> = probes
            .iter()
            .map(|p| {
                RecordBatch::try_new(
                    stream_schema.clone(),
                    vec![
                        p.clone(),
                        Arc::new(Int64Array::from_iter_values(0..p.len() as i64)),
                    ],
                )
                .unwrap()
            })
            .collect();
        let plan = r#"{"input": "t", "input_relation": "t",
            "joins": [{"table": "i", "relation": "i",
                "on": [{"stream": {"op": "column", "name": "k", "relation": "t"}, "table": "k"}]}],
            "select": [
                {"name": "k", "expr": {"op": "column", "name": "k", "relation": "t"}},
                {"name": "x2", "expr": {"op": "binary", "fn": "mul",
                    "left": {"op": "column", "name": "x", "relation": "t"},
                    "right": {"op": "literal", "type": "int64", "value": 2}}},
                {"name": "sector", "expr": {"op": "column", "name": "sector", "relation": "i"}},
                {"name": "lot", "expr": {"op": "column", "name": "lot", "relation": "i"}}
            ]}"#;
        let shared = Arc::new(RwLock::new(table));
        let join = best_ns_per_row(20, || {
            let mut p = Processor::from_json(plan).unwrap();
            p.attach_table("i", shared.clone());
            for b in &batches {
                std::hint::black_box(p.process(b).unwrap());
            }
        });
        println!(
            "{} keys: lookup {lookup:.1} ns/row, take {take:.1} ns/row, join {join:.1} ns/row ({:.1} M rows/s)",
            if string_keys { "string" } else { "integer" },
            1e3 / join
        );
    }
}
