//! Window aggregation: tumbling, sliding and session windows over event time.
//!
//! One operator per window kind (as Arroyo and bytewax do): [`tumbling`] and [`sliding`]
//! assign rows to fixed windows kept in [`bins`] (ordered by end, so the watermark pops
//! what closes without a scan), [`session`] keeps per-key sessions with an index of the
//! next time to act. They share what this module owns:
//!
//! - the **key table**: group keys → dense key ids (a [`GroupTable`]), compacted when most
//!   of its keys no longer belong to an open window, so a long run's memory stays flat;
//! - the **slot pool**: one accumulator slot per live (window, key), freed when its window
//!   closes and reused by the next one;
//! - the **output**: closing windows' rows (keys, aggregates, `_window_start`,
//!   `_window_end`) ordered by window end, then by group key (SPEC section 12).
//!
//! Lateness (SPEC section 12): a row is late when every window it belongs to has closed
//! (`end <= watermark`), judged against the watermark left by the rows before it. What
//! then happens is the query's `late.data.strategy`; nothing is dropped uncounted.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, UInt32Array};
use arrow::compute::{lexsort_to_indices, take, SortColumn, SortOptions};
use arrow::datatypes::{Int64Type, UInt32Type};
use serde::{Deserialize, Serialize};

use crate::aggregate::{Accumulator, AggState};
use crate::error::{EngineError, Result};
use crate::groups::{GroupKeys, GroupTable};
use crate::operator::aggregate::GroupingDef;
use crate::operator::{Chunk, Ctx, Times};
use crate::plan::{EmitMode, LateStrategy, WindowKind};

pub mod bins;
pub mod session;
pub mod sliding;
pub mod tumbling;

/// Marks "no slot" in a bin's key → slot map.
pub const NO_SLOT: u32 = u32::MAX;

/// A bound window aggregate.
#[derive(Debug)]
pub struct WindowDef {
    pub grouping: Arc<GroupingDef>,
    pub kind: WindowKind,
    pub emit: EmitMode,
    pub late: LateStrategy,
    pub allowed_lateness_ms: i64,
}

/// The serialisable state of a window aggregate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WindowState {
    pub keys: GroupKeys,
    pub accumulators: Vec<AggState>,
    /// Slots in use or free: `0..slots`.
    pub slots: u32,
    pub free: Vec<u32>,
    /// Fixed windows.
    pub bins: Vec<SavedBin>,
    /// Sessions: (key id, start, end, slot).
    pub sessions: Vec<(u32, i64, i64, u32)>,
    /// Panes of sliding windows: the next window to emit and the last one emitted.
    #[serde(default)]
    pub next_window: Option<i64>,
    #[serde(default)]
    pub last_emitted: Option<i64>,
}

/// A fixed window in a snapshot: start, whether it was emitted, members as
/// (key id, slot).
pub type SavedBin = (i64, bool, Vec<(u32, u32)>);

/// What every window operator holds: key table, accumulators, slot pool.
pub struct Shared {
    pub def: Arc<WindowDef>,
    pub keys: GroupTable,
    pub accumulators: Vec<Accumulator>,
    /// Slots ever allocated (`0..slots`); the free ones are in `free`.
    pub slots: u32,
    pub free: Vec<u32>,
    /// Scratch: key id of each row.
    pub key_ids: Vec<u32>,
    /// Key id → the key's rank in SQL order (NULLs last), for ordering closed windows'
    /// rows; valid for the first `ranked` keys.
    ranks: Vec<u32>,
    ranked: usize,
}

impl Shared {
    pub fn new(def: Arc<WindowDef>) -> Result<Self> {
        Ok(Shared {
            keys: GroupTable::new(&def.grouping.key_types)?,
            accumulators: def.grouping.accumulators()?,
            def,
            slots: 0,
            free: Vec::new(),
            key_ids: Vec::new(),
            ranks: Vec::new(),
            ranked: 0,
        })
    }

