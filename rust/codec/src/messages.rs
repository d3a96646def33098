//! Kafka message values -> one Arrow batch per consumed batch of messages.
//!
//! A source hands every message of a `consume()` call to a [`MessageBatch`]: its
//! (topic, partition, offset), and for a message with a value the value bytes and the
//! metadata asked for (key, Kafka timestamp, headers). The values are copied once, into
//! one buffer, one line per message; [`MessageBatch::decode`] then decodes the whole
//! buffer with a [`JsonDecoder`] in one call and appends the columns `_partition`,
//! `_offset` and the requested metadata columns to the good rows.
//!
//! **One message is exactly one line.** Before decoding, each value is checked so that it
//! cannot end or start a line of its own, or run into the next message's line:
//!
//! - an empty or whitespace-only value is a bad record (`empty message`);
//! - a raw `\n` or `\r` outside JSON strings is whitespace: it is replaced by a space; inside
//!   a string it makes the value invalid JSON (a bad record, never decoded);
//! - a value that ends inside a string or with brackets left open (or closes more than it
//!   opens) is invalid JSON: decoded next to the following line, it could otherwise merge
//!   with it into one record;
//!
//! a rejected value is blanked in the buffer, so the line indexes of the decoder's bad
//! lines are message indexes, and the decoder's own checks (text that is not UTF-8 or holds
//! NUL, invalid JSON, values that do not fit their column) name exactly one message each.
//!
//! Every message read is accounted for: a good row, a bad record, a tombstone (a value of
//! null, skipped), or beyond the caller's end offset for its partition (skipped, not
//! decoded, not part of the positions). The positions say, per (topic, partition) in the
//! order first seen, the lowest and highest offset read and how many messages.
use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, Int32Array, Int64Array, Int64Builder, StringArray, StringBuilder,
    UInt32Array,
};
use arrow::compute::take;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;

use crate::json::JsonDecoder;
use crate::lines::not_text;
use crate::CodecError;

/// The column holding each row's partition (`int32`, never null).
pub const PARTITION: &str = "_partition";
/// The column holding each row's offset (`int64`, never null).
pub const OFFSET: &str = "_offset";

/// Metadata columns a caller may ask for, after `_partition` and `_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MetaColumn {
    /// `_topic`: the topic (`utf8`, never null).
    Topic,
    /// `_key`: the message key (`binary`, null when the message has none).
    Key,
    /// `_kafka_timestamp`: the Kafka timestamp, epoch milliseconds (`int64`, null when the
    /// message has none).
    Timestamp,
    /// `_headers`: the headers as a JSON object text (`utf8`, null when there are none).
    Headers,
}

impl MetaColumn {
    /// Every metadata column, in the order they are appended.
    pub const ALL: [MetaColumn; 4] = [Self::Topic, Self::Key, Self::Timestamp, Self::Headers];

    /// The column's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Topic => "_topic",
            Self::Key => "_key",
            Self::Timestamp => "_kafka_timestamp",
            Self::Headers => "_headers",
        }
    }

    /// The column named `name`, if it is one.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    fn field(self) -> Field {
        match self {
            Self::Topic => Field::new(self.name(), DataType::Utf8, false),
            Self::Key => Field::new(self.name(), DataType::Binary, true),
            Self::Timestamp => Field::new(self.name(), DataType::Int64, true),
            Self::Headers => Field::new(self.name(), DataType::Utf8, true),
        }
    }
}

/// What was read of one (topic, partition) in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// Index of the topic in [`DecodedMessages::topics`].
    pub topic: usize,
    /// The partition.
    pub partition: i32,
    /// The lowest offset read.
    pub first_offset: i64,
    /// The highest offset read.
    pub last_offset: i64,
    /// How many messages were read (good, bad and tombstones).
    pub count: usize,
    /// Messages at this offset or beyond are skipped (`None`: no limit).
    limit: Option<i64>,
}

/// The counters of a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Messages read: good + bad + tombstones (neither events nor beyond the limit).
    pub messages: usize,
    /// Messages with a null value (skipped).
    pub tombstones: usize,
    /// Messages at or beyond their partition's limit (skipped, not read).
    pub beyond_limit: usize,
    /// Payload bytes of the messages read.
    pub bytes: usize,
}

