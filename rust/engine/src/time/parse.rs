//! Event-time parsing kernels: one Arrow column in, epoch milliseconds out (SPEC sections
//! 2, 5 and 12).
//!
//! [`parse_event_times`] reads a whole array in one call, in the format of
//! `event.time.format` ([`TimeFormat`]), writes one `i64` per row and reports every failing
//! row as a [`TimeFailure`] carrying its `EventTimeError` kind ([`TimeErrorKind`]). It never
//! panics on any input and never allocates per value on the success path.
//!
//! # Formats and the values each reads
//!
//! | input column | `epoch_millis` / `epoch_seconds` | `iso8601` | pattern | auto-detect |
//! |---|---|---|---|---|
//! | Int8..Int64, UInt8..UInt64 | the number | type_mismatch | type_mismatch | epoch millis |
//! | Float32, Float64 | the number | type_mismatch | type_mismatch | auto_detect_failed |
//! | Utf8, LargeUtf8, Utf8View | a decimal number | RFC 3339 | the pattern | digits = epoch millis, else ISO 8601 |
//! | Dictionary of any of these | as its values | as its values | as its values | as its values |
//! | Timestamp (any unit, any time zone), Date32, Date64 | converted | converted | converted | converted |
//! | Null | null_value | null_value | null_value | null_value |
//! | anything else (Boolean, Binary, Decimal, List, Struct, ...) | type_mismatch | type_mismatch | type_mismatch | type_mismatch |
//!
//! An Arrow timestamp or date column is already an instant, so every format accepts it:
//! Arrow stores timestamps as UTC whatever their time zone, and a timestamp without a time
//! zone is read as UTC too. A floating-point column under auto-detection fails
//! (`auto_detect_failed`) rather than being guessed: `1700000000.5` is far more likely
//! epoch seconds than milliseconds, and a wrong guess would put every event in 1970.
//!
//! # Decisions (where the SPEC leaves a choice)
//!
//! - **Sub-millisecond parts**: the result is the millisecond that contains the instant,
//!   i.e. the instant rounded down toward the past. For text this is truncating the fraction
//!   digits (`.9999` → 999 ms, never rounded up); for timestamps in µs or ns it is
//!   `div_euclid` (−1 µs → −1 ms); for negative epoch numbers with a fraction it is a floor
//!   too (the text `-1.0005` under `epoch_seconds` → −1001 ms).
//! - **Floats** are first rounded to the nearest microsecond, then rounded down to the
//!   millisecond: `1700000000.123` is stored as `1700000000.12299990…` and must still give
//!   `…123` ms. This is exact (the whole part is scaled in integers, only the fraction in
//!   floating point), so `851792873617.0` seconds is `851792873617000` ms, not `…616999`.
//!   NaN and ±infinity are `invalid_timestamp`.
//! - **Numeric strings** (epoch formats): an optional `-`, at least one digit, optionally a
//!   `.` and at least one digit. No `+`, no exponent, no surrounding whitespace (text that
//!   carries spaces is more likely a misconfigured column than a number). Under
//!   auto-detection only `-?[0-9]+` counts as a number (epoch millis, SPEC section 12).
//! - **Range**: any `i64` of epoch milliseconds is accepted; a value whose milliseconds do
//!   not fit in an `i64` (epoch seconds of 1e18, a UInt64 above `i64::MAX`) is
//!   `invalid_timestamp`.
//! - **`iso8601`** (strict, as SPEC section 5 says: RFC 3339 *with offset or `Z`*):
//!   `YYYY-MM-DD`, then `T`, `t` or one space, `HH:MM`, optionally `:SS`, optionally a `.` or
//!   `,` and 1 to 9 fraction digits (only after seconds), then `Z`, `z`, `±HH:MM`, `±HHMM`
//!   or `±HH`. Seconds may be omitted (ISO 8601 allows it and there is no ambiguity).
//!   A time without an offset is a `parse_error` under `iso8601`: guessing UTC for a local
//!   time would shift every event silently; a pattern such as `%Y-%m-%d %H:%M:%S` reads
//!   offset-less text as UTC on purpose. Years are exactly four digits (0000-9999).
//! - **Auto-detection** is lenient where `iso8601` is strict: a time without an offset is
//!   UTC, and a bare date `YYYY-MM-DD` is midnight UTC. Text that is neither a number nor
//!   ISO-shaped is `auto_detect_failed`; ISO-shaped text that is not a real instant
//!   (`2023-02-29T00:00:00Z`) is `invalid_timestamp`, and a number too large is
//!   `invalid_timestamp`.
//! - **`parse_error` vs `invalid_timestamp`**: text that does not have the shape of the
//!   format is a `parse_error`; text of the right shape that names no real instant (month 13,
//!   February 30, hour 24, second 60, an offset of 24 hours, a number out of range) is an
//!   `invalid_timestamp`. Leap seconds (`23:59:60`) are rejected: epoch milliseconds cannot
//!   represent them (as Python's `datetime`).
//! - **Patterns** use chrono's strftime syntax, read as UTC unless the pattern has `%z`
//!   (or `%:z`, `%#z`), which gives the offset. A date-only pattern gives midnight UTC.
//!   A pattern is validated when the format is parsed: it must be a valid chrono pattern,
//!   must not contain `%Z` (a zone *name*, which chrono skips when parsing: the offset would
//!   silently be lost), and must read back a value it formats itself (so `%H:%M` without a
//!   date, or `%I` without `%p`, are rejected up front instead of failing on every row).
//!   chrono's reading rules apply as they are: a `%.f` / `%.3f` fraction may be absent, a
//!   `%z` offset may be written `+0530` or `+05:30`.
//! - **Failure values** are the offending value as text (`NULL` for a null), cut at 256
//!   bytes (with `…`) so a huge garbage value cannot blow up an error message.
//!
//! # Why a hand-written ISO 8601 parser
//!
//! The common RFC 3339 layouts are parsed at fixed byte positions, without chrono: the
//! twelve digits and four separators of `YYYY-MM-DD?HH:MM` are checked and decoded with two
//! 8-byte loads (SWAR), the rest byte by byte, and the date becomes days with Howard
//! Hinnant's days-from-civil in unsigned arithmetic. chrono's general parser walks a list
//! of format items and fills a `Parsed` struct per value (5-7 M values/s here, with the
//! pattern `%Y-%m-%dT%H:%M:%S`), while the target is ≥ 40 M values/s per core (25 ns);
//! this parser does 45-50 M (`cargo run --release -p velostream-engine --example
//! time_parse`). `speedate` would be fast too, but it
//! decides differently on several points above (it accepts missing offsets and other
//! layouts) and the fixed layouts are short enough to own. Patterns, which are arbitrary,
//! go through chrono.

use std::fmt::Write as _;

use arrow::array::{
    Array, ArrowPrimitiveType, AsArray, GenericStringArray, OffsetSizeTrait, PrimitiveArray,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{
    DataType, Date32Type, Date64Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type,
    Int8Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use chrono::format::{Fixed, Item, ParseErrorKind, Parsed, StrftimeItems};
use chrono::{DateTime, NaiveTime, Timelike};

use crate::error::EngineError;

// ---- formats -------------------------------------------------------------------------------

/// The format of an event-time field (`event.time.format`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TimeFormat {
    /// `epoch_millis`: milliseconds since 1970-01-01T00:00:00Z.
    EpochMillis,
    /// `epoch_seconds` (alias `epoch`): seconds since 1970-01-01T00:00:00Z.
    EpochSeconds,
    /// `iso8601` (alias `ISO8601`): RFC 3339 with a `Z` or a UTC offset.
    Iso8601,
    /// A chrono strftime-style pattern (any text containing `%`), read as UTC unless it
    /// has `%z`.
    Pattern(String),
    /// No format given: integers are epoch millis, strings ISO 8601 (or digits = epoch millis).
    Auto,
}

/// The named values of `event.time.format` (besides patterns), for error messages.
pub const FORMAT_NAMES: [&str; 5] = [
    "epoch_millis",
    "epoch_seconds",
    "epoch",
    "iso8601",
    "ISO8601",
];

/// How [`FORMAT_NAMES`] is completed in "allowed values" lists: any text with a `%`.
pub const PATTERN_HINT: &str = "a strftime pattern containing '%' (e.g. '%Y-%m-%d %H:%M:%S')";

impl TimeFormat {
    /// Parse the user's `event.time.format` text: `epoch_millis`, `epoch_seconds`, `epoch`
    /// (alias), `iso8601` / `ISO8601`, anything containing `%` = a strftime-style pattern
    /// (validated now: an invalid pattern is an error), `None` = [`TimeFormat::Auto`].
    /// Names are matched exactly (no case folding, no trimming). Anything else is an error
    /// whose message lists the allowed values.
    pub fn parse(text: Option<&str>) -> Result<TimeFormat, String> {
        let Some(text) = text else {
            return Ok(TimeFormat::Auto);
        };
        if text.contains('%') {
            compile_pattern(text)?;
            return Ok(TimeFormat::Pattern(text.to_string()));
        }
        match text {
            "epoch_millis" => Ok(TimeFormat::EpochMillis),
            "epoch_seconds" | "epoch" => Ok(TimeFormat::EpochSeconds),
            "iso8601" | "ISO8601" => Ok(TimeFormat::Iso8601),
            _ => Err(format!(
                "unknown event.time.format '{text}': expected epoch_millis, epoch_seconds \
                 (alias epoch), iso8601 (alias ISO8601) or {PATTERN_HINT}"
            )),
        }
    }

    /// How the format is shown in errors: `epoch_millis`, `epoch_seconds`, `iso8601`, the
    /// pattern itself, `auto-detect`.
    pub fn name(&self) -> String {
        match self {
            TimeFormat::EpochMillis => "epoch_millis".to_string(),
            TimeFormat::EpochSeconds => "epoch_seconds".to_string(),
            TimeFormat::Iso8601 => "iso8601".to_string(),
            TimeFormat::Pattern(pattern) => pattern.clone(),
            TimeFormat::Auto => "auto-detect".to_string(),
        }
    }

    /// What a value of this format looks like, for `parse_error` messages.
    fn expectation(&self) -> String {
        match self {
            TimeFormat::EpochMillis => "expected a number of milliseconds since \
                1970-01-01T00:00:00Z, e.g. 1700000000000"
                .to_string(),
            TimeFormat::EpochSeconds => "expected a number of seconds since \
                1970-01-01T00:00:00Z, e.g. 1700000000 or 1700000000.250"
                .to_string(),
            TimeFormat::Iso8601 => "expected an RFC 3339 timestamp with a UTC offset, e.g. \
                2024-01-31T12:00:00Z or 2024-01-31T12:00:00.250+05:30 (a time without an \
                offset needs a pattern such as '%Y-%m-%d %H:%M:%S', read as UTC)"
                .to_string(),
            TimeFormat::Pattern(pattern) => {
                format!("expected text matching the strftime pattern '{pattern}'")
            }
            TimeFormat::Auto => "expected epoch milliseconds (an integer) or an ISO 8601 \
                timestamp"
                .to_string(),
        }
    }

    /// The column types the format reads, for `type_mismatch` messages.
    fn accepted_types(&self) -> &'static str {
        match self {
            TimeFormat::EpochMillis | TimeFormat::EpochSeconds => {
                "epoch formats read integers, floating-point numbers and numeric strings \
                 (and Arrow timestamp and date columns)"
            }
            TimeFormat::Iso8601 | TimeFormat::Pattern(_) => {
                "this format reads strings (and Arrow timestamp and date columns)"
            }
            TimeFormat::Auto => {
                "auto-detection reads integers (epoch milliseconds), strings, and Arrow \
                 timestamp and date columns"
            }
        }
    }
}

