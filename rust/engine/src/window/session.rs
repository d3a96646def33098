//! Session windows: per group, rows closer than `gap` to each other.
//!
//! A row at `ts` opens the window `[ts, ts + gap)`, merged with every overlapping session
//! of its key (so two rows exactly `gap` apart are in different sessions, and a late row
//! that bridges two sessions merges them: their accumulator states are merged). A
//! session is `[first ts, last ts + gap)` and closes when the watermark reaches its end.
//!
//! Each key's sessions are a short vector ordered by start; an index of the next time
//! to act per key (bytewax's and Arroyo's) says which keys to look at, so the watermark
//! finds the closing sessions without a scan. The index is a timer wheel: keys in
//! buckets of a quarter gap, ordered in a `BTreeMap`, so scheduling a key is a push
//! onto a bucket's vector. A session whose end grew after it was scheduled is
//! re-scheduled when its bucket comes up.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::ArrayRef;

use super::bins::empty_like;
use super::{changes_chunk, concat_chunks, route_late, times, Shared, WindowDef, NO_SLOT};
use crate::error::{EngineError, Result};
use crate::operator::{Chunk, Ctx, OpState, Operator};
use crate::plan::{EmitMode, LateStrategy};

#[derive(Debug, Clone, Copy)]
struct Session {
    start: i64,
    end: i64,
    slot: u32,
}

/// The window aggregate over session windows.
pub struct Sessions {
    gap: i64,
    shared: Shared,
    /// Key id → its open sessions, ordered by start.
    sessions: Vec<Vec<Session>>,
    /// Key id → the time its entry in `schedule` is for (`i64::MAX`: none).
    scheduled: Vec<i64>,
    /// Bucket (`time / bucket`) → keys due in it (possibly superseded entries too).
    schedule: BTreeMap<i64, Vec<u32>>,
    bucket: i64,
    live_keys: usize,
    /// Sessions the watermark closed in the middle of a chunk: (start, end, key, slot),
    /// emitted with the others when the watermark is offered after the chunk.
    closed: Vec<(i64, i64, u32, u32)>,
}

impl Sessions {
    pub fn new(gap: i64, def: Arc<WindowDef>) -> Result<Self> {
        Ok(Sessions {
            gap,
            shared: Shared::new(def)?,
            sessions: Vec::new(),
            scheduled: Vec::new(),
            schedule: BTreeMap::new(),
            bucket: (gap / 4).max(1),
            live_keys: 0,
            closed: Vec::new(),
        })
    }

    /// Make sure `key`'s earliest end is scheduled.
    fn schedule_key(&mut self, key: u32) {
        let k = key as usize;
        let Some(first_end) = self.sessions[k].iter().map(|s| s.end).min() else {
            return;
        };
        if first_end < self.scheduled[k] {
            self.schedule
                .entry(super::floor_div(first_end, self.bucket))
                .or_default()
                .push(key);
            self.scheduled[k] = first_end;
        }
    }

    /// Place a row of `key` at `ts`: the slot of its (possibly merged) session and the
    /// session's bounds after it.
    fn place(&mut self, key: u32, ts: i64) -> Result<(u32, i64, i64)> {
        let k = key as usize;
        if k >= self.sessions.len() {
            let keys = self.shared.keys.len().max(k + 1);
            self.sessions.resize_with(keys, Vec::new);
            self.scheduled.resize(keys, i64::MAX);
        }
        let end = ts.saturating_add(self.gap);
        let list = &mut self.sessions[k];
        // Sessions overlapping [ts, end).
        let first = list.iter().position(|s| s.end > ts && s.start < end);
        let result = match first {
            None => {
                if list.is_empty() {
                    self.live_keys += 1;
                }
                let slot = self.shared.allocate();
                let at = list.partition_point(|s| s.start < ts);
                list.insert(
                    at,
                    Session {
                        start: ts,
                        end,
                        slot,
                    },
                );
                (slot, ts, end)
            }
            Some(i) => {
                while i + 1 < list.len() && list[i + 1].start < end.max(list[i].end) {
                    let next = list.remove(i + 1);
                    list[i].end = list[i].end.max(next.end);
                    for acc in &mut self.shared.accumulators {
                        acc.merge(list[i].slot, next.slot)?;
                    }
                    self.shared.free.push(next.slot);
                }
                let s = &mut list[i];
                s.start = s.start.min(ts);
                s.end = s.end.max(end);
                (s.slot, s.start, s.end)
            }
        };
        self.schedule_key(key);
        Ok(result)
    }
}

/// Rows placed since the last fold.
#[derive(Default)]
struct Run {
    rows: Vec<u32>,
    slots: Vec<u32>,
    starts: Vec<i64>,
    ends: Vec<i64>,
}

