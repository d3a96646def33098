//! Fixed-size windows (tumbling and sliding): the aggregate state of each window in a
//! bin, bins ordered by start (and so by end) in a `BTreeMap`, as Arroyo and
//! Denormalized keep theirs: the watermark pops what closes from the front, no scan.
//!
//! A bin maps key ids to accumulator slots with a dense vector (one lookup per row) and
//! lists its members for the closing. Under `update_previous` a closed bin stays, marked
//! closed, until `watermark >= end + allowed_lateness`, so late rows can correct it.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{changes_chunk, concat_chunks, route_late, times, Shared, WindowDef, NO_SLOT};
use crate::error::{EngineError, Result};
use crate::operator::{Chunk, Ctx, OpState, Operator};
use crate::plan::{EmitMode, LateStrategy};

/// Which fixed windows a timestamp belongs to.
pub trait Assigner: Send + 'static {
    /// Whether every row is in exactly one window (tumbling).
    const SINGLE: bool;
    /// Every window's length.
    fn size(&self) -> i64;
    /// The start of the last (latest) window containing `ts`.
    fn last_start(&self, ts: i64) -> i64;
    /// The start of the window before the one starting at `start`.
    fn previous(&self, start: i64) -> i64;
    /// How far apart windows start.
    fn advance(&self) -> i64;
    /// The start of the first (earliest) window containing `ts`.
    fn first_start(&self, ts: i64) -> i64;
    /// The length of a pane: the slices every window is a whole number of (the
    /// greatest common divisor of size and advance).
    fn pane(&self) -> i64;
}

/// One window's state.
#[derive(Default)]
struct Bin {
    /// Key id → slot (`NO_SLOT`: the key has no row in this window).
    slot_of: Vec<u32>,
    /// (key id, slot) in order of arrival.
    members: Vec<(u32, u32)>,
    /// Emitted already; kept for late rows (`update_previous`).
    closed: bool,
}

impl Bin {
    #[inline(always)]
    fn slot(&mut self, key: u32, keys: usize, shared: &mut Shared) -> u32 {
        let k = key as usize;
        if k >= self.slot_of.len() {
            self.grow(keys.max(k + 1));
        }
        let s = self.slot_of[k];
        if s != NO_SLOT {
            return s;
        }
        let s = shared.allocate();
        self.slot_of[k] = s;
        self.members.push((key, s));
        s
    }

    #[cold]
    fn grow(&mut self, keys: usize) {
        self.slot_of.resize(keys, NO_SLOT);
    }
}

/// The bins of open (and kept) windows: a slab of bins, indexed by start in a
/// `BTreeMap` (ordered: the watermark pops from the front) and in a small direct-mapped
/// cache (the windows rows fall into are few and recent: one map lookup per window,
/// not per row).
#[derive(Default)]
struct Bins {
    index: BTreeMap<i64, usize>,
    slab: Vec<Bin>,
    vacant: Vec<usize>,
    cache: Vec<(i64, usize)>,
}

const CACHE: usize = 64;

impl Bins {
    fn cache_at(start: i64) -> usize {
        (start.rem_euclid(1 << 20) as usize ^ (start >> 20) as usize) % CACHE
    }

    /// The bin of the window starting at `start`, created (`closed` when new) if absent.
    #[inline]
    fn at(&mut self, start: i64, closed: bool) -> usize {
        if self.cache.is_empty() {
            self.cache = vec![(i64::MIN, 0); CACHE];
        }
        let c = Self::cache_at(start);
        if self.cache[c].0 == start {
            return self.cache[c].1;
        }
        let b = match self.index.get(&start) {
            Some(&b) => b,
            None => {
                let bin = Bin {
                    closed,
                    ..Bin::default()
                };
                let b = match self.vacant.pop() {
                    Some(b) => {
                        self.slab[b] = bin;
                        b
                    }
                    None => {
                        self.slab.push(bin);
                        self.slab.len() - 1
                    }
                };
                self.index.insert(start, b);
                b
            }
        };
        self.cache[c] = (start, b);
        b
    }

