//! Exact reading of values from text: one grammar for JSON and CSV, for decoding and for
//! inference.
//!
//! Numbers are read in JSON number syntax (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`)
//! in both formats, and split exactly (digits and a power of ten) before any conversion, so
//! that a value is either stored exactly or rejected with the reason: `2.5` is not an
//! integer, `18446744073709551616` is out of range for `Int64`, `12.345` has too many digits
//! for `Decimal128(12, 2)`, `9007199254740993` has no exact `Float64`. `NaN`, `Infinity`,
//! `-Infinity` (what JSON sinks write) and `inf`, `-inf` (what CSV sinks write) are doubles.
//!
//! Text that is not in that syntax (`02134`, `+5`, `1_000`, ` 7`) is not a number: inference
//! makes its column a string column, and decoding it into a numeric column is a bad record.
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Decimal128Builder, Float64Builder, PrimitiveBuilder,
    RecordBatchOptions, StringArrayType,
};
use arrow::compute::{cast_with_options, CastOptions};
use arrow::record_batch::RecordBatch;

use crate::lines::Rows;
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, FieldRef, Int16Type, Int32Type, Int64Type, Int8Type, Schema,
    SchemaRef, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};

/// The largest integer below which every integer has an exact `f64` (2^53).
const F64_EXACT_INTEGERS: i128 = 1 << 53;

/// Decimal digits an `i128` always holds (Arrow's `Decimal128` maximum precision).
pub(crate) const MAX_DECIMAL_DIGITS: usize = 38;

/// The non-finite doubles, as JSON sinks (`NaN`, `Infinity`, `-Infinity`) and CSV sinks
/// (`NaN`, `inf`, `-inf`) write them.
pub(crate) fn special_float(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "Infinity" | "inf" => Some(f64::INFINITY),
        "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

/// A number in JSON syntax, exactly: `(-1)^negative × digits × 10^exponent`, where `digits`
/// has no leading and no trailing zeros (empty for zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Number<'a> {
    pub negative: bool,
    /// The significant digits, as written (`int` part then `frac` part, trimmed of zeros).
    int: &'a str,
    frac: &'a str,
    /// Leading zeros to skip in `int ++ frac`, and trailing zeros to drop from it.
    skip: usize,
    drop: usize,
    /// The power of ten of the last kept digit (saturating).
    pub exponent: i64,
    /// Written with a fraction or an exponent (`2.0`, `1e3`): a float literal.
    pub float_literal: bool,
}

impl Number<'_> {
    /// Number of significant digits.
    pub fn digit_count(&self) -> usize {
        (self.int.len() + self.frac.len()).saturating_sub(self.skip + self.drop)
    }

    fn digits(&self) -> impl Iterator<Item = u8> + '_ {
        self.int
            .bytes()
            .chain(self.frac.bytes())
            .skip(self.skip)
            .take(self.digit_count())
    }

    /// The value scaled by `10^shift` when that is an integer of at most
    /// [`MAX_DECIMAL_DIGITS`] digits.
    fn scaled(&self, shift: i64) -> Result<i128, Inexact> {
        let count = self.digit_count();
        if count == 0 {
            return Ok(0);
        }
        let exponent = self.exponent.saturating_add(shift);
        if exponent < 0 {
            return Err(Inexact::Fraction);
        }
        let total = (count as i64).saturating_add(exponent);
        if total > MAX_DECIMAL_DIGITS as i64 {
            return Err(Inexact::OutOfRange);
        }
        let mut value: i128 = 0;
        for digit in self.digits() {
            value = value * 10 + i128::from(digit - b'0');
        }
        for _ in 0..exponent {
            value *= 10;
        }
        Ok(if self.negative { -value } else { value })
    }

    /// The value as an integer of at most 38 digits.
    pub fn integer(&self) -> Result<i128, Inexact> {
        self.scaled(0)
    }
}

/// Why a number has no exact value in a type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inexact {
    /// It has (non-zero) digits below the type's last digit.
    Fraction,
    /// It is too large.
    OutOfRange,
}