impl Operator for Sessions {
    fn process(&mut self, chunk: Chunk, ctx: &mut Ctx) -> Result<Chunk> {
        let (keys, args) = self.shared.key_and_args(&chunk, ctx)?;
        let def = self.shared.def.clone();
        let changes = def.emit == EmitMode::Changes;
        let (event, marks, input_rows) = times(&chunk);
        let key_ids = std::mem::take(&mut self.shared.key_ids);
        let mut run = Run::default();
        let mut out = Vec::new();
        for i in 0..chunk.rows {
            let (ts, mark, key) = (event[i], marks[i], key_ids[i]);
            // The common case: the key has one session, open, and the row extends it
            // (no merge, no closing, never late; its scheduled time stays before its end).
            if let Some([s]) = self.sessions.get_mut(key as usize).map(Vec::as_mut_slice) {
                let end = ts.saturating_add(self.gap);
                if s.end > mark && s.end > ts && s.start < end {
                    s.start = s.start.min(ts);
                    s.end = s.end.max(end);
                    run.rows.push(i as u32);
                    run.slots.push(s.slot);
                    if changes {
                        run.starts.push(s.start);
                        run.ends.push(s.end);
                    }
                    continue;
                }
            }
            // Sessions of this key the watermark has closed are closed now: a row may not
            // join them (they are emitted after the chunk, as every closed window).
            if self
                .sessions
                .get(key as usize)
                .is_some_and(|l| l.iter().any(|s| s.end <= mark))
            {
                self.close_before(key, mark);
            }
            let mut place = ts;
            // Late: its own session would have closed, and it joins no open one.
            if ts.saturating_add(self.gap) <= mark && !self.joins_open(key, ts, mark) {
                match def.late {
                    LateStrategy::IncludeInNextWindow => place = mark,
                    _ => {
                        route_late(ctx, def.late, input_rows[i], ts, mark, ts + self.gap);
                        continue;
                    }
                }
            }
            // A merge moves state between slots: the rows placed so far are folded
            // first, so that every row reaches its accumulators in arrival order.
            if !run.slots.is_empty() && self.overlaps(key, place) > 1 {
                out.extend(self.fold_run(&keys, &args, &mut run, chunk.rows, changes)?);
            }
            let (slot, start, end) = self.place(key, place)?;
            run.rows.push(i as u32);
            run.slots.push(slot);
            if changes {
                run.starts.push(start);
                run.ends.push(end);
            }
        }
        self.shared.key_ids = key_ids;
        out.extend(self.fold_run(&keys, &args, &mut run, chunk.rows, changes)?);
        Ok(concat_chunks(out)?.unwrap_or_else(|| empty_like(&keys, &self.shared, 0)))
    }

    fn on_watermark(&mut self, watermark: i64, _ctx: &mut Ctx) -> Result<Option<Chunk>> {
        let mut closed = std::mem::take(&mut self.closed);
        let last = super::floor_div(watermark, self.bucket);
        let due: Vec<i64> = self.schedule.range(..=last).map(|(b, _)| *b).collect();
        let mut later = Vec::new();
        for b in due {
            for key in self.schedule.remove(&b).unwrap_or_default() {
                let k = key as usize;
                let at = self.scheduled[k];
                if at == i64::MAX || super::floor_div(at, self.bucket) != b {
                    continue; // superseded by an entry in another bucket
                }
                if at > watermark {
                    later.push(key); // due later in this bucket
                    continue;
                }
                self.scheduled[k] = i64::MAX;
                let list = &mut self.sessions[k];
                list.retain(|s| {
                    if s.end <= watermark {
                        closed.push((s.start, s.end, key, s.slot));
                        false
                    } else {
                        true
                    }
                });
                if list.is_empty() {
                    self.live_keys -= 1;
                } else {
                    self.schedule_key(key);
                }
            }
        }
        for key in later {
            let b = super::floor_div(self.scheduled[key as usize], self.bucket);
            self.schedule.entry(b).or_default().push(key);
        }
        let slots: Vec<u32> = closed.iter().map(|c| c.3).collect();
        let out = self.shared.close(&mut closed, &slots)?;
        self.compact()?;
        Ok(out)
    }

    fn flush(&mut self, ctx: &mut Ctx) -> Result<Option<Chunk>> {
        self.on_watermark(i64::MAX, ctx)
    }

    fn snapshot(&self) -> OpState {
        let mut state = self.shared.state();
        state.sessions = self
            .sessions
            .iter()
            .enumerate()
            .flat_map(|(k, list)| list.iter().map(move |s| (k as u32, s.start, s.end, s.slot)))
            .collect();
        OpState::Window(Box::new(state))
    }