    fn get(&self, start: i64) -> Option<&Bin> {
        self.index.get(&start).map(|&b| &self.slab[b])
    }

    fn remove(&mut self, start: i64) -> Option<Bin> {
        let b = self.index.remove(&start)?;
        if let Some(c) = self.cache.get_mut(Self::cache_at(start)) {
            if c.0 == start {
                *c = (i64::MIN, 0);
            }
        }
        self.vacant.push(b);
        Some(std::mem::take(&mut self.slab[b]))
    }

    fn iter(&self) -> impl Iterator<Item = (i64, &Bin)> {
        self.index.iter().map(|(s, &b)| (*s, &self.slab[b]))
    }

    fn values_mut(&mut self) -> impl Iterator<Item = &mut Bin> {
        let live: Vec<usize> = self.index.values().copied().collect();
        self.slab
            .iter_mut()
            .enumerate()
            .filter(move |(i, _)| live.contains(i))
            .map(|(_, b)| b)
    }
}

/// The window aggregate over fixed windows of an [`Assigner`].
///
/// Overlapping (sliding) windows under EMIT FINAL keep one bin per *pane* instead of per
/// window (Flink's sliced windows): a row updates the one pane it falls in, and a
/// closing window merges the panes it spans, so a row costs the same as in a tumbling
/// window however many windows contain it. EMIT CHANGES and `update_previous` need
/// each window's own state, and FIRST_VALUE / LAST_VALUE the rows' arrival order: those
/// keep a bin per window.
pub struct FixedWindows<A: Assigner> {
    assigner: A,
    shared: Shared,
    bins: Bins,
    /// Bins are panes (see above).
    paned: bool,
    /// Panes: the start of the next window to emit, and of the last one emitted.
    next_window: Option<i64>,
    last_emitted: Option<i64>,
    /// Panes: rows of windows closed in the middle of a chunk, for the end of the call.
    pending: Vec<Chunk>,
}

impl<A: Assigner> FixedWindows<A> {
    pub fn new(assigner: A, def: Arc<WindowDef>) -> Result<Self> {
        // FIRST_VALUE / LAST_VALUE follow arrival order, which panes do not keep.
        let ordered = def.grouping.aggs.iter().any(|a| {
            matches!(
                a.func,
                crate::plan::AggFunc::FirstValue | crate::plan::AggFunc::LastValue
            )
        });
        let paned = !A::SINGLE
            && !ordered
            && def.emit == EmitMode::Final
            && def.late != LateStrategy::UpdatePrevious;
        Ok(FixedWindows {
            assigner,
            shared: Shared::new(def)?,
            bins: Bins::default(),
            paned,
            next_window: None,
            last_emitted: None,
            pending: Vec::new(),
        })
    }

    fn compact(&mut self) -> Result<()> {
        if !self.shared.should_compact(self.shared.live()) {
            return Ok(());
        }
        let mut live: Vec<u32> = self
            .bins
            .iter()
            .flat_map(|(_, b)| b.members.iter().map(|m| m.0))
            .collect();
        live.sort_unstable();
        live.dedup();
        let map = self.shared.compact_keys(&live)?;
        let keys = self.shared.keys.len();
        for bin in self.bins.values_mut() {
            bin.slot_of = vec![NO_SLOT; keys];
            for m in &mut bin.members {
                m.0 = map[m.0 as usize];
                bin.slot_of[m.0 as usize] = m.1;
            }
        }
        Ok(())
    }
}

