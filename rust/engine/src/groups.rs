//! The group table: maps group keys (one or many columns, any supported types, NULLs
//! included) to dense group ids `0..n`.
//!
//! Keys are encoded to bytes once per row (a single string key as its UTF-8 bytes, a
//! single integer key as 8 bytes, anything else through Arrow's row format) and stored
//! back to back in one arena; the hash table holds only the 4-byte group ids. That keeps
//! the state small (tens of bytes per group) and lets it be serialised as plain vectors.

use std::hash::BuildHasher;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type};
use arrow::row::{RowConverter, SortField};
use foldhash::fast::FixedState;
use hashbrown::hash_table::Entry;
use hashbrown::HashTable;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::expr::{canonical_float, Value};

/// How keys are turned into bytes.
enum Encoding {
    /// No GROUP BY: one global group.
    Global,
    /// One string column: the key is its UTF-8 bytes.
    Utf8,
    /// One integer column: the key is its value as 8 little-endian bytes.
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
    /// `offsets[g]..offsets[g + 1]` is group g's key in `arena`.
    pub offsets: Vec<u32>,
    /// The group of the NULL key (single-column encodings only).
    pub null_group: Option<u32>,
    /// Number of groups.
    pub len: u32,
}

/// Group keys → dense group ids.
pub struct GroupTable {
    encoding: Encoding,
    keys: GroupKeys,
    index: HashTable<u32>,
    hasher: FixedState,
    /// Per-batch scratch: every row's key hash.
    hashes: Vec<u64>,
}

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
            keys,
            index: HashTable::new(),
            hasher: FixedState::with_seed(0x5eed_cafe),
            hashes: Vec::new(),
        })
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
        self.keys.arena.capacity() + self.keys.offsets.capacity() * 4 + self.index.allocation_size()
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
                let g = keys.len;
                keys.arena.extend_from_slice(bytes);
                keys.offsets.push(keys.arena.len() as u32);
                keys.len += 1;
                slot.insert(g);
                g
            }
        }
    }

    fn null_group(&mut self) -> u32 {
        if let Some(g) = self.keys.null_group {
            return g;
        }
        let g = self.keys.len;
        self.keys.offsets.push(self.keys.arena.len() as u32);
        self.keys.len += 1;
        self.keys.null_group = Some(g);
        g
    }

    /// The group id of every row of `keys` (columns of equal length `n`), creating groups
    /// for keys not seen before. `out` is cleared first.
    ///
    /// Keys are hashed for the whole batch first, so a row's hash is ready before its
    /// probe. A table's first batch sizes it: the hash index gets room for one group per
    /// row (up to [`FIRST_BATCH_GROUPS`]) and the key arena room for those rows' key
    /// bytes, so the first batch (which creates most of a fresh query's groups) does not
    /// grow them step by step. If the batch held far fewer groups, the room is given back.
    pub fn group_ids(&mut self, keys: &[ArrayRef], n: usize, out: &mut Vec<u32>) -> Result<()> {
        out.clear();
        out.reserve(n);
        let reserved = if self.keys.len == 0 {
            n.min(FIRST_BATCH_GROUPS)
        } else {
            0
        };
        let mut hashes = std::mem::take(&mut self.hashes);
        hashes.clear();
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
                hashes.extend((0..n).map(|i| hash_of(&self.hasher, strings.value(i).as_bytes())));
                for (i, &hash) in hashes.iter().enumerate() {
                    out.push(if strings.is_null(i) {
                        self.null_group()
                    } else {
                        self.intern(strings.value(i).as_bytes(), hash)
                    });
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
                hashes.extend(
                    ints.values()
                        .iter()
                        .map(|v| hash_of(&self.hasher, &v.to_le_bytes())),
                );
                for (i, &hash) in hashes.iter().enumerate() {
                    out.push(if ints.is_null(i) {
                        self.null_group()
                    } else {
                        self.intern(&ints.value(i).to_le_bytes(), hash)
                    });
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
                hashes.extend(rows.iter().map(|row| hash_of(&self.hasher, row.as_ref())));
                for (row, &hash) in rows.iter().zip(&hashes) {
                    out.push(self.intern(row.as_ref(), hash));
                }
            }
        }
        self.hashes = hashes;
        if self.len() * 4 < reserved {
            // Few groups after all: give back the room reserved for one per row.
            self.shrink_to_fit();
        }
        Ok(())
    }

    fn shrink_to_fit(&mut self) {
        let (hasher, keys) = (&self.hasher, &self.keys);
        self.index
            .shrink_to_fit(|&g| hash_of(hasher, key_of(keys, g)));
        self.keys.arena.shrink_to_fit();
        self.keys.offsets.shrink_to_fit();
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
    }

    /// The serialisable state.
    pub fn keys(&self) -> &GroupKeys {
        &self.keys
    }

    /// Replace the state with a restored one and rebuild the hash index.
    pub fn restore(&mut self, keys: GroupKeys) {
        self.keys = keys;
        let mut index = HashTable::with_capacity(self.keys.len as usize);
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
        assert_eq!(ids, vec![0, 1, 2, 0, 1]);
        assert_eq!(t.len(), 3);
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
        assert_eq!(ids, vec![0, 1, 2, 0, 1]);
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
        assert_eq!(ids[9_999], 9_999);
        // A first batch larger than the reservation cap: capped room, then normal growth.
        let n = 2 * FIRST_BATCH_GROUPS + 1;
        let mut t = GroupTable::new(&[DataType::Int64]).unwrap();
        let keys = single(Arc::new(arrow::array::Int64Array::from_iter_values(
            (0..n as i64).map(|i| i % 3),
        )));
        t.group_ids(&keys, n, &mut ids).unwrap();
        assert_eq!((t.len(), ids[n - 1]), (3, ((n - 1) % 3) as u32));
        assert!(t.state_bytes() < 1_000, "{} bytes", t.state_bytes());
        let keys = single(Arc::new(arrow::array::Int64Array::from_iter_values(
            0..n as i64,
        )));
        t.group_ids(&keys, n, &mut ids).unwrap();
        assert_eq!((t.len(), ids[n - 1]), (n, (n - 1) as u32));
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
        assert_eq!(ids, vec![0, 1, 2, 0]);
        let saved = t.keys().clone();
        let mut r = GroupTable::new(&types).unwrap();
        r.restore(saved);
        r.group_ids(&keys, 4, &mut ids).unwrap();
        assert_eq!(ids, vec![0, 1, 2, 0]);
        assert_eq!(r.len(), 3);
    }
}
