//! The group table: maps group keys (one or many columns, any supported types, NULLs
//! included) to dense group ids `0..n`.
//!
//! Keys are encoded to bytes once per row (a single string key as its UTF-8 bytes, a
//! single integer key as 8 bytes, anything else through Arrow's row format) and stored
//! back to back in one arena; the hash table holds only the 4-byte group ids. That keeps
//! the state small (tens of bytes per group) and lets it be serialised as plain vectors.
//!
//! A new group gets the next id. Ids follow the order in which groups were created,
//! which within a batch is not necessarily row order (see `KeyFilter`): callers that
//! need "the first row of a new group" compare ids with the table's length before the
//! batch, they do not expect ids to appear in ascending order.

use std::hash::BuildHasher;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type, UInt64Type};
use arrow::row::{RowConverter, SortField};
use foldhash::fast::FixedState;
use hashbrown::hash_table::Entry;
use hashbrown::HashTable;
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::expr::{canonical_float, Value};

/// The hash index's allocator: the global one, with every new block written once
/// (zeros) in address order. A fresh query's first batch then stores into memory already
/// in the cache, instead of missing it at random addresses once per new group.
#[derive(Clone, Copy, Default)]
struct Touched;

unsafe impl allocator_api2::alloc::Allocator for Touched {
    fn allocate(
        &self,
        layout: std::alloc::Layout,
    ) -> std::result::Result<std::ptr::NonNull<[u8]>, allocator_api2::alloc::AllocError> {
        let block = allocator_api2::alloc::Global.allocate(layout)?;
        // SAFETY: `block` is a fresh allocation of `block.len()` bytes.
        unsafe { std::ptr::write_bytes(block.as_ptr() as *mut u8, 0, block.len()) };
        Ok(block)
    }

    unsafe fn deallocate(&self, ptr: std::ptr::NonNull<u8>, layout: std::alloc::Layout) {
        // SAFETY: forwarded as received (allocated by `Global` in `allocate`).
        unsafe { allocator_api2::alloc::Global.deallocate(ptr, layout) }
    }
}

/// How keys are turned into bytes.
enum Encoding {
    /// No GROUP BY: one global group.
    Global,
    /// One string column: the key is its UTF-8 bytes.
    Utf8,
    /// One integer column: the key is its value as 8 little-endian bytes (an UInt64
    /// column's own bits, other integers widened to Int64).
    Int64,
    /// Anything else: Arrow's row format.
    Rows(RowConverter),
}

/// The most groups a table's first batch reserves room for (a larger first batch grows
/// the table as usual beyond this).
pub const FIRST_BATCH_GROUPS: usize = 1 << 16;

/// The serialisable part of a [`GroupTable`] (the hash index is rebuilt on restore).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct GroupKeys {
    /// Concatenated key bytes of every group.
    pub arena: Vec<u8>,
    /// `offsets[g]..offsets[g + 1]` is group g's key in `arena` (64-bit: an arena may
    /// outgrow 4 GiB without wrapping).
    pub offsets: Vec<u64>,
    /// The group of the NULL key (single-column encodings only).
    pub null_group: Option<u32>,
    /// Number of groups.
    pub len: u32,
}

/// Group keys → dense group ids.
pub struct GroupTable {
    encoding: Encoding,
    /// The key columns' types (to turn keys back into columns).
    types: Vec<DataType>,
    keys: GroupKeys,
    index: HashTable<u32, Touched>,
    hasher: FixedState,
    /// Which keys the table may hold (`None` once the groups outgrow it).
    filter: Option<KeyFilter>,
    /// Whether the last chunk of rows mixed new and known keys (see [`mixed`]).
    mixed: bool,
    /// The lookup index of a table whose keys are probed in bulk (a join's table), kept
    /// beside the hash index once [`GroupTable::enable_probe_index`] is called.
    probe: Option<ProbeIndex>,
}

/// A lookup-only index of a table's keys, for probing a whole batch of keys at once
/// with the memory accesses of many rows in flight (a join's probe side). Open
/// addressing with linear probing over 16-byte slots: the high 32 bits of the key's hash
/// (a tag) with the group id + 1 (0: an empty slot), and the key itself when it fits in
/// 8 bytes ([`Inline`]: an integer key, a string of at most 7 bytes). A batch is probed
/// in passes over a chunk of rows: hash every key; find each key's slot, prefetching the
/// slots of rows further on (a key held in its slot is then found or not without
/// touching anything else); for a longer key, compare its bytes with the candidate's,
/// prefetched meanwhile.
struct ProbeIndex {
    slots: Vec<[u64; 2]>,
    mask: usize,
    len: usize,
    inline: Inline,
}

/// Which keys a [`ProbeIndex`] slot holds itself.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Inline {
    /// 8-byte integer keys: all of them, as their bits.
    Int64,
    /// String keys of at most 7 bytes: the bytes, and the length in the top byte.
    Short,
    /// None (multi-column keys).
    Never,
}

/// A slot's key when the key is not held in the slot (a string key of 8 bytes or more:
/// a held string's top byte is its length, at most 7).
const NOT_INLINE: u64 = u64::MAX;

impl Inline {
    fn of(encoding: &Encoding) -> Self {
        match encoding {
            Encoding::Int64 => Inline::Int64,
            Encoding::Utf8 => Inline::Short,
            _ => Inline::Never,
        }
    }

    /// The key as a slot holds it, or [`NOT_INLINE`].
    #[inline(always)]
    fn key(self, bytes: &[u8]) -> u64 {
        match self {
            Inline::Int64 => u64::from_le_bytes(bytes.try_into().unwrap_or([0xFF; 8])),
            Inline::Short if bytes.len() <= 7 => {
                // Byte by byte: a copy of a variable length would be a call per key.
                let mut word = (bytes.len() as u64) << 56;
                for (i, &b) in bytes.iter().enumerate() {
                    word |= (b as u64) << (8 * i);
                }
                word
            }
            _ => NOT_INLINE,
        }
    }
}