// ---- failures ------------------------------------------------------------------------------

/// The `kind` of an `EventTimeError` (SPEC section 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeErrorKind {
    /// The configured field is not in the record.
    MissingField,
    /// The field's value is NULL.
    NullValue,
    /// The value's type cannot hold a timestamp in this format (a boolean, an integer
    /// under `iso8601`, ...).
    TypeMismatch,
    /// The value has the shape of the format but names no real instant (February 30, an
    /// out-of-range number, NaN).
    InvalidTimestamp,
    /// The text does not have the shape of the format.
    ParseError,
    /// Auto-detection recognised neither epoch milliseconds nor ISO 8601.
    AutoDetectFailed,
}

impl TimeErrorKind {
    /// The kind as `EventTimeError.kind` spells it: `missing_field`, `null_value`, ...
    pub fn as_str(&self) -> &'static str {
        match self {
            TimeErrorKind::MissingField => "missing_field",
            TimeErrorKind::NullValue => "null_value",
            TimeErrorKind::TypeMismatch => "type_mismatch",
            TimeErrorKind::InvalidTimestamp => "invalid_timestamp",
            TimeErrorKind::ParseError => "parse_error",
            TimeErrorKind::AutoDetectFailed => "auto_detect_failed",
        }
    }
}

/// One row whose event time could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeFailure {
    /// 0-based row index in the array given to [`parse_event_times`].
    pub row: usize,
    /// Why it failed.
    pub kind: TimeErrorKind,
    /// The offending value as text (`NULL` for a null), cut at 256 bytes.
    pub value: String,
}

impl TimeFailure {
    /// The `EngineError::EventTime` of this failure for the event-time field `field`, with
    /// the row index in the message (`available_fields`: the fields the record does have).
    /// A caller that parsed a slice of a larger batch adds its offset to `row` first.
    pub fn to_error(
        &self,
        field: &str,
        format: &TimeFormat,
        available_fields: Vec<String>,
    ) -> EngineError {
        let row = Some(self.row);
        EventTimeError::new(self.kind, field, &self.value, format, available_fields, row).into()
    }
}

/// The payload of `EngineError::EventTime`: the fields of Python's
/// `velostream.errors.EventTimeError` (SPEC section 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTimeError {
    /// Names the field, the value, the expected format and the fields that do exist.
    pub message: String,
    /// A [`TimeErrorKind::as_str`] name: `missing_field`, `null_value`, ...
    pub kind: &'static str,
    /// The configured event-time field.
    pub field: String,
    /// The offending value as text (`NULL` for a null, `""` for a missing field).
    pub value: String,
    /// The expected format, as [`TimeFormat::name`] shows it.
    pub format: String,
    /// The fields the record does have.
    pub available_fields: Vec<String>,
    /// The record's row in the batch it came in, when known (a caller that knows the
    /// batch's origin, e.g. a file's lines, turns it into a location).
    pub row: Option<usize>,
}

impl EventTimeError {
    /// The error of `kind` for `field` holding `value` in `format`, its message built by
    /// [`failure_message`] (naming `row` when given).
    pub fn new(
        kind: TimeErrorKind,
        field: &str,
        value: &str,
        format: &TimeFormat,
        available_fields: Vec<String>,
        row: Option<usize>,
    ) -> Self {
        EventTimeError {
            message: failure_message(kind, field, value, format, &available_fields, row),
            kind: kind.as_str(),
            field: field.to_string(),
            value: value.to_string(),
            format: format.name(),
            available_fields,
            row,
        }
    }
}

impl From<EventTimeError> for EngineError {
    fn from(error: EventTimeError) -> Self {
        EngineError::EventTime(Box::new(error))
    }
}

/// The message of an `EventTimeError`: names the field, the value, the expected format,
/// and the fields that do exist; with `row`, the row index too.
pub fn failure_message(
    kind: TimeErrorKind,
    field: &str,
    value: &str,
    format: &TimeFormat,
    available_fields: &[String],
    row: Option<usize>,
) -> String {
    let name = format.name();
    let at = row.map(|r| format!(" (row {r})")).unwrap_or_default();
    let value = shorten(value, 256);
    let mut message = match kind {
        TimeErrorKind::MissingField => {
            format!("event time field '{field}' is missing from the record{at}")
        }
        TimeErrorKind::NullValue => format!(
            "event time field '{field}'{at} is NULL, so the record has no event time \
             (format {name})"
        ),
        TimeErrorKind::TypeMismatch => format!(
            "event time field '{field}'{at} has the value '{value}', whose type cannot hold \
             a timestamp in format {name}: {}",
            format.accepted_types()
        ),
        TimeErrorKind::InvalidTimestamp => format!(
            "event time field '{field}'{at} has the value '{value}', which has the shape of \
             format {name} but is not a valid instant (a date, time or offset out of range, \
             a leap second, or a number beyond the range of epoch milliseconds)"
        ),
        TimeErrorKind::ParseError => format!(
            "event time field '{field}'{at} has the value '{value}', which is not a timestamp \
             in format {name}: {}",
            format.expectation()
        ),
        TimeErrorKind::AutoDetectFailed => format!(
            "event time field '{field}'{at} has the value '{value}', which auto-detection reads \
             neither as epoch milliseconds (an integer) nor as an ISO 8601 timestamp; set \
             'event.time.format' to the field's format"
        ),
    };
    if available_fields.is_empty() {
        if kind == TimeErrorKind::MissingField {
            message.push_str("; the record has no fields");
        }
    } else {
        message.push_str("; the record has the fields: ");
        message.push_str(&available_fields.join(", "));
    }
    message
}

/// `text` cut to at most `max` bytes (on a character boundary), with `…` when cut.
fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The failure value of a text value (a `Utf8` array holds valid UTF-8; lossy for safety).
fn text_value(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(257)];
    let text = String::from_utf8_lossy(cut);
    shorten(&text, 256)
}

const NULL_TEXT: &str = "NULL";

// ---- the kernel ----------------------------------------------------------------------------

/// The format with a pattern compiled (or `None` when a pattern given directly, not through
/// [`TimeFormat::parse`], does not compile: every text value then fails as `parse_error`).
enum Mode<'a> {
    Millis,
    Seconds,
    Iso,
    Pattern(Option<&'a [Item<'static>]>),
    Auto,
}

/// Parse `values` (one event-time column) into epoch milliseconds. `out` is cleared and
/// gets one `i64` per row (rows that failed get 0); every failing row is pushed to
/// `failures` (cleared first) in row order. Never panics on any input.
pub fn parse_event_times(
    values: &dyn Array,
    format: &TimeFormat,
    out: &mut Vec<i64>,
    failures: &mut Vec<TimeFailure>,
) {
    out.clear();
    failures.clear();
    let compiled;
    let mode = match format {
        TimeFormat::EpochMillis => Mode::Millis,
        TimeFormat::EpochSeconds => Mode::Seconds,
        TimeFormat::Iso8601 => Mode::Iso,
        TimeFormat::Auto => Mode::Auto,
        TimeFormat::Pattern(pattern) => {
            compiled = compile_pattern(pattern).ok();
            Mode::Pattern(compiled.as_deref())
        }
    };
    parse_array(values, &mode, out, failures);
    debug_assert_eq!(out.len(), values.len());
}

