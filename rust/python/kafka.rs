//! Kafka message batches across the boundary, one call per batch each way.
//!
//! `decode_kafka(decoder, messages, metadata=(), limits=None)` takes the list that
//! `confluent_kafka.Consumer.consume(n, timeout)` returns, reads each `Message` through its
//! methods with the GIL held (one pass, the values copied once into one buffer), then
//! decodes the values with the GIL released (`velostream_codec::messages`): one Arrow
//! batch of the good rows with `_partition`, `_offset` and the requested metadata columns,
//! the bad records, the positions read per (topic, partition), the events (messages
//! carrying an error, such as partition EOF), and counters.
//!
//! `read_kafka(...)` is the same in two steps: the reading (GIL held) now, the decoding
//! (`KafkaMessages.decode()`, GIL released) later, possibly in another thread.
//!
//! `encode_kafka(batch, key_fields=())` encodes a batch to the list of message dicts
//! `Producer.produce_batch(topic, messages)` takes: `{"value": bytes}` plus `"key": bytes`
//! when the row has a key. Values are the rows in JSON, by the encoder of the file sinks;
//! the key is a single string field's UTF-8 bytes, or a JSON object of the key fields.
//!
//! Nothing but `velostream.errors` exceptions leaves: wrong arguments and messages that
//! cannot be read are `DataError`, unknown metadata names `ConfigError`, a panic
//! `InternalError` (component `kafka`).
use std::collections::HashMap;
use std::sync::Mutex;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple, PyType};
use pyo3_arrow::PyRecordBatch;
use velostream_codec::messages::{HeadersJson, MessageBatch, Meta, MetaColumn};
use velostream_codec::{json, CodecError};

use crate::codec::PyJsonDecoder;
use crate::errors::{catch_panic, internal_error, velostream_error};

/// `confluent_kafka.Message`, looked up once.
static MESSAGE: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn data_error(py: Python<'_>, message: &str) -> PyErr {
    velostream_error(py, "DataError", message, None)
}

/// Runs `work` with the GIL released: a codec error is a `DataError`, a panic an
/// `InternalError`.
fn run<T: Send>(
    py: Python<'_>,
    work: impl FnOnce() -> Result<T, CodecError> + Send,
) -> PyResult<T> {
    match py.detach(|| catch_panic(work)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(data_error(py, &error.to_string())),
        Err(panic) => Err(internal_error(py, "kafka", &panic, true)),
    }
}

fn type_name(object: &Bound<'_, PyAny>) -> String {
    object
        .get_type()
        .name()
        .map(|name| name.to_string())
        .unwrap_or_else(|_| "?".to_string())
}

/// The requested metadata columns; `ConfigError` naming an unknown one and the allowed.
fn metadata_columns(
    py: Python<'_>,
    metadata: Option<&Bound<'_, PyAny>>,
) -> PyResult<Vec<MetaColumn>> {
    let allowed: Vec<&str> = MetaColumn::ALL.iter().map(|c| c.name()).collect();
    let Some(metadata) = metadata.filter(|m| !m.is_none()) else {
        return Ok(Vec::new());
    };
    let unknown = |name: &str| {
        let kwargs = PyDict::new(py);
        let _ = kwargs.set_item("key", "metadata");
        let _ = kwargs.set_item("value", name);
        let _ = kwargs.set_item("allowed", allowed.clone());
        velostream_error(
            py,
            "ConfigError",
            &format!(
                "{name:?} is not a Kafka metadata column: the allowed ones are {}",
                allowed.join(", ")
            ),
            Some(&kwargs),
        )
    };
    if metadata.is_instance_of::<PyString>() {
        return Err(unknown(&metadata.to_string()));
    }
    let items = metadata.try_iter().map_err(|_| {
        data_error(
            py,
            &format!(
                "metadata must be a sequence of column names, got {}",
                type_name(metadata)
            ),
        )
    })?;
    let mut columns = Vec::new();
    for item in items {
        let item = item.map_err(|e| data_error(py, &format!("metadata: {e}")))?;
        let name = item
            .cast::<PyString>()
            .ok()
            .and_then(|s| s.to_str().ok().map(str::to_string))
            .unwrap_or_else(|| item.to_string());
        columns.push(MetaColumn::from_name(&name).ok_or_else(|| unknown(&name))?);
    }
    Ok(columns)
}