/// Rows ahead of the current one whose memory a probe pass prefetches.
const PROBE_AHEAD: usize = 32;

#[inline(always)]
fn prefetch<T>(at: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it reads nothing and faults on no address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast::<i8>())
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// What the slot pass found for a row.
#[derive(Clone, Copy)]
enum Probe {
    Found(u32),
    Absent,
    /// The first slot with the key's tag, its bytes still to compare.
    Candidate(usize),
}

impl ProbeIndex {
    /// An index with room for `keys` keys at a load of at most 3/4.
    fn with_room_for(keys: usize, inline: Inline) -> Self {
        let size = (keys * 4 / 3 + 1).next_power_of_two().max(16);
        ProbeIndex {
            slots: vec![[0, 0]; size],
            mask: size - 1,
            len: 0,
            inline,
        }
    }

    #[inline(always)]
    fn tag(hash: u64) -> u64 {
        hash & !0xFFFF_FFFF
    }

    /// Add key id `g` of hash `hash` and bytes `key` (a key not in the index).
    fn insert(&mut self, hash: u64, g: u32, key: &[u8]) {
        let mut at = hash as usize & self.mask;
        while self.slots[at][0] != 0 {
            at = (at + 1) & self.mask;
        }
        self.slots[at] = [Self::tag(hash) | (g as u64 + 1), self.inline.key(key)];
        self.len += 1;
    }

    /// Whether one more key would take the load above 3/4.
    fn full(&self) -> bool {
        (self.len + 1) * 4 > self.slots.len() * 3
    }

    /// Find a key of hash `hash` held as `key` (its [`Inline::key`]) from slot `at` on.
    #[inline(always)]
    fn find(&self, hash: u64, key: u64, mut at: usize) -> Probe {
        let tag = Self::tag(hash);
        let held = key != NOT_INLINE || self.inline == Inline::Int64;
        loop {
            let [meta, slot_key] = self.slots[at];
            if meta == 0 {
                return Probe::Absent;
            }
            if Self::tag(meta) == tag {
                if held {
                    if slot_key == key {
                        return Probe::Found((meta & 0xFFFF_FFFF) as u32 - 1);
                    }
                } else if slot_key == NOT_INLINE {
                    return Probe::Candidate(at);
                }
            }
            at = (at + 1) & self.mask;
        }
    }

    #[inline(always)]
    fn id(&self, at: usize) -> u32 {
        (self.slots[at][0] & 0xFFFF_FFFF) as u32 - 1
    }

    fn bytes(&self) -> usize {
        self.slots.capacity() * 16
    }
}

/// A summary of the keys a table holds, one bit per slice of the hash space: a key
/// whose bit is clear is certainly new. Each batch's rows are split by it, without a
/// branch, into certainly-new keys and keys that may be known. Each part then goes
/// through the index with a branch that is predictable, where a batch that mixes new
/// and known keys at random (a fresh query's first batches) mispredicts the
/// insert-or-hit branch on up to one row in two.
struct KeyFilter {
    /// The bits, a power of two of them (at least [`Self::MIN_BITS`]).
    words: Vec<u64>,
}

impl KeyFilter {
    /// The fewest and the most bits of a filter. A table whose groups outgrow the most
    /// drops its filter: by then its batches are mostly hits.
    const MIN_BITS: usize = 1 << 10;
    const MAX_BITS: usize = 1 << 20;
    /// Bits per group: about 1 key in 16 passes for new at the fullest.
    const BITS_PER_GROUP: usize = 16;
    /// A key's bit is its hash from this bit on (hashbrown places a key by the low bits
    /// of its hash and tags it with the top 7).
    const SHIFT: u32 = 20;

    /// A filter sized for `groups` groups, or `None` when they are too many.
    fn sized_for(groups: usize) -> Option<Self> {
        let bits = (groups * Self::BITS_PER_GROUP)
            .next_power_of_two()
            .max(Self::MIN_BITS);
        (bits <= Self::MAX_BITS).then(|| KeyFilter {
            words: vec![0; bits / 64],
        })
    }

    /// Whether the filter still has room for `groups` groups.
    fn fits(&self, groups: usize) -> bool {
        groups * Self::BITS_PER_GROUP <= self.words.len() * 64
    }

    /// The word and bit of a hash.
    #[inline(always)]
    fn bit(&self, hash: u64) -> (usize, u64) {
        let b = (hash >> Self::SHIFT) as usize & (self.words.len() * 64 - 1);
        (b >> 6, 1 << (b & 63))
    }

    #[inline(always)]
    fn insert(&mut self, hash: u64) {
        let (word, bit) = self.bit(hash);
        self.words[word] |= bit;
    }
}

/// Whether a chunk of `rows` rows that created `created` groups mixed new and known keys
/// enough for the next chunk to be split by the [`KeyFilter`]: more than 1 row in 10 new
/// and more than 1 in 10 known. Below that, the insert-or-hit branch is mispredicted
/// less often than the split costs.
fn mixed(rows: usize, created: u32) -> bool {
    let created = created as usize;
    created * 10 > rows && created * 10 < rows * 9
}

/// Rows per chunk of [`GroupTable::assign`].
const CHUNK: usize = 256;
const _: () = assert!(CHUNK.is_multiple_of(64));

fn hash_of(hasher: &FixedState, bytes: &[u8]) -> u64 {
    hasher.hash_one(bytes)
}

/// Group g's key bytes.
fn key_of(keys: &GroupKeys, g: u32) -> &[u8] {
    &keys.arena[keys.offsets[g as usize] as usize..keys.offsets[g as usize + 1] as usize]
}