/// Splits a number written in JSON number syntax; anything else is `None`.
pub(crate) fn parse_number(text: &str) -> Option<Number<'_>> {
    let bytes = text.as_bytes();
    let mut i = 0;
    let negative = bytes.first() == Some(&b'-');
    if negative {
        i += 1;
    }
    let int_start = i;
    match bytes.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            while bytes.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        _ => return None,
    }
    let int = &text[int_start..i];
    let mut frac = "";
    let mut float_literal = false;
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        frac = &text[start..i];
        float_literal = true;
    }
    let mut written_exponent: i64 = 0;
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        float_literal = true;
        let exp_negative = match bytes.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let start = i;
        while let Some(digit) = bytes.get(i).filter(|b| b.is_ascii_digit()) {
            written_exponent = written_exponent
                .saturating_mul(10)
                .saturating_add(i64::from(digit - b'0'));
            i += 1;
        }
        if i == start {
            return None;
        }
        if exp_negative {
            written_exponent = -written_exponent;
        }
    }
    if i != bytes.len() {
        return None;
    }
    let all = int.len() + frac.len();
    let significant = |b: &u8| *b != b'0';
    let skip = int
        .bytes()
        .chain(frac.bytes())
        .position(|b| significant(&b))
        .unwrap_or(all);
    let drop = if skip == all {
        0
    } else {
        int.bytes()
            .chain(frac.bytes())
            .rev()
            .position(|b| significant(&b))
            .unwrap_or(0)
    };
    let exponent = written_exponent
        .saturating_sub(frac.len() as i64)
        .saturating_add(drop as i64);
    Some(Number {
        negative,
        int,
        frac,
        skip,
        drop,
        exponent,
        float_literal,
    })
}

/// What one value is, for inference: the narrowest type that holds it exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Kind {
    /// `true` / `false`.
    Bool,
    /// An integer within int64 with an exact double (|v| <= 2^53).
    Int,
    /// An integer within int64 with no exact double.
    WideInt,
    /// An integer beyond int64 of at most 38 digits (an exact `Decimal128(38, 0)`).
    BigInt,
    /// A JSON number no type holds: beyond 38 digits, or a float beyond the double range.
    Unrepresentable,
    /// A number with a fraction or an exponent, or NaN / an infinity.
    Float,
    /// Text that looks like a number but is not in number syntax (`02134`, `+5`, `1_000`):
    /// only a string column keeps it.
    NumericText,
    /// Any other text.
    Text,
    /// A JSON object or array.
    Nested,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::Bool,
        Kind::Int,
        Kind::WideInt,
        Kind::BigInt,
        Kind::Unrepresentable,
        Kind::Float,
        Kind::NumericText,
        Kind::Text,
        Kind::Nested,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn is_numeric(self) -> bool {
        matches!(self, Kind::Int | Kind::WideInt | Kind::BigInt | Kind::Float)
    }
}

/// The kind of a number written in JSON number syntax.
pub(crate) fn number_kind(number: &Number<'_>, text: &str) -> Kind {
    if number.float_literal {
        return match text.parse::<f64>() {
            Ok(v) if v.is_finite() => Kind::Float,
            _ => Kind::Unrepresentable,
        };
    }
    match number.integer() {
        Ok(v) if i64::try_from(v).is_ok() => {
            if v.abs() <= F64_EXACT_INTEGERS || (v as f64) as i128 == v {
                Kind::Int
            } else {
                Kind::WideInt
            }
        }
        Ok(_) => Kind::BigInt,
        Err(_) => Kind::Unrepresentable,
    }
}

/// Text that a person would read as a number although it is not in number syntax.
pub(crate) fn looks_numeric(text: &str) -> bool {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return false;
    }
    let lowered = trimmed.to_ascii_lowercase();
    let unsigned = lowered.trim_start_matches(['+', '-']);
    if matches!(unsigned, "nan" | "inf" | "infinity") {
        return true;
    }
    trimmed.bytes().any(|b| b.is_ascii_digit())
        && trimmed
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.,_eE ".contains(&b))
}

/// The kind of a CSV field (not empty: an empty field is NULL).
pub(crate) fn text_kind(text: &str) -> Kind {
    if text.eq_ignore_ascii_case("true") || text.eq_ignore_ascii_case("false") {
        return Kind::Bool;
    }
    if special_float(text).is_some() {
        return Kind::Float;
    }
    if let Some(number) = parse_number(text) {
        return match number_kind(&number, text) {
            // CSV has no number types: a string column keeps any digits exactly.
            Kind::Unrepresentable => Kind::NumericText,
            kind => kind,
        };
    }
    if looks_numeric(text) {
        Kind::NumericText
    } else {
        Kind::Text
    }
}

