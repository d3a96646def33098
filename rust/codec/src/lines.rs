//! Bad-line isolation shared by the JSON Lines and CSV decoders.
//!
//! A chunk of whole lines is decoded in one call. Each row of the result maps to one
//! non-blank line (a decoder checks it), so a value that does not fit its column names its
//! line at once. Only when the decoder cannot decode the chunk at all (a syntax error, a
//! ragged CSV row) is the chunk split at newlines and bisected: each half is decoded on its
//! own, a failing half is split again, until the failing pieces are single lines. Good lines
//! come out in their original order.
//!
//! Before decoding, lines that are not UTF-8 text or hold a NUL byte (binary data, UTF-16)
//! are set aside as bad lines, so a decoder only ever sees text.
use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::BooleanArray;
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use crate::values::RowError;
use crate::CodecError;

/// One input line that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// 0-based index of the line within the decoded chunk (lines end at `\n`, `\r\n` or a
    /// lone `\r`).
    pub index: usize,
    /// What is wrong with it (invalid JSON, or which field/value/type does not match).
    pub message: String,
    /// The raw line, without its line terminator.
    pub raw: Vec<u8>,
    /// The field whose value does not fit, when the problem is one value.
    pub field: Option<String>,
    /// That value, as written.
    pub value: Option<String>,
}

/// The result of decoding a chunk: the good rows in order, and the bad lines.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// Every decodable row of the chunk, in input order, with the decoder's schema.
    pub batch: RecordBatch,
    /// The lines that failed, in input order.
    pub bad_lines: Vec<BadLine>,
}

/// What a decoder makes of a run of whole lines: one row per non-blank line, in order, and
/// the rows whose values do not fit (they hold NULLs there and are dropped here).
pub(crate) struct Rows {
    pub batch: RecordBatch,
    pub errors: Vec<RowError>,
}

/// `data` with every lone carriage return (old Mac line ends: a `\r` not followed by `\n`)
/// turned into a newline; borrowed when there is none.
///
/// A line ends at `\n`, `\r\n` or a lone `\r` in both formats. One byte replaces one byte,
/// so offsets and line indexes are the same in the result, and every function that splits
/// lines at `\n` (stripping a `\r` before it) sees the lines of the original. A `\r` at the
/// very end of `data` is a line end too: the caller cuts chunks so that a `\r\n` is never
/// split between two of them.
pub fn normalize_line_ends(data: &[u8]) -> Cow<'_, [u8]> {
    let lone = |&p: &usize| data.get(p + 1) != Some(&b'\n');
    let mut crs = memchr::memchr_iter(b'\r', data).filter(lone).peekable();
    if crs.peek().is_none() {
        return Cow::Borrowed(data);
    }
    let mut copy = data.to_vec();
    for position in crs {
        copy[position] = b'\n';
    }
    Cow::Owned(copy)
}

/// A span of one line: `[start, end)` without the terminator, `next` = start of the next line.
#[derive(Debug, Clone, Copy)]
struct LineSpan {
    start: usize,
    end: usize,
    next: usize,
}

fn line_spans(data: &[u8]) -> Vec<LineSpan> {
    let mut spans = Vec::with_capacity(memchr::memchr_iter(b'\n', data).count() + 1);
    let mut start = 0;
    while start < data.len() {
        let (end, next) = match memchr::memchr(b'\n', &data[start..]) {
            Some(p) => (start + p, start + p + 1),
            None => (data.len(), data.len()),
        };
        let end = if end > start && data[end - 1] == b'\r' {
            end - 1
        } else {
            end
        };
        spans.push(LineSpan { start, end, next });
        start = next;
    }
    spans
}

/// Counts the lines of `data` that are not blank.
pub(crate) fn count_rows(data: &[u8], blank: fn(&[u8]) -> bool) -> usize {
    let line = |start: usize, end: usize| {
        let line = &data[start..end];
        line.strip_suffix(b"\r").unwrap_or(line)
    };
    let mut count = 0;
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', data) {
        count += usize::from(!blank(line(start, end)));
        start = end + 1;
    }
    if start < data.len() {
        count += usize::from(!blank(line(start, data.len())));
    }
    count
}

/// Why a line cannot be text, if it cannot.
pub(crate) fn not_text(line: &[u8]) -> Option<String> {
    if let Some(position) = memchr::memchr(0, line) {
        return Some(format!(
            "binary data: a NUL byte at byte {} of the line (is the file UTF-16 or binary? \
             velostream reads UTF-8 text)",
            position + 1
        ));
    }
    std::str::from_utf8(line).err().map(|e| {
        format!(
            "invalid UTF-8 at byte {} of the line (velostream reads UTF-8 text)",
            e.valid_up_to() + 1
        )
    })
}