impl<A: Assigner> FixedWindows<A> {
    /// Fold a chunk into panes (EMIT FINAL of overlapping windows).
    ///
    /// When a row's watermark closes a window, the rows before it are folded and the
    /// window is closed right there (its rows kept for the end of the call), so that no
    /// later row of the chunk reaches a window that closed before it arrived.
    fn process_panes(&mut self, chunk: Chunk, ctx: &mut Ctx) -> Result<Chunk> {
        let (keys, args) = self.shared.key_and_args(&chunk, ctx)?;
        let def = self.shared.def.clone();
        let size = self.assigner.size();
        let pane = self.assigner.pane();
        let (event, marks, input_rows) = times(&chunk);
        let n = chunk.rows;
        let key_ids = std::mem::take(&mut self.shared.key_ids);
        // The rows placed since the last fold, and their slots.
        let mut rows: Vec<u32> = Vec::new();
        let mut slots: Vec<u32> = Vec::with_capacity(n);
        let mut current: Option<(i64, usize)> = None;
        for i in 0..n {
            let (ts, mark, key) = (event[i], marks[i], key_ids[i]);
            if self
                .next_window
                .is_some_and(|w| w.saturating_add(size) <= mark)
            {
                self.fold_panes(&args, &mut rows, &mut slots, n)?;
                if let Some(out) = self.close_panes(mark)? {
                    self.pending.push(out);
                }
                current = None;
            }
            let mut place = ts;
            let last_end = self.assigner.last_start(ts) + size;
            if last_end <= mark {
                if def.late == LateStrategy::IncludeInNextWindow {
                    place = mark;
                } else {
                    route_late(ctx, def.late, input_rows[i], ts, mark, last_end);
                    continue;
                }
            }
            let b = match current {
                Some((start, b)) if place >= start && place - start < pane => b,
                _ => {
                    let start = super::floor_div(place, pane) * pane;
                    let b = self.bins.at(start, false);
                    current = Some((start, b));
                    // The first window this row counts in, if none is due before it.
                    let mut first = self.assigner.first_start(place);
                    while first.saturating_add(size) <= mark {
                        first += self.assigner.advance();
                    }
                    if let Some(w) = self.last_emitted {
                        first = first.max(w + self.assigner.advance());
                    }
                    self.next_window = Some(self.next_window.map_or(first, |w| w.min(first)));
                    b
                }
            };
            let key_count = self.shared.keys.len();
            let s = self.bins.slab[b].slot(key, key_count, &mut self.shared);
            rows.push(i as u32);
            slots.push(s);
        }
        self.shared.key_ids = key_ids;
        self.fold_panes(&args, &mut rows, &mut slots, n)?;
        Ok(empty_like(&keys, &self.shared, n))
    }

    /// Fold the rows placed so far into their panes, emptying `rows` and `slots`.
    fn fold_panes(
        &mut self,
        args: &[Option<arrow::array::ArrayRef>],
        rows: &mut Vec<u32>,
        slots: &mut Vec<u32>,
        chunk_rows: usize,
    ) -> Result<()> {
        if slots.is_empty() {
            return Ok(());
        }
        // Rows only grow: as many as the chunk has means all of them, in order.
        let order = (rows.len() != chunk_rows).then_some(&rows[..]);
        self.shared.fold(args, order, slots, false)?;
        rows.clear();
        slots.clear();
        Ok(())
    }

    /// Live (window, key) states of panes: each open window's distinct keys.
    fn paned_state_groups(&self) -> usize {
        let (Some(first), Some((&last, _))) = (self.next_window, self.bins.index.last_key_value())
        else {
            return 0;
        };
        let size = self.assigner.size();
        let mut total = 0;
        let mut keys = hashbrown::HashSet::new();
        let mut w = first;
        while w <= last {
            keys.clear();
            for (_, &b) in self.bins.index.range(w..w.saturating_add(size)) {
                keys.extend(self.bins.slab[b].members.iter().map(|m| m.0));
            }
            total += keys.len();
            w += self.assigner.advance();
        }
        total
    }