/// `{(topic, partition): end_offset}` as Rust.
fn limits_map(
    py: Python<'_>,
    limits: Option<&Bound<'_, PyAny>>,
) -> PyResult<HashMap<(String, i32), i64>> {
    let Some(limits) = limits.filter(|l| !l.is_none()) else {
        return Ok(HashMap::new());
    };
    let shape = "limits must be a dict {(topic, partition): end offset}";
    let dict = limits
        .cast::<PyDict>()
        .map_err(|_| data_error(py, &format!("{shape}, got {}", type_name(limits))))?;
    let mut map = HashMap::with_capacity(dict.len());
    for (key, value) in dict.iter() {
        let entry: PyResult<((String, i32), i64)> = (|| Ok((key.extract()?, value.extract()?)))();
        let (key, value) = entry.map_err(|_| {
            data_error(
                py,
                &format!(
                    "{shape}: the entry {}: {} is not one",
                    key.repr().map_or_else(|_| "?".into(), |r| r.to_string()),
                    value.repr().map_or_else(|_| "?".into(), |r| r.to_string())
                ),
            )
        })?;
        map.insert(key, value);
    }
    Ok(map)
}

/// An event tuple `(topic, partition, offset, code, text)` of a message carrying `error`.
fn event<'py>(
    py: Python<'py>,
    message: &Bound<'py, PyAny>,
    error: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyTuple>> {
    let topic = message.call_method0(intern!(py, "topic"))?;
    let partition = message.call_method0(intern!(py, "partition"))?;
    let offset = message.call_method0(intern!(py, "offset"))?;
    let code = error.call_method0(intern!(py, "code"))?;
    let text = error.call_method0(intern!(py, "str"))?;
    PyTuple::new(py, [topic, partition, offset, code, text])
}

/// What is read of each message: the metadata columns asked for, and a scratch for headers.
struct Reader {
    key: bool,
    timestamp: bool,
    headers: bool,
    headers_json: HeadersJson,
}

impl Reader {
    /// Reads one message that is known to be a `confluent_kafka.Message` into `batch`, or
    /// into `events` when it carries an error.
    fn read<'py>(
        &mut self,
        py: Python<'py>,
        message: &Bound<'py, PyAny>,
        batch: &mut MessageBatch,
        events: &mut Vec<Bound<'py, PyTuple>>,
    ) -> PyResult<()> {
        let error = message.call_method0(intern!(py, "error"))?;
        if !error.is_none() {
            events.push(event(py, message, &error)?);
            return Ok(());
        }
        let topic = message.call_method0(intern!(py, "topic"))?;
        let topic = topic.cast::<PyString>()?.to_str()?;
        let partition: i32 = message.call_method0(intern!(py, "partition"))?.extract()?;
        let offset: i64 = message.call_method0(intern!(py, "offset"))?.extract()?;
        let Some(slot) = batch.read(topic, partition, offset) else {
            return Ok(());
        };
        let value = message.call_method0(intern!(py, "value"))?;
        if value.is_none() {
            batch.tombstone(slot);
            return Ok(());
        }
        let value = value.cast::<PyBytes>()?;
        let key = if self.key {
            Some(message.call_method0(intern!(py, "key"))?).filter(|k| !k.is_none())
        } else {
            None
        };
        let key = key.as_ref().map(|k| k.cast::<PyBytes>()).transpose()?;
        let timestamp = if self.timestamp {
            let (kind, millis): (i32, i64) =
                message.call_method0(intern!(py, "timestamp"))?.extract()?;
            // Type 0 is TIMESTAMP_NOT_AVAILABLE.
            (kind != 0).then_some(millis)
        } else {
            None
        };
        let mut headers = None;
        if self.headers {
            let list = message.call_method0(intern!(py, "headers"))?;
            if !list.is_none() {
                self.headers_json.clear();
                for pair in list.try_iter()? {
                    let (name, value): (Bound<'py, PyString>, Option<Bound<'py, PyBytes>>) =
                        pair?.extract()?;
                    self.headers_json
                        .add(name.to_str()?, value.as_ref().map(|v| v.as_bytes()));
                }
                headers = self.headers_json.finish();
            }
        }
        let meta = Meta {
            key: key.map(|k| k.as_bytes()),
            timestamp,
            headers,
        };
        batch.push(slot, offset, value.as_bytes(), meta);
        Ok(())
    }
}