/// The type that holds every kind of `kinds` exactly; `None` when `kinds` is empty.
pub(crate) fn join(kinds: &[Kind]) -> Option<DataType> {
    let has = |k: Kind| kinds.contains(&k);
    if kinds.is_empty() {
        return None;
    }
    let numeric = kinds.iter().any(|k| k.is_numeric());
    if has(Kind::Text) || has(Kind::NumericText) || (has(Kind::Bool) && numeric) {
        return Some(DataType::Utf8);
    }
    if has(Kind::Bool) {
        return Some(DataType::Boolean);
    }
    if has(Kind::Float) {
        return Some(if has(Kind::WideInt) || has(Kind::BigInt) {
            DataType::Utf8
        } else {
            DataType::Float64
        });
    }
    if has(Kind::BigInt) {
        return Some(DataType::Decimal128(MAX_DECIMAL_DIGITS as u8, 0));
    }
    if has(Kind::Int) || has(Kind::WideInt) {
        return Some(DataType::Int64);
    }
    Some(DataType::Utf8)
}

// --------------------------------------------------------------------------- conversion

/// A value of a row that does not fit its column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RowError {
    /// Row index within the converted batch.
    pub row: usize,
    pub message: String,
    pub field: Option<String>,
    pub value: Option<String>,
}

/// Values longer than this are cut in messages.
const MAX_SHOWN: usize = 120;

pub(crate) fn shown(value: &str) -> String {
    if value.len() <= MAX_SHOWN {
        return value.to_string();
    }
    let mut end = MAX_SHOWN;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &value[..end])
}

/// How a column read as text becomes its declared type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Conversion {
    Integer,
    Float64,
    Decimal,
    Timestamp,
    Boolean,
    /// Arrow's cast from text, a NULL where it fails (CSV only, for other types).
    Cast,
}

/// The conversion a column of `data_type` needs when read as text (`None`: keep the
/// text). `json` says whether the JSON reader can read the type itself.
pub(crate) fn conversion_for(data_type: &DataType, json: bool) -> Option<Conversion> {
    match data_type {
        t if t.is_integer() => Some(Conversion::Integer),
        DataType::Float64 => Some(Conversion::Float64),
        DataType::Decimal128(_, _) => Some(Conversion::Decimal),
        DataType::Timestamp(_, _) => Some(Conversion::Timestamp),
        DataType::Utf8 => None,
        DataType::Boolean if !json => Some(Conversion::Boolean),
        _ if json => None,
        _ => Some(Conversion::Cast),
    }
}

struct Errors<'a> {
    field: &'a str,
    errors: Vec<RowError>,
}

impl Errors<'_> {
    fn push(&mut self, row: usize, value: &str, problem: String) {
        self.errors.push(RowError {
            row,
            message: format!("type mismatch for field '{}': {problem}", self.field),
            field: Some(self.field.to_string()),
            value: Some(value.to_string()),
        });
    }
}

/// Converts a text column (`Utf8` or `Utf8View`) to `data_type` with `conversion`; a value
/// that does not fit is a NULL in the result and a [`RowError`] naming the field and the
/// value.
pub(crate) fn convert(
    text: &dyn Array,
    data_type: &DataType,
    conversion: &Conversion,
    field: &str,
) -> (ArrayRef, Vec<RowError>) {
    match text.data_type() {
        DataType::Utf8View => convert_text(text.as_string_view(), data_type, conversion, field),
        _ => convert_text(text.as_string::<i32>(), data_type, conversion, field),
    }
}

/// The text type a column of `conversion` is read as: views (no copy of short values)
/// except where Arrow's cast takes over.
pub(crate) fn read_type(conversion: &Conversion) -> DataType {
    match conversion {
        Conversion::Cast => DataType::Utf8,
        _ => DataType::Utf8View,
    }
}