/// The metadata of one message, as far as it was asked for.
#[derive(Debug, Clone, Copy, Default)]
pub struct Meta<'a> {
    /// The key, `None` when the message has none.
    pub key: Option<&'a [u8]>,
    /// The Kafka timestamp in epoch milliseconds, `None` when not available.
    pub timestamp: Option<i64>,
    /// The headers as JSON object text ([`HeadersJson`]), `None` when there are none.
    pub headers: Option<&'a str>,
}

/// A message that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadMessage {
    /// Index of its topic in [`DecodedMessages::topics`].
    pub topic: usize,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// What is wrong with it.
    pub reason: String,
    /// The value, exactly as consumed.
    pub raw: Vec<u8>,
    /// The field whose value does not fit, when one value is the problem.
    pub field: Option<String>,
    /// That value, as written.
    pub value: Option<String>,
}

/// The result of [`MessageBatch::decode`].
#[derive(Debug, Clone)]
pub struct DecodedMessages {
    /// The good rows in message order: the decoder's columns, `_partition`, `_offset`, then
    /// the requested metadata columns.
    pub batch: RecordBatch,
    /// The bad records, in message order.
    pub bad: Vec<BadMessage>,
    /// Per (topic, partition), in the order first seen.
    pub positions: Vec<Position>,
    /// The topic names the other fields index.
    pub topics: Vec<String>,
    /// The counters.
    pub counts: Counts,
}

/// Headers as the text of a JSON object: name -> value as text, `null` for a header
/// without a value. Every header is written, in order, a repeated name as often as it
/// comes (a JSON reader that keeps one value per name keeps the last). Bytes that are not
/// UTF-8 are replaced by U+FFFD (the exact bytes are not kept).
#[derive(Debug, Default)]
pub struct HeadersJson {
    text: String,
    members: usize,
}

impl HeadersJson {
    /// Starts a new object.
    pub fn clear(&mut self) {
        self.text.clear();
        self.members = 0;
    }

    /// Adds one header.
    pub fn add(&mut self, name: &str, value: Option<&[u8]>) {
        self.text.push(if self.members == 0 { '{' } else { ',' });
        self.members += 1;
        write_json_string(&mut self.text, name);
        self.text.push(':');
        match value {
            None => self.text.push_str("null"),
            Some(bytes) => write_json_string(&mut self.text, &String::from_utf8_lossy(bytes)),
        }
    }

    /// The object's text, `None` when no header was added.
    pub fn finish(&mut self) -> Option<&str> {
        if self.members == 0 {
            return None;
        }
        self.text.push('}');
        Some(&self.text)
    }
}

/// Appends `text` as a JSON string literal.
fn write_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The messages of one consumed batch, gathered for decoding.
#[derive(Debug)]
pub struct MessageBatch {
    decoder: JsonDecoder,
    columns: Vec<MetaColumn>,
    topics: Vec<String>,
    positions: Vec<Position>,
    limits: HashMap<(String, i32), i64>,
    /// Position index of the previous message (messages come in runs of one partition).
    last: Option<usize>,
    counts: Counts,
    /// The values, each followed by `\n`.
    data: Vec<u8>,
    /// Per value: where its line ends in `data` (at its `\n`).
    ends: Vec<usize>,
    /// Per value: its position index and offset.
    slots: Vec<u32>,
    offsets: Vec<i64>,
    keys: Option<BinaryBuilder>,
    timestamps: Option<Int64Builder>,
    headers: Option<StringBuilder>,
}

