//! SQL type names and the coercion rules of the evaluator: which Arrow type both sides
//! of an operator are cast to before the kernel runs.

use arrow::datatypes::{DataType, TimeUnit};

/// Map a plan type name (`int64`, `decimal(10,2)`, ...) to an Arrow type.
pub fn parse_type_name(name: &str) -> Option<DataType> {
    let name = name.trim().to_ascii_lowercase();
    Some(match name.as_str() {
        "null" => DataType::Null,
        "bool" | "boolean" => DataType::Boolean,
        "int8" => DataType::Int8,
        "int16" => DataType::Int16,
        "int32" => DataType::Int32,
        "int64" => DataType::Int64,
        "uint8" => DataType::UInt8,
        "uint16" => DataType::UInt16,
        "uint32" => DataType::UInt32,
        "uint64" => DataType::UInt64,
        "float32" => DataType::Float32,
        "float64" => DataType::Float64,
        "utf8" | "string" => DataType::Utf8,
        "date32" => DataType::Date32,
        "timestamp_ms" => DataType::Timestamp(TimeUnit::Millisecond, None),
        other => {
            let inner = other.strip_prefix("decimal(")?.strip_suffix(')')?;
            let (p, s) = inner.split_once(',')?;
            let p: u8 = p.trim().parse().ok()?;
            let s: i8 = s.trim().parse().ok()?;
            if p == 0 || p > 38 || s < 0 || s as u8 > p {
                return None;
            }
            DataType::Decimal128(p, s)
        }
    })
}

/// A short SQL-ish name of an Arrow type for error messages.
pub fn sql_name(dt: &DataType) -> String {
    match dt {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Decimal128(p, s) => format!("decimal({p},{s})"),
        DataType::Timestamp(TimeUnit::Millisecond, _) => "timestamp".into(),
        DataType::Dictionary(_, v) => sql_name(v),
        other => other.to_string().to_lowercase(),
    }
}

pub fn is_integer(dt: &DataType) -> bool {
    dt.is_integer()
}

pub fn is_float(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Float16 | DataType::Float32 | DataType::Float64
    )
}

pub fn is_decimal(dt: &DataType) -> bool {
    matches!(dt, DataType::Decimal128(_, _))
}

pub fn is_numeric(dt: &DataType) -> bool {
    is_integer(dt) || is_float(dt) || is_decimal(dt)
}

pub fn is_string(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

pub fn is_temporal(dt: &DataType) -> bool {
    matches!(dt, DataType::Timestamp(_, _) | DataType::Date32)
}

/// The decimal type that holds every value of an integer type exactly.
fn integer_as_decimal(dt: &DataType) -> DataType {
    let digits = match dt {
        DataType::Int8 | DataType::UInt8 => 3,
        DataType::Int16 | DataType::UInt16 => 5,
        DataType::Int32 | DataType::UInt32 => 10,
        DataType::UInt64 => 20,
        _ => 19,
    };
    DataType::Decimal128(digits, 0)
}

/// The operand types of `+ - * %` (and `/` with `division`), or None when the operator
/// does not apply to these types. Integers compute in int64, anything with a float in
/// float64, decimals exactly (an integer beside a decimal becomes a decimal), and `/`
/// between integers is float64 division.
pub fn arithmetic_operands(
    l: &DataType,
    r: &DataType,
    division: bool,
) -> Option<(DataType, DataType)> {
    let l = if *l == DataType::Null { r } else { l };
    let r = if *r == DataType::Null { l } else { r };
    if *l == DataType::Null {
        return Some((DataType::Float64, DataType::Float64));
    }
    if !is_numeric(l) || !is_numeric(r) {
        return None;
    }
    if is_float(l) || is_float(r) {
        return Some((DataType::Float64, DataType::Float64));
    }
    match (is_decimal(l), is_decimal(r)) {
        (true, true) => Some((l.clone(), r.clone())),
        (true, false) => Some((l.clone(), integer_as_decimal(r))),
        (false, true) => Some((integer_as_decimal(l), r.clone())),
        (false, false) if division => Some((DataType::Float64, DataType::Float64)),
        (false, false) => Some((DataType::Int64, DataType::Int64)),
    }
}

/// The common type two values are compared (or merged, in CASE / COALESCE / IN) in.
pub fn common_type(l: &DataType, r: &DataType) -> Option<DataType> {
    if l == r {
        return Some(unpack_dictionary(l));
    }
    let (l, r) = (unpack_dictionary(l), unpack_dictionary(r));
    if l == r {
        return Some(l);
    }
    if l == DataType::Null {
        return Some(r);
    }
    if r == DataType::Null {
        return Some(l);
    }
    if is_numeric(&l) && is_numeric(&r) {
        if is_integer(&l) && is_integer(&r) {
            return Some(DataType::Int64);
        }
        if is_decimal(&l) && is_decimal(&r) {
            let (DataType::Decimal128(p1, s1), DataType::Decimal128(p2, s2)) = (&l, &r) else {
                unreachable!()
            };
            let s = (*s1).max(*s2);
            let int_digits = (*p1 as i16 - *s1 as i16).max(*p2 as i16 - *s2 as i16);
            let p = (int_digits + s as i16).min(38) as u8;
            return Some(DataType::Decimal128(p, s));
        }
        return arithmetic_operands(&l, &r, false).map(|(t, _)| t);
    }
    if is_string(&l) && is_string(&r) {
        return Some(DataType::Utf8);
    }
    if is_temporal(&l) && (is_temporal(&r) || is_string(&r)) {
        return Some(DataType::Timestamp(TimeUnit::Millisecond, None));
    }
    if is_temporal(&r) && is_string(&l) {
        return Some(DataType::Timestamp(TimeUnit::Millisecond, None));
    }
    None
}

/// Dictionary-encoded columns are computed on in their value type.
pub fn unpack_dictionary(dt: &DataType) -> DataType {
    match dt {
        DataType::Dictionary(_, v) => v.as_ref().clone(),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names() {
        assert_eq!(
            parse_type_name("decimal(10,2)"),
            Some(DataType::Decimal128(10, 2))
        );
        assert_eq!(parse_type_name("int32"), Some(DataType::Int32));
        assert_eq!(parse_type_name("decimal(2,3)"), None);
        assert_eq!(parse_type_name("blob"), None);
    }

    #[test]
    fn integer_division_is_float() {
        assert_eq!(
            arithmetic_operands(&DataType::Int32, &DataType::Int64, true),
            Some((DataType::Float64, DataType::Float64))
        );
        assert_eq!(
            arithmetic_operands(&DataType::Int32, &DataType::Int64, false),
            Some((DataType::Int64, DataType::Int64))
        );
    }

    #[test]
    fn decimal_beside_integer_stays_exact() {
        assert_eq!(
            arithmetic_operands(&DataType::Decimal128(10, 2), &DataType::Int64, false),
            Some((DataType::Decimal128(10, 2), DataType::Decimal128(19, 0)))
        );
        assert_eq!(
            common_type(&DataType::Decimal128(10, 2), &DataType::Decimal128(5, 4)),
            Some(DataType::Decimal128(12, 4))
        );
    }
}