/// `a == b`, inlined for the short keys group-by usually sees (a call to `memcmp` per
/// row costs more than the comparison).
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    // Two overlapping words cover 4..=8 and 8..=16 bytes.
    let n = a.len();
    match n {
        0..4 => a == b,
        4..=8 => {
            let w = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().unwrap());
            w(a, 0) == w(b, 0) && w(a, n - 4) == w(b, n - 4)
        }
        9..=16 => {
            let w = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap());
            w(a, 0) == w(b, 0) && w(a, n - 8) == w(b, n - 8)
        }
        _ => a == b,
    }
}

impl GroupTable {
    /// A table for keys of these types (empty for a global aggregate).
    pub fn new(key_types: &[DataType]) -> Result<Self> {
        let encoding = match key_types {
            [] => Encoding::Global,
            [DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View] => Encoding::Utf8,
            [t] if t.is_integer() => Encoding::Int64,
            types => Encoding::Rows(RowConverter::new(
                types.iter().map(|t| SortField::new(t.clone())).collect(),
            )?),
        };
        let mut keys = GroupKeys::default();
        keys.offsets.push(0);
        Ok(GroupTable {
            encoding,
            types: key_types.to_vec(),
            keys,
            index: HashTable::new_in(Touched),
            hasher: FixedState::with_seed(0x5eed_cafe),
            filter: KeyFilter::sized_for(0),
            mixed: true,
            probe: None,
        })
    }

    /// Keep a [`ProbeIndex`] of the keys from now on: [`GroupTable::find_ids`] then
    /// probes a batch with many rows' memory accesses in flight (a table joined by a
    /// stream). It costs 16 bytes per key at most.
    pub fn enable_probe_index(&mut self) {
        self.rebuild_probe_index();
    }

    fn rebuild_probe_index(&mut self) {
        let mut probe =
            ProbeIndex::with_room_for(self.keys.len as usize + 1, Inline::of(&self.encoding));
        for g in 0..self.keys.len {
            if Some(g) != self.keys.null_group {
                let key = key_of(&self.keys, g);
                probe.insert(hash_of(&self.hasher, key), g, key);
            }
        }
        self.probe = Some(probe);
    }

    /// Record a new key in the probe index, if there is one.
    #[inline(always)]
    fn probe_added(&mut self, hash: u64, g: u32) {
        match &mut self.probe {
            None => {}
            Some(probe) if probe.full() => self.rebuild_probe_index(),
            Some(probe) => probe.insert(hash, g, key_of(&self.keys, g)),
        }
    }

    /// Number of groups.
    pub fn len(&self) -> usize {
        self.keys.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.keys.len == 0
    }

    /// Heap bytes held by the table.
    pub fn state_bytes(&self) -> usize {
        self.keys.arena.capacity()
            + self.keys.offsets.capacity() * 8
            + self.index.allocation_size()
            + self.filter.as_ref().map_or(0, |f| f.words.capacity() * 8)
            + self.probe.as_ref().map_or(0, ProbeIndex::bytes)
    }

    /// The group of a non-NULL key whose hash is `hash`, created if new.
    fn intern(&mut self, bytes: &[u8], hash: u64) -> u32 {
        let (hasher, keys) = (&self.hasher, &mut self.keys);
        match self.index.entry(
            hash,
            |&g| same_bytes(key_of(keys, g), bytes),
            |&g| hash_of(hasher, key_of(keys, g)),
        ) {
            Entry::Occupied(found) => *found.get(),
            Entry::Vacant(slot) => {
                if let Some(filter) = &mut self.filter {
                    filter.insert(hash);
                }
                let g = keys.len;
                keys.arena.extend_from_slice(bytes);
                keys.offsets.push(keys.arena.len() as u64);
                keys.len += 1;
                slot.insert(g);
                self.probe_added(hash, g);
                g
            }
        }
    }

    /// Add a key known to be new.
    fn insert_new(&mut self, bytes: &[u8], hash: u64) -> u32 {
        let (hasher, keys) = (&self.hasher, &mut self.keys);
        let g = keys.len;
        keys.arena.extend_from_slice(bytes);
        keys.offsets.push(keys.arena.len() as u64);
        keys.len += 1;
        self.index
            .insert_unique(hash, g, |&g| hash_of(hasher, key_of(keys, g)));
        self.probe_added(hash, g);
        g
    }

    /// Group ids of rows `0..n` into `out` (`valid(i)`: row i's key is not NULL;
    /// `key(i)`: its bytes), a chunk of [`CHUNK`] rows at a time.
    fn assign<K: AsRef<[u8]>>(
        &mut self,
        n: usize,
        valid: impl Fn(usize) -> bool,
        key: impl Fn(usize) -> K,
        out: &mut Vec<u32>,
    ) {
        out.resize(n, 0);
        let mut hashes = [0u64; CHUNK];
        for start in (0..n).step_by(CHUNK) {
            let len = CHUNK.min(n - start);
            let chunk_before = self.keys.len;
            let out = &mut out[start..start + len];
            let Some(filter) = self.filter.as_mut().filter(|_| self.mixed) else {
                for (j, h) in hashes[..len].iter_mut().enumerate() {
                    *h = hash_of(&self.hasher, key(start + j).as_ref());
                }
                for (j, &hash) in hashes[..len].iter().enumerate() {
                    let i = start + j;
                    out[j] = if valid(i) {
                        self.intern(key(i).as_ref(), hash)
                    } else {
                        self.null_group()
                    };
                }
                self.mixed = mixed(len, self.keys.len - chunk_before);
                continue;
            };
            // Hash, and split the rows by the filter without a branch: a row whose bit
            // is clear has a new key (and sets the bit); the others may or may not.
            for (j, h) in hashes[..len].iter_mut().enumerate() {
                *h = hash_of(&self.hasher, key(start + j).as_ref());
            }
            // Bit j of `seen[j / 64]`: row j may have a known key.
            let mut seen = [0u64; CHUNK / 64];
            for (k, rows) in hashes[..len].chunks(64).enumerate() {
                let mut mask = 0;
                for (l, &hash) in rows.iter().enumerate() {
                    let (word, bit) = filter.bit(hash);
                    let word = &mut filter.words[word];
                    let ok = valid(start + k * 64 + l);
                    mask |= (((*word & bit != 0) | !ok) as u64) << l;
                    *word |= bit & 0u64.wrapping_sub(ok as u64);
                }
                seen[k] = mask;
            }
            for (k, &mask) in seen.iter().enumerate().take(len.div_ceil(64)) {
                let rows = (len - k * 64).min(64);
                let mut new = !mask & (u64::MAX >> (64 - rows));
                while new != 0 {
                    let j = k * 64 + new.trailing_zeros() as usize;
                    new &= new - 1;
                    out[j] = self.insert_new(key(start + j).as_ref(), hashes[j]);
                }
            }
            for (k, &mask) in seen.iter().enumerate().take(len.div_ceil(64)) {
                let mut maybe = mask;
                while maybe != 0 {
                    let j = k * 64 + maybe.trailing_zeros() as usize;
                    maybe &= maybe - 1;
                    out[j] = if valid(start + j) {
                        self.intern(key(start + j).as_ref(), hashes[j])
                    } else {
                        self.null_group()
                    };
                }
            }
            self.mixed = mixed(len, self.keys.len - chunk_before);
        }
        if self.filter.as_ref().is_some_and(|f| !f.fits(self.len())) {
            self.resize_filter();
        }
    }

