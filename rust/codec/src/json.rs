//! JSON Lines: decoding with a schema, schema inference from a sample, encoding.
//!
//! Encoding writes one JSON object per row and writes SQL NULL as an explicit `null`
//! (what Flink's `json` format and ksqlDB produce by default), so every output line has
//! every column of the query's output schema.
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Builder, RecordBatchOptions};
use arrow::compute::{cast_with_options, CastOptions};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::json::reader::{infer_json_schema_from_iterator, ReaderBuilder};
use arrow::json::writer::{LineDelimited, WriterBuilder};
use arrow::record_batch::RecordBatch;
use serde_json::Value;

use crate::error::arrow_message;
use crate::lines::{decode_isolating, one_batch};
use crate::{is_minority, widen_null_fields, CodecError, Decoded};

/// Rows decoded per internal Arrow batch; chunks larger than this are concatenated.
const DECODE_BATCH_ROWS: usize = 64 * 1024;

/// Infers a schema from the JSON objects of a JSON Lines sample.
///
/// Lines that are blank, not valid JSON or not objects are skipped (they are reported when
/// the data is decoded). At most `max_records` objects are read (`None`: all). Fields keep
/// the order in which they first appear; every field is nullable; a field that is null in
/// the whole sample becomes `Utf8`. An empty sample gives an empty schema.
pub fn infer_schema(data: &[u8], max_records: Option<usize>) -> Result<Schema, CodecError> {
    let mut values: Vec<Value> = data
        .split(|&b| b == b'\n')
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .filter_map(|line| match serde_json::from_slice::<Value>(line) {
            Ok(value @ Value::Object(_)) => Some(value),
            _ => None,
        })
        .take(max_records.unwrap_or(usize::MAX))
        .collect();
    drop_minority_strings(&mut values);
    let schema = infer_json_schema_from_iterator(values.iter().map(Ok))
        .map_err(|e| CodecError::Schema(arrow_message(&e)))?;
    Ok(widen_null_fields(schema))
}

/// In a field holding numbers, a minority of non-numeric strings is left out of the
/// inference (see [`crate::is_minority`]): those records become bad lines at decoding.
fn drop_minority_strings(values: &mut [Value]) {
    // field -> (numbers, non-numeric strings)
    let mut counts: std::collections::HashMap<String, (usize, usize)> =
        std::collections::HashMap::new();
    for value in values.iter() {
        if let Value::Object(map) = value {
            for (key, field) in map {
                let entry = counts.entry(key.clone()).or_default();
                match field {
                    Value::Number(_) => entry.0 += 1,
                    Value::String(s) if s.trim().parse::<f64>().is_err() => entry.1 += 1,
                    _ => {}
                }
            }
        }
    }
    let outliers: Vec<&String> = counts
        .iter()
        .filter(|(_, &(numbers, strings))| {
            numbers > 0 && strings > 0 && is_minority(strings, numbers + strings)
        })
        .map(|(key, _)| key)
        .collect();
    if outliers.is_empty() {
        return;
    }
    for value in values.iter_mut() {
        if let Value::Object(map) = value {
            for key in &outliers {
                if matches!(map.get(key.as_str()), Some(Value::String(s)) if s.trim().parse::<f64>().is_err())
                {
                    map.remove(key.as_str());
                }
            }
        }
    }
}

/// Decodes JSON Lines with a fixed schema.
///
/// Fields absent from a line are null; fields not in the schema are ignored; a JSON number
/// or boolean read into a string column keeps its text.
///
/// Integer columns are read as the numbers' text and parsed exactly here: Arrow's JSON
/// reader would silently truncate `1.5` to `1` in an int64 column, and a value must never
/// be changed silently. A number with a fraction in an integer column is a bad line.
#[derive(Debug, Clone)]
pub struct JsonDecoder {
    schema: SchemaRef,
    /// `schema` with every integer column read as Utf8.
    read_schema: SchemaRef,
    /// Indices of the integer columns of `schema`.
    integer_columns: Vec<usize>,
}