fn parse_array(values: &dyn Array, mode: &Mode, out: &mut Vec<i64>, fails: &mut Vec<TimeFailure>) {
    let epoch = matches!(mode, Mode::Millis | Mode::Seconds);
    let ints = matches!(mode, Mode::Millis | Mode::Seconds | Mode::Auto);
    let seconds = matches!(mode, Mode::Seconds);
    match values.data_type() {
        DataType::Null => {
            out.resize(values.len(), 0);
            fails.extend((0..values.len()).map(null_failure));
        }
        DataType::Int8 if ints => small_ints::<Int8Type>(values, seconds, out, fails),
        DataType::Int16 if ints => small_ints::<Int16Type>(values, seconds, out, fails),
        DataType::Int32 if ints => small_ints::<Int32Type>(values, seconds, out, fails),
        DataType::UInt8 if ints => small_ints::<UInt8Type>(values, seconds, out, fails),
        DataType::UInt16 if ints => small_ints::<UInt16Type>(values, seconds, out, fails),
        DataType::UInt32 if ints => small_ints::<UInt32Type>(values, seconds, out, fails),
        DataType::Int64 if ints => {
            let array = values.as_primitive::<Int64Type>();
            if seconds {
                i64_seconds(array, out, fails);
            } else {
                copy_i64(array, out, fails);
            }
        }
        DataType::UInt64 if ints => {
            let array = values.as_primitive::<UInt64Type>();
            let limit = if seconds {
                SECONDS_LIMIT as u64
            } else {
                i64::MAX as u64
            };
            let scale = if seconds { 1000 } else { 1 };
            convert_valid(
                array,
                |x| (x as i64).wrapping_mul(scale),
                |x| x <= limit,
                out,
                fails,
            );
        }
        DataType::Float32 if epoch => {
            let scale = if seconds { 1_000_000 } else { 1_000 };
            floats(
                values.as_primitive::<Float32Type>(),
                f64::from,
                scale,
                out,
                fails,
            );
        }
        DataType::Float64 if epoch => {
            let scale = if seconds { 1_000_000 } else { 1_000 };
            floats(
                values.as_primitive::<Float64Type>(),
                |x| x,
                scale,
                out,
                fails,
            );
        }
        DataType::Float32 | DataType::Float64 if matches!(mode, Mode::Auto) => {
            every_row_fails(values, TimeErrorKind::AutoDetectFailed, out, fails);
        }
        DataType::Utf8 => offset_strings(values.as_string::<i32>(), mode, out, fails),
        DataType::LargeUtf8 => offset_strings(values.as_string::<i64>(), mode, out, fails),
        DataType::Utf8View => {
            let array = values.as_string_view();
            let texts = (0..array.len()).map(|i| array.value(i).as_bytes());
            strings(texts, array.nulls(), mode, out, fails);
        }
        DataType::Dictionary(_, _) => dictionary(values, mode, out, fails),
        DataType::Timestamp(unit, _) => match unit {
            TimeUnit::Second => {
                i64_seconds(values.as_primitive::<TimestampSecondType>(), out, fails)
            }
            TimeUnit::Millisecond => copy_i64(
                values.as_primitive::<TimestampMillisecondType>(),
                out,
                fails,
            ),
            TimeUnit::Microsecond => convert_valid(
                values.as_primitive::<TimestampMicrosecondType>(),
                |x| x.div_euclid(1_000),
                |_| true,
                out,
                fails,
            ),
            TimeUnit::Nanosecond => convert_valid(
                values.as_primitive::<TimestampNanosecondType>(),
                |x| x.div_euclid(1_000_000),
                |_| true,
                out,
                fails,
            ),
        },
        DataType::Date32 => convert_valid(
            values.as_primitive::<Date32Type>(),
            |days| i64::from(days) * MILLIS_PER_DAY,
            |_| true,
            out,
            fails,
        ),
        DataType::Date64 => copy_i64(values.as_primitive::<Date64Type>(), out, fails),
        _ => every_row_fails(values, TimeErrorKind::TypeMismatch, out, fails),
    }
}

fn null_failure(row: usize) -> TimeFailure {
    TimeFailure {
        row,
        kind: TimeErrorKind::NullValue,
        value: NULL_TEXT.to_string(),
    }
}

/// Every non-null row fails with `kind` (its value shown by Arrow's formatter); null rows
/// are `null_value`.
fn every_row_fails(
    values: &dyn Array,
    kind: TimeErrorKind,
    out: &mut Vec<i64>,
    fails: &mut Vec<TimeFailure>,
) {
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    out.resize(values.len(), 0);
    let options = FormatOptions::default().with_null(NULL_TEXT);
    let formatter = ArrayFormatter::try_new(values, &options).ok();
    let nulls = values.logical_nulls();
    for row in 0..values.len() {
        if nulls.as_ref().is_some_and(|n| n.is_null(row)) {
            fails.push(null_failure(row));
            continue;
        }
        let mut text = String::new();
        let written = match &formatter {
            Some(f) => write!(LimitedWriter::new(&mut text, 300), "{}", f.value(row)).is_ok(),
            None => false,
        };
        if !written && text.is_empty() {
            text = format!("<a value of type {}>", values.data_type());
        }
        fails.push(TimeFailure {
            row,
            kind,
            value: shorten(&text, 256),
        });
    }
}

/// A `fmt::Write` that stops (with an error) once `limit` bytes are written, so showing a
/// huge nested value costs no more than its first bytes.
struct LimitedWriter<'a> {
    text: &'a mut String,
    limit: usize,
}

impl<'a> LimitedWriter<'a> {
    fn new(text: &'a mut String, limit: usize) -> Self {
        Self { text, limit }
    }
}

impl std::fmt::Write for LimitedWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.text.len() + s.len() > self.limit {
            let mut end = self.limit.saturating_sub(self.text.len()).min(s.len());
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            self.text.push_str(&s[..end]);
            self.text.push('…');
            return Err(std::fmt::Error);
        }
        self.text.push_str(s);
        Ok(())
    }
}

// ---- numbers -------------------------------------------------------------------------------

const MILLIS_PER_DAY: i64 = 86_400_000;
/// The largest magnitude of epoch seconds whose milliseconds fit in an `i64`.
const SECONDS_LIMIT: i64 = i64::MAX / 1000;

/// The rows whose value slot is NULL, then a fix-up pass: called only when there are nulls
/// or invalid values, so the common path stays a straight vectorised loop.
fn fix_up<N: Copy + std::fmt::Debug>(
    values: &[N],
    nulls: Option<&NullBuffer>,
    valid: impl Fn(N) -> bool,
    out: &mut [i64],
    fails: &mut Vec<TimeFailure>,
) {
    for (row, (&value, slot)) in values.iter().zip(out.iter_mut()).enumerate() {
        if nulls.is_some_and(|n| n.is_null(row)) {
            *slot = 0;
            fails.push(null_failure(row));
        } else if !valid(value) {
            *slot = 0;
            fails.push(TimeFailure {
                row,
                kind: TimeErrorKind::InvalidTimestamp,
                // Debug: a float as `1e300`, not 301 digits; an integer as itself.
                value: format!("{value:?}"),
            });
        }
    }
}

fn has_nulls(nulls: Option<&NullBuffer>) -> bool {
    nulls.is_some_and(|n| n.null_count() > 0)
}

/// Epoch millis from an `i64` column (epoch millis, Timestamp(ms), Date64): a copy.
fn copy_i64<T: ArrowPrimitiveType<Native = i64>>(
    array: &PrimitiveArray<T>,
    out: &mut Vec<i64>,
    fails: &mut Vec<TimeFailure>,
) {
    out.extend_from_slice(array.values());
    if has_nulls(array.nulls()) {
        fix_up(array.values(), array.nulls(), |_| true, out, fails);
    }
}

/// Epoch seconds of an `i64` column (epoch seconds, Timestamp(s)): a multiply by 1000, with
/// the overflow check as a separate vectorised reduction.
fn i64_seconds<T: ArrowPrimitiveType<Native = i64>>(
    array: &PrimitiveArray<T>,
    out: &mut Vec<i64>,
    fails: &mut Vec<TimeFailure>,
) {
    let valid = |x: i64| (-SECONDS_LIMIT..=SECONDS_LIMIT).contains(&x);
    convert_valid(array, |x| x.wrapping_mul(1000), valid, out, fails);
}

/// `convert` every value (wrapping: a value for which `valid` is false gets fixed up
/// after), the validity check folded over all values without an early exit so both loops
/// vectorise.
fn convert_valid<T: ArrowPrimitiveType>(
    array: &PrimitiveArray<T>,
    convert: impl Fn(T::Native) -> i64,
    valid: impl Fn(T::Native) -> bool + Copy,
    out: &mut Vec<i64>,
    fails: &mut Vec<TimeFailure>,
) where
    T::Native: std::fmt::Debug,
{
    let values = array.values();
    out.extend(values.iter().map(|&x| convert(x)));
    let all_valid = values.iter().fold(true, |ok, &x| ok & valid(x));
    if !all_valid || has_nulls(array.nulls()) {
        fix_up(values, array.nulls(), valid, out, fails);
    }
}

/// Integers of at most 32 bits: widened to `i64`, times 1000 for seconds; never out of range.
fn small_ints<T: ArrowPrimitiveType>(
    values: &dyn Array,
    seconds: bool,
    out: &mut Vec<i64>,
    fails: &mut Vec<TimeFailure>,
) where
    T::Native: Into<i64> + std::fmt::Debug,
{
    let array = values.as_primitive::<T>();
    let scale = if seconds { 1000 } else { 1 };
    convert_valid(array, |x| x.into() * scale, |_| true, out, fails);
}

/// Floats under the epoch formats; `micros_per_unit` is 1000 for millis, 10^6 for seconds.
fn floats<T: ArrowPrimitiveType>(
    array: &PrimitiveArray<T>,
    to_f64: impl Fn(T::Native) -> f64 + Copy,
    micros_per_unit: i64,
    out: &mut Vec<i64>,
    fails: &mut Vec<TimeFailure>,
) where
    T::Native: std::fmt::Debug,
{
    let convert = |x: T::Native| float_millis(to_f64(x), micros_per_unit);
    let values = array.values();
    out.extend(values.iter().map(|&x| convert(x).unwrap_or(0)));
    let valid = |x: T::Native| convert(x).is_some();
    if has_nulls(array.nulls()) || !values.iter().all(|&x| valid(x)) {
        fix_up(values, array.nulls(), valid, out, fails);
    }
}