impl MessageBatch {
    /// A batch to be decoded by `decoder`, with the metadata `columns` appended to its rows,
    /// skipping the messages of a (topic, partition) at or beyond its offset in `limits`.
    ///
    /// Fails when the decoder's schema already has a column of the name of one to append.
    pub fn new(
        decoder: JsonDecoder,
        columns: &[MetaColumn],
        limits: HashMap<(String, i32), i64>,
    ) -> Result<Self, CodecError> {
        let mut columns = columns.to_vec();
        columns.sort();
        columns.dedup();
        let added = [PARTITION, OFFSET]
            .into_iter()
            .chain(columns.iter().map(|c| c.name()));
        for name in added {
            if decoder.schema().field_with_name(name).is_ok() {
                return Err(CodecError::Schema(format!(
                    "the schema has a field {name:?}, the name of a column velostream adds to \
                     Kafka records: rename the field"
                )));
            }
        }
        let wants = |column| columns.contains(&column);
        Ok(Self {
            keys: wants(MetaColumn::Key).then(BinaryBuilder::new),
            timestamps: wants(MetaColumn::Timestamp).then(Int64Builder::new),
            headers: wants(MetaColumn::Headers).then(StringBuilder::new),
            decoder,
            columns,
            topics: Vec::new(),
            positions: Vec::new(),
            limits,
            last: None,
            counts: Counts::default(),
            data: Vec::new(),
            ends: Vec::new(),
            slots: Vec::new(),
            offsets: Vec::new(),
        })
    }

    /// The (topic, partition) runs read so far, first seen first (topics by index into
    /// [`MessageBatch::topics`]).
    pub fn positions(&self) -> &[Position] {
        &self.positions
    }

    /// The topics read so far.
    pub fn topics(&self) -> &[String] {
        &self.topics
    }

    /// Whether `column` is appended (so its metadata is worth reading).
    pub fn wants(&self, column: MetaColumn) -> bool {
        self.columns.contains(&column)
    }

    /// Reserves room for `messages` more messages of `bytes` value bytes in all.
    pub fn reserve(&mut self, messages: usize, bytes: usize) {
        self.data.reserve(bytes + messages);
        self.ends.reserve(messages);
        self.slots.reserve(messages);
        self.offsets.reserve(messages);
    }

    /// Records that a message of (`topic`, `partition`) at `offset` was consumed: returns
    /// its slot for [`push`](Self::push) or [`tombstone`](Self::tombstone), or `None` when
    /// the offset is at or beyond the partition's limit (the message is counted as such and
    /// must be skipped).
    pub fn read(&mut self, topic: &str, partition: i32, offset: i64) -> Option<usize> {
        let slot = match self.last {
            Some(slot) if self.is_slot(slot, topic, partition) => slot,
            _ => self.slot(topic, partition),
        };
        self.last = Some(slot);
        let position = &mut self.positions[slot];
        if position.limit.is_some_and(|limit| offset >= limit) {
            self.counts.beyond_limit += 1;
            return None;
        }
        if position.count == 0 {
            position.first_offset = offset;
            position.last_offset = offset;
        } else {
            position.first_offset = position.first_offset.min(offset);
            position.last_offset = position.last_offset.max(offset);
        }
        position.count += 1;
        self.counts.messages += 1;
        Some(slot)
    }

    fn is_slot(&self, slot: usize, topic: &str, partition: i32) -> bool {
        let position = &self.positions[slot];
        position.partition == partition && self.topics[position.topic] == topic
    }

    fn slot(&mut self, topic: &str, partition: i32) -> usize {
        if let Some(slot) =
            (0..self.positions.len()).find(|&slot| self.is_slot(slot, topic, partition))
        {
            return slot;
        }
        let topic_index = match self.topics.iter().position(|t| t == topic) {
            Some(index) => index,
            None => {
                self.topics.push(topic.to_string());
                self.topics.len() - 1
            }
        };
        let limit = self.limits.get(&(topic.to_string(), partition)).copied();
        self.positions.push(Position {
            topic: topic_index,
            partition,
            first_offset: 0,
            last_offset: 0,
            count: 0,
            limit,
        });
        self.positions.len() - 1
    }

    /// A message read at `slot` whose value is null: skipped, counted.
    pub fn tombstone(&mut self, _slot: usize) {
        self.counts.tombstones += 1;
    }

    /// A message read at `slot` with its value and metadata, to be decoded.
    pub fn push(&mut self, slot: usize, offset: i64, value: &[u8], meta: Meta<'_>) {
        self.counts.bytes += value.len();
        self.data.extend_from_slice(value);
        self.ends.push(self.data.len());
        self.data.push(b'\n');
        self.slots
            .push(u32::try_from(slot).expect("fewer than 2^32 partitions"));
        self.offsets.push(offset);
        if let Some(keys) = &mut self.keys {
            keys.append_option(meta.key);
        }
        if let Some(timestamps) = &mut self.timestamps {
            timestamps.append_option(meta.timestamp);
        }
        if let Some(headers) = &mut self.headers {
            headers.append_option(meta.headers);
        }
    }

