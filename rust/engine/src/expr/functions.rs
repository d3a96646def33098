//! Scalar functions of the SQL dialect (SPEC section 4): string, math and time functions,
//! each bound (argument types checked and coerced) and evaluated over whole arrays.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Decimal128Array, Int64Array, StringArray, StringBuilder,
    TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Decimal128Type, Float64Type, Int64Type, TimeUnit};

use super::types::{is_decimal, is_float, is_integer, is_string, sql_name, unpack_dictionary};
use super::{cast_to, Input, PhysExpr, Value};
use crate::error::{EngineError, Pos, Result};

/// A scalar function after binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarFunc {
    Upper,
    Lower,
    Trim,
    LTrim,
    RTrim,
    Length,
    Substring,
    Concat,
    Abs,
    /// ROUND(x, digits) with a constant number of digits.
    Round(i32),
    Floor,
    Ceil,
    Now,
    FromUnixtime,
}

impl ScalarFunc {
    /// Whether some argument value can make the function fail: ABS of the smallest
    /// BIGINT, ROUND of an integer to tens beyond BIGINT. The others always compute.
    pub fn can_fail(self) -> bool {
        matches!(self, ScalarFunc::Abs | ScalarFunc::Round(_))
    }
}

fn arity(name: &str, args: usize, min: usize, max: usize, pos: Pos) -> Result<()> {
    if args < min || args > max {
        let expected = if min == max {
            format!("{min}")
        } else if max == usize::MAX {
            format!("at least {min}")
        } else {
            format!("{min} to {max}")
        };
        return Err(EngineError::validation(
            format!(
                "{} takes {expected} argument(s), got {args}",
                name.to_uppercase()
            ),
            pos,
        ));
    }
    Ok(())
}

fn string_arg(name: &str, e: PhysExpr, dt: &DataType, pos: Pos) -> Result<PhysExpr> {
    let dt = unpack_dictionary(dt);
    if is_string(&dt) || dt == DataType::Null {
        cast_to(e, &dt, &DataType::Utf8, pos)
    } else {
        Err(EngineError::validation(
            format!(
                "{} needs a string argument, got {}",
                name.to_uppercase(),
                sql_name(&dt)
            ),
            pos,
        ))
    }
}

fn integer_arg(name: &str, e: PhysExpr, dt: &DataType, pos: Pos) -> Result<PhysExpr> {
    if is_integer(dt) || *dt == DataType::Null {
        cast_to(e, dt, &DataType::Int64, pos)
    } else {
        Err(EngineError::validation(
            format!(
                "{} needs an integer argument, got {}",
                name.to_uppercase(),
                sql_name(dt)
            ),
            pos,
        ))
    }
}

/// Numeric argument normalised for the math functions: integers as int64, floats as
/// float64, decimals as they are.
fn numeric_arg(name: &str, e: PhysExpr, dt: &DataType, pos: Pos) -> Result<(PhysExpr, DataType)> {
    let target = if is_integer(dt) || *dt == DataType::Null {
        DataType::Int64
    } else if is_float(dt) {
        DataType::Float64
    } else if is_decimal(dt) {
        dt.clone()
    } else {
        return Err(EngineError::validation(
            format!(
                "{} needs a numeric argument, got {}",
                name.to_uppercase(),
                sql_name(dt)
            ),
            pos,
        ));
    };
    Ok((cast_to(e, dt, &target, pos)?, target))
}