fn convert_text<'a, S: StringArrayType<'a> + Copy>(
    text: S,
    data_type: &DataType,
    conversion: &Conversion,
    field: &str,
) -> (ArrayRef, Vec<RowError>) {
    let mut errors = Errors {
        field,
        errors: Vec::new(),
    };
    let array: ArrayRef = match conversion {
        Conversion::Integer => convert_integer(text, data_type, &mut errors),
        Conversion::Float64 => {
            let mut out = Float64Builder::with_capacity(text.len());
            for (row, value) in text.iter().enumerate() {
                match value.map(parse_f64) {
                    None => out.append_null(),
                    Some(Ok(v)) => out.append_value(v),
                    Some(Err(problem)) => {
                        errors.push(row, value.unwrap_or_default(), problem);
                        out.append_null();
                    }
                }
            }
            Arc::new(out.finish())
        }
        Conversion::Decimal => {
            let (precision, scale) = match data_type {
                DataType::Decimal128(p, s) => (*p, *s),
                _ => unreachable!("Conversion::Decimal is only chosen for Decimal128"),
            };
            let mut out = Decimal128Builder::with_capacity(text.len());
            for (row, value) in text.iter().enumerate() {
                match value.map(|v| parse_decimal(v, precision, scale)) {
                    None => out.append_null(),
                    Some(Ok(v)) => out.append_value(v),
                    Some(Err(problem)) => {
                        errors.push(row, value.unwrap_or_default(), problem);
                        out.append_null();
                    }
                }
            }
            Arc::new(
                out.finish()
                    .with_precision_and_scale(precision, scale)
                    .expect("a Decimal128 type's own precision and scale are valid"),
            )
        }
        Conversion::Timestamp => {
            let (unit, tz) = match data_type {
                DataType::Timestamp(unit, tz) => (*unit, tz.clone()),
                _ => unreachable!("Conversion::Timestamp is only chosen for timestamps"),
            };
            match unit {
                TimeUnit::Second => {
                    timestamps::<TimestampSecondType, S>(text, unit, tz, &mut errors)
                }
                TimeUnit::Millisecond => {
                    timestamps::<TimestampMillisecondType, S>(text, unit, tz, &mut errors)
                }
                TimeUnit::Microsecond => {
                    timestamps::<TimestampMicrosecondType, S>(text, unit, tz, &mut errors)
                }
                TimeUnit::Nanosecond => {
                    timestamps::<TimestampNanosecondType, S>(text, unit, tz, &mut errors)
                }
            }
        }
        Conversion::Boolean => {
            let mut out = BooleanBuilder::with_capacity(text.len());
            for (row, value) in text.iter().enumerate() {
                match value {
                    None => out.append_null(),
                    Some(v) if v.eq_ignore_ascii_case("true") => out.append_value(true),
                    Some(v) if v.eq_ignore_ascii_case("false") => out.append_value(false),
                    Some(v) => {
                        errors.push(
                            row,
                            v,
                            format!("cannot parse value '{}' as type 'Boolean'", shown(v)),
                        );
                        out.append_null();
                    }
                }
            }
            Arc::new(out.finish())
        }
        Conversion::Cast => {
            let options = CastOptions {
                safe: true,
                ..Default::default()
            };
            match cast_with_options(&text, data_type, &options) {
                Ok(array) => {
                    for (row, value) in text.iter().enumerate() {
                        if let Some(v) = value.filter(|_| array.is_null(row)) {
                            errors.push(
                                row,
                                v,
                                format!("cannot parse value '{}' as type '{data_type}'", shown(v)),
                            );
                        }
                    }
                    array
                }
                Err(e) => {
                    for (row, value) in text.iter().enumerate() {
                        if let Some(v) = value {
                            errors.push(
                                row,
                                v,
                                format!("cannot read '{}' as type '{data_type}': {e}", shown(v)),
                            );
                        }
                    }
                    arrow::array::new_null_array(data_type, text.len())
                }
            }
        }
    };
    (array, errors.errors)
}