    /// Emit every window the watermark closed, each merged from its panes; free the
    /// panes no open window spans any more.
    fn close_panes(&mut self, watermark: i64) -> Result<Option<Chunk>> {
        let size = self.assigner.size();
        let advance = self.assigner.advance();
        let mut rows = Vec::new();
        let mut merged = Vec::new();
        let mut out_of: Vec<u32> = Vec::new();
        while let Some(w) = self.next_window {
            if w.saturating_add(size) > watermark {
                break;
            }
            let panes: Vec<usize> = self
                .bins
                .index
                .range(w..w + size)
                .map(|(_, &b)| b)
                .collect();
            if panes.is_empty() {
                // No row in this window: skip to the first window of the next pane.
                self.next_window = self
                    .bins
                    .index
                    .range(w + size..)
                    .next()
                    .map(|(&p, _)| self.assigner.first_start(p).max(w + advance));
                continue;
            }
            out_of.clear();
            out_of.resize(self.shared.keys.len(), NO_SLOT);
            let first = rows.len();
            for b in panes {
                for &(key, slot) in &self.bins.slab[b].members {
                    let k = key as usize;
                    if out_of[k] == NO_SLOT {
                        out_of[k] = self.shared.allocate();
                        for acc in &mut self.shared.accumulators {
                            acc.reserve_groups(self.shared.slots as usize);
                        }
                        merged.push(out_of[k]);
                        rows.push((w, w + size, key, out_of[k]));
                    }
                    for acc in &mut self.shared.accumulators {
                        acc.merge_keep(out_of[k], slot)?;
                    }
                }
            }
            debug_assert!(rows.len() > first);
            self.last_emitted = Some(w);
            self.next_window = Some(w + advance);
        }
        let out = self.shared.emit_rows(&mut rows)?;
        for slot in merged {
            self.shared.release(slot);
        }
        // A pane is done once the last window spanning it has closed.
        while let Some((&p, _)) = self.bins.index.first_key_value() {
            if self.assigner.last_start(p).saturating_add(size) > watermark {
                break;
            }
            let bin = self.bins.remove(p).expect("listed above");
            for &(_, slot) in &bin.members {
                self.shared.release(slot);
            }
        }
        self.compact()?;
        Ok(out)
    }
}