/// Bind a scalar function call.
pub fn bind_function(
    name: &str,
    args: Vec<(PhysExpr, DataType)>,
    pos: Pos,
) -> Result<(PhysExpr, DataType)> {
    let n = args.len();
    let mut it = args.into_iter();
    let func = |f: ScalarFunc, args: Vec<PhysExpr>| PhysExpr::Func { func: f, args, pos };
    match name {
        "upper" | "lower" | "trim" | "ltrim" | "rtrim" | "length" => {
            arity(name, n, 1, 1, pos)?;
            let (e, dt) = it.next().expect("one argument");
            let e = string_arg(name, e, &dt, pos)?;
            let (f, out) = match name {
                "upper" => (ScalarFunc::Upper, DataType::Utf8),
                "lower" => (ScalarFunc::Lower, DataType::Utf8),
                "trim" => (ScalarFunc::Trim, DataType::Utf8),
                "ltrim" => (ScalarFunc::LTrim, DataType::Utf8),
                "rtrim" => (ScalarFunc::RTrim, DataType::Utf8),
                _ => (ScalarFunc::Length, DataType::Int64),
            };
            Ok((func(f, vec![e]), out))
        }
        "substring" => {
            arity(name, n, 2, 3, pos)?;
            let (s, sdt) = it.next().expect("string");
            let mut bound = vec![string_arg(name, s, &sdt, pos)?];
            for (e, dt) in it {
                bound.push(integer_arg(name, e, &dt, pos)?);
            }
            Ok((func(ScalarFunc::Substring, bound), DataType::Utf8))
        }
        "concat" => {
            arity(name, n, 1, usize::MAX, pos)?;
            let mut bound = Vec::with_capacity(n);
            for (e, dt) in it {
                bound.push(cast_to(e, &unpack_dictionary(&dt), &DataType::Utf8, pos)?);
            }
            Ok((func(ScalarFunc::Concat, bound), DataType::Utf8))
        }
        "abs" | "floor" | "ceil" => {
            arity(name, n, 1, 1, pos)?;
            let (e, dt) = it.next().expect("one argument");
            let (e, dt) = numeric_arg(name, e, &dt, pos)?;
            let (f, out) = match (name, &dt) {
                ("abs", _) => (ScalarFunc::Abs, dt.clone()),
                (_, DataType::Decimal128(p, s)) => {
                    let f = if name == "floor" {
                        ScalarFunc::Floor
                    } else {
                        ScalarFunc::Ceil
                    };
                    (
                        f,
                        DataType::Decimal128((*p as i8 - *s + 1).clamp(1, 38) as u8, 0),
                    )
                }
                ("floor", _) => (ScalarFunc::Floor, dt.clone()),
                _ => (ScalarFunc::Ceil, dt.clone()),
            };
            Ok((func(f, vec![e]), out))
        }
        "round" => {
            arity(name, n, 1, 2, pos)?;
            let (e, dt) = it.next().expect("value");
            let (e, dt) = numeric_arg(name, e, &dt, pos)?;
            let digits = match it.next() {
                None => 0,
                Some((PhysExpr::Literal(s), _)) if is_integer(s.inner().data_type()) => {
                    let a = arrow::compute::cast(s.inner().as_ref(), &DataType::Int64)?;
                    let digits = a.as_primitive::<Int64Type>().value(0);
                    // Beyond ±40 digits every value of every type rounds the same.
                    digits.clamp(-40, 40) as i32
                }
                Some(_) => {
                    return Err(EngineError::validation(
                        "ROUND digits must be an integer literal",
                        pos,
                    ))
                }
            };
            let out = match &dt {
                DataType::Decimal128(p, s) if digits < *s as i32 => {
                    DataType::Decimal128(*p, digits.max(0) as i8)
                }
                other => other.clone(),
            };
            Ok((func(ScalarFunc::Round(digits), vec![e]), out))
        }
        "now" => {
            arity(name, n, 0, 0, pos)?;
            Ok((
                func(ScalarFunc::Now, vec![]),
                DataType::Timestamp(TimeUnit::Millisecond, None),
            ))
        }
        "from_unixtime" => {
            arity(name, n, 1, 1, pos)?;
            let (e, dt) = it.next().expect("seconds");
            let (e, _) = numeric_arg(name, e, &dt, pos)?;
            let e = cast_to(e, &numeric_type_of(&dt), &DataType::Float64, pos)?;
            Ok((
                func(ScalarFunc::FromUnixtime, vec![e]),
                DataType::Timestamp(TimeUnit::Millisecond, None),
            ))
        }
        other => Err(EngineError::validation(
            format!("unknown function {}", other.to_uppercase()),
            pos,
        )),
    }
}

fn numeric_type_of(dt: &DataType) -> DataType {
    if is_integer(dt) || *dt == DataType::Null {
        DataType::Int64
    } else if is_float(dt) {
        DataType::Float64
    } else {
        dt.clone()
    }
}