fn convert_integer<'a, S: StringArrayType<'a> + Copy>(
    text: S,
    data_type: &DataType,
    errors: &mut Errors<'_>,
) -> ArrayRef {
    macro_rules! integers {
        ($t:ty) => {
            integers::<$t, S>(text, data_type, errors)
        };
    }
    match data_type {
        DataType::Int8 => integers!(Int8Type),
        DataType::Int16 => integers!(Int16Type),
        DataType::Int32 => integers!(Int32Type),
        DataType::Int64 => integers!(Int64Type),
        DataType::UInt8 => integers!(UInt8Type),
        DataType::UInt16 => integers!(UInt16Type),
        DataType::UInt32 => integers!(UInt32Type),
        DataType::UInt64 => integers!(UInt64Type),
        _ => unreachable!("Conversion::Integer is only chosen for integer types"),
    }
}

fn integers<'a, T, S>(text: S, data_type: &DataType, errors: &mut Errors<'_>) -> ArrayRef
where
    S: StringArrayType<'a> + Copy,
    T: ArrowPrimitiveType,
    T::Native: TryFrom<i128>,
{
    let mut out = PrimitiveBuilder::<T>::with_capacity(text.len());
    for (row, value) in text.iter().enumerate() {
        let Some(value) = value else {
            out.append_null();
            continue;
        };
        match parse_integer(value, data_type)
            .and_then(|v| T::Native::try_from(v).map_err(|_| out_of_range(value, data_type)))
        {
            Ok(v) => out.append_value(v),
            Err(problem) => {
                errors.push(row, value, problem);
                out.append_null();
            }
        }
    }
    Arc::new(out.finish())
}

fn out_of_range(value: &str, data_type: &DataType) -> String {
    format!("{} is out of range for {data_type}", shown(value))
}

/// `-?(0|[1-9][0-9]{0,17})` as an int64, in one pass: the common case of integer columns.
#[inline]
fn plain_integer(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let (negative, digits) = match bytes.first()? {
        b'-' => (true, &bytes[1..]),
        _ => (false, bytes),
    };
    if digits.is_empty() || digits.len() > 18 || (digits[0] == b'0' && digits.len() > 1) {
        return None;
    }
    let mut value: i64 = 0;
    for &byte in digits {
        let digit = byte.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        value = value * 10 + i64::from(digit);
    }
    Some(if negative { -value } else { value })
}

/// Whether `text` is in JSON number syntax, and if so whether it is a float literal (has a
/// fraction or an exponent), in one pass.
#[inline]
fn number_syntax(text: &str) -> Option<bool> {
    let bytes = text.as_bytes();
    let mut i = usize::from(bytes.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while bytes.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    match bytes.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return None,
    }
    let mut float_literal = false;
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return None;
        }
        float_literal = true;
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return None;
        }
        float_literal = true;
    }
    (i == bytes.len()).then_some(float_literal)
}

/// An integer: number syntax with an integral value (`12`, `-3`, `1e3`, `2.0`).
pub(crate) fn parse_integer(value: &str, data_type: &DataType) -> Result<i128, String> {
    if let Some(v) = plain_integer(value) {
        return Ok(i128::from(v));
    }
    let number =
        parse_number(value).ok_or_else(|| format!("{} is not an integer", shown(value)))?;
    number.integer().map_err(|inexact| match inexact {
        Inexact::Fraction => format!("{} is not an integer", shown(value)),
        Inexact::OutOfRange => out_of_range(value, data_type),
    })
}

/// A double: number syntax or NaN / an infinity. An integer literal must have an exact
/// double (`9007199254740993` has none); a float literal is rounded as every reader does.
pub(crate) fn parse_f64(value: &str) -> Result<f64, String> {
    if let Some(v) = plain_integer(value).filter(|v| i128::from(v.abs()) <= F64_EXACT_INTEGERS) {
        return Ok(v as f64);
    }
    if let Some(v) = special_float(value) {
        return Ok(v);
    }
    let Some(float_literal) = number_syntax(value) else {
        return Err(format!(
            "cannot parse value '{}' as type 'Float64'",
            shown(value)
        ));
    };
    let parsed: f64 = value
        .parse()
        .map_err(|_| format!("cannot parse value '{}' as type 'Float64'", shown(value)))?;
    if !parsed.is_finite() {
        return Err(out_of_range(value, &DataType::Float64));
    }
    if !float_literal {
        let exact = parse_number(value)
            .and_then(|number| number.integer().ok())
            .is_some_and(|v| v.abs() <= F64_EXACT_INTEGERS || parsed as i128 == v);
        if !exact {
            return Err(format!(
                "{} has no exact Float64 (declare the column DECIMAL or STRING)",
                shown(value)
            ));
        }
    }
    Ok(parsed)
}