/// Decodes the messages of one `Consumer.consume()` call with a `JsonDecoder`: returns
/// `(batch, bad, positions, events, counts)`.
///
/// `batch`: the good rows in message order, the decoder's columns then `_partition`
/// (int32), `_offset` (int64) and the `metadata` columns asked for, in the order `_topic`
/// (utf8), `_key` (binary, nullable), `_kafka_timestamp` (int64 epoch ms, nullable),
/// `_headers` (utf8 JSON object, nullable). `bad`: `(topic, partition, offset, reason, raw,
/// field, value)` per bad record. `positions`: `(topic, partition, first_offset,
/// last_offset, count)` per (topic, partition) read, first seen first. `events`:
/// `(topic, partition, offset, code, text)` per message carrying an error. `counts`:
/// `messages`, `tombstones`, `beyond_limit`, `bytes`.
/// Reads the messages of one `consume()` call into a [`MessageBatch`] (GIL held) and
/// returns it with the events (messages carrying an error).
fn read_messages<'py>(
    py: Python<'py>,
    decoder: &Bound<'py, PyAny>,
    messages: &Bound<'py, PyAny>,
    metadata: Option<&Bound<'py, PyAny>>,
    limits: Option<&Bound<'py, PyAny>>,
) -> PyResult<(MessageBatch, Vec<Bound<'py, PyTuple>>)> {
    let decoder = decoder.cast::<PyJsonDecoder>().map_err(|_| {
        data_error(
            py,
            &format!(
                "decoder must be a velostream._core.JsonDecoder, got {}",
                type_name(decoder)
            ),
        )
    })?;
    let columns = metadata_columns(py, metadata)?;
    let limits = limits_map(py, limits)?;
    let list = messages.cast::<PyList>().map_err(|_| {
        data_error(
            py,
            &format!(
                "messages must be the list Consumer.consume() returns, got {}",
                type_name(messages)
            ),
        )
    })?;
    let inner = decoder.get().inner().clone();
    let mut batch = run(py, move || MessageBatch::new(inner, &columns, limits))?;
    batch.reserve(list.len(), 0);
    let message_type = MESSAGE
        .import(py, "confluent_kafka", "Message")
        .map_err(|e| data_error(py, &format!("decode_kafka needs confluent_kafka: {e}")))?;
    let mut reader = Reader {
        key: batch.wants(MetaColumn::Key),
        timestamp: batch.wants(MetaColumn::Timestamp),
        headers: batch.wants(MetaColumn::Headers),
        headers_json: HeadersJson::default(),
    };
    let mut events = Vec::new();
    for (index, message) in list.iter().enumerate() {
        let is_message = message.get_type_ptr() == message_type.as_ptr().cast()
            || message.is_instance(message_type).unwrap_or(false);
        if !is_message {
            return Err(data_error(
                py,
                &format!(
                    "messages[{index}] is not a confluent_kafka.Message: its type is {}",
                    type_name(&message)
                ),
            ));
        }
        reader
            .read(py, &message, &mut batch, &mut events)
            .map_err(|e| {
                data_error(
                    py,
                    &format!("messages[{index}]: the message cannot be read: {e}"),
                )
            })?;
    }
    Ok((batch, events))
}

/// The positions of a batch as `(topic, partition, first_offset, last_offset, count)`.
fn positions_list<'py>(
    py: Python<'py>,
    topics: &[String],
    positions: &[velostream_codec::messages::Position],
) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for p in positions {
        list.append((
            topics[p.topic].as_str(),
            p.partition,
            p.first_offset,
            p.last_offset,
            p.count,
        ))?;
    }
    Ok(list)
}

/// Decodes a read batch (GIL released): `(batch, bad, positions, counts)`.
type Finished<'py> = (
    Bound<'py, PyAny>,
    Bound<'py, PyList>,
    Bound<'py, PyList>,
    Bound<'py, PyDict>,
);

fn finish<'py>(py: Python<'py>, batch: MessageBatch) -> PyResult<Finished<'py>> {
    let decoded = run(py, move || batch.decode())?;
    let topics: Vec<Bound<'py, PyString>> = decoded
        .topics
        .iter()
        .map(|t| PyString::new(py, t))
        .collect();
    let bad = PyList::empty(py);
    for record in decoded.bad {
        bad.append((
            &topics[record.topic],
            record.partition,
            record.offset,
            record.reason,
            PyBytes::new(py, &record.raw),
            record.field,
            record.value,
        ))?;
    }
    let positions = positions_list(py, &decoded.topics, &decoded.positions)?;
    let counts = PyDict::new(py);
    counts.set_item("messages", decoded.counts.messages)?;
    counts.set_item("tombstones", decoded.counts.tombstones)?;
    counts.set_item("beyond_limit", decoded.counts.beyond_limit)?;
    counts.set_item("bytes", decoded.counts.bytes)?;
    let batch = PyRecordBatch::new(decoded.batch).into_pyarrow(py)?;
    Ok((batch, bad, positions, counts))
}