    fn null_group(&mut self) -> u32 {
        if let Some(g) = self.keys.null_group {
            return g;
        }
        let g = self.keys.len;
        self.keys.offsets.push(self.keys.arena.len() as u64);
        self.keys.len += 1;
        self.keys.null_group = Some(g);
        g
    }

    /// The group id of every row of `keys` (columns of equal length `n`), creating groups
    /// for keys not seen before. `out` is cleared first.
    ///
    /// Rows go a chunk at a time: the chunk's keys are hashed first, so a row's hash is
    /// ready before its probe, and while the table's chunks mix new and known keys the
    /// chunk is split by the `KeyFilter`. Ids of new groups therefore follow the order
    /// of creation, not always row order.
    ///
    /// A table's first batch sizes it: the hash index gets room for one group per row
    /// (up to [`FIRST_BATCH_GROUPS`]), the key arena room for those rows' key bytes and
    /// the filter bits for as many groups, so the first batch (which creates most of a
    /// fresh query's groups) does not grow them step by step. If the batch held far
    /// fewer groups, the room is given back.
    pub fn group_ids(&mut self, keys: &[ArrayRef], n: usize, out: &mut Vec<u32>) -> Result<()> {
        out.clear();
        out.reserve(n);
        let reserved = if self.keys.len == 0 {
            n.min(FIRST_BATCH_GROUPS)
        } else {
            0
        };
        match &self.encoding {
            Encoding::Global => {
                if self.keys.len == 0 {
                    self.keys.offsets.push(0);
                    self.keys.len = 1;
                }
                out.resize(n, 0);
            }
            Encoding::Utf8 => {
                let col = &keys[0];
                let col: ArrayRef = if matches!(col.data_type(), DataType::Utf8) {
                    col.clone()
                } else {
                    cast(col.as_ref(), &DataType::Utf8)?
                };
                let strings = col.as_string::<i32>();
                let offsets = strings.value_offsets();
                self.size_for_first_batch(
                    reserved,
                    (offsets[n] - offsets[0]) as usize * reserved / n.max(1),
                );
                let key = |i| strings.value(i).as_bytes();
                match strings.nulls() {
                    None => self.assign(n, |_| true, key, out),
                    Some(nulls) => self.assign(n, |i| nulls.is_valid(i), key, out),
                }
            }
            Encoding::Int64 if matches!(keys[0].data_type(), DataType::UInt64) => {
                // Values at or above 2^63 do not fit Int64: keyed by their own bits.
                let ints = keys[0].as_primitive::<UInt64Type>();
                self.size_for_first_batch(reserved, reserved * 8);
                let values = ints.values();
                let key = |i: usize| values[i].to_le_bytes();
                match ints.nulls() {
                    None => self.assign(n, |_| true, key, out),
                    Some(nulls) => self.assign(n, |i| nulls.is_valid(i), key, out),
                }
            }
            Encoding::Int64 => {
                let col = &keys[0];
                let col: ArrayRef = if matches!(col.data_type(), DataType::Int64) {
                    col.clone()
                } else {
                    cast(col.as_ref(), &DataType::Int64)?
                };
                let ints = col.as_primitive::<Int64Type>();
                self.size_for_first_batch(reserved, reserved * 8);
                let values = ints.values();
                let key = |i: usize| values[i].to_le_bytes();
                match ints.nulls() {
                    None => self.assign(n, |_| true, key, out),
                    Some(nulls) => self.assign(n, |i| nulls.is_valid(i), key, out),
                }
            }
            Encoding::Rows(converter) => {
                // -0.0 and 0.0 are one key, and so is every NaN (SQL equality).
                let keys: Vec<ArrayRef> = keys
                    .iter()
                    .map(|k| canonical_float(Value::Array(k.clone())).array().clone())
                    .collect();
                let rows = converter.convert_columns(&keys)?;
                self.size_for_first_batch(reserved, rows.size() * reserved / n.max(1));
                self.assign(n, |_| true, |i| rows.row(i), out);
            }
        }
        if self.len() * 4 < reserved {
            // Few groups after all: give back the room reserved for one per row.
            self.shrink_to_fit();
        }
        Ok(())
    }

