//! JSON Lines: schema inference from a sample, decoding with a schema, encoding.
//!
//! Inference reads the top-level fields of each object with a small scanner of its own, so
//! that a number is seen as written (`9007199254740993` is not a double, `123...890` with 30
//! digits is not an int64): see [`crate::infer`] for the rules.
//!
//! Decoding uses Arrow's JSON reader, with the numeric, decimal and timestamp columns read
//! as the values' text and converted exactly here ([`crate::values`]): Arrow would truncate
//! `1.5` to `1` in an int64 column and round `9007199254740993` in a double column, and a
//! value must never change silently. The bare tokens `NaN`, `Infinity` and `-Infinity`
//! (which Python's `json` and DuckDB's `to_json` write) are read as doubles.
//!
//! Encoding writes one JSON object per row and writes SQL NULL as an explicit `null`
//! (what Flink's `json` format and ksqlDB produce by default), so every output line has
//! every column of the query's output schema; non-finite doubles are written `NaN`,
//! `Infinity`, `-Infinity`, as Python's `json` and DuckDB's `to_json` do.
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{
    DataType, Field, FieldRef, Float16Type, Float32Type, Float64Type, Schema, SchemaRef,
};
use arrow::error::ArrowError;
use arrow::json::reader::ReaderBuilder;
use arrow::json::writer::{
    make_encoder, Encoder, EncoderFactory, EncoderOptions, LineDelimited, NullableEncoder,
    WriterBuilder,
};
use arrow::record_batch::RecordBatch;

use crate::error::arrow_message;
use crate::infer::{resolve, ColumnStats, Inferred};
use crate::lines::{count_rows, decode_isolating, normalize_line_ends, one_batch, LineRules, Rows};
use crate::values::{
    conversion_for, convert_rows, looks_numeric, number_kind, parse_number, read_type, Conversion,
    Kind,
};
use crate::{CodecError, Decoded};

/// Rows decoded per internal Arrow batch; chunks larger than this are concatenated.
const DECODE_BATCH_ROWS: usize = 64 * 1024;

/// Nesting deeper than this makes a line invalid for inference: it bounds the scanner's
/// recursion and the depth of inferred types (pyarrow refuses schemas nested past 64).
const MAX_DEPTH: usize = 32;

/// Lines nested deeper than this are bad lines, never handed to Arrow's reader, whose
/// error messages format a value recursively (a million `[` would overflow the stack).
const MAX_DECODE_DEPTH: usize = 512;

// --------------------------------------------------------------------------- scanning