fn map_strings(a: &ArrayRef, f: impl Fn(&str) -> String) -> ArrayRef {
    let s = a.as_string::<i32>();
    let mut b = StringBuilder::with_capacity(s.len(), s.value_data().len());
    for v in s.iter() {
        match v {
            Some(v) => b.append_value(f(v)),
            None => b.append_null(),
        }
    }
    Arc::new(b.finish())
}

fn map_strs<'a>(a: &'a ArrayRef, f: impl Fn(&'a str) -> &'a str) -> ArrayRef {
    let s = a.as_string::<i32>();
    let mut b = StringBuilder::with_capacity(s.len(), s.value_data().len());
    for v in s.iter() {
        match v {
            Some(v) => b.append_value(f(v)),
            None => b.append_null(),
        }
    }
    Arc::new(b.finish())
}

/// SQL SUBSTRING as DuckDB computes it, on characters (code points) at 1-based
/// positions: position 0 is the one before the first character, a negative start counts
/// from the end (-1 is the last character). The result is the `len` characters from the
/// start (the `-len` characters before it when `len` is negative; all the rest when
/// there is no `len`), of which only those inside the string are kept: `SUBSTRING
/// ('abcdef', -8, 6)` is 'abcd' (positions -1 to 4), `SUBSTRING('abcdef', 4, -3)` is
/// 'abc'.
fn substring(s: &str, start: i64, len: Option<i64>) -> &str {
    let ascii = s.is_ascii();
    let chars = if ascii {
        s.len() as i128
    } else {
        s.chars().count() as i128
    };
    // 0-based, unclipped; i128 holds every sum of two i64 values.
    let begin = match start {
        1.. => start as i128 - 1,
        0 => -1,
        _ => chars + start as i128,
    };
    let (low, high) = match len {
        None => (begin, chars),
        Some(l) if l >= 0 => (begin, begin + l as i128),
        Some(l) => (begin + l as i128, begin),
    };
    let (low, high) = (low.clamp(0, chars) as usize, high.clamp(0, chars) as usize);
    if low >= high {
        return "";
    }
    if ascii {
        return &s[low..high];
    }
    let byte_at = |k: usize| s.char_indices().nth(k).map_or(s.len(), |(b, _)| b);
    &s[byte_at(low)..byte_at(high)]
}

fn pow10(d: u32) -> i128 {
    10i128.pow(d)
}

/// Round an unscaled decimal from `scale` to `digits` fraction digits, half away from 0.
pub(super) fn round_decimal(v: i128, scale: i32, digits: i32) -> i128 {
    if digits >= scale {
        return v;
    }
    if scale - digits > 38 {
        // |v| < 10^38: less than half of the unit it is rounded to.
        return 0;
    }
    let factor = pow10((scale - digits) as u32);
    let half = factor / 2;
    let q = v / factor;
    let r = v % factor;
    if r.abs() >= half && half > 0 {
        q + v.signum()
    } else {
        q
    }
}

/// `ROUND(v, -tens)` of an integer, half away from zero; an error when the result does
/// not fit BIGINT (`ROUND(9e18, -19)` is 1e19).
fn round_i64(v: i64, tens: u32) -> Result<i64, arrow::error::ArrowError> {
    let unit = 10i128.pow(tens.min(20));
    let wide = v as i128;
    let remainder = wide % unit;
    let mut rounded = wide - remainder;
    if remainder.abs() * 2 >= unit {
        rounded += unit * wide.signum();
    }
    i64::try_from(rounded).map_err(|_| {
        arrow::error::ArrowError::ArithmeticOverflow(format!(
            "integer overflow in ROUND({v}, -{tens}): the result does not fit BIGINT"
        ))
    })
}

fn floor_ceil_decimal(v: i128, scale: i32, ceil: bool) -> i128 {
    let factor = pow10(scale as u32);
    let q = v / factor;
    let r = v % factor;
    if r == 0 {
        q
    } else if ceil && v > 0 {
        q + 1
    } else if !ceil && v < 0 {
        q - 1
    } else {
        q
    }
}