    /// A slot for a new (window, key) state.
    #[inline]
    pub fn allocate(&mut self) -> u32 {
        match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots += 1;
                self.slots - 1
            }
        }
    }

    /// Free a closed window's slot for reuse.
    pub fn release(&mut self, slot: u32) {
        self.release_all(&[slot]);
    }

    /// Free closed windows' slots for reuse, each accumulator in one pass.
    pub fn release_all(&mut self, slots: &[u32]) {
        for acc in &mut self.accumulators {
            acc.free_all(slots);
        }
        self.free.extend_from_slice(slots);
    }

    /// Close windows: their rows (under EMIT FINAL, ordered as [`Self::emit_rows`]
    /// orders them), then their slots freed.
    pub fn close(
        &mut self,
        rows: &mut [(i64, i64, u32, u32)],
        released: &[u32],
    ) -> Result<Option<Chunk>> {
        let out = if self.def.emit == EmitMode::Final {
            self.emit_rows(rows)?
        } else {
            None
        };
        self.release_all(released);
        Ok(out)
    }

    /// Slots in use.
    pub fn live(&self) -> usize {
        self.slots as usize - self.free.len()
    }

    /// Key ids of a chunk's rows (`key_ids`), and the chunk's aggregate arguments.
    pub fn key_and_args(
        &mut self,
        chunk: &Chunk,
        ctx: &Ctx,
    ) -> Result<(Vec<ArrayRef>, Vec<Option<ArrayRef>>)> {
        let input = crate::expr::Input {
            columns: &chunk.columns,
            num_rows: chunk.rows,
            now_ms: ctx.now_ms,
        };
        let keys = self.def.grouping.eval_keys(&input)?;
        self.keys.group_ids(&keys, chunk.rows, &mut self.key_ids)?;
        let args = self.def.grouping.eval_args(&input)?;
        Ok((keys, args))
    }

    /// Fold rows into slots: `rows` are the chunk rows (None: every row, in order) and
    /// `slots` their slots. Under EMIT CHANGES returns each row's updated aggregates.
    pub fn fold(
        &mut self,
        args: &[Option<ArrayRef>],
        rows: Option<&[u32]>,
        slots: &[u32],
        emit: bool,
    ) -> Result<Vec<ArrayRef>> {
        let indices = rows.map(|r| UInt32Array::from(r.to_vec()));
        let mut out = Vec::new();
        for (acc, arg) in self.accumulators.iter_mut().zip(args) {
            let arg = match (arg, &indices) {
                (Some(a), Some(ix)) => Some(take(a.as_ref(), ix, None)?),
                (Some(a), None) => Some(a.clone()),
                (None, _) => None,
            };
            if emit {
                out.push(acc.update_and_emit(slots, self.slots as usize, arg.as_ref())?);
            } else {
                acc.update(slots, self.slots as usize, arg.as_ref())?;
            }
        }
        Ok(out)
    }

    /// Rank every key in SQL order (NULLs last), when keys were added since the last
    /// ranking: closed windows' rows are then ordered by integer comparisons.
    fn rank_keys(&mut self) -> Result<()> {
        let keys = self.keys.len();
        if self.ranked == keys {
            return Ok(());
        }
        let ids: Vec<u32> = (0..keys as u32).collect();
        let columns = self.keys.key_columns(&ids)?;
        self.ranks = vec![0; keys];
        if columns.is_empty() {
            self.ranked = keys;
            return Ok(());
        }
        let options = Some(SortOptions {
            descending: false,
            nulls_first: false,
        });
        let order: Vec<SortColumn> = columns
            .iter()
            .map(|k| SortColumn {
                values: k.clone(),
                options,
            })
            .collect();
        let indices = lexsort_to_indices(&order, None)?;
        for (rank, &id) in indices.values().iter().enumerate() {
            self.ranks[id as usize] = rank as u32;
        }
        self.ranked = keys;
        Ok(())
    }

    /// Rows for closed windows: `(window start, window end, key id, slot)` each, ordered
    /// by window end, then by group key. The slots are not released here.
    pub fn emit_rows(&mut self, closed: &mut [(i64, i64, u32, u32)]) -> Result<Option<Chunk>> {
        if closed.is_empty() {
            return Ok(None);
        }
        self.rank_keys()?;
        sort_closed(closed, &self.ranks);
        let key_ids: Vec<u32> = closed.iter().map(|c| c.2).collect();
        let slots: Vec<u32> = closed.iter().map(|c| c.3).collect();
        let mut columns = self.keys.key_columns(&key_ids)?;
        for acc in &self.accumulators {
            columns.push(acc.evaluate(&slots)?);
        }
        columns.push(Arc::new(Int64Array::from_iter_values(
            closed.iter().map(|c| c.0),
        )));
        columns.push(Arc::new(Int64Array::from_iter_values(
            closed.iter().map(|c| c.1),
        )));
        Ok(Some(Chunk::new(columns, closed.len())))
    }

    /// The keys of chosen chunk rows, for EMIT CHANGES rows.
    pub fn keys_of_rows(keys: &[ArrayRef], rows: Option<&[u32]>) -> Result<Vec<ArrayRef>> {
        match rows {
            None => Ok(keys.to_vec()),
            Some(r) => {
                let ix = UInt32Array::from(r.to_vec());
                Ok(keys
                    .iter()
                    .map(|k| take(k.as_ref(), &ix, None))
                    .collect::<Result<_, _>>()?)
            }
        }
    }

    /// The serialisable part shared by every window kind.
    pub fn state(&self) -> WindowState {
        WindowState {
            keys: self.keys.keys().clone(),
            accumulators: self.accumulators.iter().map(|a| a.state.clone()).collect(),
            slots: self.slots,
            free: self.free.clone(),
            bins: Vec::new(),
            sessions: Vec::new(),
            next_window: None,
            last_emitted: None,
        }
    }

    /// Restore the shared part; checks that every slot named by `used` exists.
    pub fn restore(&mut self, state: &mut WindowState, used: &[u32]) -> Result<()> {
        let bad = |what: &str| Err(EngineError::Snapshot(format!("its window state {what}")));
        if state.free.iter().chain(used).any(|&s| s >= state.slots) {
            return bad("names slots that do not exist");
        }
        let mut fresh = self.def.grouping.accumulators()?;
        crate::operator::aggregate::restore_accumulators(
            &mut fresh,
            std::mem::take(&mut state.accumulators),
        )?;
        for acc in &mut fresh {
            acc.reserve_groups(state.slots as usize);
        }
        let mut keys = GroupTable::new(&self.def.grouping.key_types)?;
        keys.restore(std::mem::take(&mut state.keys))?;
        self.keys = keys;
        self.ranked = 0;
        self.accumulators = fresh;
        self.slots = state.slots;
        self.free = std::mem::take(&mut state.free);
        Ok(())
    }

    pub fn state_bytes(&self) -> usize {
        self.keys.state_bytes()
            + self.free.capacity() * 4
            + self
                .accumulators
                .iter()
                .map(Accumulator::state_bytes)
                .sum::<usize>()
    }

    /// Whether the key table holds so many keys no open window uses that it should be
    /// rebuilt with the live ones only.
    pub fn should_compact(&self, live_keys: usize) -> bool {
        self.keys.len() > 4096 && self.keys.len() > 4 * live_keys
    }

    /// Rebuild the key table with only `live` key ids; returns old id → new id
    /// (`NO_SLOT` for dropped keys).
    pub fn compact_keys(&mut self, live: &[u32]) -> Result<Vec<u32>> {
        let columns = self.keys.key_columns(live)?;
        let mut fresh = GroupTable::new(&self.def.grouping.key_types)?;
        let mut new_ids = Vec::new();
        fresh.group_ids(&columns, live.len(), &mut new_ids)?;
        let mut map = vec![NO_SLOT; self.keys.len()];
        for (&old, &new) in live.iter().zip(&new_ids) {
            map[old as usize] = new;
        }
        self.keys = fresh;
        self.ranked = 0;
        Ok(map)
    }
}