impl<A: Assigner> Operator for FixedWindows<A> {
    fn process(&mut self, chunk: Chunk, ctx: &mut Ctx) -> Result<Chunk> {
        if self.paned {
            return self.process_panes(chunk, ctx);
        }
        let (keys, args) = self.shared.key_and_args(&chunk, ctx)?;
        let def = self.shared.def.clone();
        let size = self.assigner.size();
        let changes = def.emit == EmitMode::Changes;
        let (event, marks, input_rows) = times(&chunk);
        let n = chunk.rows;
        let key_ids = std::mem::take(&mut self.shared.key_ids);
        let key_count = self.shared.keys.len();

        // (row, slot, window start) of every row's windows, in arrival order; rows whose
        // every window closed go by the late-data strategy.
        let mut rows: Vec<u32> = Vec::new();
        let mut slots: Vec<u32> = Vec::with_capacity(n);
        let mut starts: Vec<i64> = Vec::new();
        let mut in_order = true;
        let mut late: Vec<(u32, u32, i64)> = Vec::new();
        let mut current: Option<(i64, usize)> = None;
        let bins = &mut self.bins;
        let shared = &mut self.shared;
        // `rows` is filled only once the pairs stop being "row i, its one window".
        let out_of_order = |in_order: &mut bool, rows: &mut Vec<u32>, pairs: usize| {
            if *in_order {
                *in_order = false;
                rows.extend(0..pairs as u32);
            }
        };
        for i in 0..n {
            let (ts, mark, key) = (event[i], marks[i], key_ids[i]);
            if A::SINGLE {
                // The common case: the row falls in the window of the row before it.
                if let Some((start, b)) = current {
                    if ts >= start && ts - start < size && start + size > mark {
                        let s = bins.slab[b].slot(key, key_count, shared);
                        if !in_order {
                            rows.push(i as u32);
                        }
                        slots.push(s);
                        if changes {
                            starts.push(start);
                        }
                        continue;
                    }
                }
            }
            let last = self.assigner.last_start(ts);
            let mut place = ts;
            if last + size <= mark {
                match def.late {
                    LateStrategy::Drop | LateStrategy::DeadLetter => {
                        route_late(ctx, def.late, input_rows[i], ts, mark, last + size);
                        out_of_order(&mut in_order, &mut rows, slots.len());
                        continue;
                    }
                    LateStrategy::IncludeInNextWindow => place = mark,
                    LateStrategy::UpdatePrevious => {
                        let mut start = last;
                        let mut kept = false;
                        while start + size > ts {
                            if start + size + def.allowed_lateness_ms > mark {
                                let b = bins.at(start, true);
                                let s = bins.slab[b].slot(key, key_count, shared);
                                late.push((i as u32, s, start));
                                kept = true;
                            }
                            start = self.assigner.previous(start);
                        }
                        if !kept {
                            ctx.late_dropped += 1;
                        }
                        out_of_order(&mut in_order, &mut rows, slots.len());
                        continue;
                    }
                }
            }
            let mut start = self.assigner.last_start(place);
            let mut first = true;
            while start + size > place {
                if start + size > mark {
                    let b = bins.at(start, false);
                    current = Some((start, b));
                    let s = bins.slab[b].slot(key, key_count, shared);
                    if !first {
                        out_of_order(&mut in_order, &mut rows, slots.len());
                    }
                    first = false;
                    if !in_order {
                        rows.push(i as u32);
                    }
                    slots.push(s);
                    if changes {
                        starts.push(start);
                    }
                } else if def.late == LateStrategy::UpdatePrevious
                    && start + size + def.allowed_lateness_ms > mark
                {
                    // An earlier window of a sliding row that has closed: corrected too.
                    let b = bins.at(start, true);
                    let s = bins.slab[b].slot(key, key_count, shared);
                    late.push((i as u32, s, start));
                }
                start = self.assigner.previous(start);
            }
            if first {
                out_of_order(&mut in_order, &mut rows, slots.len());
            }
        }
        self.shared.key_ids = key_ids;

        let order = if in_order { None } else { Some(&rows[..]) };
        let aggs = self.shared.fold(&args, order, &slots, changes)?;
        let mut out = Vec::new();
        if changes {
            let ends = starts.iter().map(|s| s + size).collect();
            out.push(changes_chunk(
                Shared::keys_of_rows(&keys, order)?,
                aggs,
                starts,
                ends,
            ));
        }
        if !late.is_empty() {
            // Late rows that correct a window re-emit its row (or, before the window was
            // emitted at all, only fold into it).
            let (late_rows, late_slots): (Vec<u32>, Vec<u32>) =
                late.iter().map(|l| (l.0, l.1)).unzip();
            let corrected = self
                .shared
                .fold(&args, Some(&late_rows), &late_slots, true)?;
            let emitted: Vec<bool> = late
                .iter()
                .map(|l| changes || self.bins.get(l.2).is_some_and(|b| b.closed))
                .collect();
            let starts: Vec<i64> = late.iter().map(|l| l.2).collect();
            let ends = starts.iter().map(|s| s + size).collect();
            let chunk = changes_chunk(
                Shared::keys_of_rows(&keys, Some(&late_rows))?,
                corrected,
                starts,
                ends,
            );
            let mask = arrow::array::BooleanArray::from(emitted);
            out.push(chunk.filter(&mask, None)?);
        }
        Ok(concat_chunks(out)?.unwrap_or_else(|| empty_like(&keys, &self.shared, n)))
    }