/// A float number of units as epoch millis: rounded to the nearest microsecond (absorbs
/// the binary representation error of decimal fractions), then down to the millisecond.
/// `None` for NaN, infinities and values whose millis do not fit in an `i64`.
///
/// Exact: the whole part (exactly representable) is scaled in integers and only the
/// fraction, below one unit, is scaled in floating point (`851792873617.0` seconds × 1e6
/// is not representable as an f64; scaling the float first would give `…616999` ms).
fn float_millis(value: f64, micros_per_unit: i64) -> Option<i64> {
    // 2^63 as f64, exactly; every f64 strictly below it in magnitude converts losslessly.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if !value.is_finite() {
        return None;
    }
    let whole = value.trunc();
    if !(-LIMIT..LIMIT).contains(&whole) {
        return None;
    }
    let fraction = ((value - whole) * micros_per_unit as f64).round();
    let micros = i128::from(whole as i64) * i128::from(micros_per_unit) + fraction as i128;
    i64::try_from(micros.div_euclid(1000)).ok()
}

/// The leading ASCII digits of `text` as a `u64`: (value, digits read, overflowed).
#[inline(always)]
fn leading_digits(text: &[u8]) -> (u64, usize, bool) {
    let mut value: u64 = 0;
    let mut overflow = false;
    let mut read = 0;
    for &c in text {
        let digit = c.wrapping_sub(b'0');
        if digit > 9 {
            break;
        }
        match value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(digit)))
        {
            Some(v) => value = v,
            None => overflow = true,
        }
        read += 1;
    }
    (value, read, overflow)
}

/// A decimal number of milliseconds (`seconds` false) or seconds (true) as epoch millis:
/// `-?[0-9]+(\.[0-9]+)?`, rounded down to the millisecond.
fn decimal_millis(text: &[u8], seconds: bool) -> Result<i64, TimeErrorKind> {
    let (negative, body) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let (whole, read, overflow) = leading_digits(body);
    if read == 0 {
        return Err(TimeErrorKind::ParseError);
    }
    let fraction = match body.get(read) {
        None => &[][..],
        Some(b'.') => {
            let fraction = &body[read + 1..];
            if fraction.is_empty() || !fraction.iter().all(u8::is_ascii_digit) {
                return Err(TimeErrorKind::ParseError);
            }
            fraction
        }
        Some(_) => return Err(TimeErrorKind::ParseError),
    };
    if overflow {
        return Err(TimeErrorKind::InvalidTimestamp);
    }
    // The magnitude in whole milliseconds, and what is left below a millisecond.
    let (magnitude, below) = if seconds {
        let mut millis = 0u64;
        for k in 0..3 {
            millis = millis * 10 + fraction.get(k).map_or(0, |&c| u64::from(c - b'0'));
        }
        let magnitude = u128::from(whole) * 1000 + u128::from(millis);
        (magnitude, fraction.get(3..).unwrap_or_default())
    } else {
        (u128::from(whole), fraction)
    };
    let remainder = below.iter().any(|&c| c != b'0');
    let signed = if negative {
        -(magnitude as i128) - i128::from(remainder)
    } else {
        magnitude as i128
    };
    i64::try_from(signed).map_err(|_| TimeErrorKind::InvalidTimestamp)
}

/// `-?[0-9]+` as epoch millis (what auto-detection reads as a number), or `None` when
/// the text is not of that shape.
#[inline(always)]
fn integer_millis(text: &[u8]) -> Option<Result<i64, TimeErrorKind>> {
    let (negative, body) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let (magnitude, read, overflow) = leading_digits(body);
    if read == 0 || read != body.len() {
        return None;
    }
    let signed = if negative {
        -i128::from(magnitude)
    } else {
        i128::from(magnitude)
    };
    Some(match i64::try_from(signed) {
        Ok(millis) if !overflow => Ok(millis),
        _ => Err(TimeErrorKind::InvalidTimestamp),
    })
}

// ---- ISO 8601 ------------------------------------------------------------------------------

/// Two ASCII digits as a number.
#[inline(always)]
fn digit_pair(a: u8, b: u8) -> Option<u32> {
    let (a, b) = (a.wrapping_sub(b'0'), b.wrapping_sub(b'0'));
    (a <= 9 && b <= 9).then(|| u32::from(a * 10 + b))
}

/// Two ASCII digits at `at` as a number.
#[inline(always)]
fn two_digits(text: &[u8], at: usize) -> Result<u32, TimeErrorKind> {
    let (Some(&a), Some(&b)) = (text.get(at), text.get(at + 1)) else {
        return Err(TimeErrorKind::ParseError);
    };
    let (a, b) = (a.wrapping_sub(b'0'), b.wrapping_sub(b'0'));
    if a > 9 || b > 9 {
        return Err(TimeErrorKind::ParseError);
    }
    Ok(u32::from(a * 10 + b))
}