/// `ROUND(x, digits)` of a double, half away from zero on the double's exact binary
/// value (SPEC section 12, as DuckDB): `ROUND(0.15, 1)` is 0.1 because 0.15 is stored
/// as 0.1499999999999999944...; `ROUND(0.125, 2)` is 0.13 (an exact tie).
fn round_f64(x: f64, digits: i32) -> f64 {
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    let magnitude = x.abs();
    let rounded = if digits >= 0 {
        round_fraction(magnitude, digits as u32)
    } else {
        round_integer(magnitude, digits.unsigned_abs())
    };
    rounded.copysign(x)
}

/// `magnitude` (finite, > 0) rounded half up to `digits` fraction digits, exactly.
fn round_fraction(magnitude: f64, digits: u32) -> f64 {
    // magnitude = mantissa * 2^exponent exactly.
    let bits = magnitude.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let fraction = bits & ((1u64 << 52) - 1);
    let (mantissa, exponent) = if biased == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1u64 << 52), biased - 1075)
    };
    if exponent >= 0 {
        return magnitude; // an integer
    }
    if digits > 22 {
        return round_fraction_by_digits(magnitude, digits);
    }
    let scale = 10u128.pow(digits);
    let scaled = mantissa as u128 * scale; // < 2^53 * 10^22 < 2^127
    let shift = exponent.unsigned_abs();
    let (quotient, round_up) = if shift >= 128 {
        (0, false)
    } else {
        let quotient = scaled >> shift;
        let remainder = scaled - (quotient << shift);
        (quotient, remainder >= 1u128 << (shift - 1))
    };
    let quotient = quotient + round_up as u128;
    if quotient >= 1 << 53 {
        // Rounding moves the value by less than half a unit of its last place.
        return magnitude;
    }
    // Both operands are exact doubles: the division is correctly rounded.
    quotient as f64 / scale as f64
}

/// [`round_fraction`] for more digits than a u128 holds: on the exact decimal expansion
/// of the double (at most 1074 fraction digits), rounded half up as text.
fn round_fraction_by_digits(magnitude: f64, digits: u32) -> f64 {
    let exact = format!("{magnitude:.1080}");
    let point = exact.find('.').unwrap_or(exact.len());
    let cut = (point + 1 + digits as usize).min(exact.len());
    let mut kept = exact.as_bytes()[..cut].to_vec();
    if exact.as_bytes().get(cut).is_some_and(|&next| next >= b'5') {
        // Add one unit of the last kept digit, carrying leftwards.
        let mut at = kept.len();
        loop {
            if at == 0 {
                kept.insert(0, b'1');
                break;
            }
            at -= 1;
            match kept[at] {
                b'.' => continue,
                b'9' => kept[at] = b'0',
                digit => {
                    kept[at] = digit + 1;
                    break;
                }
            }
        }
    }
    std::str::from_utf8(&kept)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(magnitude)
}

/// `magnitude` (finite, > 0) rounded half up to a multiple of 10^`tens`, exactly.
fn round_integer(magnitude: f64, tens: u32) -> f64 {
    if tens > 38 || magnitude >= 2f64.powi(125) {
        let unit = 10f64.powi(tens as i32);
        return if magnitude * 2.0 < unit {
            0.0
        } else {
            magnitude
        };
    }
    // The fraction can only push a remainder of exactly half a unit further up.
    let whole = magnitude.trunc() as u128;
    let unit = 10u128.pow(tens);
    let remainder = whole % unit;
    let mut rounded = whole - remainder;
    if remainder * 2 >= unit {
        rounded += unit;
    }
    rounded as f64
}

fn decimal_unary(a: &ArrayRef, out: &DataType, f: impl Fn(i128) -> i128) -> Result<ArrayRef> {
    let DataType::Decimal128(p, s) = out else {
        unreachable!("decimal output")
    };
    let d = a.as_primitive::<Decimal128Type>();
    let r: Decimal128Array = d.unary(f).with_precision_and_scale(*p, *s)?;
    // ROUND(x, -k) of a DECIMAL(38, 0) may carry into a 39th digit.
    r.validate_decimal_precision(*p)?;
    Ok(Arc::new(r))
}