/// Order closed windows' rows by window end, then key rank. Rows of one window end (the
/// common case: a window closes) are placed by rank in one pass when the window holds a
/// good share of the keys, instead of being compared.
fn sort_closed(closed: &mut [(i64, i64, u32, u32)], ranks: &[u32]) {
    if !closed.windows(2).all(|w| w[0].1 <= w[1].1) {
        closed.sort_by_key(|c| c.1);
    }
    let mut start = 0;
    while start < closed.len() {
        let end = closed[start..]
            .iter()
            .position(|c| c.1 != closed[start].1)
            .map_or(closed.len(), |p| start + p);
        let group = &mut closed[start..end];
        if group.len() * 4 >= ranks.len() && group.len() > 64 {
            // Each key appears once per window: place rows at their rank.
            let mut at = vec![u32::MAX; ranks.len()];
            for (i, c) in group.iter().enumerate() {
                at[ranks[c.2 as usize] as usize] = i as u32;
            }
            let sorted: Vec<_> = at
                .iter()
                .filter(|&&i| i != u32::MAX)
                .map(|&i| group[i as usize])
                .collect();
            if sorted.len() == group.len() {
                group.copy_from_slice(&sorted);
            } else {
                group.sort_unstable_by_key(|c| ranks[c.2 as usize]);
            }
        } else {
            group.sort_unstable_by_key(|c| ranks[c.2 as usize]);
        }
        start = end;
    }
}