#[inline(always)]
fn is_leap(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

#[inline(always)]
fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date of year 0 to 9999 (Howard
/// Hinnant's days_from_civil, with years counted from March and shifted by 400 so all
/// arithmetic is unsigned: the divisions by constants become multiplications).
#[inline(always)]
fn days_from_civil(year: u32, month: u32, day: u32) -> i64 {
    let march_year = year + 400 - u32::from(month <= 2);
    // Days from March 1 to the first of each month, January and February last.
    const BEFORE_MONTH: [u32; 12] = [306, 337, 0, 31, 61, 92, 122, 153, 184, 214, 245, 275];
    let day_of_year = BEFORE_MONTH[(month as usize - 1) % 12] + day - 1;
    let days =
        march_year * 365 + march_year / 4 - march_year / 100 + march_year / 400 + day_of_year;
    // 719_468: days from 0000-03-01 to 1970-01-01; 146_097: the 400 years of the shift.
    i64::from(days) - (719_468 + 146_097)
}

/// `YYYY-MM-DD?HH:MM` at the start of `text` (`?` any byte, checked by the caller), all
/// 12 digits and 4 separators checked with two 8-byte loads: (year, month, day, hour,
/// minute). `text` must be at least 16 bytes long.
#[inline(always)]
fn date_hour_minute(text: &[u8]) -> Option<(u32, u32, u32, u32, u32)> {
    const ZEROS: u64 = 0x3030_3030_3030_3030;
    const HIGH: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    const SIX: u64 = 0x0606_0606_0606_0606;
    // Little-endian: byte i of the text is bits 8i..8i+8. 0xFF marks a digit position.
    const DATE_DIGITS: u64 = 0x00FF_FF00_FFFF_FFFF; // "YYYY-MM-"
    const DATE_SEPARATORS: u64 = 0x2D00_002D_0000_0000; // '-' at 4 and 7
    const TIME_DIGITS: u64 = 0xFFFF_00FF_FF00_FFFF; // "DD?HH:MM"
    const TIME_SEPARATORS: u64 = 0x0000_3A00_0000_0000; // ':' at 13 (byte 5 here)
    const TIME_CHECKED: u64 = 0x0000_FF00_0000_0000; // byte 2 (the date/time separator) is not
    let first = u64::from_le_bytes(text.get(0..8)?.try_into().ok()?);
    let second = u64::from_le_bytes(text.get(8..16)?.try_into().ok()?);
    if first & !DATE_DIGITS != DATE_SEPARATORS || second & TIME_CHECKED != TIME_SEPARATORS {
        return None;
    }
    // Non-digit positions set to '0', then every byte must be '0'..='9'.
    let first = (first & DATE_DIGITS) | (ZEROS & !DATE_DIGITS);
    let second = (second & TIME_DIGITS) | (ZEROS & !TIME_DIGITS);
    let digits_ok = |x: u64| x & HIGH == ZEROS && (x + SIX) & HIGH == ZEROS;
    if !digits_ok(first) || !digits_ok(second) {
        return None;
    }
    let (first, second) = (first - ZEROS, second - ZEROS);
    // Byte i becomes 10 × digit i + digit i+1 (no carries: at most 99 per byte).
    let first = first * 10 + (first >> 8);
    let second = second * 10 + (second >> 8);
    let byte = |x: u64, i: u32| ((x >> (8 * i)) & 0xFF) as u32;
    Some((
        byte(first, 0) * 100 + byte(first, 2),
        byte(first, 5),
        byte(second, 0),
        byte(second, 3),
        byte(second, 6),
    ))
}

/// An ISO 8601 / RFC 3339 timestamp as epoch millis (layouts in the module doc). `lenient`
/// (auto-detection) also reads a time without an offset, and a bare date, as UTC.
#[inline(always)]
fn iso_millis(text: &[u8], lenient: bool) -> Result<i64, TimeErrorKind> {
    use TimeErrorKind::{InvalidTimestamp as Invalid, ParseError as Shape};
    let n = text.len();
    let (year, month, day, hour, minute) = if n >= 16 {
        if !matches!(text[10], b'T' | b't' | b' ') {
            return Err(Shape);
        }
        date_hour_minute(text).ok_or(Shape)?
    } else if n == 10 && lenient && text[4] == b'-' && text[7] == b'-' {
        let year = two_digits(text, 0)? * 100 + two_digits(text, 2)?;
        (year, two_digits(text, 5)?, two_digits(text, 8)?, 0, 0)
    } else {
        return Err(Shape);
    };
    let (mut second, mut millis, mut offset) = (0, 0, 0i64);
    let mut at = 16;
    if n != 10 {
        if n > 18 && text[16] == b':' {
            second = digit_pair(text[17], text[18]).ok_or(Shape)?;
            at = 19;
            if n > 19 && matches!(text[19], b'.' | b',') {
                at = 20;
                // 1 to 9 digits; the first three are the milliseconds, the rest truncated.
                let end = n.min(30);
                while at < end && text[at].is_ascii_digit() {
                    at += 1;
                }
                let digits = &text[20..at];
                if digits.is_empty() || digits.len() > 9 {
                    return Err(Shape);
                }
                let digit = |k: usize| digits.get(k).map_or(0, |&c| u32::from(c - b'0'));
                millis = digit(0) * 100 + digit(1) * 10 + digit(2);
            }
        }
        match text.get(at) {
            None if lenient => {}
            None => return Err(Shape),
            Some(b'Z' | b'z') if at + 1 == n => {}
            Some(&sign @ (b'+' | b'-')) => {
                let zone = &text[at + 1..];
                let (hours, minutes) = match zone.len() {
                    2 => (two_digits(zone, 0)?, 0),
                    4 => (two_digits(zone, 0)?, two_digits(zone, 2)?),
                    5 if zone[2] == b':' => (two_digits(zone, 0)?, two_digits(zone, 3)?),
                    _ => return Err(Shape),
                };
                if hours > 23 || minutes > 59 {
                    return Err(Invalid);
                }
                offset = i64::from(hours * 3600 + minutes * 60) * 1000;
                if sign == b'-' {
                    offset = -offset;
                }
            }
            Some(_) => return Err(Shape),
        }
    }
    if !(1..=12).contains(&month)
        || day == 0
        || (day > 28 && day > days_in_month(year, month))
        || hour > 23
        || minute > 59
        || second > 59
    {
        return Err(Invalid);
    }
    let days = days_from_civil(year, month, day);
    let time = i64::from((hour * 3600 + minute * 60 + second) * 1000 + millis);
    Ok(days * MILLIS_PER_DAY + time - offset)
}

// ---- patterns ------------------------------------------------------------------------------

/// Compile and validate a strftime pattern (see the module doc for what is rejected).
fn compile_pattern(pattern: &str) -> Result<Vec<Item<'static>>, String> {
    let items = StrftimeItems::new(pattern).parse_to_owned().map_err(|_| {
        format!(
            "invalid event.time.format pattern '{pattern}': not a valid strftime pattern \
             (see chrono's strftime specifiers, e.g. '%Y-%m-%d %H:%M:%S%.3f')"
        )
    })?;
    if items
        .iter()
        .any(|item| matches!(item, Item::Fixed(Fixed::TimezoneName)))
    {
        return Err(format!(
            "invalid event.time.format pattern '{pattern}': %Z (a time zone name) cannot be \
             read back into an offset; use %z for a numeric offset such as +05:30"
        ));
    }
    // A pattern must read back what it writes, or it could never parse a value.
    let sample = DateTime::from_timestamp(981_173_106, 789_012_345)
        .expect("a fixed in-range instant")
        .fixed_offset();
    let mut text = String::new();
    let written = sample.format_with_items(items.iter()).write_to(&mut text);
    let read = written.is_ok() && pattern_millis(text.as_bytes(), &items).is_ok();
    if !read {
        return Err(format!(
            "invalid event.time.format pattern '{pattern}': it does not determine an instant \
             (it needs a full date: year, month and day, or year and day of year; a 12-hour \
             %I needs %p; seconds need minutes and hours)"
        ));
    }
    Ok(items)
}

fn chrono_kind(error: chrono::format::ParseError) -> TimeErrorKind {
    match error.kind() {
        ParseErrorKind::OutOfRange | ParseErrorKind::Impossible => TimeErrorKind::InvalidTimestamp,
        _ => TimeErrorKind::ParseError,
    }
}

/// A value read with a compiled pattern: UTC unless the pattern gave an offset; a date
/// without any time field is midnight.
fn pattern_millis(text: &[u8], items: &[Item<'static>]) -> Result<i64, TimeErrorKind> {
    let text = std::str::from_utf8(text).map_err(|_| TimeErrorKind::ParseError)?;
    let mut parsed = Parsed::new();
    chrono::format::parse(&mut parsed, text, items.iter()).map_err(chrono_kind)?;
    let offset = parsed.offset().unwrap_or(0);
    let local = match parsed.to_naive_datetime_with_offset(offset) {
        Ok(local) => local,
        Err(error)
            if error.kind() == ParseErrorKind::NotEnough
                && parsed.hour_div_12().is_none()
                && parsed.hour_mod_12().is_none()
                && parsed.minute().is_none()
                && parsed.second().is_none()
                && parsed.nanosecond().is_none() =>
        {
            parsed
                .to_naive_date()
                .map_err(chrono_kind)?
                .and_time(NaiveTime::MIN)
        }
        Err(error) => return Err(chrono_kind(error)),
    };
    if local.nanosecond() >= 1_000_000_000 {
        return Err(TimeErrorKind::InvalidTimestamp); // a leap second
    }
    local
        .and_utc()
        .timestamp_millis()
        .checked_sub(i64::from(offset) * 1000)
        .ok_or(TimeErrorKind::InvalidTimestamp)
}

// ---- strings -------------------------------------------------------------------------------

fn offset_strings<O: OffsetSizeTrait>(
    array: &GenericStringArray<O>,
    mode: &Mode,
    out: &mut Vec<i64>,
    fails: &mut Vec<TimeFailure>,
) {
    let data = array.value_data();
    let texts = array.value_offsets().windows(2).map(|w| {
        data.get(w[0].as_usize()..w[1].as_usize())
            .unwrap_or_default()
    });
    strings(texts, array.nulls(), mode, out, fails);
}

/// One string column in `mode`: a loop specialised per format.
fn strings<'a>(
    texts: impl Iterator<Item = &'a [u8]>,
    nulls: Option<&NullBuffer>,
    mode: &Mode,
    out: &mut Vec<i64>,
    fails: &mut Vec<TimeFailure>,
) {
    let nulls = nulls.filter(|n| n.null_count() > 0);
    match mode {
        Mode::Millis => each_string(texts, nulls, |t| decimal_millis(t, false), out, fails),
        Mode::Seconds => each_string(texts, nulls, |t| decimal_millis(t, true), out, fails),
        Mode::Iso => each_string(texts, nulls, |t| iso_millis(t, false), out, fails),
        Mode::Pattern(Some(items)) => {
            each_string(texts, nulls, |t| pattern_millis(t, items), out, fails)
        }
        Mode::Pattern(None) => {
            each_string(texts, nulls, |_| Err(TimeErrorKind::ParseError), out, fails)
        }
        Mode::Auto => each_string(texts, nulls, auto_text_millis, out, fails),
    }
}

/// Auto-detection of one text value: digits are epoch millis, anything else ISO 8601.
#[inline(always)]
fn auto_text_millis(text: &[u8]) -> Result<i64, TimeErrorKind> {
    if let Some(millis) = integer_millis(text) {
        return millis;
    }
    iso_millis(text, true).map_err(|kind| match kind {
        TimeErrorKind::ParseError => TimeErrorKind::AutoDetectFailed,
        other => other,
    })
}

/// Parse each text (a null row is `null_value`) into `out`, failures into `fails`.
#[inline(always)]
fn each_string<'a>(
    texts: impl Iterator<Item = &'a [u8]>,
    nulls: Option<&NullBuffer>,
    parse: impl Fn(&[u8]) -> Result<i64, TimeErrorKind>,
    out: &mut Vec<i64>,
    fails: &mut Vec<TimeFailure>,
) {
    // Two instances of one loop: without nulls `valid` is a constant and its test vanishes.
    match nulls {
        None => each_row(texts.map(|text| (text, true)), parse, out, fails),
        Some(nulls) => each_row(texts.zip(nulls.iter()), parse, out, fails),
    }
}

#[inline(always)]
fn each_row<'a>(
    rows: impl Iterator<Item = (&'a [u8], bool)>,
    parse: impl Fn(&[u8]) -> Result<i64, TimeErrorKind>,
    out: &mut Vec<i64>,
    fails: &mut Vec<TimeFailure>,
) {
    out.extend(rows.enumerate().map(|(row, (text, valid))| {
        if !valid {
            fails.push(null_failure(row));
            return 0;
        }
        match parse(text) {
            Ok(millis) => millis,
            Err(kind) => {
                text_failure(fails, row, kind, text);
                0
            }
        }
    }));
}

/// Kept out of line: the hot loop stays small.
#[cold]
#[inline(never)]
fn text_failure(fails: &mut Vec<TimeFailure>, row: usize, kind: TimeErrorKind, text: &[u8]) {
    fails.push(TimeFailure {
        row,
        kind,
        value: text_value(text),
    });
}

// ---- dictionaries --------------------------------------------------------------------------

