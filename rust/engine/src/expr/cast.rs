//! `CAST` between SQL types: Arrow's cast kernels, with SQL's rules where Arrow's differ
//! (docs/sql-reference.md, "Types and values"):
//!
//! - a decimal becomes an integer rounded half away from zero (`CAST(-738.50 AS BIGINT)`
//!   is -739, as DuckDB); Arrow truncates. A float still truncates (as Flink and Java).
//! - a finite double beyond the range of FLOAT (float32) does not convert (as DuckDB);
//!   Arrow makes it an infinity. NaN and the infinities convert to themselves.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Decimal128Array, Float32Array};
use arrow::compute::{cast_with_options, CastOptions};
use arrow::datatypes::{DataType, Decimal128Type, Float64Type};
use arrow::error::ArrowError;

use super::functions::round_decimal;
use super::types::sql_name;

/// Cast `array` to `to`. With `lenient`, a value that does not convert becomes NULL
/// (used to find the value to name in an error); otherwise it is an error.
pub fn cast_array(array: &dyn Array, to: &DataType, lenient: bool) -> Result<ArrayRef, ArrowError> {
    let options = CastOptions {
        safe: lenient,
        ..Default::default()
    };
    match (array.data_type(), to) {
        (DataType::Float64, DataType::Float32) => Ok(Arc::new(double_to_float(array, lenient)?)),
        (DataType::Decimal128(p, s), to) if to.is_integer() && *s > 0 => {
            let rounded = round_to_integer(array, *p, *s)?;
            cast_with_options(&rounded, to, &options)
        }
        _ => cast_with_options(array, to, &options),
    }
}

/// Whether some value of type `from` does not convert to `to` (a string that is not a
/// number, a number out of the target's range). False for casts that always succeed,
/// which CASE and COALESCE evaluate over a whole batch.
pub fn can_fail(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    if from == to || *from == Null {
        return false;
    }
    let fits_integer = |to_bits: u32, to_signed: bool| match from {
        Boolean => true,
        Int8 | Int16 | Int32 | Int64 => {
            to_signed && from.primitive_width() <= Some(to_bits as usize / 8)
        }
        UInt8 | UInt16 | UInt32 | UInt64 => {
            let bits = from.primitive_width().unwrap_or(8) as u32 * 8;
            if to_signed {
                bits < to_bits
            } else {
                bits <= to_bits
            }
        }
        _ => false,
    };
    let always = match to {
        Utf8 | LargeUtf8 | Utf8View => {
            from.is_numeric() || matches!(from, Boolean | Utf8 | LargeUtf8 | Utf8View)
        }
        Float64 | Float32 => {
            from.is_integer() || matches!(from, Boolean | Float16 | Float32 | Decimal128(..))
        }
        Int8 => fits_integer(8, true),
        Int16 => fits_integer(16, true),
        Int32 => fits_integer(32, true),
        Int64 => fits_integer(64, true),
        UInt8 => fits_integer(8, false),
        UInt16 => fits_integer(16, false),
        UInt32 => fits_integer(32, false),
        UInt64 => fits_integer(64, false),
        Boolean => from.is_integer() || from.is_floating(),
        _ => false,
    };
    !always
}

/// Why a value does not convert, for the cases [`cast_array`] adds to Arrow's.
pub fn reason(from: &DataType, to: &DataType) -> Option<String> {
    match (from, to) {
        (DataType::Float64, DataType::Float32) => {
            Some("it is beyond the range of FLOAT (float32)".into())
        }
        (DataType::Decimal128(..), to) if to.is_integer() => Some(format!(
            "rounded half away from zero, it is beyond the range of {}",
            sql_name(to)
        )),
        _ => None,
    }
}

/// float64 → float32, rounded to the nearest float32; a finite value that rounds to an
/// infinity is an error (NULL when `lenient`).
fn double_to_float(array: &dyn Array, lenient: bool) -> Result<Float32Array, ArrowError> {
    let doubles = array.as_primitive::<Float64Type>();
    let narrow = |v: f64| {
        let f = v as f32;
        (f.is_finite() || !v.is_finite()).then_some(f)
    };
    if lenient {
        return Ok(doubles.unary_opt(narrow));
    }
    doubles.try_unary(|v| {
        narrow(v).ok_or_else(|| {
            ArrowError::CastError(format!(
                "the value {v:?} is beyond the range of FLOAT (float32)"
            ))
        })
    })
}

/// A decimal of scale `s` > 0 rounded half away from zero to scale 0, as a decimal with
/// room for the carry (`99.5` → `100`).
fn round_to_integer(array: &dyn Array, p: u8, s: i8) -> Result<ArrayRef, ArrowError> {
    let decimals = array.as_primitive::<Decimal128Type>();
    let rounded: Decimal128Array = decimals.unary(|v| round_decimal(v, s as i32, 0));
    let precision = (p as i16 - s as i16 + 1).clamp(1, 38) as u8;
    Ok(Arc::new(rounded.with_precision_and_scale(precision, 0)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Float64Array;
    use arrow::datatypes::Int64Type;

    fn decimals(values: &[i128], p: u8, s: i8) -> Decimal128Array {
        Decimal128Array::from(values.to_vec())
            .with_precision_and_scale(p, s)
            .unwrap()
    }

    #[test]
    fn decimal_to_integer_rounds_half_away_from_zero() {
        let d = decimals(&[-73850, -73849, 250, -50, 49, 0, 999_999_999_999], 12, 2);
        let out = cast_array(&d, &DataType::Int64, false).unwrap();
        let got: Vec<i64> = out.as_primitive::<Int64Type>().values().to_vec();
        assert_eq!(got, vec![-739, -738, 3, -1, 0, 0, 10_000_000_000]);
    }

    #[test]
    fn decimal_to_a_narrow_integer_checks_the_rounded_value() {
        let d = decimals(&[12750], 10, 2);
        assert!(cast_array(&d, &DataType::Int8, false).is_err());
        let lenient = cast_array(&d, &DataType::Int8, true).unwrap();
        assert!(lenient.is_null(0));
        let d = decimals(&[-12840], 10, 2);
        let out = cast_array(&d, &DataType::Int8, false).unwrap();
        assert_eq!(
            out.as_primitive::<arrow::datatypes::Int8Type>().value(0),
            -128
        );
    }

    #[test]
    fn double_beyond_float_range_does_not_convert() {
        let max = f32::MAX as f64;
        let ok = Float64Array::from(vec![
            Some(1.5),
            None,
            Some(f64::NAN),
            Some(f64::INFINITY),
            Some(f64::NEG_INFINITY),
            Some(max),
            Some(1e-50),
        ]);
        let out = cast_array(&ok, &DataType::Float32, false).unwrap();
        let f = out.as_primitive::<arrow::datatypes::Float32Type>();
        assert_eq!(f.value(0), 1.5);
        assert!(f.is_null(1));
        assert!(f.value(2).is_nan());
        assert_eq!(f.value(3), f32::INFINITY);
        assert_eq!(f.value(4), f32::NEG_INFINITY);
        assert_eq!(f.value(5), f32::MAX);
        assert_eq!(f.value(6), 0.0);
        for bad in [1e300, -1e300, 3.5e38] {
            let a = Float64Array::from(vec![1.0, bad]);
            let err = cast_array(&a, &DataType::Float32, false).unwrap_err();
            assert!(
                err.to_string().contains("beyond the range of FLOAT"),
                "{err}"
            );
            let lenient = cast_array(&a, &DataType::Float32, true).unwrap();
            assert!(lenient.is_valid(0) && lenient.is_null(1));
        }
    }
}