    /// Decodes every value pushed: the good rows with their columns, the bad records, the
    /// positions and the counters.
    pub fn decode(mut self) -> Result<DecodedMessages, CodecError> {
        let lines = self.ends.len();
        // Values rejected before decoding (index, reason), and the original bytes of every
        // value changed in the buffer (newlines made spaces, or blanked), both by index.
        let mut rejected: Vec<(usize, String)> = Vec::new();
        let mut originals: Vec<(usize, Vec<u8>)> = Vec::new();
        let mut start = 0;
        for (index, &end) in self.ends.iter().enumerate() {
            let line = &mut self.data[start..end];
            match one_line(line) {
                Ok(false) => {}
                Ok(true) => {
                    originals.push((index, line.to_vec()));
                    // Every raw newline left is outside strings: whitespace.
                    for byte in line.iter_mut() {
                        if matches!(*byte, b'\n' | b'\r') {
                            *byte = b' ';
                        }
                    }
                }
                Err(reason) => {
                    let reason = not_text(line).unwrap_or_else(|| reason.to_string());
                    originals.push((index, line.to_vec()));
                    // Blank: the decoder skips it, and every other line keeps its index.
                    line.fill(b' ');
                    rejected.push((index, reason));
                }
            }
            start = end + 1;
        }
        let decoded = self.decoder.decode(&self.data)?;

        // Bad records of both kinds, in message order, with their bytes as consumed.
        let original = |index: usize| -> Vec<u8> {
            match originals.binary_search_by_key(&index, |(i, _)| *i) {
                Ok(found) => originals[found].1.clone(),
                Err(_) => {
                    let start = if index == 0 {
                        0
                    } else {
                        self.ends[index - 1] + 1
                    };
                    self.data[start..self.ends[index]].to_vec()
                }
            }
        };
        let mut bad: Vec<(usize, BadMessage)> = Vec::with_capacity(rejected.len());
        let at = |index: usize, reason: String, field, value| {
            let slot = self.slots[index] as usize;
            BadMessage {
                topic: self.positions[slot].topic,
                partition: self.positions[slot].partition,
                offset: self.offsets[index],
                reason,
                raw: original(index),
                field,
                value,
            }
        };
        for (index, reason) in rejected {
            bad.push((index, at(index, reason, None, None)));
        }
        for line in decoded.bad_lines {
            bad.push((
                line.index,
                at(line.index, line.message, line.field, line.value),
            ));
        }
        bad.sort_by_key(|(index, _)| *index);

        // The message of each good row: every message that is not bad, in order.
        let mut rows: Vec<u32> = Vec::with_capacity(lines - bad.len());
        let mut bad_indexes = bad.iter().map(|(index, _)| *index).peekable();
        for index in 0..lines {
            if bad_indexes.next_if_eq(&index).is_some() {
                continue;
            }
            rows.push(u32::try_from(index).expect("fewer than 2^32 messages"));
        }
        assert_eq!(
            rows.len(),
            decoded.batch.num_rows(),
            "each message must decode to one row or one bad record"
        );
        let batch = self.with_columns(decoded.batch, &rows)?;
        Ok(DecodedMessages {
            batch,
            bad: bad.into_iter().map(|(_, b)| b).collect(),
            positions: self.positions,
            topics: self.topics,
            counts: self.counts,
        })
    }