impl JsonDecoder {
    /// A decoder producing batches of `schema`.
    pub fn new(schema: SchemaRef) -> Self {
        let integer_columns: Vec<usize> = schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| f.data_type().is_integer())
            .map(|(i, _)| i)
            .collect();
        let read_fields: Vec<Field> = schema
            .fields()
            .iter()
            .map(|f| {
                if f.data_type().is_integer() {
                    f.as_ref().clone().with_data_type(DataType::Utf8)
                } else {
                    f.as_ref().clone()
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
            integer_columns,
        }
    }

    /// Parse the integer columns' text exactly (`12`, `-3`, `1e3`; not `1.5`).
    fn parse_integers(&self, batch: RecordBatch) -> Result<RecordBatch, String> {
        if self.integer_columns.is_empty() {
            return Ok(batch);
        }
        let mut columns = batch.columns().to_vec();
        for &i in &self.integer_columns {
            let field = self.schema.field(i);
            let text = columns[i].as_string::<i32>();
            let mut values = Int64Builder::with_capacity(text.len());
            for value in text.iter() {
                match value {
                    None => values.append_null(),
                    Some(v) => values.append_value(parse_integer(v).ok_or_else(|| {
                        format!(
                            "type mismatch for field '{}': {v} is not an integer",
                            field.name()
                        )
                    })?),
                }
            }
            let ints: ArrayRef = Arc::new(values.finish());
            columns[i] = if field.data_type() == &DataType::Int64 {
                ints
            } else {
                let options = CastOptions {
                    safe: false,
                    ..Default::default()
                };
                cast_with_options(&ints, field.data_type(), &options).map_err(|e| {
                    format!(
                        "type mismatch for field '{}': {}",
                        field.name(),
                        arrow_message(&e)
                    )
                })?
            };
        }
        RecordBatch::try_new_with_options(
            Arc::clone(&self.schema),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
        )
        .map_err(|e| e.to_string())
    }

    /// The schema of decoded batches.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Decodes a chunk of whole lines; bad lines are isolated and reported, not fatal.
    pub fn decode(&self, data: &[u8]) -> Result<Decoded, CodecError> {
        // Fail early on a schema the JSON reader cannot build a decoder for.
        self.builder()
            .build_decoder()
            .map_err(|e| CodecError::Schema(arrow_message(&e)))?;
        decode_isolating(data, &self.schema, |segment| self.decode_segment(segment))
    }

    fn builder(&self) -> ReaderBuilder {
        ReaderBuilder::new(Arc::clone(&self.read_schema))
            .with_batch_size(DECODE_BATCH_ROWS)
            .with_coerce_primitive(true)
    }

    fn decode_segment(&self, segment: &[u8]) -> Result<Option<RecordBatch>, String> {
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
        one_batch(&self.read_schema, batches)?
            .map(|b| self.parse_integers(b))
            .transpose()
    }
}

/// An integer written as JSON: `12`, `-3`, or an integral number in exponent form
/// (`1e3`) that fits in an i64. A fraction is not an integer.
fn parse_integer(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(v) = text.parse::<i64>() {
        return Some(v);
    }
    let f = text.parse::<f64>().ok()?;
    (f.is_finite() && f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15).then_some(f as i64)
}

fn mismatch_message(error: &arrow::error::ArrowError) -> String {
    let message = arrow_message(error);
    if let Some(value) = message.strip_prefix("expected { got ") {
        format!("not a JSON object: {value}")
    } else if message.contains("whilst decoding") {
        format!("type mismatch: {message}")
    } else {
        message
    }
}

/// Encodes a batch as JSON Lines: one object per row, `\n`-terminated, nulls as `null`.
pub fn encode(batch: &RecordBatch) -> Result<Vec<u8>, CodecError> {
    let mut writer = WriterBuilder::new()
        .with_explicit_nulls(true)
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
}