    /// The group id of every row of `keys` (columns of equal length `n`, of the table's
    /// key types) without creating groups: `None` for a key the table does not hold.
    /// A row with a NULL in any key column finds nothing (SQL equality), even when the
    /// table holds a NULL group. `out` is cleared first.
    pub fn find_ids(&self, keys: &[ArrayRef], n: usize, out: &mut Vec<Option<u32>>) -> Result<()> {
        out.clear();
        out.reserve(n);
        if let Some(probe) = &self.probe {
            return self.probe_ids(probe, keys, n, out);
        }
        let find = |bytes: &[u8]| {
            let hash = hash_of(&self.hasher, bytes);
            self.index
                .find(hash, |&g| same_bytes(key_of(&self.keys, g), bytes))
                .copied()
        };
        let valid = |i: usize| keys.iter().all(|k| k.is_valid(i));
        match &self.encoding {
            Encoding::Global => out.resize(n, (self.keys.len > 0).then_some(0)),
            Encoding::Utf8 => {
                let col = cast(keys[0].as_ref(), &DataType::Utf8)?;
                let strings = col.as_string::<i32>();
                out.extend((0..n).map(|i| {
                    strings
                        .is_valid(i)
                        .then(|| find(strings.value(i).as_bytes()))
                        .flatten()
                }));
            }
            Encoding::Int64 if matches!(keys[0].data_type(), DataType::UInt64) => {
                let ints = keys[0].as_primitive::<UInt64Type>();
                out.extend((0..n).map(|i| {
                    ints.is_valid(i)
                        .then(|| find(&ints.value(i).to_le_bytes()))
                        .flatten()
                }));
            }
            Encoding::Int64 => {
                let col = cast(keys[0].as_ref(), &DataType::Int64)?;
                let ints = col.as_primitive::<Int64Type>();
                out.extend((0..n).map(|i| {
                    ints.is_valid(i)
                        .then(|| find(&ints.value(i).to_le_bytes()))
                        .flatten()
                }));
            }
            Encoding::Rows(converter) => {
                let canonical: Vec<ArrayRef> = keys
                    .iter()
                    .map(|k| canonical_float(Value::Array(k.clone())).array().clone())
                    .collect();
                let rows = converter.convert_columns(&canonical)?;
                out.extend((0..n).map(|i| valid(i).then(|| find(rows.row(i).as_ref())).flatten()));
            }
        }
        Ok(())
    }

    /// [`Self::find_ids`] through the probe index.
    fn probe_ids(
        &self,
        probe: &ProbeIndex,
        keys: &[ArrayRef],
        n: usize,
        out: &mut Vec<Option<u32>>,
    ) -> Result<()> {
        let valid = |i: usize| keys.iter().all(|k| k.is_valid(i));
        match &self.encoding {
            Encoding::Global => out.resize(n, (self.keys.len > 0).then_some(0)),
            Encoding::Utf8 => {
                let col = cast(keys[0].as_ref(), &DataType::Utf8)?;
                let strings = col.as_string::<i32>();
                self.probe_rows(
                    probe,
                    n,
                    |i| strings.is_valid(i),
                    |i| strings.value(i).as_bytes(),
                    out,
                );
            }
            Encoding::Int64 if matches!(keys[0].data_type(), DataType::UInt64) => {
                let ints = keys[0].as_primitive::<UInt64Type>();
                self.probe_rows(
                    probe,
                    n,
                    |i| ints.is_valid(i),
                    |i| ints.value(i).to_le_bytes(),
                    out,
                );
            }
            Encoding::Int64 => {
                let col = cast(keys[0].as_ref(), &DataType::Int64)?;
                let ints = col.as_primitive::<Int64Type>();
                self.probe_rows(
                    probe,
                    n,
                    |i| ints.is_valid(i),
                    |i| ints.value(i).to_le_bytes(),
                    out,
                );
            }
            Encoding::Rows(converter) => {
                let canonical: Vec<ArrayRef> = keys
                    .iter()
                    .map(|k| canonical_float(Value::Array(k.clone())).array().clone())
                    .collect();
                let rows = converter.convert_columns(&canonical)?;
                self.probe_rows(probe, n, valid, |i| rows.row(i), out);
            }
        }
        Ok(())
    }

    /// Probe rows `0..n` (`valid(i)`: no NULL in row i's key; `key(i)`: its bytes) in
    /// chunks, in the three passes of [`ProbeIndex`].
    fn probe_rows<K: AsRef<[u8]>>(
        &self,
        probe: &ProbeIndex,
        n: usize,
        valid: impl Fn(usize) -> bool,
        key: impl Fn(usize) -> K,
        out: &mut Vec<Option<u32>>,
    ) {
        let mut hashes = [0u64; CHUNK];
        let mut held = [0u64; CHUNK];
        let mut found = [Probe::Absent; CHUNK];
        for start in (0..n).step_by(CHUNK) {
            let m = CHUNK.min(n - start);
            // Pass 1: each key's hash, and the key as a slot would hold it.
            for j in 0..m {
                let bytes = key(start + j);
                hashes[j] = hash_of(&self.hasher, bytes.as_ref());
                held[j] = probe.inline.key(bytes.as_ref());
            }
            // Pass 2: each key's slot, the slots of rows further on prefetched.
            for j in 0..m {
                if j + PROBE_AHEAD < m {
                    prefetch(&probe.slots[hashes[j + PROBE_AHEAD] as usize & probe.mask]);
                }
                found[j] = if valid(start + j) {
                    probe.find(hashes[j], held[j], hashes[j] as usize & probe.mask)
                } else {
                    Probe::Absent
                };
            }
            // Pass 3: compare the bytes of keys not held in their slot.
            for j in 0..m {
                out.push(match found[j] {
                    Probe::Found(g) => Some(g),
                    Probe::Absent => None,
                    Probe::Candidate(mut at) => {
                        let bytes = key(start + j);
                        loop {
                            let g = probe.id(at);
                            if same_bytes(key_of(&self.keys, g), bytes.as_ref()) {
                                break Some(g);
                            }
                            match probe.find(hashes[j], held[j], (at + 1) & probe.mask) {
                                Probe::Candidate(next) => at = next,
                                _ => break None,
                            }
                        }
                    }
                });
            }
        }
    }