    /// `batch` (one row per entry of `rows`) with `_partition`, `_offset` and the requested
    /// metadata columns of those messages.
    fn with_columns(
        &mut self,
        batch: RecordBatch,
        rows: &[u32],
    ) -> Result<RecordBatch, CodecError> {
        let every = rows.len() == self.ends.len();
        let indices = UInt32Array::from(rows.to_vec());
        let pick = |array: ArrayRef| -> Result<ArrayRef, CodecError> {
            Ok(if every {
                array
            } else {
                take(&array, &indices, None)?
            })
        };
        let positions = &self.positions;
        let slot_of = |row: &u32| &positions[self.slots[*row as usize] as usize];
        let mut fields: Vec<Field> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let mut arrays: Vec<ArrayRef> = batch.columns().to_vec();
        fields.push(Field::new(PARTITION, DataType::Int32, false));
        arrays.push(Arc::new(Int32Array::from_iter_values(
            rows.iter().map(|row| slot_of(row).partition),
        )));
        fields.push(Field::new(OFFSET, DataType::Int64, false));
        arrays.push(Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|row| self.offsets[*row as usize]),
        )));
        for &column in &self.columns {
            let array: ArrayRef = match column {
                MetaColumn::Topic => Arc::new(StringArray::from_iter_values(
                    rows.iter()
                        .map(|row| self.topics[slot_of(row).topic].as_str()),
                )),
                MetaColumn::Key => pick(Arc::new(
                    self.keys.as_mut().expect("keys are gathered").finish(),
                ))?,
                MetaColumn::Timestamp => pick(Arc::new(
                    self.timestamps
                        .as_mut()
                        .expect("timestamps are gathered")
                        .finish(),
                ))?,
                MetaColumn::Headers => pick(Arc::new(
                    self.headers
                        .as_mut()
                        .expect("headers are gathered")
                        .finish(),
                ))?,
            };
            fields.push(column.field());
            arrays.push(array);
        }
        let schema = Schema::new_with_metadata(fields, batch.schema().metadata().clone());
        Ok(RecordBatch::try_new(Arc::new(schema), arrays)?)
    }
}