/// The result tuple of `decode_kafka`.
type Decoded<'py> = (
    Bound<'py, PyAny>,
    Bound<'py, PyList>,
    Bound<'py, PyList>,
    Bound<'py, PyList>,
    Bound<'py, PyDict>,
);

/// Decodes the messages of one `Consumer.consume()` call with a `JsonDecoder`: returns
/// `(batch, bad, positions, events, counts)`.
///
/// `batch`: the good rows in message order, the decoder's columns then `_partition`
/// (int32), `_offset` (int64) and the `metadata` columns asked for, in the order `_topic`
/// (utf8), `_key` (binary, nullable), `_kafka_timestamp` (int64 epoch ms, nullable),
/// `_headers` (utf8 JSON object, nullable). `bad`: `(topic, partition, offset, reason, raw,
/// field, value)` per bad record. `positions`: `(topic, partition, first_offset,
/// last_offset, count)` per (topic, partition) read, first seen first. `events`:
/// `(topic, partition, offset, code, text)` per message carrying an error. `counts`:
/// `messages`, `tombstones`, `beyond_limit`, `bytes`.
#[pyfunction]
#[pyo3(
    signature = (decoder, messages, metadata=None, limits=None),
    text_signature = "(decoder, messages, metadata=(), limits=None)"
)]
fn decode_kafka<'py>(
    py: Python<'py>,
    decoder: &Bound<'py, PyAny>,
    messages: &Bound<'py, PyAny>,
    metadata: Option<&Bound<'py, PyAny>>,
    limits: Option<&Bound<'py, PyAny>>,
) -> PyResult<Decoded<'py>> {
    let (batch, events) = read_messages(py, decoder, messages, metadata, limits)?;
    let (batch, bad, positions, counts) = finish(py, batch)?;
    Ok((batch, bad, positions, PyList::new(py, events)?, counts))
}

/// The messages of one `consume()` call, read but not decoded yet (see `read_kafka`).
#[pyclass(frozen, module = "velostream._core", name = "KafkaMessages")]
struct PyKafkaMessages {
    batch: Mutex<Option<MessageBatch>>,
    positions: Py<PyList>,
}

#[pymethods]
impl PyKafkaMessages {
    /// `(topic, partition, first_offset, last_offset, count)` per (topic, partition) read.
    #[getter]
    fn positions(&self, py: Python<'_>) -> Py<PyList> {
        self.positions.clone_ref(py)
    }

    /// Decodes the values with the GIL released: `(batch, bad, positions, counts)` as
    /// `decode_kafka` gives them. Once only.
    fn decode<'py>(&self, py: Python<'py>) -> PyResult<Finished<'py>> {
        let batch = self
            .batch
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(|| data_error(py, "these Kafka messages were decoded already"))?;
        finish(py, batch)
    }
}

/// Reads the messages of one `Consumer.consume()` call (GIL held: the message methods are
/// Python calls) without decoding their JSON: returns `(messages, events)`, where
/// `messages.decode()` does the rest with the GIL released, in any thread. A runtime
/// reads in the consuming thread and decodes in another, so that decoding overlaps the
/// next `consume()`. Arguments and results as `decode_kafka`.
#[pyfunction]
#[pyo3(
    signature = (decoder, messages, metadata=None, limits=None),
    text_signature = "(decoder, messages, metadata=(), limits=None)"
)]
fn read_kafka<'py>(
    py: Python<'py>,
    decoder: &Bound<'py, PyAny>,
    messages: &Bound<'py, PyAny>,
    metadata: Option<&Bound<'py, PyAny>>,
    limits: Option<&Bound<'py, PyAny>>,
) -> PyResult<(PyKafkaMessages, Bound<'py, PyList>)> {
    let (batch, events) = read_messages(py, decoder, messages, metadata, limits)?;
    let positions = positions_list(py, batch.topics(), batch.positions())?.unbind();
    Ok((
        PyKafkaMessages {
            batch: Mutex::new(Some(batch)),
            positions,
        },
        PyList::new(py, events)?,
    ))
}

/// The key of each row: none, a string column's text, or a JSON object per row.
enum Keys {
    None,
    Text(arrow::array::ArrayRef),
    Json(Vec<u8>),
}