    /// A filter sized for the groups the table holds, holding all of them (or none
    /// when they are too many).
    fn resize_filter(&mut self) {
        self.resize_filter_for(self.len());
    }

    /// [`Self::resize_filter`], with room for `groups` groups.
    fn resize_filter_for(&mut self, groups: usize) {
        self.filter = KeyFilter::sized_for(groups.max(self.len()));
        if let Some(filter) = &mut self.filter {
            for g in 0..self.keys.len {
                if Some(g) != self.keys.null_group {
                    filter.insert(hash_of(&self.hasher, key_of(&self.keys, g)));
                }
            }
        }
    }

    fn shrink_to_fit(&mut self) {
        let (hasher, keys) = (&self.hasher, &self.keys);
        self.index
            .shrink_to_fit(|&g| hash_of(hasher, key_of(keys, g)));
        self.keys.arena.shrink_to_fit();
        self.keys.offsets.shrink_to_fit();
        self.resize_filter();
    }

    /// Room for `rows` more groups with `key_bytes` of keys (nothing for 0 rows).
    fn size_for_first_batch(&mut self, rows: usize, key_bytes: usize) {
        if rows == 0 {
            return;
        }
        let (hasher, keys) = (&self.hasher, &self.keys);
        self.index
            .reserve(rows, |&g| hash_of(hasher, key_of(keys, g)));
        self.keys.arena.reserve(key_bytes);
        self.keys.offsets.reserve(rows);
        if self.filter.as_ref().is_some_and(|f| !f.fits(rows)) {
            self.resize_filter_for(rows);
        }
    }

    /// The key columns of groups `gids`, in that order (a closing window's rows).
    pub fn key_columns(&self, gids: &[u32]) -> Result<Vec<ArrayRef>> {
        use arrow::array::{Int64Array, StringArray, UInt64Array};
        use std::sync::Arc;
        let bytes = |g: u32| (Some(g) != self.keys.null_group).then(|| key_of(&self.keys, g));
        let word = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8-byte integer key"));
        Ok(match &self.encoding {
            Encoding::Global => Vec::new(),
            Encoding::Utf8 => {
                let strings: StringArray = gids
                    .iter()
                    .map(|&g| {
                        // SAFETY: a Utf8 table's keys are the bytes of valid strings (from
                        // string arrays, or checked by `restore`).
                        bytes(g).map(|b| unsafe { std::str::from_utf8_unchecked(b) })
                    })
                    .collect();
                let strings: ArrayRef = Arc::new(strings);
                vec![if self.types[0] == DataType::Utf8 {
                    strings
                } else {
                    cast(strings.as_ref(), &self.types[0])?
                }]
            }
            Encoding::Int64 if self.types[0] == DataType::UInt64 => {
                let ints: UInt64Array = gids.iter().map(|&g| bytes(g).map(word)).collect();
                vec![Arc::new(ints) as ArrayRef]
            }
            Encoding::Int64 => {
                let ints: Int64Array = gids
                    .iter()
                    .map(|&g| bytes(g).map(|b| word(b) as i64))
                    .collect();
                let ints: ArrayRef = Arc::new(ints);
                vec![if self.types[0] == DataType::Int64 {
                    ints
                } else {
                    cast(ints.as_ref(), &self.types[0])?
                }]
            }
            Encoding::Rows(converter) => {
                let parser = converter.parser();
                let rows = gids.iter().map(|&g| parser.parse(key_of(&self.keys, g)));
                converter.convert_rows(rows)?
            }
        })
    }

    /// The serialisable state.
    pub fn keys(&self) -> &GroupKeys {
        &self.keys
    }

