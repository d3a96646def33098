//! CSV with a header row: schema inference, decoding of header-less chunks, encoding.
//!
//! The header is read once per file (by [`header`] and [`infer`]); the chunks handed to
//! [`CsvDecoder::decode`] hold data rows only. A record is one line: quoted fields holding
//! newlines are not supported, because chunks and bad-line reports are line based.
//!
//! Every column is read as text by Arrow's CSV reader and converted exactly here
//! ([`crate::values`]): `02134` is not the integer 2134, `1_000` is not a number, and a
//! value that does not fit its column is a bad line naming the field and the value.
//! A decoder reads the columns it is given by position (`columns`), so a declared schema
//! may take the file's columns by name, in any order, and leave others out.
use std::sync::Arc;

use arrow::csv::reader::ReaderBuilder;
use arrow::csv::WriterBuilder;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use crate::error::arrow_message;
use crate::infer::{resolve, ColumnStats, Inferred};
use crate::lines::{
    count_rows, decode_isolating, normalize_line_ends, one_batch, reject_none, LineRules, Rows,
};
use crate::values::{conversion_for, convert_rows, read_type, text_kind, Conversion};
use crate::{CodecError, Decoded};

/// Rows decoded per internal Arrow batch; chunks larger than this are concatenated.
const DECODE_BATCH_ROWS: usize = 64 * 1024;

fn text_of(bytes: &[u8], what: impl FnOnce() -> String) -> Result<String, CodecError> {
    String::from_utf8(bytes.to_vec()).map_err(|e| {
        CodecError::Schema(format!(
            "{} is not UTF-8 text (invalid byte at {}; is the file UTF-16 or binary?)",
            what(),
            e.utf8_error().valid_up_to() + 1
        ))
    })
}

/// The column names of a CSV header line (quoted names are unquoted).
///
/// Fails when the line is not UTF-8 text or holds a NUL byte (a UTF-16 or binary file).
pub fn header(line: &[u8]) -> Result<Vec<String>, CodecError> {
    if let Some(position) = memchr::memchr(0, line) {
        return Err(CodecError::Schema(format!(
            "the CSV header holds a NUL byte at byte {} (is the file UTF-16 or binary? \
             velostream reads UTF-8 text)",
            position + 1
        )));
    }
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(line);
    let mut record = ::csv::ByteRecord::new();
    match reader.read_byte_record(&mut record) {
        Ok(true) => record
            .iter()
            .map(|name| text_of(name, || "the CSV header".to_string()))
            .collect(),
        Ok(false) => Ok(Vec::new()),
        Err(e) => Err(CodecError::Schema(format!(
            "cannot read the CSV header: {e}"
        ))),
    }
}

/// Infers a schema from a CSV sample whose first line is the header.
///
/// Column names come from the header; types from at most `max_records` rows (`None`: all)
/// with the rules of [`crate::infer`]: `Int64`, `Decimal128(38, 0)`, `Float64`, `Boolean`,
/// else `Utf8` (dates and timestamps stay text unless declared). Rows with the wrong number
/// of fields or that are not text are left out (they are bad lines when decoded). Every
/// field is nullable; a column empty in the whole sample becomes `Utf8`.
pub fn infer(data: &[u8], max_records: Option<usize>) -> Result<Inferred, CodecError> {
    let data: &[u8] = &normalize_line_ends(data);
    let first_line = data.split(|&b| b == b'\n').next().unwrap_or_default();
    let first_line = first_line.strip_suffix(b"\r").unwrap_or(first_line);
    let names = header(first_line)?;
    let mut columns: Vec<ColumnStats> = names.into_iter().map(ColumnStats::new).collect();
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(data);
    let mut record = ::csv::ByteRecord::new();
    let mut records = 0;
    let limit = max_records.unwrap_or(usize::MAX);
    while records < limit {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            // A broken record: it is reported when decoded.
            Err(_) => continue,
        }
        if record.len() != columns.len() || memchr::memchr(0, record.as_slice()).is_some() {
            continue;
        }
        let Ok(fields) = record
            .iter()
            .map(std::str::from_utf8)
            .collect::<Result<Vec<&str>, _>>()
        else {
            continue;
        };
        let line = record.position().map_or(0, |p| {
            usize::try_from(p.line()).unwrap_or(1).saturating_sub(1)
        });
        records += 1;
        for (column, value) in columns.iter_mut().zip(fields) {
            if !value.is_empty() {
                column.observe(text_kind(value), line, value);
            }
        }
    }
    Ok(resolve(columns))
}