/// A top-level value of a JSON object, as written.
#[derive(Debug, Clone, PartialEq)]
enum Token<'a> {
    Null,
    Bool(&'a str),
    Number(&'a str),
    /// `NaN`, `Infinity`, `-Infinity`.
    NonFinite(&'a str),
    Str(Cow<'a, str>),
    /// An object or an array, its raw text.
    Nested(&'a str),
}

struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            bytes: text.as_bytes(),
            pos: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek() == Some(byte)).then(|| self.pos += 1)
    }

    fn literal(&mut self, literal: &str) -> Option<&'a str> {
        let start = self.pos;
        self.text[start..].starts_with(literal).then(|| {
            self.pos += literal.len();
            &self.text[start..self.pos]
        })
    }

    /// A string (at its opening quote): its raw text with the quotes, and whether it has
    /// escapes.
    fn string(&mut self) -> Option<(&'a str, bool)> {
        let start = self.pos;
        self.expect(b'"')?;
        let mut escaped = false;
        loop {
            match self.peek()? {
                b'"' => {
                    self.pos += 1;
                    return Some((&self.text[start..self.pos], escaped));
                }
                b'\\' => {
                    escaped = true;
                    self.pos += 1;
                    match self.peek()? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.pos += 1,
                        b'u' => {
                            let hex = self.bytes.get(self.pos + 1..self.pos + 5)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            self.pos += 5;
                        }
                        _ => return None,
                    }
                }
                b if b < 0x20 => return None,
                _ => self.pos += 1,
            }
        }
    }

    fn text_of(raw: &'a str, escaped: bool) -> Option<Cow<'a, str>> {
        if escaped {
            serde_json::from_str::<String>(raw).ok().map(Cow::Owned)
        } else {
            Some(Cow::Borrowed(&raw[1..raw.len() - 1]))
        }
    }

    fn number(&mut self) -> Option<&'a str> {
        let start = self.pos;
        while matches!(
            self.peek(),
            Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
        ) {
            self.pos += 1;
        }
        let text = &self.text[start..self.pos];
        parse_number(text).map(|_| text)
    }

    fn value(&mut self, depth: usize) -> Option<Token<'a>> {
        match self.peek()? {
            b'{' | b'[' => {
                let start = self.pos;
                self.nested(depth + 1)?;
                Some(Token::Nested(&self.text[start..self.pos]))
            }
            b'"' => {
                let (raw, escaped) = self.string()?;
                Some(Token::Str(Self::text_of(raw, escaped)?))
            }
            b't' => self.literal("true").map(Token::Bool),
            b'f' => self.literal("false").map(Token::Bool),
            b'n' => self.literal("null").map(|_| Token::Null),
            b'N' => self.literal("NaN").map(Token::NonFinite),
            b'I' => self.literal("Infinity").map(Token::NonFinite),
            b'-' if self.bytes.get(self.pos + 1) == Some(&b'I') => {
                self.literal("-Infinity").map(Token::NonFinite)
            }
            _ => self.number().map(Token::Number),
        }
    }

    /// An object or an array (at its opening bracket), validated.
    fn nested(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        let object = self.peek()? == b'{';
        let close = if object { b'}' } else { b']' };
        self.pos += 1;
        self.ws();
        if self.peek()? == close {
            self.pos += 1;
            return Some(());
        }
        loop {
            if object {
                self.string()?;
                self.ws();
                self.expect(b':')?;
                self.ws();
            }
            self.value(depth)?;
            self.ws();
            match self.peek()? {
                b',' => {
                    self.pos += 1;
                    self.ws();
                }
                b if b == close => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// The members of a line holding one JSON object, `None` for anything else.
    fn object(text: &'a str) -> Option<Vec<(Cow<'a, str>, Token<'a>)>> {
        let mut scanner = Scanner::new(text);
        scanner.ws();
        scanner.expect(b'{')?;
        let mut members = Vec::new();
        scanner.ws();
        if scanner.peek()? == b'}' {
            scanner.pos += 1;
        } else {
            loop {
                let (raw, escaped) = scanner.string()?;
                let key = Self::text_of(raw, escaped)?;
                scanner.ws();
                scanner.expect(b':')?;
                scanner.ws();
                let value = scanner.value(1)?;
                members.push((key, value));
                scanner.ws();
                match scanner.peek()? {
                    b',' => {
                        scanner.pos += 1;
                        scanner.ws();
                    }
                    b'}' => {
                        scanner.pos += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        scanner.ws();
        (scanner.pos == text.len()).then_some(members)
    }
}

// --------------------------------------------------------------------------- inference

/// Infers a schema from the JSON objects of a JSON Lines sample.
///
/// Lines that are blank, not valid JSON or not objects are skipped (they are reported when
/// the data is decoded). At most `max_records` objects are read (`None`: all). Fields keep
/// the order in which they first appear; every field is nullable; a field that is null in
/// the whole sample becomes `Utf8`. An empty sample gives an empty schema. The types never
/// lose a value: see [`crate::infer`].
pub fn infer(data: &[u8], max_records: Option<usize>) -> Result<Inferred, CodecError> {
    let mut columns: Vec<ColumnStats> = Vec::new();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    let mut records = 0;
    let limit = max_records.unwrap_or(usize::MAX);
    let data = normalize_line_ends(data);
    for (line, bytes) in data.split(|&b| b == b'\n').enumerate() {
        if records >= limit {
            break;
        }
        let Ok(text) = std::str::from_utf8(bytes) else {
            continue;
        };
        let Some(members) = Scanner::object(text) else {
            continue;
        };
        records += 1;
        for (key, value) in members {
            // Arrow field names cannot hold NUL: such a field cannot be a column.
            if key.contains('\0') {
                continue;
            }
            let slot = match by_name.get(key.as_ref()) {
                Some(&slot) => slot,
                None => {
                    by_name.insert(key.to_string(), columns.len());
                    columns.push(ColumnStats::new(key.to_string()));
                    columns.len() - 1
                }
            };
            let column = &mut columns[slot];
            match value {
                Token::Null => {}
                Token::Bool(text) => column.observe(Kind::Bool, line, text),
                Token::NonFinite(text) => column.observe(Kind::Float, line, text),
                Token::Number(text) => {
                    let number = parse_number(text).expect("the scanner checked the syntax");
                    column.observe(number_kind(&number, text), line, text);
                }
                Token::Str(text) => {
                    let kind = if looks_numeric(&text) {
                        Kind::NumericText
                    } else {
                        Kind::Text
                    };
                    column.observe(kind, line, &text);
                }
                Token::Nested(raw) => column.observe_nested(line, raw),
            }
        }
    }
    Ok(resolve(columns))
}

/// The schema [`infer`] infers, without its widenings.
pub fn infer_schema(data: &[u8], max_records: Option<usize>) -> Result<Schema, CodecError> {
    Ok(infer(data, max_records)?.schema)
}

// --------------------------------------------------------------------------- decoding

/// A line holding only JSON whitespace (not `u8::is_ascii_whitespace`, which takes form
/// feeds that the JSON reader rejects).
fn blank(line: &[u8]) -> bool {
    line.iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

/// The lines of `data` nested deeper than [`MAX_DECODE_DEPTH`], with the reason.
///
/// Such a line holds more than that many brackets, so only long lines are looked at.
fn too_deep(data: &[u8]) -> Vec<(usize, String)> {
    let mut deep = Vec::new();
    let mut start = 0;
    let ends = memchr::memchr_iter(b'\n', data).chain(std::iter::once(data.len()));
    for (index, end) in ends.enumerate() {
        if start > end {
            break;
        }
        let line = &data[start..end];
        start = end + 1;
        if line.len() > MAX_DECODE_DEPTH
            && memchr::memchr2_iter(b'[', b'{', line).count() > MAX_DECODE_DEPTH
            && nesting(line) > MAX_DECODE_DEPTH
        {
            deep.push((
                index,
                format!("invalid JSON: nested deeper than {MAX_DECODE_DEPTH} levels"),
            ));
        }
    }
    deep
}

/// The deepest nesting of brackets outside strings in `line`.
fn nesting(line: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &byte in line {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Quotes the bare tokens `NaN`, `Infinity` and `-Infinity` in value position (outside
/// strings, after `:`, `[` or an array's `,`), so that Arrow's reader reads them as text
/// that the double conversion understands. `None` when there are none.
fn quote_non_finite(data: &[u8]) -> Option<Vec<u8>> {
    if memchr::memmem::find(data, b"NaN").is_none()
        && memchr::memmem::find(data, b"Infinity").is_none()
    {
        return None;
    }
    let mut out = Vec::with_capacity(data.len() + 64);
    let mut in_string = false;
    let mut open: Vec<u8> = Vec::new();
    let mut previous = b'\n';
    let mut i = 0;
    while i < data.len() {
        let byte = data[i];
        if in_string {
            out.push(byte);
            match byte {
                b'\\' if data.get(i + 1).is_some_and(|&b| b != b'\n') => {
                    out.push(data[i + 1]);
                    i += 1;
                }
                b'"' => {
                    in_string = false;
                    previous = b'"';
                }
                b'\n' => {
                    in_string = false;
                    open.clear();
                    previous = b'\n';
                }
                _ => {}
            }
            i += 1;
            continue;
        }
        let in_value_position = previous == b':'
            || previous == b'['
            || (previous == b',' && open.last() == Some(&b'['));
        let token: Option<&[u8]> = if !in_value_position {
            None
        } else if data[i..].starts_with(b"NaN") {
            Some(b"NaN")
        } else if data[i..].starts_with(b"Infinity") {
            Some(b"Infinity")
        } else if data[i..].starts_with(b"-Infinity") {
            Some(b"-Infinity")
        } else {
            None
        };
        if let Some(token) = token {
            out.push(b'"');
            out.extend_from_slice(token);
            out.push(b'"');
            i += token.len();
            previous = b'"';
            continue;
        }
        out.push(byte);
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => open.push(byte),
            b'}' | b']' => {
                open.pop();
            }
            b'\n' => open.clear(),
            _ => {}
        }
        if !matches!(byte, b' ' | b'\t' | b'\r') {
            previous = byte;
        }
        i += 1;
    }
    Some(out)
}

/// Decodes JSON Lines with a fixed schema.
///
/// Fields absent from a line are null; fields not in the schema are ignored; a JSON number
/// or boolean read into a string column keeps its text. Integer, double, decimal and
/// timestamp columns are read exactly (see [`crate::values`]); a value that does not fit
/// makes its line a bad line naming the field and the value.
#[derive(Debug, Clone)]
pub struct JsonDecoder {
    schema: SchemaRef,
    /// `schema` with every converted column read as Utf8, every field nullable.
    read_schema: SchemaRef,
    conversions: Vec<Option<Conversion>>,
}

impl JsonDecoder {
    /// A decoder producing batches of `schema`.
    pub fn new(schema: SchemaRef) -> Self {
        let conversions: Vec<Option<Conversion>> = schema
            .fields()
            .iter()
            .map(|f| conversion_for(f.data_type(), true))
            .collect();
        let read_fields: Vec<Field> = schema
            .fields()
            .iter()
            .zip(&conversions)
            .map(|(f, conversion)| {
                let field = f.as_ref().clone().with_nullable(true);
                match conversion {
                    Some(conversion) => field.with_data_type(read_type(conversion)),
                    None => field,
                }
            })
            .collect();
        let read_schema = Arc::new(Schema::new_with_metadata(
            read_fields,
            schema.metadata().clone(),
        ));
        Self {
            schema,
            read_schema,
            conversions,
        }
    }

    /// Checks that Arrow's JSON reader can read every column of the schema.
    pub fn check(&self) -> Result<(), CodecError> {
        self.builder()
            .build_decoder()
            .map(|_| ())
            .map_err(|e| CodecError::Schema(arrow_message(&e)))
    }

    /// The schema of decoded batches.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Decodes a chunk of whole lines; bad lines are isolated and reported, not fatal.
    pub fn decode(&self, data: &[u8]) -> Result<Decoded, CodecError> {
        self.check()?;
        let rules = LineRules {
            blank,
            reject: too_deep,
            prepare: quote_non_finite,
        };
        decode_isolating(data, &self.schema, rules, |segment| {
            self.decode_segment(segment)
        })
    }

    fn builder(&self) -> ReaderBuilder {
        ReaderBuilder::new(Arc::clone(&self.read_schema))
            .with_batch_size(DECODE_BATCH_ROWS)
            .with_coerce_primitive(true)
    }

    fn decode_segment(&self, segment: &[u8]) -> Result<Rows, String> {
        let mut decoder = self.builder().build_decoder().map_err(|e| e.to_string())?;
        let mut batches = Vec::new();
        let mut rest = segment;
        loop {
            let read = decoder
                .decode(rest)
                .map_err(|e| format!("invalid JSON: {}", arrow_message(&e)))?;
            rest = &rest[read..];
            if decoder.has_partial_record() && rest.is_empty() {
                return Err("invalid JSON: truncated record".to_string());
            }
            if read == 0 || rest.is_empty() {
                if let Some(batch) = decoder.flush().map_err(|e| mismatch_message(&e))? {
                    batches.push(batch);
                }
                if rest.is_empty() {
                    break;
                }
            }
        }
        let batch = one_batch(&self.read_schema, batches)?;
        let lines = count_rows(segment, blank);
        if batch.num_rows() != lines {
            return Err(format!(
                "invalid JSON Lines: {} JSON values on {} line(s); write one object per line",
                batch.num_rows(),
                lines
            ));
        }
        convert_rows(&batch, &self.schema, &self.conversions)
    }
}

fn mismatch_message(error: &ArrowError) -> String {
    let message = arrow_message(error);
    if let Some(value) = message.strip_prefix("expected { got ") {
        format!("not a JSON object: {value}")
    } else if message.contains("whilst decoding") {
        format!("type mismatch: {message}")
    } else {
        message
    }
}

// --------------------------------------------------------------------------- encoding

/// Default encoders, for the finite values of doubles.
static PLAIN: LazyLock<EncoderOptions> = LazyLock::new(EncoderOptions::default);

/// Writes `NaN`, `Infinity`, `-Infinity` for non-finite floats (Arrow writes `null`).
#[derive(Debug)]
struct NonFiniteFloats;

struct NonFiniteEncoder<'a> {
    value: Box<dyn Fn(usize) -> f64 + 'a>,
    finite: NullableEncoder<'a>,
}

impl Encoder for NonFiniteEncoder<'_> {
    fn encode(&mut self, idx: usize, out: &mut Vec<u8>) {
        let value = (self.value)(idx);
        if value.is_nan() {
            out.extend_from_slice(b"NaN");
        } else if value == f64::INFINITY {
            out.extend_from_slice(b"Infinity");
        } else if value == f64::NEG_INFINITY {
            out.extend_from_slice(b"-Infinity");
        } else {
            self.finite.encode(idx, out);
        }
    }
}

impl EncoderFactory for NonFiniteFloats {
    fn make_default_encoder<'a>(
        &self,
        field: &'a FieldRef,
        array: &'a dyn Array,
        _options: &'a EncoderOptions,
    ) -> Result<Option<NullableEncoder<'a>>, ArrowError> {
        let value: Box<dyn Fn(usize) -> f64 + 'a> = match array.data_type() {
            DataType::Float64 => {
                let values = array.as_primitive::<Float64Type>();
                Box::new(move |i| values.value(i))
            }
            DataType::Float32 => {
                let values = array.as_primitive::<Float32Type>();
                Box::new(move |i| f64::from(values.value(i)))
            }
            DataType::Float16 => {
                let values = array.as_primitive::<Float16Type>();
                Box::new(move |i| f64::from(values.value(i)))
            }
            _ => return Ok(None),
        };
        let finite = make_encoder(field, array, &PLAIN)?;
        let encoder = NonFiniteEncoder { value, finite };
        Ok(Some(NullableEncoder::new(
            Box::new(encoder),
            array.nulls().cloned(),
        )))
    }
}

/// Encodes a batch as JSON Lines: one object per row, `\n`-terminated, nulls as `null`,
/// non-finite doubles as `NaN`, `Infinity`, `-Infinity`.
pub fn encode(batch: &RecordBatch) -> Result<Vec<u8>, CodecError> {
    let mut writer = WriterBuilder::new()
        .with_explicit_nulls(true)
        .with_encoder_factory(Arc::new(NonFiniteFloats))
        .build::<_, LineDelimited>(Vec::with_capacity(batch.num_rows() * 64));
    writer
        .write(batch)
        .map_err(|e| CodecError::Encode(arrow_message(&e)))?;
    writer
        .finish()
        .map_err(|e| CodecError::Encode(arrow_message(&e)))?;
    Ok(writer.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{DataType, Field, Float64Type, Int64Type};

    #[test]
    fn a_fraction_in_an_integer_column_is_a_bad_line_not_a_truncation() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Int32, true),
        ]));
        let decoder = JsonDecoder::new(schema);
        let decoded = decoder
            .decode(b"{\"a\": 1, \"b\": 2}\n{\"a\": 1.5}\n{\"a\": 1e3}\n{\"b\": 3000000000}\n")
            .unwrap();
        let a = decoded.batch.column(0).as_primitive::<Int64Type>();
        assert_eq!(a.len(), 2);
        assert_eq!((a.value(0), a.value(1)), (1, 1000));
        assert_eq!(
            decoded.batch.schema().field(1).data_type(),
            &DataType::Int32
        );
        let bad: Vec<(usize, &str)> = decoded
            .bad_lines
            .iter()
            .map(|b| (b.index, b.message.as_str()))
            .collect();
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert_eq!(bad[0].0, 1);
        assert!(bad[0].1.contains("1.5 is not an integer"), "{}", bad[0].1);
        assert_eq!(bad[1].0, 3);
    }

    const TRADES: &[u8] = b"{\"symbol\":\"AAPL\",\"price\":10.5,\"qty\":3}\n\
{\"symbol\":\"MSFT\",\"price\":20,\"qty\":1}\n";

    fn trades_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("symbol", DataType::Utf8, true),
            Field::new("price", DataType::Float64, true),
            Field::new("qty", DataType::Int64, true),
        ]))
    }

    #[test]
    fn infers_fields_in_data_order() {
        let schema = infer_schema(TRADES, None).unwrap();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["symbol", "price", "qty"]);
        assert_eq!(schema.field(1).data_type(), &DataType::Float64);
        assert_eq!(schema.field(2).data_type(), &DataType::Int64);
    }

    #[test]
    fn inference_skips_bad_lines_and_widens_nulls() {
        let data = b"not json\n{\"a\":null,\"b\":1}\n[1]\n\n";
        let schema = infer_schema(data, None).unwrap();
        assert_eq!(schema.field(0).data_type(), &DataType::Utf8);
        assert_eq!(schema.field(1).data_type(), &DataType::Int64);
    }

    #[test]
    fn a_minority_of_bad_strings_does_not_turn_a_number_column_into_strings() {
        let mut data = Vec::new();
        for i in 0..20 {
            data.extend_from_slice(format!("{{\"p\":{i}.5,\"s\":\"{i}\"}}\n").as_bytes());
        }
        data.extend_from_slice(b"{\"p\":\"abc\",\"s\":\"x\"}\n");
        let schema = infer_schema(&data, None).unwrap();
        assert_eq!(schema.field(0).data_type(), &DataType::Float64);
        assert_eq!(schema.field(1).data_type(), &DataType::Utf8);
        let decoded = JsonDecoder::new(Arc::new(schema)).decode(&data).unwrap();
        assert_eq!(decoded.batch.num_rows(), 20);
        assert_eq!(decoded.bad_lines[0].index, 20);
        // Many strings: the column is a string column.
        let schema = infer_schema(b"{\"p\":1}\n{\"p\":\"a\"}\n", None).unwrap();
        assert_eq!(schema.field(0).data_type(), &DataType::Utf8);
    }

    #[test]
    fn lone_carriage_returns_end_lines() {
        let data =
            b"{\"a\": 0, \"s\": \"r0\"}\r{\"a\": 1, \"s\": \"r1\"}\r\r{\"a\": x}\r{\"a\": 3}\r";
        let inferred = infer(data, None).unwrap();
        let names: Vec<&str> = inferred
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(names, ["a", "s"]);
        assert_eq!(inferred.schema.field(0).data_type(), &DataType::Int64);
        let decoded = JsonDecoder::new(Arc::new(inferred.schema))
            .decode(data)
            .unwrap();
        let a = decoded.batch.column(0).as_primitive::<Int64Type>();
        assert_eq!(a.values(), &[0, 1, 3]);
        assert_eq!(decoded.bad_lines.len(), 1);
        assert_eq!(decoded.bad_lines[0].index, 3);
        assert_eq!(decoded.bad_lines[0].raw, b"{\"a\": x}".to_vec());
    }

    #[test]
    fn two_values_on_a_line_are_one_bad_line_whatever_the_schema() {
        for schema in [
            Arc::new(Schema::empty()),
            Arc::new(infer_schema(b"{\"a\":1}", None).unwrap()),
        ] {
            let decoded = JsonDecoder::new(schema)
                .decode(b"{\"a\":1} {\"a\":2}\n{\"a\":1}\t{\"a\":2}\r\n")
                .unwrap();
            assert_eq!(decoded.batch.num_rows(), 0);
            assert_eq!(decoded.bad_lines.len(), 2, "{:?}", decoded.bad_lines);
            assert!(decoded.bad_lines[0]
                .message
                .contains("2 JSON values on 1 line"));
        }
    }

    #[test]
    fn decodes_a_clean_chunk() {
        let decoded = JsonDecoder::new(trades_schema()).decode(TRADES).unwrap();
        assert!(decoded.bad_lines.is_empty());
        assert_eq!(decoded.batch.num_rows(), 2);
        let price = decoded.batch.column(1).as_primitive::<Float64Type>();
        assert_eq!(price.values(), &[10.5, 20.0]);
    }

    #[test]
    fn isolates_bad_lines_and_keeps_good_ones_in_order() {
        let data = b"{\"symbol\":\"A\",\"price\":1,\"qty\":1}\n\
{\"symbol\":\"B\",\"price\":\n\
{\"symbol\":\"C\",\"price\":3,\"qty\":3}\n\
\n\
{\"symbol\":\"D\",\"price\":\"abc\",\"qty\":4}\n\
{\"symbol\":\"E\",\"price\":5,\"qty\":5}";
        let decoded = JsonDecoder::new(trades_schema()).decode(data).unwrap();
        let symbols: Vec<&str> = decoded
            .batch
            .column(0)
            .as_string::<i32>()
            .iter()
            .map(Option::unwrap)
            .collect();
        assert_eq!(symbols, ["A", "C", "E"]);
        let bad: Vec<usize> = decoded.bad_lines.iter().map(|b| b.index).collect();
        assert_eq!(bad, [1, 4]);
        assert!(decoded.bad_lines[0].message.starts_with("invalid JSON"));
        assert!(
            decoded.bad_lines[1].message.contains("price"),
            "{}",
            decoded.bad_lines[1].message
        );
        assert!(decoded.bad_lines[1].message.contains("type mismatch"));
        assert_eq!(
            decoded.bad_lines[1].raw,
            b"{\"symbol\":\"D\",\"price\":\"abc\",\"qty\":4}".to_vec()
        );
    }

    #[test]
    fn non_object_line_is_bad() {
        let data = b"{\"symbol\":\"A\",\"price\":1,\"qty\":1}\n42\n";
        let decoded = JsonDecoder::new(trades_schema()).decode(data).unwrap();
        assert_eq!(decoded.batch.num_rows(), 1);
        assert_eq!(decoded.bad_lines.len(), 1);
        assert_eq!(decoded.bad_lines[0].index, 1);
        assert_eq!(decoded.bad_lines[0].message, "not a JSON object: 42");
    }

    #[test]
    fn every_line_bad_gives_an_empty_batch() {
        let data = b"x\ny\n";
        let decoded = JsonDecoder::new(trades_schema()).decode(data).unwrap();
        assert_eq!(decoded.batch.num_rows(), 0);
        assert_eq!(decoded.batch.schema(), trades_schema());
        assert_eq!(decoded.bad_lines.len(), 2);
    }

    #[test]
    fn large_chunks_span_internal_batches() {
        let mut data = Vec::new();
        for i in 0..(DECODE_BATCH_ROWS + 10) {
            data.extend_from_slice(
                format!("{{\"symbol\":\"S\",\"price\":1,\"qty\":{i}}}\n").as_bytes(),
            );
        }
        let decoded = JsonDecoder::new(trades_schema()).decode(&data).unwrap();
        assert_eq!(decoded.batch.num_rows(), DECODE_BATCH_ROWS + 10);
        let qty = decoded.batch.column(2).as_primitive::<Int64Type>();
        assert_eq!(
            qty.value(DECODE_BATCH_ROWS + 9),
            (DECODE_BATCH_ROWS + 9) as i64
        );
    }

    #[test]
    fn encode_round_trips_and_writes_nulls() {
        let decoded = JsonDecoder::new(trades_schema())
            .decode(b"{\"symbol\":\"A\",\"price\":1.5}\n")
            .unwrap();
        assert!(decoded.batch.column(2).is_null(0));
        let bytes = encode(&decoded.batch).unwrap();
        assert_eq!(
            bytes,
            b"{\"symbol\":\"A\",\"price\":1.5,\"qty\":null}\n".to_vec()
        );
        let again = JsonDecoder::new(trades_schema()).decode(&bytes).unwrap();
        assert_eq!(again.batch, decoded.batch);
    }

    #[test]
    fn integers_beyond_int64_become_exact_decimals_never_doubles() {
        let data =
            b"{\"n\": 1}\n{\"n\": 9007199254740993}\n{\"n\": 123456789012345678901234567890}\n";
        let inferred = infer(data, None).unwrap();
        assert_eq!(
            inferred.schema.field(0).data_type(),
            &DataType::Decimal128(38, 0)
        );
        assert_eq!(inferred.widenings.len(), 1);
        assert_eq!(inferred.widenings[0].line, 2);
        assert_eq!(inferred.widenings[0].from, DataType::Int64);
        let decoded = JsonDecoder::new(Arc::new(inferred.schema))
            .decode(data)
            .unwrap();
        let n = decoded
            .batch
            .column(0)
            .as_primitive::<arrow::datatypes::Decimal128Type>();
        assert_eq!(n.value(1), 9_007_199_254_740_993);
        assert_eq!(n.value(2), 123_456_789_012_345_678_901_234_567_890);
        // int64 stays int64 when every value fits; one beyond 38 digits is a bad line.
        let data =
            b"{\"n\": 9007199254740993}\n{\"n\": 1234567890123456789012345678901234567890}\n";
        let schema = infer_schema(data, None).unwrap();
        assert_eq!(schema.field(0).data_type(), &DataType::Int64);
        let decoded = JsonDecoder::new(Arc::new(schema)).decode(data).unwrap();
        let n = decoded.batch.column(0).as_primitive::<Int64Type>();
        assert_eq!(n.values(), &[9_007_199_254_740_993]);
        assert_eq!(decoded.bad_lines.len(), 1);
        assert!(decoded.bad_lines[0]
            .message
            .contains("out of range for Int64"));
        assert_eq!(decoded.bad_lines[0].field.as_deref(), Some("n"));
    }

    #[test]
    fn a_double_column_rejects_an_integer_it_cannot_hold() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Float64, true)]));
        let decoded = JsonDecoder::new(schema)
            .decode(b"{\"x\": 2.5}\n{\"x\": 9007199254740993}\n{\"x\": 7}\n")
            .unwrap();
        let x = decoded.batch.column(0).as_primitive::<Float64Type>();
        assert_eq!(x.values(), &[2.5, 7.0]);
        assert_eq!(decoded.bad_lines[0].index, 1);
        assert!(decoded.bad_lines[0].message.contains("no exact Float64"));
    }

    #[test]
    fn quoted_values_and_fractions_widen_with_their_line() {
        let data = b"{\"q\": 1, \"p\": 1}\n{\"q\": \"2\", \"p\": 2.5}\n";
        let inferred = infer(data, None).unwrap();
        assert_eq!(inferred.schema.field(0).data_type(), &DataType::Utf8);
        assert_eq!(inferred.schema.field(1).data_type(), &DataType::Float64);
        let widened: Vec<(&str, usize, &str)> = inferred
            .widenings
            .iter()
            .map(|w| (w.column.as_str(), w.line, w.value.as_str()))
            .collect();
        assert_eq!(widened, [("q", 1, "2"), ("p", 1, "2.5")]);
        // The window: only the first record is read.
        assert!(infer(data, Some(1)).unwrap().widenings.is_empty());
    }

    #[test]
    fn non_finite_doubles_round_trip() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("x", DataType::Float64, true),
            Field::new("s", DataType::Utf8, true),
        ]));
        let data = b"{\"x\": NaN, \"s\": \"NaN\"}\n{\"x\": Infinity}\n{\"x\":-Infinity,\"s\":\"a NaN b\"}\n[NaN]\n";
        let decoded = JsonDecoder::new(Arc::clone(&schema)).decode(data).unwrap();
        let x = decoded.batch.column(0).as_primitive::<Float64Type>();
        assert!(x.value(0).is_nan());
        assert_eq!((x.value(1), x.value(2)), (f64::INFINITY, f64::NEG_INFINITY));
        let s = decoded.batch.column(1).as_string::<i32>();
        assert_eq!((s.value(0), s.value(2)), ("NaN", "a NaN b"));
        assert_eq!(decoded.bad_lines.len(), 1, "{:?}", decoded.bad_lines);
        assert_eq!(decoded.bad_lines[0].raw, b"[NaN]".to_vec());
        let bytes = encode(&decoded.batch).unwrap();
        assert_eq!(
            bytes,
            b"{\"x\":NaN,\"s\":\"NaN\"}\n{\"x\":Infinity,\"s\":null}\n{\"x\":-Infinity,\"s\":\"a NaN b\"}\n".to_vec()
        );
        let again = JsonDecoder::new(schema).decode(&bytes).unwrap();
        assert_eq!(again.batch.num_rows(), 3);
        let inferred = infer(data, None).unwrap();
        assert_eq!(inferred.schema.field(0).data_type(), &DataType::Float64);
        // NaN is not rewritten where it is a key or inside a string.
        assert_eq!(quote_non_finite(b"{NaN: 1}"), Some(b"{NaN: 1}".to_vec()));
        assert_eq!(
            quote_non_finite(b"{\"a\": [1, NaN, Infinity]}"),
            Some(b"{\"a\": [1, \"NaN\", \"Infinity\"]}".to_vec())
        );
    }

    #[test]
    fn lines_that_are_not_text_or_hold_two_values_are_bad() {
        let data = b"{\"symbol\":\"A\",\"price\":1,\"qty\":1}\n\xff\xfe{\n{\"symbol\":\"B\"}{\"symbol\":\"C\"}\n{\"symbol\":\"\0\"}\n{\"symbol\":\"D\"}";
        let decoded = JsonDecoder::new(trades_schema()).decode(data).unwrap();
        let symbols: Vec<&str> = decoded
            .batch
            .column(0)
            .as_string::<i32>()
            .iter()
            .map(Option::unwrap)
            .collect();
        assert_eq!(symbols, ["A", "D"]);
        let bad: Vec<(usize, &str)> = decoded
            .bad_lines
            .iter()
            .map(|b| (b.index, b.message.as_str()))
            .collect();
        assert_eq!(bad.len(), 3, "{bad:?}");
        assert!(bad[0].1.contains("invalid UTF-8"));
        assert!(bad[1].1.contains("2 JSON values on 1 line"), "{}", bad[1].1);
        assert!(bad[2].1.contains("NUL byte"));
        assert_eq!(decoded.bad_lines[0].raw, b"\xff\xfe{".to_vec());
    }

    #[test]
    fn a_nul_byte_in_a_chunk_that_is_utf8_is_a_bad_line() {
        // NUL is valid UTF-8: the chunk passes a UTF-8 check, the line must still be bad.
        let data =
            b"{\"symbol\":\"A\"}\n{\"\0\":\"\"}\n{\"symbol\":\"a\0b\"}\n{\"symbol\":\"B\"}\n";
        let decoded = JsonDecoder::new(trades_schema()).decode(data).unwrap();
        let symbols = decoded.batch.column(0).as_string::<i32>();
        assert_eq!(symbols.iter().collect::<Vec<_>>(), [Some("A"), Some("B")]);
        let bad: Vec<(usize, bool)> = decoded
            .bad_lines
            .iter()
            .map(|b| (b.index, b.message.contains("NUL byte")))
            .collect();
        assert_eq!(bad, [(1, true), (2, true)]);
        assert_eq!(decoded.bad_lines[0].raw, b"{\"\0\":\"\"}".to_vec());
    }

    #[test]
    fn declared_types_are_read_exactly() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("zip", DataType::Utf8, true),
            Field::new("amount", DataType::Decimal128(12, 2), true),
            Field::new(
                "ts",
                DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, Some("UTC".into())),
                true,
            ),
        ]));
        let data = b"{\"zip\": \"02134\", \"amount\": 12.5, \"ts\": 1700000000123, \"extra\": 1}\n\
{\"zip\": 2134, \"amount\": \"0.01\", \"ts\": \"2023-11-14T22:13:20.123Z\"}\n\
{\"amount\": 1.005}\n{\"ts\": \"14/11/2023\"}\n{}\n";
        let decoded = JsonDecoder::new(schema).decode(data).unwrap();
        assert_eq!(decoded.batch.num_rows(), 3);
        let zip = decoded.batch.column(0).as_string::<i32>();
        assert_eq!((zip.value(0), zip.value(1)), ("02134", "2134"));
        let amount = decoded
            .batch
            .column(1)
            .as_primitive::<arrow::datatypes::Decimal128Type>();
        assert_eq!((amount.value(0), amount.value(1)), (1250, 1));
        let ts = decoded
            .batch
            .column(2)
            .as_primitive::<arrow::datatypes::TimestampMillisecondType>();
        assert_eq!(
            (ts.value(0), ts.value(1)),
            (1_700_000_000_123, 1_700_000_000_123)
        );
        assert!(decoded.batch.column(0).is_null(2));
        let bad: Vec<(usize, Option<&str>, Option<&str>)> = decoded
            .bad_lines
            .iter()
            .map(|b| (b.index, b.field.as_deref(), b.value.as_deref()))
            .collect();
        assert_eq!(
            bad,
            [
                (2, Some("amount"), Some("1.005")),
                (3, Some("ts"), Some("14/11/2023"))
            ]
        );
        assert!(decoded.bad_lines[0].message.contains("more than 2 digits"));
    }

    #[test]
    fn lines_nested_too_deep_are_bad_lines_not_a_stack_overflow() {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "n",
            DataType::List(Arc::new(Field::new("item", DataType::Int64, true))),
            true,
        )]));
        let deep = 1_000_000;
        let mut data = b"{\"n\": [1]}\n{\"n\": ".to_vec();
        data.extend(std::iter::repeat_n(b'[', deep));
        data.extend(std::iter::repeat_n(b']', deep));
        data.extend_from_slice(b"}\n{\"n\": [2], \"s\": \"");
        data.extend(std::iter::repeat_n(b'[', 2 * MAX_DECODE_DEPTH));
        data.extend_from_slice(b"\"}\n");
        let decoded = JsonDecoder::new(schema).decode(&data).unwrap();
        assert_eq!(decoded.batch.num_rows(), 2);
        assert_eq!(decoded.bad_lines.len(), 1);
        assert_eq!(decoded.bad_lines[0].index, 1);
        assert!(decoded.bad_lines[0]
            .message
            .contains("nested deeper than 512"));
        // Inference skips lines nested deeper than pyarrow accepts.
        let mut line = b"{\"n\": ".to_vec();
        line.extend(std::iter::repeat_n(b'[', 100));
        line.extend(std::iter::repeat_n(b']', 100));
        line.extend_from_slice(b"}\n{\"m\": 1}\n");
        let schema = infer_schema(&line, None).unwrap();
        assert_eq!(schema.fields().len(), 1);
        assert_eq!(schema.field(0).name(), "m");
        // A field name holding NUL cannot be a column.
        let schema = infer_schema(b"{\"a\\u0000\": 1, \"b\": 2}\n", None).unwrap();
        assert_eq!(schema.fields().len(), 1);
    }
}