    /// Replace the state with a restored one and rebuild the hash index. Keys whose
    /// offsets do not describe their arena are refused (the table is left as it was).
    pub fn restore(&mut self, keys: GroupKeys) -> Result<()> {
        let bad = |what: &str| Err(EngineError::Snapshot(format!("its group keys {what}")));
        if keys.offsets.len() != keys.len as usize + 1 || keys.offsets.first() != Some(&0) {
            return bad("have the wrong number of offsets");
        }
        if keys.offsets.windows(2).any(|w| w[0] > w[1])
            || keys.offsets.last().map(|&o| o as usize) != Some(keys.arena.len())
        {
            return bad("have offsets outside their bytes");
        }
        if keys.null_group.is_some_and(|g| g >= keys.len) {
            return bad("name a NULL group that does not exist");
        }
        if matches!(self.encoding, Encoding::Utf8)
            && (0..keys.len).any(|g| {
                Some(g) != keys.null_group && std::str::from_utf8(key_of(&keys, g)).is_err()
            })
        {
            return bad("are not UTF-8 text");
        }
        if matches!(self.encoding, Encoding::Int64)
            && (0..keys.len).any(|g| Some(g) != keys.null_group && key_of(&keys, g).len() != 8)
        {
            return bad("are not 8-byte integers");
        }
        self.keys = keys;
        let mut index = HashTable::with_capacity_in(self.keys.len as usize, Touched);
        for g in 0..self.keys.len {
            if Some(g) == self.keys.null_group {
                continue;
            }
            let (hasher, keys) = (&self.hasher, &self.keys);
            index.insert_unique(hash_of(hasher, key_of(keys, g)), g, |&other| {
                hash_of(hasher, key_of(keys, other))
            });
        }
        self.index = index;
        self.resize_filter();
        self.mixed = true;
        if self.probe.is_some() {
            self.rebuild_probe_index();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, StringArray};
    use std::sync::Arc;

    fn single(array: ArrayRef) -> Vec<ArrayRef> {
        vec![array]
    }

    /// `ids` renumbered in order of first appearance: equal to `expected` when rows
    /// with equal keys (and only those) share an id.
    fn classes(ids: &[u32]) -> Vec<u32> {
        let mut first = std::collections::HashMap::new();
        ids.iter()
            .map(|g| {
                let next = first.len() as u32;
                *first.entry(*g).or_insert(next)
            })
            .collect()
    }

    #[test]
    fn string_keys_with_nulls() {
        let mut t = GroupTable::new(&[DataType::Utf8]).unwrap();
        let keys = single(Arc::new(StringArray::from(vec![
            Some("a"),
            None,
            Some("b"),
            Some("a"),
            None,
        ])));
        let mut ids = Vec::new();
        t.group_ids(&keys, 5, &mut ids).unwrap();
        assert_eq!(classes(&ids), vec![0, 1, 2, 0, 1]);
        assert_eq!(t.len(), 3);
    }

    /// The probe index finds exactly what the hash index finds, for every encoding,
    /// across its growth (keys added batch by batch) and after a restore.
    #[test]
    fn probe_index_agrees_with_the_hash_index() {
        use arrow::array::{Int32Array, Int64Array};
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = |bound: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        };
        let make = |n: usize, next: &mut dyn FnMut(u64) -> u64| -> Vec<Vec<ArrayRef>> {
            let draws: Vec<(Option<i64>, i32)> = (0..n)
                .map(|_| {
                    let k = next(3000) as i64;
                    ((k % 97 != 0).then_some(k), next(3) as i32)
                })
                .collect();
            let ints: ArrayRef = Arc::new(Int64Array::from_iter(draws.iter().map(|d| d.0)));
            let strings: ArrayRef = Arc::new(StringArray::from_iter(
                draws.iter().map(|d| d.0.map(|k| format!("key-{k}"))),
            ));
            let seconds: ArrayRef =
                Arc::new(Int32Array::from_iter_values(draws.iter().map(|d| d.1)));
            vec![vec![ints.clone()], vec![strings], vec![ints, seconds]]
        };
        for encoding in 0..3 {
            let types: Vec<DataType> = make(1, &mut next)[encoding]
                .iter()
                .map(|a| a.data_type().clone())
                .collect();
            let mut plain = GroupTable::new(&types).unwrap();
            let mut indexed = GroupTable::new(&types).unwrap();
            indexed.enable_probe_index();
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for round in 0..12 {
                let insert = &make(300, &mut next)[encoding];
                plain.group_ids(insert, 300, &mut a).unwrap();
                indexed.group_ids(insert, 300, &mut b).unwrap();
                assert_eq!(a, b);
                let probe = &make(1000, &mut next)[encoding];
                let (mut x, mut y) = (Vec::new(), Vec::new());
                plain.find_ids(probe, 1000, &mut x).unwrap();
                indexed.find_ids(probe, 1000, &mut y).unwrap();
                assert_eq!(x, y, "encoding {encoding}, round {round}");
                assert!(y.iter().any(Option::is_some) && y.iter().any(Option::is_none));
            }
            let mut restored = GroupTable::new(&types).unwrap();
            restored.enable_probe_index();
            restored.restore(indexed.keys.clone()).unwrap();
            let probe = &make(1000, &mut next)[encoding];
            let (mut x, mut y) = (Vec::new(), Vec::new());
            plain.find_ids(probe, 1000, &mut x).unwrap();
            restored.find_ids(probe, 1000, &mut y).unwrap();
            assert_eq!(x, y, "encoding {encoding} after a restore");
        }
    }

    #[test]
    fn find_ids_finds_known_keys_without_creating_groups() {
        let mut ids = Vec::new();
        let mut found = Vec::new();
        let mut t = GroupTable::new(&[DataType::Utf8]).unwrap();
        t.group_ids(
            &single(Arc::new(StringArray::from(vec![
                Some("a"),
                Some("b"),
                None,
            ]))),
            3,
            &mut ids,
        )
        .unwrap();
        let probe = single(Arc::new(StringArray::from(vec![
            Some("b"),
            Some("z"),
            None,
            Some("a"),
        ])));
        t.find_ids(&probe, 4, &mut found).unwrap();
        assert_eq!(
            found,
            vec![Some(ids[1]), None, None, Some(ids[0])],
            "a NULL finds nothing"
        );
        assert_eq!(t.len(), 3, "no group created");
        let mut t = GroupTable::new(&[DataType::UInt64]).unwrap();
        let big = arrow::array::UInt64Array::from(vec![u64::MAX, 1]);
        t.group_ids(&single(Arc::new(big)), 2, &mut ids).unwrap();
        let probe = single(Arc::new(arrow::array::UInt64Array::from(vec![
            1,
            2,
            u64::MAX,
        ])));
        t.find_ids(&probe, 3, &mut found).unwrap();
        assert_eq!(found, vec![Some(ids[1]), None, Some(ids[0])]);
    }

    #[test]
    fn same_bytes_is_slice_equality_at_every_length() {
        for n in 0..40usize {
            let a: Vec<u8> = (0..n as u8).collect();
            assert!(same_bytes(&a, &a.clone()), "len {n}");
            for at in 0..n {
                let mut b = a.clone();
                b[at] ^= 0x40;
                assert!(!same_bytes(&a, &b), "len {n}, byte {at} differs");
            }
            assert!(!same_bytes(&a, &a[..n.saturating_sub(1)]) || n == 0);
        }
    }