fn math(func: ScalarFunc, a: &ArrayRef) -> Result<ArrayRef> {
    Ok(match a.data_type() {
        DataType::Int64 => {
            let i = a.as_primitive::<Int64Type>();
            match func {
                ScalarFunc::Abs => Arc::new(i.try_unary::<_, Int64Type, _>(|v| {
                    v.checked_abs().ok_or_else(|| {
                        arrow::error::ArrowError::ArithmeticOverflow(format!(
                            "integer overflow in ABS({v})"
                        ))
                    })
                })?),
                ScalarFunc::Round(d) if d < 0 => {
                    Arc::new(i.try_unary::<_, Int64Type, _>(|v| round_i64(v, d.unsigned_abs()))?)
                }
                _ => a.clone(),
            }
        }
        DataType::Float64 => {
            let x = a.as_primitive::<Float64Type>();
            let r = match func {
                ScalarFunc::Abs => x.unary::<_, Float64Type>(f64::abs),
                ScalarFunc::Round(d) => x.unary::<_, Float64Type>(|v| round_f64(v, d)),
                ScalarFunc::Floor => x.unary::<_, Float64Type>(f64::floor),
                _ => x.unary::<_, Float64Type>(f64::ceil),
            };
            Arc::new(r)
        }
        DataType::Decimal128(p, s) => {
            let (p, s) = (*p, *s as i32);
            match func {
                ScalarFunc::Abs => decimal_unary(a, &DataType::Decimal128(p, s as i8), i128::abs)?,
                ScalarFunc::Round(d) if d < s => {
                    decimal_unary(a, &DataType::Decimal128(p, d.max(0) as i8), |v| {
                        let r = round_decimal(v, s, d);
                        if d < 0 {
                            // r != 0 only when 10^-d fits the value's own digits.
                            r.saturating_mul(10i128.saturating_pow(d.unsigned_abs()))
                        } else {
                            r
                        }
                    })?
                }
                ScalarFunc::Round(_) => a.clone(),
                ScalarFunc::Floor | ScalarFunc::Ceil => decimal_unary(
                    a,
                    &DataType::Decimal128((p as i32 - s + 1).clamp(1, 38) as u8, 0),
                    |v| floor_ceil_decimal(v, s, func == ScalarFunc::Ceil),
                )?,
                _ => unreachable!("math function"),
            }
        }
        other => {
            return Err(EngineError::Data(format!(
                "math function on unsupported type {}",
                sql_name(other)
            )))
        }
    })
}