/// The column names of `key_fields` (a sequence of str).
fn key_names(py: Python<'_>, key_fields: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<String>> {
    let Some(fields) = key_fields.filter(|k| !k.is_none()) else {
        return Ok(Vec::new());
    };
    let wrong = || {
        data_error(
            py,
            &format!(
                "key_fields must be a sequence of column names, got {}",
                type_name(fields)
            ),
        )
    };
    if fields.is_instance_of::<PyString>() {
        return Err(wrong());
    }
    let mut names = Vec::new();
    for item in fields.try_iter().map_err(|_| wrong())? {
        let name: String = item.and_then(|i| i.extract()).map_err(|_| wrong())?;
        names.push(name);
    }
    Ok(names)
}

/// Splits `text` at its `\n`s: the lines without them.
fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    memchr::memchr_iter(b'\n', text).map(move |end| {
        let line = &text[start..end];
        start = end + 1;
        line
    })
}

/// Encodes a batch to the messages of `Producer.produce_batch(topic, messages)`: one dict
/// per row, `{"value": JSON bytes}` and `"key": bytes` when `key_fields` give the row a
/// key (a single string field: its UTF-8 bytes, none when null; otherwise a JSON object of
/// the key fields).
#[pyfunction]
#[pyo3(
    signature = (batch, key_fields=None),
    text_signature = "(batch, key_fields=())"
)]
fn encode_kafka<'py>(
    py: Python<'py>,
    batch: &Bound<'py, PyAny>,
    key_fields: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyList>> {
    let batch: RecordBatch = batch
        .extract::<PyRecordBatch>()
        .map_err(|e| {
            data_error(
                py,
                &format!(
                    "encode_kafka takes an Arrow record batch, got {}: {e}",
                    type_name(batch)
                ),
            )
        })?
        .into_inner();
    let names = key_names(py, key_fields)?;
    let schema = batch.schema();
    let mut indices = Vec::with_capacity(names.len());
    for name in &names {
        let index = schema.index_of(name).map_err(|_| {
            let kwargs = PyDict::new(py);
            let _ = kwargs.set_item("field", name);
            let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            velostream_error(
                py,
                "DataError",
                &format!(
                    "the key field {name:?} is not a column of the batch (columns: {})",
                    columns.join(", ")
                ),
                Some(&kwargs),
            )
        })?;
        indices.push(index);
    }
    let (values, keys) = run(py, || {
        let values = json::encode(&batch)?;
        let keys = match indices.as_slice() {
            [] => Keys::None,
            [index]
                if matches!(
                    schema.field(*index).data_type(),
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                ) =>
            {
                Keys::Text(batch.column(*index).clone())
            }
            _ => Keys::Json(json::encode(&batch.project(&indices)?)?),
        };
        Ok((values, keys))
    })?;

    let value_name = intern!(py, "value");
    let key_name = intern!(py, "key");
    let mut json_keys = match &keys {
        Keys::Json(text) => Some(lines(text)),
        _ => None,
    };
    let mut messages = Vec::with_capacity(batch.num_rows());
    for (row, value) in lines(&values).enumerate() {
        let message = PyDict::new(py);
        message.set_item(value_name, PyBytes::new(py, value))?;
        let key: Option<&[u8]> = match &keys {
            Keys::None => None,
            Keys::Json(_) => json_keys.as_mut().and_then(Iterator::next),
            Keys::Text(column) => text_at(column.as_ref(), row),
        };
        if let Some(key) = key {
            message.set_item(key_name, PyBytes::new(py, key))?;
        }
        messages.push(message);
    }
    let messages = PyList::new(py, messages)?;
    Ok(messages)
}

/// The UTF-8 bytes of a string column's `row`, `None` when null.
fn text_at(column: &dyn Array, row: usize) -> Option<&[u8]> {
    if column.is_null(row) {
        return None;
    }
    let text = match column.data_type() {
        DataType::Utf8 => column.as_string::<i32>().value(row),
        DataType::LargeUtf8 => column.as_string::<i64>().value(row),
        _ => column.as_string_view().value(row),
    };
    Some(text.as_bytes())
}

/// Adds the Kafka functions to `velostream._core`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(decode_kafka, m)?)?;
    m.add_function(wrap_pyfunction!(read_kafka, m)?)?;
    m.add_class::<PyKafkaMessages>()?;
    m.add_function(wrap_pyfunction!(encode_kafka, m)?)?;
    Ok(())
}