/// A decimal of `precision` digits, `scale` of them after the point: number syntax, exact.
pub(crate) fn parse_decimal(value: &str, precision: u8, scale: i8) -> Result<i128, String> {
    let data_type = DataType::Decimal128(precision, scale);
    let number = parse_number(value).ok_or_else(|| {
        format!(
            "cannot parse value '{}' as type '{data_type}'",
            shown(value)
        )
    })?;
    let scaled = number
        .scaled(i64::from(scale))
        .map_err(|inexact| match inexact {
            Inexact::Fraction => format!(
                "{} has more than {scale} digits after the decimal point for {data_type}",
                shown(value)
            ),
            Inexact::OutOfRange => out_of_range(value, &data_type),
        })?;
    let limit = 10_i128.pow(u32::from(precision));
    if scaled.abs() >= limit {
        return Err(out_of_range(value, &data_type));
    }
    Ok(scaled)
}

fn timestamps<'a, T, S>(
    text: S,
    unit: TimeUnit,
    tz: Option<Arc<str>>,
    errors: &mut Errors<'_>,
) -> ArrayRef
where
    S: StringArrayType<'a> + Copy,
    T: ArrowPrimitiveType<Native = i64>,
{
    let data_type = DataType::Timestamp(unit, tz);
    let mut out = PrimitiveBuilder::<T>::with_capacity(text.len()).with_data_type(data_type);
    for (row, value) in text.iter().enumerate() {
        let Some(value) = value else {
            out.append_null();
            continue;
        };
        match parse_timestamp(value, unit) {
            Ok(v) => out.append_value(v),
            Err(problem) => {
                errors.push(row, value, problem);
                out.append_null();
            }
        }
    }
    Arc::new(out.finish())
}

/// A timestamp in `unit` since the epoch: an integer (already in `unit`: epoch
/// milliseconds for `TIMESTAMP`) or ISO 8601 text (`2024-01-02T03:04:05.678Z`, an offset
/// or none, which means UTC; a space for the `T`; a date alone is its midnight). Digits
/// below `unit` are truncated (toward the past), as for event time.
pub(crate) fn parse_timestamp(value: &str, unit: TimeUnit) -> Result<i64, String> {
    let unit_name = match unit {
        TimeUnit::Second => "seconds",
        TimeUnit::Millisecond => "milliseconds",
        TimeUnit::Microsecond => "microseconds",
        TimeUnit::Nanosecond => "nanoseconds",
    };
    if let Some(v) = plain_integer(value) {
        return Ok(v);
    }
    if let Some(number) = parse_number(value) {
        return number
            .integer()
            .ok()
            .and_then(|v| i64::try_from(v).ok())
            .ok_or_else(|| {
                format!(
                    "{} is not a timestamp: an epoch value must be an integer of {unit_name} \
                     within int64",
                    shown(value)
                )
            });
    }
    let invalid = || {
        format!(
            "cannot parse value '{}' as a timestamp (ISO 8601 text such as \
             2024-01-02T03:04:05.678Z, or epoch {unit_name})",
            shown(value)
        )
    };
    let parsed = arrow::compute::kernels::cast_utils::string_to_datetime(&chrono::Utc, value)
        .map_err(|_| invalid())?;
    let converted = match unit {
        TimeUnit::Second => Some(parsed.timestamp()),
        TimeUnit::Millisecond => Some(parsed.timestamp_millis()),
        TimeUnit::Microsecond => Some(parsed.timestamp_micros()),
        TimeUnit::Nanosecond => parsed.timestamp_nanos_opt(),
    };
    converted.ok_or_else(|| {
        format!(
            "{} is out of range for timestamps in {unit_name}",
            shown(value)
        )
    })
}

/// The rows of `array` that are NULL in a non-nullable `field`, as errors.
pub(crate) fn null_errors(array: &dyn Array, field: &str) -> Vec<RowError> {
    if array.null_count() == 0 {
        return Vec::new();
    }
    (0..array.len())
        .filter(|&row| array.is_null(row))
        .map(|row| RowError {
            row,
            message: format!("field '{field}' is missing or null but is declared NOT NULL"),
            field: Some(field.to_string()),
            value: None,
        })
        .collect()
}