/// Evaluate a bound function over its evaluated arguments.
pub fn eval_function(func: ScalarFunc, args: &[Value], input: &Input, pos: Pos) -> Result<Value> {
    if func == ScalarFunc::Now {
        let now = TimestampMillisecondArray::from(vec![input.now_ms]);
        return Ok(Value::Scalar(super::Lit::new(Arc::new(now))));
    }
    // Functions of scalars compute once, on the length-1 arrays.
    let all_scalar = args.iter().all(Value::is_scalar);
    let n = if all_scalar { 1 } else { input.num_rows };
    let arrays: Vec<ArrayRef> = args
        .iter()
        .map(|v| v.clone().into_array(n))
        .collect::<Result<_>>()?;
    let out: ArrayRef = match func {
        ScalarFunc::Upper => map_strings(&arrays[0], str::to_uppercase),
        ScalarFunc::Lower => map_strings(&arrays[0], str::to_lowercase),
        ScalarFunc::Trim => map_strs(&arrays[0], |s| s.trim_matches(' ')),
        ScalarFunc::LTrim => map_strs(&arrays[0], |s| s.trim_start_matches(' ')),
        ScalarFunc::RTrim => map_strs(&arrays[0], |s| s.trim_end_matches(' ')),
        ScalarFunc::Length => {
            let s = arrays[0].as_string::<i32>();
            let r: Int64Array = s
                .iter()
                .map(|v| v.map(|v| v.chars().count() as i64))
                .collect();
            Arc::new(r)
        }
        ScalarFunc::Substring => {
            let s = arrays[0].as_string::<i32>();
            let start = arrays[1].as_primitive::<Int64Type>();
            let len = arrays.get(2).map(|a| a.as_primitive::<Int64Type>());
            let mut b = StringBuilder::with_capacity(n, s.value_data().len());
            for i in 0..n {
                if s.is_null(i) || start.is_null(i) || len.is_some_and(|l| l.is_null(i)) {
                    b.append_null();
                } else {
                    b.append_value(substring(
                        s.value(i),
                        start.value(i),
                        len.map(|l| l.value(i)),
                    ));
                }
            }
            Arc::new(b.finish())
        }
        ScalarFunc::Concat => {
            let strings: Vec<&StringArray> = arrays.iter().map(|a| a.as_string::<i32>()).collect();
            let bytes: usize = strings.iter().map(|s| s.value_data().len()).sum();
            let mut b = StringBuilder::with_capacity(n, bytes);
            let mut row = String::new();
            for i in 0..n {
                row.clear();
                for s in &strings {
                    if !s.is_null(i) {
                        row.push_str(s.value(i));
                    }
                }
                b.append_value(&row);
            }
            Arc::new(b.finish())
        }
        ScalarFunc::Abs | ScalarFunc::Round(_) | ScalarFunc::Floor | ScalarFunc::Ceil => {
            math(func, &arrays[0]).map_err(|e| match e {
                EngineError::Arrow(a) => EngineError::data(
                    &format!(
                        "{}{}",
                        super::pos_prefix(pos),
                        format!("{func:?}").to_uppercase()
                    ),
                    a,
                ),
                other => other,
            })?
        }
        ScalarFunc::FromUnixtime => {
            let secs = arrays[0].as_primitive::<Float64Type>();
            let r: TimestampMillisecondArray = secs.unary(|s| (s * 1000.0).trunc() as i64);
            Arc::new(r)
        }
        ScalarFunc::Now => unreachable!("handled above"),
    };
    Ok(Value::from_result(out, all_scalar))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substring_follows_sql_positions() {
        assert_eq!(substring("hello", 2, Some(3)), "ell");
        assert_eq!(substring("hello", 0, Some(2)), "h");
        assert_eq!(substring("hello", -2, Some(3)), "lo");
        assert_eq!(substring("héllo", 2, None), "éllo");
        assert_eq!(substring("hello", 9, Some(2)), "");
    }

    #[test]
    fn substring_before_the_start_and_backwards_is_duckdbs() {
        // Values computed by DuckDB 2.0.
        assert_eq!(substring("abcdef", -8, Some(6)), "abcd");
        assert_eq!(substring("ab", -6, Some(3)), "");
        assert_eq!(substring("abcdef", -8, None), "abcdef");
        assert_eq!(substring("abcdef", 4, Some(-1)), "c");
        assert_eq!(substring("abcdef", 4, Some(-3)), "abc");
        assert_eq!(substring("abcdef", 8, Some(-3)), "ef");
        assert_eq!(substring("abcdef", -3, Some(-2)), "bc");
        assert_eq!(substring("abcdef", 0, Some(-2)), "");
        assert_eq!(substring("abcdef", 0, Some(1)), "");
        assert_eq!(substring("abcdef", 7, None), "");
        assert_eq!(substring("é😀xy", 3, Some(-2)), "é😀");
        assert_eq!(substring("é😀xy", -3, Some(2)), "😀x");
        // No overflow at the limits of BIGINT.
        assert_eq!(substring("abc", i64::MAX, Some(i64::MIN)), "abc");
        assert_eq!(substring("abc", i64::MIN, Some(i64::MAX)), "ab");
        assert_eq!(substring("abc", 1, Some(i64::MAX)), "abc");
    }

    #[test]
    fn decimal_rounding_is_half_away_from_zero() {
        assert_eq!(round_decimal(125, 2, 1), 13);
        assert_eq!(round_decimal(-125, 2, 1), -13);
        assert_eq!(round_decimal(124, 2, 1), 12);
        assert_eq!(floor_ceil_decimal(-250, 2, false), -3);
        assert_eq!(floor_ceil_decimal(250, 2, true), 3);
    }

    #[test]
    fn float_rounding_is_half_away_from_zero() {
        assert_eq!(round_f64(2.5, 0), 3.0);
        assert_eq!(round_f64(-2.5, 0), -3.0);
        assert_eq!(round_f64(1.25, 1), 1.3);
    }
}
