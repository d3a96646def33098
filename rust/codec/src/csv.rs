//! CSV with a header row: schema inference, decoding of header-less chunks, encoding.
//!
//! The header is read once per file (by [`infer_schema`]); the chunks handed to
//! [`CsvDecoder::decode`] hold data rows only. A record is one line: quoted fields holding
//! newlines are not supported, because chunks and bad-line reports are line based.
use std::sync::Arc;

use arrow::csv::reader::{Format, ReaderBuilder};
use arrow::csv::WriterBuilder;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use crate::error::arrow_message;
use crate::lines::{decode_isolating, one_batch};
use crate::{is_minority, widen_null_fields, CodecError, Decoded};

/// Rows decoded per internal Arrow batch; chunks larger than this are concatenated.
const DECODE_BATCH_ROWS: usize = 64 * 1024;

/// Infers a schema from a CSV sample whose first line is the header.
///
/// Column names come from the header; types (`Int64`, `Float64`, `Boolean`, `Utf8`, dates,
/// timestamps) from at most `max_records` rows (`None`: all). Every field is nullable; a
/// column empty in the whole sample becomes `Utf8`.
pub fn infer_schema(data: &[u8], max_records: Option<usize>) -> Result<Schema, CodecError> {
    let (schema, _) = Format::default()
        .with_header(true)
        .infer_schema(data, max_records)
        .map_err(|e| CodecError::Schema(arrow_message(&e)))?;
    Ok(widen_null_fields(numeric_majority(
        schema,
        data,
        max_records,
    )))
}

/// A `Utf8` column whose sample values are numbers but for a minority (see
/// [`crate::is_minority`]) is typed `Int64` or `Float64`: the odd values become bad lines
/// when decoded instead of turning the whole column into strings.
fn numeric_majority(schema: Schema, data: &[u8], max_records: Option<usize>) -> Schema {
    let text_columns: Vec<usize> = (0..schema.fields().len())
        .filter(|&i| schema.field(i).data_type() == &DataType::Utf8)
        .collect();
    if text_columns.is_empty() {
        return schema;
    }
    // (non-empty values, integers, numbers) per text column
    let mut counts = vec![(0usize, 0usize, 0usize); text_columns.len()];
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(data);
    for record in reader
        .records()
        .take(max_records.unwrap_or(usize::MAX))
        .flatten()
    {
        for (slot, &column) in text_columns.iter().enumerate() {
            let Some(value) = record.get(column).filter(|v| !v.is_empty()) else {
                continue;
            };
            let (total, integers, numbers) = &mut counts[slot];
            *total += 1;
            if value.parse::<i64>().is_ok() {
                *integers += 1;
                *numbers += 1;
            } else if value.parse::<f64>().is_ok() {
                *numbers += 1;
            }
        }
    }
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    for (slot, &column) in text_columns.iter().enumerate() {
        let (total, integers, numbers) = counts[slot];
        let data_type = if integers > 0 && is_minority(total - integers, total) {
            DataType::Int64
        } else if numbers > 0 && is_minority(total - numbers, total) {
            DataType::Float64
        } else {
            continue;
        };
        fields[column] = fields[column].clone().with_data_type(data_type);
    }
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

/// Decodes header-less CSV rows with a fixed schema (columns by position).
#[derive(Debug, Clone)]
pub struct CsvDecoder {
    schema: SchemaRef,
}

impl CsvDecoder {
    /// A decoder producing batches of `schema`.
    pub fn new(schema: SchemaRef) -> Self {
        Self { schema }
    }

    /// The schema of decoded batches.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Decodes a chunk of whole data lines; bad lines are isolated and reported, not fatal.
    pub fn decode(&self, data: &[u8]) -> Result<Decoded, CodecError> {
        decode_isolating(data, &self.schema, |segment| self.decode_segment(segment))
    }

    fn decode_segment(&self, segment: &[u8]) -> Result<Option<RecordBatch>, String> {
        let mut decoder = ReaderBuilder::new(Arc::clone(&self.schema))
            .with_header(false)
            .with_batch_size(DECODE_BATCH_ROWS)
            .build_decoder();
        let mut batches = Vec::new();
        let mut rest = segment;
        loop {
            let read = decoder
                .decode(rest)
                .map_err(|e| csv_message(&e, &self.schema))?;
            rest = &rest[read..];
            if read == 0 {
                // Batch full, or input exhausted (an empty buffer marks the end of input).
                if let Some(batch) = decoder.flush().map_err(|e| csv_message(&e, &self.schema))? {
                    batches.push(batch);
                }
                if rest.is_empty() {
                    break;
                }
            }
        }
        one_batch(&self.schema, batches)
    }
}

/// Rewrites arrow-csv's messages, whose line numbers count from the decoded segment and
/// would mislead, into ones naming the column and the problem.
fn csv_message(error: &arrow::error::ArrowError, schema: &Schema) -> String {
    let message = arrow_message(error);
    if let Some(rest) = message.strip_prefix("incorrect number of fields for line ") {
        // "incorrect number of fields for line 1, expected 2 got 1"
        if let Some((_, counts)) = rest.split_once(", ") {
            return format!("incorrect number of fields: {counts}");
        }
    }
    if let Some(rest) = message.strip_prefix("Error while parsing value ") {
        // "Error while parsing value 'q' as type 'Int64' for column 0 at line 0. Row data: ..."
        let value_and_type = rest.split(" for column ").next().unwrap_or(rest);
        let column = rest
            .split(" for column ")
            .nth(1)
            .and_then(|tail| tail.split(' ').next())
            .and_then(|index| index.parse::<usize>().ok())
            .and_then(|index| schema.fields().get(index))
            .map(|field| format!(" for field '{}'", field.name()))
            .unwrap_or_default();
        return format!("type mismatch{column}: cannot parse value {value_and_type}");
    }
    message
}

/// Encodes a batch as CSV, with a header row first when `header` is true.
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
}