/// How a format's lines are told apart before decoding.
pub(crate) struct LineRules<P> {
    /// Whether a line (without its terminator) holds no record.
    pub blank: fn(&[u8]) -> bool,
    /// Lines of a chunk the decoder must never see, with the reason (sorted by index).
    pub reject: fn(&[u8]) -> Vec<(usize, String)>,
    /// Rewrites the text before decoding without adding or removing lines (JSON quotes
    /// `NaN` tokens); `None` when there is nothing to rewrite.
    pub prepare: P,
}

/// Rejects no line.
pub(crate) fn reject_none(_data: &[u8]) -> Vec<(usize, String)> {
    Vec::new()
}

/// Decodes `data` with `decode_segment`, isolating the lines that make it fail.
///
/// `decode_segment` decodes a run of whole lines or returns the reason it cannot.
pub(crate) fn decode_isolating<P, F>(
    data: &[u8],
    schema: &SchemaRef,
    rules: LineRules<P>,
    decode_segment: F,
) -> Result<Decoded, CodecError>
where
    P: Fn(&[u8]) -> Option<Vec<u8>>,
    F: Fn(&[u8]) -> Result<Rows, String>,
{
    let LineRules {
        blank,
        reject,
        prepare,
    } = rules;
    let data: &[u8] = &normalize_line_ends(data);
    let mut bad_lines = Vec::new();
    let rejected = reject(data);
    // The fast path: Arrow's readers check UTF-8 themselves, so text is only checked line
    // by line when the whole chunk does not decode.
    if rejected.is_empty() && memchr::memchr(0, data).is_none() {
        let prepared: Cow<'_, [u8]> = match prepare(data) {
            Some(rewritten) => Cow::Owned(rewritten),
            None => Cow::Borrowed(data),
        };
        if let Ok(rows) = decode_segment(&prepared) {
            if rows.errors.is_empty() {
                return Ok(Decoded {
                    batch: rows.batch,
                    bad_lines: Vec::new(),
                });
            }
            if std::str::from_utf8(data).is_ok() {
                let spans = line_spans(&prepared);
                let all = spans.len();
                let mut isolation = Isolation {
                    data: &prepared,
                    spans,
                    blank,
                    decode_segment: &decode_segment,
                    batches: Vec::new(),
                    bad_lines,
                };
                isolation.keep(0, all, rows)?;
                return isolation.finish(data, schema);
            }
        }
    }
    // Lines that are not text, or rejected, become blank lines of a copy, keeping every
    // line's index.
    // A NUL byte is UTF-8 too: it must be looked for on its own.
    let is_text = memchr::memchr(0, data).is_none() && std::str::from_utf8(data).is_ok();
    let text: Cow<'_, [u8]> = if rejected.is_empty() && is_text {
        Cow::Borrowed(data)
    } else {
        let mut copy = Vec::with_capacity(data.len());
        let mut rejected = rejected.into_iter().peekable();
        for (index, span) in line_spans(data).iter().enumerate() {
            let reason = match rejected.next_if(|(line, _)| *line == index) {
                Some((_, reason)) => Some(reason),
                None => not_text(&data[span.start..span.end]),
            };
            match reason {
                Some(message) => {
                    bad_lines.push(BadLine {
                        index,
                        message,
                        raw: Vec::new(),
                        field: None,
                        value: None,
                    });
                    if span.next > span.end {
                        copy.push(b'\n');
                    }
                }
                None => copy.extend_from_slice(&data[span.start..span.next]),
            }
        }
        Cow::Owned(copy)
    };
    let prepared: Cow<'_, [u8]> = match prepare(&text) {
        Some(rewritten) => Cow::Owned(rewritten),
        None => text,
    };

    let spans = line_spans(&prepared);
    let all = spans.len();
    let mut isolation = Isolation {
        data: &prepared,
        spans,
        blank,
        decode_segment: &decode_segment,
        batches: Vec::new(),
        bad_lines,
    };
    isolation.decode_all(0, all)?;
    isolation.finish(data, schema)
}

struct Isolation<'a, F> {
    data: &'a [u8],
    spans: Vec<LineSpan>,
    blank: fn(&[u8]) -> bool,
    decode_segment: &'a F,
    batches: Vec<RecordBatch>,
    bad_lines: Vec<BadLine>,
}