/// A dictionary column: its values parsed once, then gathered by key.
fn dictionary(values: &dyn Array, mode: &Mode, out: &mut Vec<i64>, fails: &mut Vec<TimeFailure>) {
    let Some(dict) = values.as_any_dictionary_opt() else {
        return every_row_fails(values, TimeErrorKind::TypeMismatch, out, fails);
    };
    let len = values.len();
    let key_nulls = dict.keys().nulls().filter(|n| n.null_count() > 0);
    let dict_values = dict.values();
    if dict_values.is_empty() {
        // Only null keys can exist in a valid array; anything else is treated as NULL too.
        out.resize(len, 0);
        fails.extend((0..len).map(null_failure));
        return;
    }
    let mut parsed = Vec::with_capacity(dict_values.len());
    let mut value_fails = Vec::new();
    parse_array(dict_values.as_ref(), mode, &mut parsed, &mut value_fails);
    // For each dictionary value, its failure, if it failed.
    let mut failure_of: Vec<Option<&TimeFailure>> = vec![None; parsed.len()];
    for failure in &value_fails {
        if let Some(slot) = failure_of.get_mut(failure.row) {
            *slot = Some(failure);
        }
    }
    let keys = dict.normalized_keys();
    out.reserve(len);
    for (row, &key) in keys.iter().enumerate() {
        if key_nulls.is_some_and(|n| n.is_null(row)) {
            out.push(0);
            fails.push(null_failure(row));
            continue;
        }
        match failure_of.get(key).copied().flatten() {
            None => out.push(parsed.get(key).copied().unwrap_or(0)),
            Some(source) => {
                out.push(0);
                fails.push(TimeFailure {
                    row,
                    kind: source.kind,
                    value: source.value.clone(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        ArrayRef, BooleanArray, Date32Array, Date64Array, DictionaryArray, Float32Array,
        Float64Array, Int16Array, Int32Array, Int64Array, Int8Array, LargeStringArray, ListArray,
        NullArray, StringArray, StringViewArray, TimestampMicrosecondArray,
        TimestampMillisecondArray, TimestampNanosecondArray, TimestampSecondArray, UInt16Array,
        UInt32Array, UInt64Array, UInt8Array,
    };
    use arrow::datatypes::Int32Type as Key;

    use super::*;
    use TimeErrorKind::*;

    /// Parse and return (values, failures as (row, kind, value)).
    fn run(
        array: &dyn Array,
        format: &TimeFormat,
    ) -> (Vec<i64>, Vec<(usize, TimeErrorKind, String)>) {
        let mut out = vec![42; 3];
        let mut fails = vec![TimeFailure {
            row: 9,
            kind: NullValue,
            value: String::new(),
        }];
        parse_event_times(array, format, &mut out, &mut fails);
        assert_eq!(out.len(), array.len());
        let fails = fails
            .into_iter()
            .map(|f| (f.row, f.kind, f.value))
            .collect();
        (out, fails)
    }

    fn fmt(text: &str) -> TimeFormat {
        TimeFormat::parse(Some(text)).unwrap()
    }

    fn iso_one(text: &str) -> Result<i64, TimeErrorKind> {
        let (out, fails) = run(&StringArray::from(vec![text]), &TimeFormat::Iso8601);
        match fails.first() {
            Some((_, kind, _)) => Err(*kind),
            None => Ok(out[0]),
        }
    }

    fn one(text: &str, format: &TimeFormat) -> Result<i64, TimeErrorKind> {
        let (out, fails) = run(&StringArray::from(vec![text]), format);
        match fails.first() {
            Some((_, kind, value)) => {
                assert_eq!(value, text);
                Err(*kind)
            }
            None => Ok(out[0]),
        }
    }

    #[test]
    fn time_format_parse() {
        assert_eq!(TimeFormat::parse(None), Ok(TimeFormat::Auto));
        assert_eq!(fmt("epoch_millis"), TimeFormat::EpochMillis);
        assert_eq!(fmt("epoch_seconds"), TimeFormat::EpochSeconds);
        assert_eq!(fmt("epoch"), TimeFormat::EpochSeconds);
        assert_eq!(fmt("iso8601"), TimeFormat::Iso8601);
        assert_eq!(fmt("ISO8601"), TimeFormat::Iso8601);
        assert_eq!(fmt("%Y-%m-%d"), TimeFormat::Pattern("%Y-%m-%d".into()));
        for bad in ["", "iso", "Iso8601", " epoch", "millis", "rfc3339"] {
            let err = TimeFormat::parse(Some(bad)).unwrap_err();
            assert!(
                err.contains("epoch_millis") && err.contains("iso8601"),
                "{err}"
            );
        }
        for bad in [
            "%Q",
            "%Y-%m-%d %",
            "%H:%M:%S",
            "%Y-%m",
            "%Y-%m-%d %I:%M",
            "%Y-%m-%d %Z",
        ] {
            let err = TimeFormat::parse(Some(bad)).unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
        assert_eq!(fmt("%s").name(), "%s");
        assert_eq!(TimeFormat::Auto.name(), "auto-detect");
        assert_eq!(TimeFormat::EpochSeconds.name(), "epoch_seconds");
    }

    #[test]
    fn time_kind_names() {
        let names: Vec<_> = [
            MissingField,
            NullValue,
            TypeMismatch,
            InvalidTimestamp,
            ParseError,
            AutoDetectFailed,
        ]
        .iter()
        .map(|k| k.as_str())
        .collect();
        assert_eq!(
            names,
            [
                "missing_field",
                "null_value",
                "type_mismatch",
                "invalid_timestamp",
                "parse_error",
                "auto_detect_failed"
            ]
        );
    }

    #[test]
    fn time_iso_layouts_and_offsets() {
        let base = 1_706_702_400_000; // 2024-01-31T12:00:00Z
        assert_eq!(iso_one("2024-01-31T12:00:00Z"), Ok(base));
        assert_eq!(iso_one("2024-01-31t12:00:00z"), Ok(base));
        assert_eq!(iso_one("2024-01-31 12:00:00Z"), Ok(base));
        assert_eq!(iso_one("2024-01-31T12:00Z"), Ok(base));
        assert_eq!(iso_one("2024-01-31T17:30:00+05:30"), Ok(base));
        assert_eq!(iso_one("2024-01-31T17:30:00+0530"), Ok(base));
        assert_eq!(iso_one("2024-01-31T17:00:00+05"), Ok(base));
        assert_eq!(iso_one("2024-01-31T04:00:00-08:00"), Ok(base));
        assert_eq!(iso_one("2024-01-31T12:00:00+0000"), Ok(base));
        assert_eq!(iso_one("2024-01-31T12:00:00-00:00"), Ok(base));
        assert_eq!(iso_one("2024-01-31T12:00:00.5Z"), Ok(base + 500));
        assert_eq!(iso_one("2024-01-31T12:00:00,25Z"), Ok(base + 250));
        assert_eq!(iso_one("2024-01-31T12:00:00.123456789Z"), Ok(base + 123));
        assert_eq!(iso_one("2024-01-31T12:00:00.9999Z"), Ok(base + 999));
        assert_eq!(
            iso_one("2024-01-31T12:00:00.999999999+01:00"),
            Ok(base - 3_600_000 + 999)
        );
    }

    #[test]
    fn time_iso_calendar() {
        assert_eq!(iso_one("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(iso_one("1969-12-31T23:59:59.999Z"), Ok(-1));
        assert_eq!(iso_one("0001-01-01T00:00:00Z"), Ok(-62_135_596_800_000));
        assert_eq!(iso_one("0000-01-01T00:00:00Z"), Ok(-62_167_219_200_000));
        assert_eq!(iso_one("9999-12-31T23:59:59.999Z"), Ok(253_402_300_799_999));
        assert_eq!(iso_one("2024-02-29T00:00:00Z"), Ok(1_709_164_800_000));
        assert_eq!(iso_one("2000-02-29T00:00:00Z"), Ok(951_782_400_000));
        for invalid in [
            "2023-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2024-04-31T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-00-01T00:00:00Z",
            "2024-01-00T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T23:60:00Z",
            "2024-01-01T23:59:60Z",
            "2024-01-01T00:00:00+24:00",
            "2024-01-01T00:00:00+05:60",
        ] {
            assert_eq!(iso_one(invalid), Err(InvalidTimestamp), "{invalid}");
        }
    }

    #[test]
    fn time_iso_shape_errors() {
        for bad in [
            "",
            "abc",
            "2024-01-31",
            "2024-01-31T12:00:00",
            "2024-01-31T12:00",
            "2024-01-31T12:00:00.Z",
            "2024-01-31T12:00:00.1234567891Z",
            "2024-01-31T12:00:00ZZ",
            "2024-01-31T12:00:00+5:30",
            "2024-01-31T12:00:00+05:3",
            "2024-01-31T12:00:00+05:30:00",
            "2024-01-31X12:00:00Z",
            "2024-01-31T12:00:0Z",
            " 2024-01-31T12:00:00Z",
            "2024-01-31T12:00:00Z ",
            "24-01-31T12:00:00Z",
            "+2024-01-31T12:00:00Z",
            "2024/01/31T12:00:00Z",
            "2024-1-31T12:00:00Z",
            "2024-01-31T12:00.5Z",
            "２０２４-01-31T12:00:00Z",
        ] {
            assert_eq!(iso_one(bad), Err(ParseError), "{bad:?}");
        }
    }

    #[test]
    fn time_days_from_civil_matches_chrono() {
        let mut date = chrono::NaiveDate::from_ymd_opt(0, 1, 1).unwrap();
        let end = chrono::NaiveDate::from_ymd_opt(9999, 12, 31).unwrap();
        while date <= end {
            use chrono::Datelike;
            let expected = date.and_time(NaiveTime::MIN).and_utc().timestamp() / 86_400;
            let year = u32::try_from(date.year()).unwrap();
            let got = days_from_civil(year, date.month(), date.day());
            assert_eq!(got, expected, "{date}");
            date = date.succ_opt().unwrap();
        }
    }

    #[test]
    fn time_epoch_strings() {
        let ms = TimeFormat::EpochMillis;
        let s = TimeFormat::EpochSeconds;
        assert_eq!(one("1700000000000", &ms), Ok(1_700_000_000_000));
        assert_eq!(one("-1", &ms), Ok(-1));
        assert_eq!(one("-1.5", &ms), Ok(-2));
        assert_eq!(one("1.9", &ms), Ok(1));
        assert_eq!(one("0007", &ms), Ok(7));
        assert_eq!(one("9223372036854775807", &ms), Ok(i64::MAX));
        assert_eq!(one("-9223372036854775808", &ms), Ok(i64::MIN));
        assert_eq!(one("9223372036854775808", &ms), Err(InvalidTimestamp));
        assert_eq!(
            one("99999999999999999999999999", &ms),
            Err(InvalidTimestamp)
        );
        assert_eq!(one("1700000000", &s), Ok(1_700_000_000_000));
        assert_eq!(one("1700000000.123", &s), Ok(1_700_000_000_123));
        assert_eq!(one("1700000000.1239999", &s), Ok(1_700_000_000_123));
        assert_eq!(one("1.5", &s), Ok(1500));
        assert_eq!(one("-1.5", &s), Ok(-1500));
        assert_eq!(one("-1.0005", &s), Ok(-1001));
        assert_eq!(one("-1.0000", &s), Ok(-1000));
        assert_eq!(one("9223372036854775", &s), Ok(9_223_372_036_854_775_000));
        assert_eq!(one("9223372036854776", &s), Err(InvalidTimestamp));
        assert_eq!(one("1000000000000000000", &s), Err(InvalidTimestamp));
        for bad in [
            "", "-", "+1", " 1", "1 ", "1e3", "1.", ".5", "0x10", "1_000", "abc", "1.2.3", "--1",
        ] {
            assert_eq!(one(bad, &ms), Err(ParseError), "{bad:?}");
            assert_eq!(one(bad, &s), Err(ParseError), "{bad:?}");
        }
    }

    #[test]
    fn time_auto_strings() {
        let auto = TimeFormat::Auto;
        assert_eq!(one("1700000000000", &auto), Ok(1_700_000_000_000));
        assert_eq!(one("-5", &auto), Ok(-5));
        assert_eq!(one("2024-01-31T12:00:00Z", &auto), Ok(1_706_702_400_000));
        assert_eq!(one("2024-01-31T12:00:00", &auto), Ok(1_706_702_400_000));
        assert_eq!(one("2024-01-31 12:00", &auto), Ok(1_706_702_400_000));
        assert_eq!(one("2024-01-31", &auto), Ok(1_706_659_200_000));
        assert_eq!(one("2023-02-29T00:00:00Z", &auto), Err(InvalidTimestamp));
        assert_eq!(one("99999999999999999999", &auto), Err(InvalidTimestamp));
        for bad in ["abc", "", "1.5", "1e9", "2024-01-31T", "yesterday", "-"] {
            assert_eq!(one(bad, &auto), Err(AutoDetectFailed), "{bad:?}");
        }
    }

    #[test]
    fn time_patterns() {
        let p = fmt("%Y-%m-%d %H:%M:%S%.3f");
        assert_eq!(one("2024-01-31 12:00:00.250", &p), Ok(1_706_702_400_250));
        // chrono reads a `%.3f` fraction as optional.
        assert_eq!(one("2024-01-31 12:00:00", &p), Ok(1_706_702_400_000));
        assert_eq!(one("2024-01-31 12:00", &p), Err(ParseError));
        assert_eq!(one("2024-02-30 12:00:00.000", &p), Err(InvalidTimestamp));
        assert_eq!(one("2024-01-31 25:00:00.000", &p), Err(InvalidTimestamp));
        assert_eq!(one("2024-01-31 23:59:60.000", &p), Err(InvalidTimestamp));
        let day = fmt("%Y-%m-%d");
        assert_eq!(one("2024-01-31", &day), Ok(1_706_659_200_000));
        assert_eq!(one("0001-01-01", &day), Ok(-62_135_596_800_000));
        let zoned = fmt("%Y-%m-%dT%H:%M:%S%z");
        assert_eq!(
            one("2024-01-31T17:30:00+0530", &zoned),
            Ok(1_706_702_400_000)
        );
        assert_eq!(
            one("2024-01-31T04:00:00-08:00", &zoned),
            Ok(1_706_702_400_000)
        );
        let fraction = fmt("%d/%m/%Y %H:%M:%S%.f");
        assert_eq!(
            one("31/01/2024 12:00:00.9999", &fraction),
            Ok(1_706_702_400_999)
        );
        let stamp = fmt("%s");
        assert_eq!(one("1706702400", &stamp), Ok(1_706_702_400_000));
        let named = fmt("%a %d %b %Y %H:%M");
        assert_eq!(one("Wed 31 Jan 2024 12:00", &named), Ok(1_706_702_400_000));
        assert_eq!(one("Thu 31 Jan 2024 12:00", &named), Err(InvalidTimestamp));
        // A pattern constructed directly without validation fails per row, never panics.
        let broken = TimeFormat::Pattern("%Q".into());
        assert_eq!(one("x", &broken), Err(ParseError));
    }

    #[test]
    fn time_integers_every_width() {
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(Int8Array::from(vec![Some(-3), None, Some(7)])),
            Arc::new(Int16Array::from(vec![Some(-3), None, Some(7)])),
            Arc::new(Int32Array::from(vec![Some(-3), None, Some(7)])),
            Arc::new(Int64Array::from(vec![Some(-3), None, Some(7)])),
            Arc::new(UInt8Array::from(vec![Some(3), None, Some(7)])),
            Arc::new(UInt16Array::from(vec![Some(3), None, Some(7)])),
            Arc::new(UInt32Array::from(vec![Some(3), None, Some(7)])),
            Arc::new(UInt64Array::from(vec![Some(3), None, Some(7)])),
        ];
        for array in &arrays {
            let first = if array.data_type().is_signed_integer() {
                -3
            } else {
                3
            };
            for (format, scale) in [
                (TimeFormat::EpochMillis, 1),
                (TimeFormat::Auto, 1),
                (TimeFormat::EpochSeconds, 1000),
            ] {
                let (out, fails) = run(array.as_ref(), &format);
                assert_eq!(
                    out,
                    vec![first * scale, 0, 7 * scale],
                    "{:?}",
                    array.data_type()
                );
                assert_eq!(fails, vec![(1, NullValue, "NULL".to_string())]);
            }
            let (_, fails) = run(array.as_ref(), &TimeFormat::Iso8601);
            assert_eq!(
                fails,
                vec![
                    (0, TypeMismatch, first.to_string()),
                    (1, NullValue, "NULL".to_string()),
                    (2, TypeMismatch, "7".to_string())
                ]
            );
        }
    }

    #[test]
    fn time_integer_ranges() {
        let big = Int64Array::from(vec![
            SECONDS_LIMIT,
            SECONDS_LIMIT + 1,
            -SECONDS_LIMIT,
            -SECONDS_LIMIT - 1,
            i64::MIN,
        ]);
        let (out, fails) = run(&big, &TimeFormat::EpochSeconds);
        assert_eq!(
            out,
            vec![SECONDS_LIMIT * 1000, 0, -SECONDS_LIMIT * 1000, 0, 0]
        );
        let rows: Vec<_> = fails.iter().map(|f| (f.0, f.1)).collect();
        assert_eq!(
            rows,
            vec![
                (1, InvalidTimestamp),
                (3, InvalidTimestamp),
                (4, InvalidTimestamp)
            ]
        );
        assert_eq!(fails[0].2, (SECONDS_LIMIT + 1).to_string());
        let (out, fails) = run(&big, &TimeFormat::EpochMillis);
        assert_eq!(out, big.values().to_vec());
        assert!(fails.is_empty());
        let unsigned = UInt64Array::from(vec![
            Some(u64::MAX),
            None,
            Some(i64::MAX as u64),
            Some(1 << 63),
        ]);
        let (out, fails) = run(&unsigned, &TimeFormat::EpochMillis);
        assert_eq!(out, vec![0, 0, i64::MAX, 0]);
        let kinds: Vec<_> = fails.iter().map(|f| (f.0, f.1)).collect();
        assert_eq!(
            kinds,
            vec![(0, InvalidTimestamp), (1, NullValue), (3, InvalidTimestamp)]
        );
        let (out, fails) = run(
            &UInt64Array::from(vec![SECONDS_LIMIT as u64 + 1, 5]),
            &TimeFormat::EpochSeconds,
        );
        assert_eq!(out, vec![0, 5000]);
        assert_eq!(fails.len(), 1);
        let (out, _) = run(
            &UInt32Array::from(vec![u32::MAX]),
            &TimeFormat::EpochSeconds,
        );
        assert_eq!(out, vec![i64::from(u32::MAX) * 1000]);
    }

    #[test]
    fn time_floats() {
        let values = Float64Array::from(vec![
            Some(1_700_000_000.123),
            Some(-1.0005),
            None,
            Some(f64::NAN),
            Some(f64::INFINITY),
            Some(1e18),
            Some(0.0009),
        ]);
        let (out, fails) = run(&values, &TimeFormat::EpochSeconds);
        assert_eq!(out, vec![1_700_000_000_123, -1001, 0, 0, 0, 0, 0]);
        let kinds: Vec<_> = fails.iter().map(|f| (f.0, f.1, f.2.as_str())).collect();
        assert_eq!(
            kinds,
            vec![
                (2, NullValue, "NULL"),
                (3, InvalidTimestamp, "NaN"),
                (4, InvalidTimestamp, "inf"),
                (5, InvalidTimestamp, "1e18")
            ]
        );
        let (out, fails) = run(&values, &TimeFormat::EpochMillis);
        assert_eq!(out[0], 1_700_000_000);
        // -1.0005 is stored as -1.000499999…: -1000.4999… µs is -1000 µs to the nearest µs.
        assert_eq!(out[1], -1);
        assert_eq!(out[5], 1_000_000_000_000_000_000);
        assert_eq!(out[6], 0);
        assert_eq!(fails.len(), 3);
        let (out, fails) = run(
            &Float64Array::from(vec![9.3e18, i64::MIN as f64]),
            &TimeFormat::EpochMillis,
        );
        assert_eq!(out, vec![0, i64::MIN]);
        assert_eq!(fails.len(), 1);
        let single = Float32Array::from(vec![1.5f32]);
        assert_eq!(run(&single, &TimeFormat::EpochSeconds).0, vec![1500]);
        let (_, fails) = run(&single, &TimeFormat::Auto);
        assert_eq!(fails, vec![(0, AutoDetectFailed, "1.5".to_string())]);
        let (_, fails) = run(&single, &TimeFormat::Iso8601);
        assert_eq!(fails, vec![(0, TypeMismatch, "1.5".to_string())]);
    }

    #[test]
    fn time_timestamps_and_dates() {
        let seconds =
            TimestampSecondArray::from(vec![Some(-1), None, Some(1_700_000_000), Some(i64::MAX)]);
        let millis =
            TimestampMillisecondArray::from(vec![Some(-1), None, Some(5)]).with_timezone("+05:30");
        let micros = TimestampMicrosecondArray::from(vec![Some(-1), None, Some(1_999)]);
        let nanos = TimestampNanosecondArray::from(vec![Some(-1), None, Some(1_999_999)])
            .with_timezone("UTC");
        for format in [
            TimeFormat::EpochMillis,
            TimeFormat::EpochSeconds,
            TimeFormat::Iso8601,
            fmt("%Y-%m-%d"),
            TimeFormat::Auto,
        ] {
            let (out, fails) = run(&seconds, &format);
            assert_eq!(out, vec![-1000, 0, 1_700_000_000_000, 0]);
            assert_eq!(
                fails.iter().map(|f| (f.0, f.1)).collect::<Vec<_>>(),
                vec![(1, NullValue), (3, InvalidTimestamp)]
            );
            assert_eq!(run(&millis, &format).0, vec![-1, 0, 5]);
            assert_eq!(run(&micros, &format).0, vec![-1, 0, 1]);
            let (out, fails) = run(&nanos, &format);
            assert_eq!(out, vec![-1, 0, 1]);
            assert_eq!(fails, vec![(1, NullValue, "NULL".to_string())]);
            let dates = Date32Array::from(vec![Some(-1), None, Some(19_753)]);
            assert_eq!(
                run(&dates, &format).0,
                vec![-86_400_000, 0, 1_706_659_200_000]
            );
            let dates64 = Date64Array::from(vec![Some(-86_400_000), None]);
            assert_eq!(run(&dates64, &format).0, vec![-86_400_000, 0]);
        }
    }

    #[test]
    fn time_string_array_kinds() {
        let texts = vec![Some("2024-01-31T12:00:00Z"), None, Some("garbage")];
        let expected_out = vec![1_706_702_400_000, 0, 0];
        let expected_fails = vec![
            (1, NullValue, "NULL".to_string()),
            (2, ParseError, "garbage".to_string()),
        ];
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(texts.clone())),
            Arc::new(LargeStringArray::from(texts.clone())),
            Arc::new(StringViewArray::from(texts.clone())),
            Arc::new(texts.iter().copied().collect::<DictionaryArray<Key>>()),
        ];
        for array in &arrays {
            let (out, fails) = run(array.as_ref(), &TimeFormat::Iso8601);
            assert_eq!(out, expected_out, "{:?}", array.data_type());
            assert_eq!(fails, expected_fails, "{:?}", array.data_type());
        }
        // Slices keep row numbers relative to the slice.
        let sliced = StringArray::from(texts).slice(1, 2);
        let (out, fails) = run(&sliced, &TimeFormat::Iso8601);
        assert_eq!(out, vec![0, 0]);
        assert_eq!(
            fails,
            vec![
                (0, NullValue, "NULL".to_string()),
                (1, ParseError, "garbage".to_string())
            ]
        );
    }

    #[test]
    fn time_dictionary_reuses_values() {
        let dict: DictionaryArray<Key> = vec![Some("5"), Some("x"), Some("5"), None, Some("x")]
            .into_iter()
            .collect();
        let (out, fails) = run(&dict, &TimeFormat::EpochSeconds);
        assert_eq!(out, vec![5000, 0, 5000, 0, 0]);
        let kinds: Vec<_> = fails.iter().map(|f| (f.0, f.1, f.2.as_str())).collect();
        assert_eq!(
            kinds,
            vec![
                (1, ParseError, "x"),
                (3, NullValue, "NULL"),
                (4, ParseError, "x")
            ]
        );
        // A dictionary of integers, and one whose values hold a null.
        let keys = Int32Array::from(vec![1, 0, 1]);
        let values = Int64Array::from(vec![None, Some(9)]);
        let dict = DictionaryArray::<Key>::try_new(keys, Arc::new(values)).unwrap();
        let (out, fails) = run(&dict, &TimeFormat::Auto);
        assert_eq!(out, vec![9, 0, 9]);
        assert_eq!(fails, vec![(1, NullValue, "NULL".to_string())]);
    }

    #[test]
    fn time_other_types_mismatch() {
        let bools = BooleanArray::from(vec![Some(true), None]);
        let (out, fails) = run(&bools, &TimeFormat::EpochMillis);
        assert_eq!(out, vec![0, 0]);
        assert_eq!(
            fails,
            vec![
                (0, TypeMismatch, "true".to_string()),
                (1, NullValue, "NULL".to_string())
            ]
        );
        let list = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
            Some(vec![Some(1), Some(2)]),
            None,
        ]);
        let (_, fails) = run(&list, &TimeFormat::Auto);
        assert_eq!(
            fails,
            vec![
                (0, TypeMismatch, "[1, 2]".to_string()),
                (1, NullValue, "NULL".to_string())
            ]
        );
        let huge = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![Some(
            (0..10_000).map(Some).collect::<Vec<_>>(),
        )]);
        let (_, fails) = run(&huge, &TimeFormat::Auto);
        assert!(
            fails[0].2.len() <= 260 && fails[0].2.ends_with('…'),
            "{}",
            fails[0].2
        );
        let nulls = NullArray::new(3);
        let (out, fails) = run(&nulls, &TimeFormat::Iso8601);
        assert_eq!(out, vec![0, 0, 0]);
        assert!(fails.iter().all(|f| f.1 == NullValue) && fails.len() == 3);
        let (out, fails) = run(&StringArray::from(Vec::<&str>::new()), &TimeFormat::Iso8601);
        assert!(out.is_empty() && fails.is_empty());
    }

    #[test]
    fn time_long_values_are_cut() {
        let long = "x".repeat(10_000);
        let (_, fails) = run(
            &StringArray::from(vec![long.as_str()]),
            &TimeFormat::Iso8601,
        );
        assert_eq!(fails[0].2, format!("{}…", "x".repeat(256)));
        let wide = "é".repeat(200); // 400 bytes: cut on a character boundary
        let (_, fails) = run(&StringArray::from(vec![wide.as_str()]), &TimeFormat::Auto);
        assert!(fails[0].2.len() <= 256 + '…'.len_utf8());
    }

    #[test]
    fn time_messages() {
        let failure = TimeFailure {
            row: 3,
            kind: ParseError,
            value: "abc".into(),
        };
        let error = failure.to_error("ts", &TimeFormat::Iso8601, vec!["id".into(), "ts".into()]);
        let text = error.to_string();
        assert!(text.starts_with("event time field 'ts' (row 3) has the value 'abc', which is not a timestamp in format iso8601"), "{text}");
        assert!(
            text.ends_with("; the record has the fields: id, ts"),
            "{text}"
        );
        match error {
            EngineError::EventTime(error) => {
                let EventTimeError {
                    kind,
                    field,
                    value,
                    format,
                    available_fields,
                    ..
                } = *error;
                assert_eq!(
                    (kind, field.as_str(), value.as_str(), format.as_str()),
                    ("parse_error", "ts", "abc", "iso8601")
                );
                assert_eq!(available_fields, vec!["id", "ts"]);
            }
            other => panic!("{other:?}"),
        }
        let missing =
            EngineError::event_time(MissingField, "ts", "", &TimeFormat::Auto, vec!["a".into()]);
        assert_eq!(
            missing.to_string(),
            "event time field 'ts' is missing from the record; the record has the fields: a"
        );
        for kind in [
            NullValue,
            TypeMismatch,
            InvalidTimestamp,
            ParseError,
            AutoDetectFailed,
        ] {
            let text =
                EngineError::event_time(kind, "when", "v1", &fmt("%Y-%m-%d"), vec![]).to_string();
            assert!(text.contains("'when'"), "{text}");
            assert!(kind == NullValue || text.contains("'v1'"), "{text}");
        }
    }

    #[test]
    fn time_hostile_bytes_never_panic() {
        // Every prefix of valid timestamps and assorted junk, in every format.
        let seeds = [
            "2024-01-31T12:00:00.123456789+05:30",
            "2024-01-31 12:00:00-0800",
            "-9223372036854775808.999",
            "\u{0}\u{7f}é日本-:T+Z.,",
        ];
        let formats = [
            TimeFormat::EpochMillis,
            TimeFormat::EpochSeconds,
            TimeFormat::Iso8601,
            TimeFormat::Auto,
            fmt("%Y-%m-%d %H:%M:%S%.f%z"),
            fmt("%s"),
        ];
        let mut texts = Vec::new();
        for seed in seeds {
            for end in 0..=seed.len() {
                if seed.is_char_boundary(end) {
                    texts.push(seed[..end].to_string());
                }
            }
        }
        let array = StringArray::from(texts);
        for format in &formats {
            let (out, fails) = run(&array, format);
            assert_eq!(out.len(), array.len());
            assert!(fails.windows(2).all(|w| w[0].0 < w[1].0));
        }
    }
}
