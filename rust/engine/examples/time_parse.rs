//! The event-time parsing kernels alone, measured without Python.
//!
//! ```text
//! cargo run --release -p velostream-engine --example time_parse
//! ```
//!
//! Each case parses one 1 M-value column with `time::parse_event_times` (output and
//! failure vectors reused, as an operator would) and prints the best of 30 rounds in
//! values/s: ISO 8601 strings with `Z`, with a `+05:30` offset and with nanoseconds;
//! epoch millis and epoch seconds of an `Int64` column (without and with nulls); numeric
//! strings; a strftime pattern; auto-detection of ISO strings.
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, ArrayRef, Int64Array, StringArray};
use velostream_engine::time::{parse_event_times, TimeFailure, TimeFormat};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const VALUES: usize = 1_000_000;
const ROUNDS: usize = 30;

/// A deterministic spread of instants over ~3 years from 2023, in millis.
fn instants() -> Vec<i64> {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    (0..VALUES)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            1_672_531_200_000 + (state % 94_608_000_000) as i64
        })
        .collect()
}

fn iso_strings(millis: &[i64], suffix: impl Fn(i64) -> String) -> ArrayRef {
    let texts: Vec<String> = millis
        .iter()
        .map(|&ms| {
            let dt = chrono::DateTime::from_timestamp_millis(ms).expect("in range");
            format!("{}{}", dt.format("%Y-%m-%dT%H:%M:%S"), suffix(ms))
        })
        .collect();
    Arc::new(StringArray::from(texts))
}

fn measure(name: &str, values: &dyn Array, format: &TimeFormat) {
    let mut out = Vec::new();
    let mut failures: Vec<TimeFailure> = Vec::new();
    let mut best = f64::INFINITY;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        parse_event_times(values, format, &mut out, &mut failures);
        best = best.min(start.elapsed().as_secs_f64());
        std::hint::black_box(&out);
    }
    let bad = failures.len();
    println!(
        "{name:<44} {:>8.1} M values/s  ({:.2} ms, {bad} failures)",
        values.len() as f64 / best / 1e6,
        best * 1e3
    );
}

fn main() {
    let millis = instants();
    let format = |text: &str| TimeFormat::parse(Some(text)).expect("a valid format");
    let iso_z = iso_strings(&millis, |ms| format!(".{:03}Z", ms.rem_euclid(1000)));
    let iso_offset = iso_strings(&millis, |ms| format!(".{:03}+05:30", ms.rem_euclid(1000)));
    let iso_nanos = iso_strings(&millis, |ms| {
        format!(".{:09}Z", ms.rem_euclid(1000) * 1_000_000)
    });
    let iso_plain = iso_strings(&millis, |_| String::new());
    let ints = Int64Array::from(millis.clone());
    let seconds = Int64Array::from(millis.iter().map(|ms| ms / 1000).collect::<Vec<_>>());
    let with_nulls: Int64Array = millis
        .iter()
        .enumerate()
        .map(|(i, &ms)| (i % 10 != 0).then_some(ms))
        .collect();
    let digits = StringArray::from(millis.iter().map(|ms| ms.to_string()).collect::<Vec<_>>());

    measure(
        "iso8601 'YYYY-MM-DDTHH:MM:SS.fffZ'",
        &iso_z,
        &TimeFormat::Iso8601,
    );
    measure(
        "iso8601 '...SS.fff+05:30'",
        &iso_offset,
        &TimeFormat::Iso8601,
    );
    measure(
        "iso8601 '...SS.fffffffffZ'",
        &iso_nanos,
        &TimeFormat::Iso8601,
    );
    measure("auto-detect of '...SS.fffZ'", &iso_z, &TimeFormat::Auto);
    measure(
        "pattern '%Y-%m-%dT%H:%M:%S' (chrono)",
        &iso_plain,
        &format("%Y-%m-%dT%H:%M:%S"),
    );
    measure("epoch_millis Int64", &ints, &TimeFormat::EpochMillis);
    measure("epoch_seconds Int64", &seconds, &TimeFormat::EpochSeconds);
    measure(
        "epoch_millis Int64, 10% nulls",
        &with_nulls,
        &TimeFormat::EpochMillis,
    );
    measure(
        "epoch_millis numeric strings",
        &digits,
        &TimeFormat::EpochMillis,
    );
}
