//! Watermarks: how far event time has progressed, per input partition.
//!
//! Each partition (the `_partition` column when the input has one, else one partition)
//! tracks the largest event time seen; its watermark is that minus the allowed
//! out-of-orderness (`bounded_out_of_orderness`) or that (`ascending`). The query's
//! watermark is the minimum over active partitions (Arroyo's `WatermarkHolder`): a
//! partition that sent nothing for `idle_timeout` of processing time stops holding it
//! back. The watermark never goes backwards, and is `None` before the first record.
//!
//! Time advances per record (SPEC section 12): [`WatermarkTracker::advance`] gives every
//! row the watermark left by the rows before it, against which the row is judged.

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int64Type};
use hashbrown::HashMap;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::plan::WatermarkStrategy;

/// One partition's progress.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct PartitionMark {
    /// The partition's id (the `_partition` value; 0 without the column).
    pub id: i64,
    pub max_event_time: i64,
    /// Processing time of its last record, epoch millis.
    pub last_seen_ms: i64,
}

/// The serialisable state of a tracker.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WatermarkState {
    pub partitions: Vec<PartitionMark>,
    pub watermark: Option<i64>,
}

/// Tracks the watermark of one query.
pub struct WatermarkTracker {
    strategy: WatermarkStrategy,
    bound: i64,
    idle_timeout: Option<i64>,
    state: WatermarkState,
    index: HashMap<i64, usize>,
}

impl WatermarkTracker {
    pub fn new(strategy: WatermarkStrategy, bound: i64, idle_timeout: Option<i64>) -> Self {
        let bound = match strategy {
            WatermarkStrategy::BoundedOutOfOrderness => bound,
            _ => 0,
        };
        WatermarkTracker {
            strategy,
            bound,
            idle_timeout,
            state: WatermarkState::default(),
            index: HashMap::new(),
        }
    }

    /// The current watermark (`None` before the first record, or without watermarks).
    pub fn watermark(&self) -> Option<i64> {
        self.state.watermark
    }

    /// The candidate watermark of the active partitions at `now_ms`.
    fn candidate(&self, now_ms: i64) -> Option<i64> {
        self.state
            .partitions
            .iter()
            .filter(|p| {
                self.idle_timeout
                    .is_none_or(|t| now_ms - p.last_seen_ms < t)
            })
            .map(|p| p.max_event_time.saturating_sub(self.bound))
            .min()
    }

    fn raise(&mut self, candidate: Option<i64>) {
        if let Some(c) = candidate {
            if self.state.watermark.is_none_or(|w| c > w) {
                self.state.watermark = Some(c);
            }
        }
    }

    /// Re-evaluate idleness at `now_ms` (a call that brought no records).
    pub fn tick(&mut self, now_ms: i64) {
        if self.strategy != WatermarkStrategy::None && self.idle_timeout.is_some() {
            let c = self.candidate(now_ms);
            self.raise(c);
        }
    }

    /// Processing time: the clock itself is the event time (one partition).
    pub fn observe(&mut self, now_ms: i64) {
        if self.strategy == WatermarkStrategy::None {
            return;
        }
        let p = self.partition(0, now_ms);
        let mark = &mut self.state.partitions[p];
        mark.last_seen_ms = now_ms;
        mark.max_event_time = mark.max_event_time.max(now_ms);
        let c = self.candidate(now_ms);
        self.raise(c);
    }

    /// Partitions known to have records to come (a Kafka source's partitions with
    /// messages to read): each holds the watermark back from now until its first record
    /// (or until it is idle), so that a partition read later than the others does not
    /// find its windows closed by theirs.
    pub fn expect(&mut self, ids: &[i64], now_ms: i64) {
        for &id in ids {
            self.partition(id, now_ms);
        }
    }