/// The schema [`infer`] infers, without its widenings.
pub fn infer_schema(data: &[u8], max_records: Option<usize>) -> Result<Schema, CodecError> {
    Ok(infer(data, max_records)?.schema)
}

fn blank(line: &[u8]) -> bool {
    line.is_empty()
}

/// Decodes header-less CSV rows with a fixed schema.
#[derive(Debug, Clone)]
pub struct CsvDecoder {
    schema: SchemaRef,
    /// Every column of the file, as text.
    read_schema: SchemaRef,
    /// The file column of each field of `schema`.
    columns: Vec<usize>,
    conversions: Vec<Option<Conversion>>,
}

impl CsvDecoder {
    /// A decoder producing batches of `schema` from files with exactly its columns, in
    /// its order.
    pub fn new(schema: SchemaRef) -> Self {
        let width = schema.fields().len();
        Self::with_columns(schema, (0..width).collect(), width)
            .expect("the identity mapping is valid")
    }

    /// A decoder producing batches of `schema` from files of `width` columns, field `i` of
    /// `schema` being file column `columns[i]`.
    pub fn with_columns(
        schema: SchemaRef,
        columns: Vec<usize>,
        width: usize,
    ) -> Result<Self, CodecError> {
        if columns.len() != schema.fields().len() {
            return Err(CodecError::Schema(format!(
                "{} column positions for {} fields",
                columns.len(),
                schema.fields().len()
            )));
        }
        let mut seen = vec![false; width];
        for &column in &columns {
            match seen.get_mut(column) {
                Some(taken) if !*taken => *taken = true,
                Some(_) => {
                    return Err(CodecError::Schema(format!(
                        "file column {column} is mapped twice"
                    )))
                }
                None => {
                    return Err(CodecError::Schema(format!(
                        "file column {column} is beyond the {width} columns of the file"
                    )))
                }
            }
        }
        let conversions: Vec<Option<Conversion>> = schema
            .fields()
            .iter()
            .map(|f| conversion_for(f.data_type(), false))
            .collect();
        let mut read_types = vec![DataType::Utf8; width];
        for (&column, conversion) in columns.iter().zip(&conversions) {
            if let Some(conversion) = conversion {
                read_types[column] = read_type(conversion);
            }
        }
        let read_schema = Arc::new(Schema::new(
            read_types
                .into_iter()
                .enumerate()
                .map(|(i, data_type)| Field::new(format!("column_{i}"), data_type, true))
                .collect::<Vec<_>>(),
        ));
        Ok(Self {
            schema,
            read_schema,
            columns,
            conversions,
        })
    }

    /// The schema of decoded batches.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Decodes a chunk of whole data lines; bad lines are isolated and reported, not fatal.
    pub fn decode(&self, data: &[u8]) -> Result<Decoded, CodecError> {
        let rules = LineRules {
            blank,
            reject: reject_none,
            prepare: |_: &[u8]| None,
        };
        decode_isolating(data, &self.schema, rules, |segment| {
            self.decode_segment(segment)
        })
    }

    fn decode_segment(&self, segment: &[u8]) -> Result<Rows, String> {
        let mut decoder = ReaderBuilder::new(Arc::clone(&self.read_schema))
            .with_header(false)
            .with_batch_size(DECODE_BATCH_ROWS)
            .with_projection(self.columns.clone())
            .build_decoder();
        let projected = Arc::new(
            self.read_schema
                .project(&self.columns)
                .map_err(|e| e.to_string())?,
        );
        let mut batches = Vec::new();
        let mut rest = segment;
        loop {
            let read = decoder.decode(rest).map_err(|e| csv_message(&e))?;
            rest = &rest[read..];
            if read == 0 {
                // Batch full, or input exhausted (an empty buffer marks the end of input).
                if let Some(batch) = decoder.flush().map_err(|e| csv_message(&e))? {
                    batches.push(batch);
                }
                if rest.is_empty() {
                    break;
                }
            }
        }
        let batch = one_batch(&projected, batches)?;
        let lines = count_rows(segment, blank);
        if batch.num_rows() != lines {
            return Err(format!(
                "{} CSV records on {} line(s): a record must be one line (a quoted field \
                 holding a line break?)",
                batch.num_rows(),
                lines
            ));
        }
        convert_rows(&batch, &self.schema, &self.conversions)
    }
}