impl<F> Isolation<'_, F>
where
    F: Fn(&[u8]) -> Result<Rows, String>,
{
    /// Lines `[lo, hi)` decoded together, or split when they fail.
    fn decode_all(&mut self, lo: usize, hi: usize) -> Result<(), CodecError> {
        if lo == hi {
            return Ok(());
        }
        self.decode(lo, hi)
    }

    /// The good rows in one batch, and the bad lines in order with their raw bytes taken
    /// from `original` (the chunk before any rewriting).
    fn finish(self, original: &[u8], schema: &SchemaRef) -> Result<Decoded, CodecError> {
        let Isolation {
            batches,
            mut bad_lines,
            ..
        } = self;
        let batch = match batches.len() {
            1 => batches.into_iter().next().expect("one batch"),
            _ => concat_batches(schema, &batches)?,
        };
        bad_lines.sort_by_key(|b| b.index);
        let spans = line_spans(original);
        for bad in &mut bad_lines {
            if let Some(span) = spans.get(bad.index) {
                bad.raw = original[span.start..span.end].to_vec();
            }
        }
        Ok(Decoded { batch, bad_lines })
    }

    /// Lines `[lo, hi)` are known to fail together: split them in two and try each half.
    fn split(&mut self, lo: usize, hi: usize) -> Result<(), CodecError> {
        if hi - lo <= 1 {
            if lo < hi {
                self.decode(lo, hi)?;
            }
            return Ok(());
        }
        let mid = lo + (hi - lo) / 2;
        self.decode(lo, mid)?;
        self.decode(mid, hi)
    }

    fn decode(&mut self, lo: usize, hi: usize) -> Result<(), CodecError> {
        let segment = &self.data[self.spans[lo].start..self.spans[hi - 1].next];
        match (self.decode_segment)(segment) {
            Ok(rows) => self.keep(lo, hi, rows),
            Err(message) if hi - lo == 1 => {
                self.bad_lines.push(BadLine {
                    index: lo,
                    message,
                    raw: Vec::new(),
                    field: None,
                    value: None,
                });
                Ok(())
            }
            Err(_) => self.split(lo, hi),
        }
    }

    /// Keeps the good rows of lines `[lo, hi)` and reports the rows with errors as bad lines.
    fn keep(&mut self, lo: usize, hi: usize, rows: Rows) -> Result<(), CodecError> {
        if rows.errors.is_empty() {
            if rows.batch.num_rows() > 0 {
                self.batches.push(rows.batch);
            }
            return Ok(());
        }
        let lines: Vec<usize> = (lo..hi)
            .filter(|&i| {
                let span = self.spans[i];
                !(self.blank)(&self.data[span.start..span.end])
            })
            .collect();
        debug_assert_eq!(lines.len(), rows.batch.num_rows());
        let mut keep = vec![true; rows.batch.num_rows()];
        for error in rows.errors {
            if let Some(slot) = keep.get_mut(error.row) {
                *slot = false;
            }
            self.bad_lines.push(BadLine {
                index: lines.get(error.row).copied().unwrap_or(lo),
                message: error.message,
                raw: Vec::new(),
                field: error.field,
                value: error.value,
            });
        }
        let batch = filter_record_batch(&rows.batch, &BooleanArray::from(keep))?;
        if batch.num_rows() > 0 {
            self.batches.push(batch);
        }
        Ok(())
    }
}

/// The batches a decoder flushed for one segment, as one batch (empty for no rows).
pub(crate) fn one_batch(
    schema: &SchemaRef,
    mut batches: Vec<RecordBatch>,
) -> Result<RecordBatch, String> {
    match batches.len() {
        0 => Ok(RecordBatch::new_empty(Arc::clone(schema))),
        1 => Ok(batches.pop().expect("one batch")),
        _ => concat_batches(schema, &batches).map_err(|e| e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_cover_every_line_and_strip_crlf() {
        let spans = line_spans(b"a\r\nbb\n\nc");
        let lines: Vec<(usize, usize)> = spans.iter().map(|s| (s.start, s.end)).collect();
        assert_eq!(lines, vec![(0, 1), (3, 5), (6, 6), (7, 8)]);
        assert_eq!(spans[3].next, 8);
    }

    #[test]
    fn a_lone_carriage_return_ends_a_line() {
        assert!(matches!(normalize_line_ends(b"a\r\nb\n"), Cow::Borrowed(_)));
        let normalized = normalize_line_ends(b"a\rb\r\nc\r\rd\r");
        assert_eq!(&*normalized, b"a\nb\r\nc\n\nd\n");
        let lines: Vec<(usize, usize)> = line_spans(&normalized)
            .iter()
            .map(|s| (s.start, s.end))
            .collect();
        assert_eq!(lines, vec![(0, 1), (2, 3), (5, 6), (7, 7), (8, 9)]);
        assert_eq!(count_rows(&normalized, <[u8]>::is_empty), 4);
    }

    #[test]
    fn lines_that_are_not_text_are_named() {
        assert!(not_text(b"{\"a\": 1}").is_none());
        assert!(not_text(b"a\0b").unwrap().contains("NUL byte at byte 2"));
        assert!(not_text(b"ab\xff")
            .unwrap()
            .contains("invalid UTF-8 at byte 3"));
    }
}