    fn partition(&mut self, id: i64, now_ms: i64) -> usize {
        if let Some(&i) = self.index.get(&id) {
            return i;
        }
        self.state.partitions.push(PartitionMark {
            id,
            max_event_time: i64::MIN,
            last_seen_ms: now_ms,
        });
        self.index.insert(id, self.state.partitions.len() - 1);
        self.state.partitions.len() - 1
    }

    /// Advance over the event times of a batch's rows (`partitions`: the `_partition`
    /// column, if any): `before[i]` is the watermark row i is judged against
    /// (`i64::MIN` when there is none).
    pub fn advance(
        &mut self,
        event: &[i64],
        partitions: Option<&dyn Array>,
        now_ms: i64,
        before: &mut Vec<i64>,
    ) -> Result<()> {
        before.clear();
        before.reserve(event.len());
        if self.strategy == WatermarkStrategy::None {
            before.resize(event.len(), i64::MIN);
            return Ok(());
        }
        self.tick(now_ms);
        let Some(partitions) = partitions else {
            // One partition: a running maximum.
            let p = self.partition(0, now_ms);
            let mark = &mut self.state.partitions[p];
            mark.last_seen_ms = now_ms;
            let mut max = mark.max_event_time;
            let mut wm = self.state.watermark.unwrap_or(i64::MIN);
            let mut seen = self.state.watermark.is_some();
            before.resize(event.len(), 0);
            for (slot, &ts) in before.iter_mut().zip(event) {
                *slot = wm;
                if ts > max {
                    max = ts;
                    let c = max.saturating_sub(self.bound);
                    if !seen || c > wm {
                        wm = c;
                        seen = true;
                    }
                }
            }
            self.state.partitions[p].max_event_time = max;
            let c = self.candidate(now_ms);
            self.raise(c);
            return Ok(());
        };
        let ids = arrow::compute::cast(partitions, &DataType::Int64)?;
        let ids = ids.as_primitive::<Int64Type>();
        let mut wm = self.state.watermark.unwrap_or(i64::MIN);
        for (i, &ts) in event.iter().enumerate() {
            before.push(wm);
            let id = if ids.is_valid(i) {
                ids.value(i)
            } else {
                i64::MIN
            };
            let p = self.partition(id, now_ms);
            let mark = &mut self.state.partitions[p];
            mark.last_seen_ms = now_ms;
            if ts > mark.max_event_time {
                mark.max_event_time = ts;
                let c = self.candidate(now_ms);
                self.raise(c);
                wm = self.state.watermark.unwrap_or(i64::MIN);
            }
        }
        Ok(())
    }

    pub fn state(&self) -> WatermarkState {
        self.state.clone()
    }

    pub fn restore(&mut self, state: WatermarkState) {
        self.index = state
            .partitions
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id, i))
            .collect();
        self.state = state;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int32Array;

    #[test]
    fn bounded_watermark_trails_the_maximum_per_row() {
        let mut t = WatermarkTracker::new(WatermarkStrategy::BoundedOutOfOrderness, 5, None);
        let mut before = Vec::new();
        t.advance(&[10, 8, 20, 12], None, 0, &mut before).unwrap();
        assert_eq!(before, vec![i64::MIN, 5, 5, 15]);
        assert_eq!(t.watermark(), Some(15));
    }

    #[test]
    fn the_slowest_active_partition_holds_the_watermark() {
        let mut t = WatermarkTracker::new(WatermarkStrategy::Ascending, 0, Some(100));
        let mut before = Vec::new();
        let parts = Int32Array::from(vec![0, 1, 0]);
        t.advance(&[10, 50, 30], Some(&parts), 0, &mut before)
            .unwrap();
        assert_eq!(t.watermark(), Some(30));
        // Partition 0 idle for longer than the timeout: partition 1 alone moves it.
        let parts = Int32Array::from(vec![1]);
        t.advance(&[70], Some(&parts), 150, &mut before).unwrap();
        assert_eq!(t.watermark(), Some(70));
    }
}