/// Rewrites arrow-csv's messages, whose line numbers count from the decoded segment and
/// would mislead.
fn csv_message(error: &arrow::error::ArrowError) -> String {
    let message = arrow_message(error);
    if let Some(rest) = message.strip_prefix("incorrect number of fields for line ") {
        // "incorrect number of fields for line 1, expected 2 got 1"
        if let Some((_, counts)) = rest.split_once(", ") {
            return format!("incorrect number of fields: {counts}");
        }
    }
    message
}

/// Encodes a batch as CSV, with a header row first when `header` is true. Non-finite
/// doubles are written `NaN`, `inf`, `-inf`.
pub fn encode(batch: &RecordBatch, header: bool) -> Result<Vec<u8>, CodecError> {
    let mut writer = WriterBuilder::new()
        .with_header(header)
        .build(Vec::with_capacity(batch.num_rows() * 32));
    writer
        .write(batch)
        .map_err(|e| CodecError::Encode(arrow_message(&e)))?;
    Ok(writer.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;
    use arrow::datatypes::{Float64Type, Int64Type};

    const DATA: &[u8] = b"symbol,price,qty\nAAPL,10.5,3\nMSFT,20,1\n";

    fn body(data: &[u8]) -> &[u8] {
        let first = data.iter().position(|&b| b == b'\n').unwrap();
        &data[first + 1..]
    }

    #[test]
    fn infers_header_and_types() {
        let schema = infer_schema(DATA, None).unwrap();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["symbol", "price", "qty"]);
        assert_eq!(schema.field(0).data_type(), &DataType::Utf8);
        assert_eq!(schema.field(1).data_type(), &DataType::Float64);
        assert_eq!(schema.field(2).data_type(), &DataType::Int64);
    }

    #[test]
    fn a_minority_of_bad_values_keeps_a_numeric_column_numeric() {
        let mut data = b"symbol,price,qty\n".to_vec();
        for i in 0..20 {
            data.extend_from_slice(format!("S,{i}.5,{i}\n").as_bytes());
        }
        data.extend_from_slice(b"S,oops,x\n");
        let schema = infer_schema(&data, None).unwrap();
        assert_eq!(schema.field(0).data_type(), &DataType::Utf8);
        assert_eq!(schema.field(1).data_type(), &DataType::Float64);
        assert_eq!(schema.field(2).data_type(), &DataType::Int64);
        let schema = infer_schema(b"a\n1\nx\n", None).unwrap();
        assert_eq!(schema.field(0).data_type(), &DataType::Utf8);
    }

    #[test]
    fn decodes_rows() {
        let schema = Arc::new(infer_schema(DATA, None).unwrap());
        let decoded = CsvDecoder::new(schema).decode(body(DATA)).unwrap();
        assert!(decoded.bad_lines.is_empty());
        let price = decoded.batch.column(1).as_primitive::<Float64Type>();
        assert_eq!(price.values(), &[10.5, 20.0]);
    }

    #[test]
    fn lone_carriage_returns_end_lines() {
        let data = b"symbol,price,qty\rAAPL,10.5,3\rMSFT,20,1\r\rIBM,x\r";
        let schema = Arc::new(infer_schema(data, None).unwrap());
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["symbol", "price", "qty"]);
        assert_eq!(schema.field(2).data_type(), &DataType::Int64);
        let decoded = CsvDecoder::new(schema)
            .decode(b"AAPL,10.5,3\rMSFT,20,1\r\rIBM,x\r")
            .unwrap();
        let qty = decoded.batch.column(2).as_primitive::<Int64Type>();
        assert_eq!(qty.values(), &[3, 1]);
        assert_eq!(decoded.bad_lines.len(), 1);
        assert_eq!(decoded.bad_lines[0].index, 3);
        assert_eq!(decoded.bad_lines[0].raw, b"IBM,x".to_vec());
    }

    #[test]
    fn isolates_bad_rows() {
        let schema = Arc::new(infer_schema(DATA, None).unwrap());
        let data = b"A,1,1\nB,oops,2\nC,3\nD,4,4";
        let decoded = CsvDecoder::new(schema).decode(data).unwrap();
        let qty = decoded.batch.column(2).as_primitive::<Int64Type>();
        assert_eq!(qty.values(), &[1, 4]);
        let bad: Vec<usize> = decoded.bad_lines.iter().map(|b| b.index).collect();
        assert_eq!(bad, [1, 2]);
        assert_eq!(
            decoded.bad_lines[0].message,
            "type mismatch for field 'price': cannot parse value 'oops' as type 'Float64'"
        );
        assert_eq!(
            decoded.bad_lines[1].message,
            "incorrect number of fields: expected 3 got 2"
        );
        assert_eq!(decoded.bad_lines[1].raw, b"C,3".to_vec());
    }

    #[test]
    fn encode_round_trips_with_header() {
        let schema = Arc::new(infer_schema(DATA, None).unwrap());
        let decoded = CsvDecoder::new(Arc::clone(&schema))
            .decode(body(DATA))
            .unwrap();
        let bytes = encode(&decoded.batch, true).unwrap();
        assert_eq!(
            bytes,
            b"symbol,price,qty\nAAPL,10.5,3\nMSFT,20.0,1\n".to_vec()
        );
        let again = CsvDecoder::new(schema).decode(body(&bytes)).unwrap();
        assert_eq!(again.batch, decoded.batch);
        assert_eq!(
            encode(&decoded.batch, false).unwrap(),
            body(&bytes).to_vec()
        );
    }

    #[test]
    fn values_a_number_would_change_make_a_string_column() {
        let data = b"zip,plus,under,long,big,exp,n\n12345,5,1,1,1,1,1\n02134,+5,1_000,123456789012345678901234567890123456789,18446744073709551616,1e5,\n";
        let inferred = infer(data, None).unwrap();
        let types: Vec<&DataType> = inferred
            .schema
            .fields()
            .iter()
            .map(|f| f.data_type())
            .collect();
        assert_eq!(
            types,
            [
                &DataType::Utf8,
                &DataType::Utf8,
                &DataType::Utf8,
                &DataType::Utf8,
                &DataType::Decimal128(38, 0),
                &DataType::Float64,
                &DataType::Int64
            ]
        );
        let widened: Vec<(&str, usize, &str)> = inferred
            .widenings
            .iter()
            .map(|w| (w.column.as_str(), w.line, w.value.as_str()))
            .collect();
        assert_eq!(widened[0], ("zip", 2, "02134"));
        assert_eq!(widened.len(), 6);
        let decoded = CsvDecoder::new(Arc::new(inferred.schema))
            .decode(body(data))
            .unwrap();
        assert!(decoded.bad_lines.is_empty());
        let zip = decoded.batch.column(0).as_string::<i32>();
        assert_eq!(zip.value(1), "02134");
        // After the window, a value the type would change is a bad line.
        let decoded = CsvDecoder::new(Arc::new(infer_schema(b"n\n1\n", None).unwrap()))
            .decode(b"02134\n+5\n1_000\n7\n")
            .unwrap();
        assert_eq!(decoded.batch.num_rows(), 1);
        assert_eq!(decoded.bad_lines.len(), 3);
        assert_eq!(
            decoded.bad_lines[0].message,
            "type mismatch for field 'n': 02134 is not an integer"
        );
    }

    #[test]
    fn declared_columns_are_taken_by_position() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("qty", DataType::Int64, true),
            Field::new("symbol", DataType::Utf8, true),
        ]));
        let decoder = CsvDecoder::with_columns(schema, vec![2, 0], 3).unwrap();
        let decoded = decoder.decode(b"A,x,1\r\nB,y\nC,z,3.5\n\nD,w,4").unwrap();
        let qty = decoded.batch.column(0).as_primitive::<Int64Type>();
        assert_eq!(qty.values(), &[1, 4]);
        let bad: Vec<usize> = decoded.bad_lines.iter().map(|b| b.index).collect();
        assert_eq!(bad, [1, 2]);
        assert!(CsvDecoder::with_columns(trades(), vec![0, 0, 1], 3).is_err());
        assert!(CsvDecoder::with_columns(trades(), vec![0, 1, 5], 3).is_err());
    }

    fn trades() -> SchemaRef {
        Arc::new(infer_schema(DATA, None).unwrap())
    }

    #[test]
    fn headers_are_unquoted_and_must_be_text() {
        assert_eq!(header(b"a,\"b,c\",d").unwrap(), ["a", "b,c", "d"]);
        assert!(header(b"a\0,\0b")
            .unwrap_err()
            .to_string()
            .contains("NUL byte"));
        assert!(header(b"a,\xff")
            .unwrap_err()
            .to_string()
            .contains("not UTF-8"));
    }

    #[test]
    fn non_finite_doubles_are_written_nan_inf() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Float64, true)]));
        let decoded = CsvDecoder::new(schema)
            .decode(b"NaN\ninf\n-inf\n1.5\n")
            .unwrap();
        assert_eq!(
            encode(&decoded.batch, true).unwrap(),
            b"x\nNaN\ninf\n-inf\n1.5\n".to_vec()
        );
    }
}