/// Whether `line` (one message value) can be decoded as one line of JSON Lines once its raw
/// `\n` and `\r` are made spaces (`Ok(true)`: it has some, all outside strings), or why it
/// cannot be one JSON line.
fn one_line(line: &[u8]) -> Result<bool, &'static str> {
    if line
        .iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        return Err("empty message");
    }
    let (mut in_string, mut escaped, mut depth) = (false, false, 0i64);
    let mut newlines = false;
    for &byte in line {
        if in_string {
            match byte {
                b'\n' | b'\r' => return Err("invalid JSON: raw control character in a string"),
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth -= 1;
                if depth < 0 {
                    return Err("invalid JSON: a closing bracket without an opening one");
                }
            }
            b'\n' | b'\r' => newlines = true,
            _ => {}
        }
    }
    if in_string {
        return Err("invalid JSON: truncated record (a string is not closed)");
    }
    if depth > 0 {
        return Err("invalid JSON: truncated record (a bracket is not closed)");
    }
    Ok(newlines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;
    use arrow::datatypes::{Int32Type, Int64Type};

    fn decoder() -> JsonDecoder {
        JsonDecoder::new(Arc::new(Schema::new(vec![
            Field::new("s", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ])))
    }

    fn batch(columns: &[MetaColumn]) -> MessageBatch {
        MessageBatch::new(decoder(), columns, HashMap::new()).unwrap()
    }

    /// Pushes `values` as offsets 0.. of partition 0 of topic "t" (None: a tombstone).
    fn push_all(batch: &mut MessageBatch, values: &[Option<&[u8]>]) {
        for (offset, value) in values.iter().enumerate() {
            let slot = batch.read("t", 0, offset as i64).unwrap();
            match value {
                Some(value) => batch.push(slot, offset as i64, value, Meta::default()),
                None => batch.tombstone(slot),
            }
        }
    }

    fn offsets(decoded: &DecodedMessages) -> Vec<i64> {
        let column = decoded.batch.column_by_name(OFFSET).unwrap();
        column.as_primitive::<Int64Type>().values().to_vec()
    }

    fn bad(decoded: &DecodedMessages) -> Vec<(i64, &str)> {
        decoded
            .bad
            .iter()
            .map(|b| (b.offset, b.reason.as_str()))
            .collect()
    }

    #[test]
    fn each_message_is_one_row_or_one_bad_record() {
        let mut messages = batch(&[]);
        push_all(
            &mut messages,
            &[
                Some(b"{\"s\": \"a\", \"n\": 1}"),
                None,
                Some(b""),
                Some(b" \t\r\n"),
                Some(b"{\"s\":\n\"b\",\r\n\"n\": 2}"),
                Some(b"{\"s\": \"x\ny\"}"),
                Some(b"not json"),
                Some(b"{\"n\": \"abc\"}"),
                Some(b"{\"s\": \"\xff\"}"),
                Some(b"{\"s\": \"c\"}"),
            ],
        );
        let decoded = messages.decode().unwrap();
        assert_eq!(offsets(&decoded), [0, 4, 9]);
        let s = decoded.batch.column(0).as_string::<i32>();
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            [Some("a"), Some("b"), Some("c")]
        );
        let bad = bad(&decoded);
        assert_eq!(
            bad.iter().map(|b| b.0).collect::<Vec<_>>(),
            [2, 3, 5, 6, 7, 8]
        );
        assert_eq!(bad[0].1, "empty message");
        assert_eq!(bad[1].1, "empty message");
        assert_eq!(bad[2].1, "invalid JSON: raw control character in a string");
        assert!(bad[3].1.starts_with("invalid JSON"), "{}", bad[3].1);
        assert!(bad[4].1.contains("type mismatch"), "{}", bad[4].1);
        assert!(bad[5].1.contains("invalid UTF-8"), "{}", bad[5].1);
        // Raw bytes exactly as consumed, newlines included.
        assert_eq!(decoded.bad[1].raw, b" \t\r\n");
        assert_eq!(decoded.bad[2].raw, b"{\"s\": \"x\ny\"}");
        assert_eq!(decoded.bad[5].raw, b"{\"s\": \"\xff\"}");
        assert_eq!(
            decoded.counts,
            Counts {
                messages: 10,
                tombstones: 1,
                beyond_limit: 0,
                bytes: decoded.counts.bytes,
            }
        );
        assert_eq!(decoded.positions.len(), 1);
        let p = &decoded.positions[0];
        assert_eq!((p.first_offset, p.last_offset, p.count), (0, 9, 10));
    }

    #[test]
    fn a_field_that_does_not_fit_names_field_and_value() {
        let mut messages = batch(&[]);
        push_all(&mut messages, &[Some(b"{\"n\": 1.5}"), Some(b"{\"n\": 2}")]);
        let decoded = messages.decode().unwrap();
        assert_eq!(offsets(&decoded), [1]);
        assert_eq!(decoded.bad[0].field.as_deref(), Some("n"));
        assert_eq!(decoded.bad[0].value.as_deref(), Some("1.5"));
    }

    #[test]
    fn values_that_could_run_into_the_next_line_are_bad_on_their_own() {
        // Each of these, put on a line of its own next to the following one, could make
        // one record of two lines, so that counting values per line would not notice.
        let mut messages = batch(&[]);
        push_all(
            &mut messages,
            &[
                Some(b"{\"n\": 1} {\"n\":"),
                Some(b"2}"),
                Some(b"{\"s\": \"a"),
                Some(b"\"}"),
                Some(b"]"),
                Some(b"{\"n\": 3}"),
            ],
        );
        let decoded = messages.decode().unwrap();
        assert_eq!(offsets(&decoded), [5]);
        let bad = bad(&decoded);
        assert_eq!(bad.iter().map(|b| b.0).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
        assert!(bad[0].1.contains("bracket is not closed"));
        assert!(bad[2].1.contains("string is not closed"));
        assert!(bad[4].1.contains("closing bracket"));
    }

    #[test]
    fn text_problems_win_over_structure_in_the_reason() {
        let mut messages = batch(&[]);
        push_all(&mut messages, &[Some(b"{\"s\": \"\0"), Some(b"\xfe{")]);
        let decoded = messages.decode().unwrap();
        let bad = bad(&decoded);
        assert!(bad[0].1.contains("NUL byte"), "{}", bad[0].1);
        assert!(bad[1].1.contains("invalid UTF-8"), "{}", bad[1].1);
    }

    #[test]
    fn limits_skip_and_positions_follow_partitions_in_first_seen_order() {
        let limits = HashMap::from([(("a".to_string(), 1), 11)]);
        let mut messages = MessageBatch::new(decoder(), &[MetaColumn::Topic], limits).unwrap();
        let value: &[u8] = b"{\"n\": 1}";
        for (topic, partition, offset) in [
            ("a", 1, 10),
            ("b", 0, 5),
            ("a", 1, 11),
            ("a", 0, 3),
            ("b", 0, 6),
            ("a", 1, 12),
        ] {
            if let Some(slot) = messages.read(topic, partition, offset) {
                messages.push(slot, offset, value, Meta::default());
            }
        }
        let decoded = messages.decode().unwrap();
        assert_eq!(decoded.counts.beyond_limit, 2);
        assert_eq!(decoded.counts.messages, 4);
        let positions: Vec<(&str, i32, i64, i64, usize)> = decoded
            .positions
            .iter()
            .map(|p| {
                let topic = decoded.topics[p.topic].as_str();
                (topic, p.partition, p.first_offset, p.last_offset, p.count)
            })
            .collect();
        assert_eq!(
            positions,
            [("a", 1, 10, 10, 1), ("b", 0, 5, 6, 2), ("a", 0, 3, 3, 1)]
        );
        let topic = decoded
            .batch
            .column_by_name("_topic")
            .unwrap()
            .as_string::<i32>();
        assert_eq!(
            topic.iter().flatten().collect::<Vec<_>>(),
            ["a", "b", "a", "b"]
        );
        let partition = decoded.batch.column_by_name(PARTITION).unwrap();
        assert_eq!(
            partition.as_primitive::<Int32Type>().values(),
            &[1, 0, 0, 0]
        );
        assert_eq!(offsets(&decoded), [10, 5, 3, 6]);
    }

    #[test]
    fn metadata_columns_follow_the_good_rows() {
        let mut messages = batch(&[MetaColumn::Headers, MetaColumn::Key, MetaColumn::Timestamp]);
        let mut headers = HeadersJson::default();
        headers.add("a\"b", Some(b"x\n\xff"));
        headers.add("n", None);
        let text = headers.finish().unwrap().to_string();
        assert_eq!(text, "{\"a\\\"b\":\"x\\n\u{fffd}\",\"n\":null}");
        headers.clear();
        assert!(headers.finish().is_none());
        let rows: [(&[u8], Meta); 3] = [
            (
                b"{\"n\": 1}",
                Meta {
                    key: Some(b"k1"),
                    timestamp: Some(7),
                    headers: Some(&text),
                },
            ),
            (b"bad", Meta::default()),
            (b"{\"n\": 3}", Meta::default()),
        ];
        for (offset, (value, meta)) in rows.into_iter().enumerate() {
            let slot = messages.read("t", 2, offset as i64).unwrap();
            messages.push(slot, offset as i64, value, meta);
        }
        let decoded = messages.decode().unwrap();
        let schema = decoded.batch.schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            [
                "s",
                "n",
                "_partition",
                "_offset",
                "_key",
                "_kafka_timestamp",
                "_headers"
            ]
        );
        let key = decoded.batch.column(4).as_binary::<i32>();
        assert_eq!(key.iter().collect::<Vec<_>>(), [Some(&b"k1"[..]), None]);
        let ts = decoded.batch.column(5).as_primitive::<Int64Type>();
        assert_eq!(ts.iter().collect::<Vec<_>>(), [Some(7), None]);
        let h = decoded.batch.column(6).as_string::<i32>();
        assert_eq!(h.iter().collect::<Vec<_>>(), [Some(text.as_str()), None]);
        let parsed: serde_json::Value = serde_json::from_str(h.value(0)).unwrap();
        assert_eq!(parsed["n"], serde_json::Value::Null);
    }

    #[test]
    fn a_schema_field_named_like_an_added_column_is_refused() {
        let decoder = JsonDecoder::new(Arc::new(Schema::new(vec![Field::new(
            "_key",
            DataType::Utf8,
            true,
        )])));
        let error = MessageBatch::new(decoder.clone(), &[MetaColumn::Key], HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(error.contains("\"_key\""), "{error}");
        assert!(MessageBatch::new(decoder, &[MetaColumn::Topic], HashMap::new()).is_ok());
        assert_eq!(MetaColumn::from_name("_headers"), Some(MetaColumn::Headers));
        assert_eq!(MetaColumn::from_name("_offset"), None);
    }

    #[test]
    fn an_empty_batch_decodes_to_no_rows() {
        let decoded = batch(&[MetaColumn::Topic]).decode().unwrap();
        assert_eq!(decoded.batch.num_rows(), 0);
        assert_eq!(decoded.batch.num_columns(), 5);
        assert!(decoded.positions.is_empty());
    }
}