    fn restore(&mut self, state: OpState) -> Result<()> {
        let OpState::Window(mut state) = state else {
            return Err(EngineError::Snapshot(format!(
                "it holds {} where this query keeps window state",
                state.kind()
            )));
        };
        let keys = state.keys.len as usize;
        let bad = state
            .sessions
            .iter()
            .any(|s| s.0 as usize >= keys || s.1 >= s.2);
        if bad || !state.bins.is_empty() {
            return Err(EngineError::Snapshot(
                "its session state does not fit this query".into(),
            ));
        }
        let used: Vec<u32> = state.sessions.iter().map(|s| s.3).collect();
        self.shared.restore(&mut state, &used)?;
        self.sessions = vec![Vec::new(); keys];
        self.scheduled = vec![i64::MAX; keys];
        self.schedule.clear();
        self.live_keys = 0;
        for &(k, start, end, slot) in &state.sessions {
            let list = &mut self.sessions[k as usize];
            if list.is_empty() {
                self.live_keys += 1;
            }
            list.push(Session { start, end, slot });
        }
        for k in 0..keys {
            self.sessions[k].sort_by_key(|s| s.start);
            self.schedule_key(k as u32);
        }
        Ok(())
    }

    fn state_groups(&self) -> usize {
        self.shared.live()
    }

    fn held_since(&self) -> Option<i64> {
        self.sessions
            .iter()
            .filter_map(|list| list.first().map(|s| s.start))
            .min()
    }

    fn state_bytes(&self) -> usize {
        self.shared.state_bytes()
            + self.sessions.capacity() * 24
            + self
                .sessions
                .iter()
                .map(|l| l.capacity() * std::mem::size_of::<Session>())
                .sum::<usize>()
            + self.scheduled.capacity() * 8
            + self
                .schedule
                .values()
                .map(|v| v.capacity() * 4 + 48)
                .sum::<usize>()
    }
}

impl Sessions {
    /// Move `key`'s sessions ending at or before `mark` to the closed ones.
    fn close_before(&mut self, key: u32, mark: i64) {
        let list = &mut self.sessions[key as usize];
        let closed = &mut self.closed;
        list.retain(|s| {
            if s.end <= mark {
                closed.push((s.start, s.end, key, s.slot));
                false
            } else {
                true
            }
        });
        if list.is_empty() {
            self.live_keys -= 1;
        }
    }

    /// Whether the window `[ts, ts + gap)` overlaps a session of `key` still open at
    /// the watermark `mark`.
    fn joins_open(&self, key: u32, ts: i64, mark: i64) -> bool {
        let end = ts.saturating_add(self.gap);
        self.sessions.get(key as usize).is_some_and(|list| {
            list.iter()
                .any(|s| s.end > mark && s.end > ts && s.start < end)
        })
    }

    /// How many of `key`'s sessions the window `[ts, ts + gap)` overlaps.
    fn overlaps(&self, key: u32, ts: i64) -> usize {
        let end = ts.saturating_add(self.gap);
        self.sessions.get(key as usize).map_or(0, |list| {
            list.iter().filter(|s| s.end > ts && s.start < end).count()
        })
    }

    /// Fold the rows placed so far into their sessions, emptying the run; under EMIT
    /// CHANGES returns their output rows.
    fn fold_run(
        &mut self,
        keys: &[ArrayRef],
        args: &[Option<ArrayRef>],
        run: &mut Run,
        chunk_rows: usize,
        changes: bool,
    ) -> Result<Option<Chunk>> {
        if run.slots.is_empty() {
            return Ok(None);
        }
        // Rows only grow within a chunk: as many as the chunk has means all, in order.
        let order = (run.rows.len() != chunk_rows).then_some(&run.rows[..]);
        let aggs = self.shared.fold(args, order, &run.slots, changes)?;
        let out = if changes {
            Some(changes_chunk(
                Shared::keys_of_rows(keys, order)?,
                aggs,
                std::mem::take(&mut run.starts),
                std::mem::take(&mut run.ends),
            ))
        } else {
            None
        };
        run.rows.clear();
        run.slots.clear();
        Ok(out)
    }

    fn compact(&mut self) -> Result<()> {
        if !self.shared.should_compact(self.live_keys) {
            return Ok(());
        }
        let live: Vec<u32> = (0..self.sessions.len() as u32)
            .filter(|&k| !self.sessions[k as usize].is_empty())
            .collect();
        let map = self.shared.compact_keys(&live)?;
        let keys = self.shared.keys.len();
        let mut sessions = vec![Vec::new(); keys];
        for (old, list) in std::mem::take(&mut self.sessions).into_iter().enumerate() {
            if map[old] != NO_SLOT {
                sessions[map[old] as usize] = list;
            }
        }
        self.sessions = sessions;
        self.scheduled = vec![i64::MAX; keys];
        self.schedule.clear();
        for k in 0..keys as u32 {
            self.schedule_key(k);
        }
        Ok(())
    }
}
