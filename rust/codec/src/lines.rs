//! Bad-line isolation shared by the JSON Lines and CSV decoders.
//!
//! The fast path decodes a whole chunk in one call. When that fails, the chunk is split at
//! newlines and bisected: each half is decoded on its own, a failing half is split again,
//! until the failing pieces are single lines. Good pieces are decoded once more at most per
//! level, so a chunk with a few bad lines costs a few extra decodes of its size, and the good
//! lines come out in their original order.
use std::sync::Arc;

use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use crate::CodecError;

/// One input line that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// 0-based index of the line within the decoded chunk (counting every `\n`).
    pub index: usize,
    /// What is wrong with it (invalid JSON, or which field/value/type does not match).
    pub message: String,
    /// The raw line, without its line terminator.
    pub raw: Vec<u8>,
}

/// The result of decoding a chunk: the good rows in order, and the bad lines.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// Every decodable row of the chunk, in input order, with the decoder's schema.
    pub batch: RecordBatch,
    /// The lines that failed, in input order.
    pub bad_lines: Vec<BadLine>,
}

/// A span of one line: `[start, end)` without the terminator, `next` = start of the next line.
#[derive(Debug, Clone, Copy)]
struct LineSpan {
    start: usize,
    end: usize,
    next: usize,
}

fn line_spans(data: &[u8]) -> Vec<LineSpan> {
    let mut spans = Vec::new();
    let mut start = 0;
    while start < data.len() {
        let (end, next) = match data[start..].iter().position(|&b| b == b'\n') {
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

/// Decodes `data` with `decode_segment`, isolating the lines that make it fail.
///
/// `decode_segment` decodes a run of whole lines (`Ok(None)` when it holds no rows) or
/// returns the reason it cannot.
pub(crate) fn decode_isolating<F>(
    data: &[u8],
    schema: &SchemaRef,
    decode_segment: F,
) -> Result<Decoded, CodecError>
where
    F: Fn(&[u8]) -> Result<Option<RecordBatch>, String>,
{
    if let Ok(batch) = decode_segment(data) {
        return Ok(Decoded {
            batch: batch.unwrap_or_else(|| RecordBatch::new_empty(Arc::clone(schema))),
            bad_lines: Vec::new(),
        });
    }
    let spans = line_spans(data);
    let mut isolation = Isolation {
        data,
        spans: &spans,
        decode_segment: &decode_segment,
        batches: Vec::new(),
        bad_lines: Vec::new(),
    };
    isolation.split(0, spans.len());
    let batch = concat_batches(schema, &isolation.batches)?;
    Ok(Decoded {
        batch,
        bad_lines: isolation.bad_lines,
    })
}

struct Isolation<'a, F> {
    data: &'a [u8],
    spans: &'a [LineSpan],
    decode_segment: &'a F,
    batches: Vec<RecordBatch>,
    bad_lines: Vec<BadLine>,
}

impl<F> Isolation<'_, F>
where
    F: Fn(&[u8]) -> Result<Option<RecordBatch>, String>,
{
    /// Lines `[lo, hi)` are known to fail together: split them in two and try each half.
    fn split(&mut self, lo: usize, hi: usize) {
        if hi - lo <= 1 {
            if lo < hi {
                self.decode(lo, hi);
            }
            return;
        }
        let mid = lo + (hi - lo) / 2;
        self.decode(lo, mid);
        self.decode(mid, hi);
    }

    fn decode(&mut self, lo: usize, hi: usize) {
        let segment = &self.data[self.spans[lo].start..self.spans[hi - 1].next];
        match (self.decode_segment)(segment) {
            Ok(Some(batch)) => self.batches.push(batch),
            Ok(None) => {}
            Err(message) if hi - lo == 1 => {
                let span = self.spans[lo];
                self.bad_lines.push(BadLine {
                    index: lo,
                    message,
                    raw: self.data[span.start..span.end].to_vec(),
                });
            }
            Err(_) => self.split(lo, hi),
        }
    }
}

/// The batches a decoder flushed for one segment, as one batch (None for no rows).
pub(crate) fn one_batch(
    schema: &SchemaRef,
    mut batches: Vec<RecordBatch>,
) -> Result<Option<RecordBatch>, String> {
    match batches.len() {
        0 => Ok(None),
        1 => Ok(batches.pop()),
        _ => concat_batches(schema, &batches)
            .map(Some)
            .map_err(|e| e.to_string()),
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
}