    #[test]
    fn integer_keys_with_nulls() {
        let mut t = GroupTable::new(&[DataType::Int32]).unwrap();
        let keys = single(Arc::new(Int32Array::from(vec![
            Some(7),
            None,
            Some(-7),
            Some(7),
            None,
        ])));
        let mut ids = Vec::new();
        t.group_ids(&keys, 5, &mut ids).unwrap();
        assert_eq!(classes(&ids), vec![0, 1, 2, 0, 1]);
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn a_first_batch_with_few_groups_gives_back_the_room_it_reserved() {
        let mut t = GroupTable::new(&[DataType::Utf8]).unwrap();
        let keys = single(Arc::new(StringArray::from_iter_values(
            (0..10_000).map(|i| ["a", "b", "c"][i % 3]),
        )));
        let mut ids = Vec::new();
        t.group_ids(&keys, 10_000, &mut ids).unwrap();
        assert_eq!(t.len(), 3);
        assert!(t.state_bytes() < 1_000, "{} bytes", t.state_bytes());
        // A first batch of distinct keys keeps its room: no growth on the next batches.
        let mut t = GroupTable::new(&[DataType::Utf8]).unwrap();
        let keys = single(Arc::new(StringArray::from_iter_values(
            (0..10_000).map(|i| format!("k{i}")),
        )));
        t.group_ids(&keys, 10_000, &mut ids).unwrap();
        assert_eq!(t.len(), 10_000);
        assert_eq!(classes(&ids), (0..10_000).collect::<Vec<u32>>());
        // A first batch larger than the reservation cap: capped room, then normal growth.
        let n = 2 * FIRST_BATCH_GROUPS + 1;
        let mut t = GroupTable::new(&[DataType::Int64]).unwrap();
        let keys = single(Arc::new(arrow::array::Int64Array::from_iter_values(
            (0..n as i64).map(|i| i % 3),
        )));
        t.group_ids(&keys, n, &mut ids).unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(
            classes(&ids),
            (0..n as u32).map(|i| i % 3).collect::<Vec<_>>()
        );
        assert!(t.state_bytes() < 1_000, "{} bytes", t.state_bytes());
        let small = ids[..3].to_vec();
        let keys = single(Arc::new(arrow::array::Int64Array::from_iter_values(
            0..n as i64,
        )));
        t.group_ids(&keys, n, &mut ids).unwrap();
        assert_eq!(t.len(), n);
        assert_eq!(ids[..3], small[..], "known keys keep their ids");
        assert_eq!(classes(&ids), (0..n as u32).collect::<Vec<_>>());
    }

    #[test]
    fn multi_column_keys_and_restore() {
        let types = [DataType::Int32, DataType::Utf8];
        let mut t = GroupTable::new(&types).unwrap();
        let keys: Vec<ArrayRef> = vec![
            Arc::new(Int32Array::from(vec![Some(1), Some(1), None, Some(1)])),
            Arc::new(StringArray::from(vec!["x", "y", "x", "x"])),
        ];
        let mut ids = Vec::new();
        t.group_ids(&keys, 4, &mut ids).unwrap();
        assert_eq!(classes(&ids), vec![0, 1, 2, 0]);
        let before = ids.clone();
        let saved = t.keys().clone();
        let mut r = GroupTable::new(&types).unwrap();
        r.restore(saved).unwrap();
        r.group_ids(&keys, 4, &mut ids).unwrap();
        assert_eq!(ids, before, "a restored table gives every key its old id");
        assert_eq!(r.len(), 3);
    }

    /// Many batches of random sizes whose keys mix new and known ones in every
    /// proportion, with NULLs, a restore half-way and more groups than the key filter
    /// holds: every key keeps one id, distinct keys get distinct ids, ids are dense.
    /// `column(keys)` turns logical keys (`None`: NULL) into the key columns of `types`.
    fn check_against_reference_map(
        types: &[DataType],
        column: impl Fn(&[Option<u64>]) -> Vec<ArrayRef>,
    ) {
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut reference: std::collections::HashMap<Option<u64>, u32> = Default::default();
        let mut t = GroupTable::new(types).unwrap();
        let mut ids = Vec::new();
        let mut key_space = 16u64;
        for batch in 0..60 {
            if batch == 30 {
                let mut r = GroupTable::new(types).unwrap();
                r.restore(t.keys().clone()).unwrap();
                t = r;
            }
            // The key space grows in steps (new keys mixed with known ones), up to more
            // groups than the largest filter is sized for.
            if batch % 6 == 0 {
                key_space = (key_space * 4).min(3 * KeyFilter::MAX_BITS as u64 / 16);
            }
            let n = 1 + (next() % 12_000) as usize;
            let values: Vec<Option<u64>> = (0..n)
                .map(|_| {
                    let d = next();
                    (d % 97 != 0).then_some((d >> 8) % key_space)
                })
                .collect();
            t.group_ids(&column(&values), n, &mut ids).unwrap();
            for (v, &g) in values.iter().zip(&ids) {
                let known = *reference.entry(*v).or_insert(g);
                assert_eq!(g, known, "{types:?}, batch {batch}: key {v:?}");
            }
            assert_eq!(t.len(), reference.len(), "{types:?}, batch {batch}");
        }
        let mut all: Vec<u32> = reference.values().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..reference.len() as u32).collect::<Vec<_>>());
        assert!(reference.len() > KeyFilter::MAX_BITS / KeyFilter::BITS_PER_GROUP);
        assert!(
            t.filter.is_none(),
            "the filter is dropped past its largest size"
        );
    }

    #[test]
    fn ids_match_a_reference_map_for_string_keys() {
        check_against_reference_map(&[DataType::Utf8], |keys| {
            let keys = keys.iter().map(|k| k.map(|k| format!("k{k}")));
            single(Arc::new(StringArray::from_iter(keys)))
        });
    }

    #[test]
    fn ids_match_a_reference_map_for_integer_keys() {
        check_against_reference_map(&[DataType::Int32], |keys| {
            let keys = keys.iter().map(|k| k.map(|k| k as i32 - 1_000));
            single(Arc::new(Int32Array::from_iter(keys)))
        });
    }

    #[test]
    fn ids_match_a_reference_map_for_multi_column_keys() {
        check_against_reference_map(&[DataType::Int32, DataType::Utf8], |keys| {
            let ints = keys.iter().map(|k| k.map(|k| (k % 1_000) as i32));
            let strings = keys.iter().map(|k| k.map(|k| format!("s{}", k / 1_000)));
            vec![
                Arc::new(Int32Array::from_iter(ints)) as ArrayRef,
                Arc::new(StringArray::from_iter(strings)),
            ]
        });
    }
}