/// Row times of a windowed chunk: event time and the watermark before each row.
pub fn times(chunk: &Chunk) -> (&[i64], &[i64], &[u32]) {
    let t: &Times = chunk
        .times
        .as_ref()
        .expect("a windowed query's chunks carry times");
    (
        t.event.as_primitive::<Int64Type>().values(),
        t.watermark.as_primitive::<Int64Type>().values(),
        t.row.as_primitive::<UInt32Type>().values(),
    )
}

/// Floor division (toward negative infinity): windows of times before 1970 too.
#[inline]
pub fn floor_div(a: i64, b: i64) -> i64 {
    a.div_euclid(b)
}

/// The reason a late record is routed to the dead letters.
pub fn late_reason(ts: i64, watermark: i64, last_end: i64) -> String {
    format!(
        "late record: event time {ts} is behind the watermark {watermark}, and its last \
         window closed at {last_end}"
    )
}

/// Record one late row under `drop` / `dead_letter` (the other strategies place it).
pub fn route_late(
    ctx: &mut Ctx,
    strategy: LateStrategy,
    row: u32,
    ts: i64,
    watermark: i64,
    last_end: i64,
) {
    match strategy {
        LateStrategy::DeadLetter => ctx.dead.push((row, late_reason(ts, watermark, last_end))),
        _ => ctx.late_dropped += 1,
    }
}

/// Assemble EMIT CHANGES output: keys, aggregates, window start and end per row.
pub fn changes_chunk(
    mut keys: Vec<ArrayRef>,
    aggs: Vec<ArrayRef>,
    starts: Vec<i64>,
    ends: Vec<i64>,
) -> Chunk {
    let rows = starts.len();
    keys.extend(aggs);
    keys.push(Arc::new(Int64Array::from(starts)));
    keys.push(Arc::new(Int64Array::from(ends)));
    Chunk::new(keys, rows)
}

/// Concatenate chunks of the same layout (None when there are none).
pub fn concat_chunks(chunks: Vec<Chunk>) -> Result<Option<Chunk>> {
    let mut chunks: Vec<Chunk> = chunks.into_iter().filter(|c| c.rows > 0).collect();
    match chunks.len() {
        0 => Ok(None),
        1 => Ok(chunks.pop()),
        _ => {
            let rows = chunks.iter().map(|c| c.rows).sum();
            let width = chunks[0].columns.len();
            let columns = (0..width)
                .map(|i| {
                    let parts: Vec<&dyn Array> =
                        chunks.iter().map(|c| c.columns[i].as_ref()).collect();
                    arrow::compute::concat(&parts)
                })
                .collect::<Result<_, _>>()?;
            Ok(Some(Chunk::new(columns, rows)))
        }
    }
}