    fn on_watermark(&mut self, watermark: i64, _ctx: &mut Ctx) -> Result<Option<Chunk>> {
        if self.paned {
            let mut out = std::mem::take(&mut self.pending);
            out.extend(self.close_panes(watermark)?);
            return super::concat_chunks(out);
        }
        let size = self.assigner.size();
        let def = self.shared.def.clone();
        let Some(last_closing) = watermark.checked_sub(size) else {
            return Ok(None);
        };
        let ready: Vec<i64> = self
            .bins
            .index
            .range(..=last_closing)
            .map(|(s, _)| *s)
            .collect();
        let mut rows = Vec::new();
        let mut release = Vec::new();
        for start in ready {
            let end = start + size;
            let keep = def.late == LateStrategy::UpdatePrevious
                && end.saturating_add(def.allowed_lateness_ms) > watermark;
            let b = self.bins.index[&start];
            let bin = &mut self.bins.slab[b];
            if !bin.closed && def.emit == EmitMode::Final {
                rows.extend(bin.members.iter().map(|&(k, s)| (start, end, k, s)));
            }
            bin.closed = true;
            if !keep {
                let bin = self.bins.remove(start).expect("listed above");
                release.extend(bin.members.iter().map(|m| m.1));
            }
        }
        let out = self.shared.close(&mut rows, &release)?;
        self.compact()?;
        Ok(out)
    }

    fn flush(&mut self, ctx: &mut Ctx) -> Result<Option<Chunk>> {
        self.on_watermark(i64::MAX, ctx)
    }

    fn snapshot(&self) -> OpState {
        let mut state = self.shared.state();
        state.bins = self
            .bins
            .iter()
            .map(|(s, b)| (s, b.closed, b.members.clone()))
            .collect();
        state.next_window = self.next_window;
        state.last_emitted = self.last_emitted;
        OpState::Window(Box::new(state))
    }

    fn restore(&mut self, state: OpState) -> Result<()> {
        let OpState::Window(mut state) = state else {
            return Err(EngineError::Snapshot(format!(
                "it holds {} where this query keeps window state",
                state.kind()
            )));
        };
        let used: Vec<u32> = state
            .bins
            .iter()
            .flat_map(|b| b.2.iter().map(|m| m.1))
            .collect();
        let keys = state.keys.len;
        if state.bins.iter().any(|b| b.2.iter().any(|m| m.0 >= keys)) || !state.sessions.is_empty()
        {
            return Err(EngineError::Snapshot(
                "its window state names keys that do not exist".into(),
            ));
        }
        self.shared.restore(&mut state, &used)?;
        self.next_window = state.next_window;
        self.last_emitted = state.last_emitted;
        self.bins = Bins::default();
        for (start, closed, members) in state.bins {
            let b = self.bins.at(start, closed);
            let bin = &mut self.bins.slab[b];
            bin.slot_of = vec![NO_SLOT; keys as usize];
            for &(k, s) in &members {
                bin.slot_of[k as usize] = s;
            }
            bin.members = members;
        }
        Ok(())
    }

    fn held_since(&self) -> Option<i64> {
        // Bins (windows, or panes) are kept until every window holding them closed; a
        // record older than the first bin's start is in no open window.
        self.bins.index.keys().next().copied()
    }

    fn state_groups(&self) -> usize {
        if self.paned {
            self.paned_state_groups()
        } else {
            self.shared.live()
        }
    }

    fn state_bytes(&self) -> usize {
        self.shared.state_bytes()
            + self
                .bins
                .iter()
                .map(|(_, b)| b.slot_of.capacity() * 4 + b.members.capacity() * 8)
                .sum::<usize>()
            + self.bins.index.len() * 32
    }
}

/// An empty output chunk of a window aggregate's layout.
pub fn empty_like(keys: &[arrow::array::ArrayRef], shared: &Shared, _n: usize) -> Chunk {
    let mut columns: Vec<arrow::array::ArrayRef> = keys.iter().map(|k| k.slice(0, 0)).collect();
    for acc in &shared.accumulators {
        columns.push(arrow::array::new_empty_array(&acc.output_type));
    }
    columns.push(arrow::array::new_empty_array(
        &arrow::datatypes::DataType::Int64,
    ));
    columns.push(arrow::array::new_empty_array(
        &arrow::datatypes::DataType::Int64,
    ));
    Chunk::new(columns, 0)
}