/// Keeps the first error of each row, in row order.
pub(crate) fn first_per_row(mut errors: Vec<RowError>) -> Vec<RowError> {
    errors.sort_by_key(|e| e.row);
    errors.dedup_by_key(|e| e.row);
    errors
}

/// Converts the text columns of `read` to `schema`'s types: the rows, and the rows whose
/// values do not fit (NULL in the result, first problem of each row).
pub(crate) fn convert_rows(
    read: &RecordBatch,
    schema: &SchemaRef,
    conversions: &[Option<Conversion>],
) -> Result<Rows, String> {
    let mut columns = Vec::with_capacity(schema.fields().len());
    let mut errors = Vec::new();
    for ((field, conversion), column) in schema.fields().iter().zip(conversions).zip(read.columns())
    {
        let column = match conversion {
            Some(conversion) => {
                let (array, column_errors) =
                    convert(column.as_ref(), field.data_type(), conversion, field.name());
                errors.extend(column_errors);
                array
            }
            None => Arc::clone(column),
        };
        if !field.is_nullable() {
            errors.extend(null_errors(&column, field.name()));
        }
        columns.push(column);
    }
    if !errors.is_empty() {
        // NULLs stand where values did not fit; the schema may forbid them until those rows
        // are dropped.
        let relaxed: Vec<FieldRef> = schema
            .fields()
            .iter()
            .map(|f| Arc::new(f.as_ref().clone().with_nullable(true)))
            .collect();
        let relaxed = Arc::new(Schema::new_with_metadata(
            relaxed,
            schema.metadata().clone(),
        ));
        let batch = RecordBatch::try_new_with_options(
            relaxed,
            columns,
            &RecordBatchOptions::new().with_row_count(Some(read.num_rows())),
        )
        .map_err(|e| e.to_string())?;
        return Ok(Rows {
            batch,
            errors: first_per_row(errors),
        });
    }
    let batch = RecordBatch::try_new_with_options(
        Arc::clone(schema),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(read.num_rows())),
    )
    .map_err(|e| e.to_string())?;
    Ok(Rows {
        batch,
        errors: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_split_exactly() {
        let n = parse_number("-12.500e2").unwrap();
        assert!(n.negative && n.float_literal);
        assert_eq!(n.integer(), Ok(-1250));
        assert_eq!(parse_number("1e3").unwrap().integer(), Ok(1000));
        assert_eq!(parse_number("0.0").unwrap().integer(), Ok(0));
        assert_eq!(
            parse_number("2.5").unwrap().integer(),
            Err(Inexact::Fraction)
        );
        assert_eq!(
            parse_number("1e400").unwrap().integer(),
            Err(Inexact::OutOfRange)
        );
        assert_eq!(
            parse_number("123456789012345678901234567890")
                .unwrap()
                .integer(),
            Ok(123_456_789_012_345_678_901_234_567_890)
        );
        for bad in [
            "02134", "+5", "1_000", " 7", "7 ", "1.", ".5", "1e", "--1", "", "-", "0x10",
        ] {
            assert!(parse_number(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn fast_paths_agree_with_the_exact_split() {
        for text in [
            "0",
            "-0",
            "7",
            "-12",
            "123456789012345678",
            "1234567890123456789",
            "01",
            "+1",
            "",
            "-",
            "1.5",
            "1e3",
            "-2.50E-3",
            "1.",
            ".5",
            "1e",
            "1e+",
            "0x1",
            "12a",
            " 1",
        ] {
            let exact = parse_number(text);
            assert_eq!(
                number_syntax(text),
                exact.map(|n| n.float_literal),
                "{text}"
            );
            if let Some(v) = plain_integer(text) {
                assert_eq!(exact.unwrap().integer(), Ok(i128::from(v)), "{text}");
            }
        }
        assert_eq!(
            plain_integer("-123456789012345678"),
            Some(-123_456_789_012_345_678)
        );
        assert_eq!(plain_integer("1234567890123456789"), None);
    }

    #[test]
    fn kinds_of_text() {
        assert_eq!(text_kind("12"), Kind::Int);
        assert_eq!(text_kind("9007199254740993"), Kind::WideInt);
        assert_eq!(text_kind("9007199254740992"), Kind::Int);
        assert_eq!(text_kind("18446744073709551616"), Kind::BigInt);
        assert_eq!(text_kind(&"9".repeat(39)), Kind::NumericText);
        assert_eq!(text_kind("2.5"), Kind::Float);
        assert_eq!(text_kind("1e5"), Kind::Float);
        assert_eq!(text_kind("NaN"), Kind::Float);
        assert_eq!(text_kind("-inf"), Kind::Float);
        assert_eq!(text_kind("TRUE"), Kind::Bool);
        for numeric in ["02134", "+5", "1_000", "1,000", " 7", "nan", "2024-01-02"] {
            assert_eq!(text_kind(numeric), Kind::NumericText, "{numeric}");
        }
        assert_eq!(text_kind("AAPL"), Kind::Text);
    }

    #[test]
    fn joins_never_lose_a_value() {
        use Kind::*;
        assert_eq!(join(&[Int]), Some(DataType::Int64));
        assert_eq!(join(&[Int, WideInt]), Some(DataType::Int64));
        assert_eq!(join(&[Int, BigInt]), Some(DataType::Decimal128(38, 0)));
        assert_eq!(join(&[Int, Float]), Some(DataType::Float64));
        assert_eq!(join(&[WideInt, Float]), Some(DataType::Utf8));
        assert_eq!(join(&[BigInt, Float]), Some(DataType::Utf8));
        assert_eq!(join(&[Int, NumericText]), Some(DataType::Utf8));
        assert_eq!(join(&[Bool, Int]), Some(DataType::Utf8));
        assert_eq!(join(&[Bool]), Some(DataType::Boolean));
        assert_eq!(join(&[]), None);
    }

    #[test]
    fn floats_are_exact_or_rejected() {
        assert_eq!(parse_f64("2.5"), Ok(2.5));
        assert_eq!(parse_f64("9007199254740992"), Ok(9_007_199_254_740_992.0));
        assert!(parse_f64("9007199254740993").is_err());
        assert!(parse_f64("1e400").unwrap_err().contains("out of range"));
        assert!(parse_f64("NaN").unwrap().is_nan());
        assert_eq!(parse_f64("-Infinity"), Ok(f64::NEG_INFINITY));
        assert_eq!(parse_f64("inf"), Ok(f64::INFINITY));
        assert!(parse_f64("02134").is_err());
    }

    #[test]
    fn decimals_are_exact() {
        assert_eq!(parse_decimal("12.34", 12, 2), Ok(1234));
        assert_eq!(parse_decimal("12.340", 12, 2), Ok(1234));
        assert_eq!(parse_decimal("-5", 12, 2), Ok(-500));
        assert_eq!(parse_decimal("1.5e1", 12, 2), Ok(1500));
        assert!(parse_decimal("12.345", 12, 2)
            .unwrap_err()
            .contains("more than 2 digits after the decimal point"));
        assert!(parse_decimal("12345678901", 12, 2)
            .unwrap_err()
            .contains("out of range"));
        assert_eq!(parse_decimal("9999999999.99", 12, 2), Ok(999_999_999_999));
    }

    #[test]
    fn timestamps_from_epoch_millis_or_iso_8601() {
        let ms = TimeUnit::Millisecond;
        assert_eq!(parse_timestamp("1700000000123", ms), Ok(1_700_000_000_123));
        assert_eq!(
            parse_timestamp("2023-11-14T22:13:20.123Z", ms),
            Ok(1_700_000_000_123)
        );
        assert_eq!(
            parse_timestamp("2023-11-14 23:13:20.1239+01:00", ms),
            Ok(1_700_000_000_123)
        );
        assert_eq!(parse_timestamp("1970-01-02", ms), Ok(86_400_000));
        for bad in [
            "2024/01/01",
            "yesterday",
            "1.5",
            "2024-13-01T00:00:00Z",
            "01/02/2024",
        ] {
            assert!(parse_timestamp(bad, ms).is_err(), "{bad}");
        }
    }
}
