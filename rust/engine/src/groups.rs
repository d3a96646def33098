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
}

fn hash_of(hasher: &FixedState, bytes: &[u8]) -> u64 {
    hasher.hash_one(bytes)
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

    fn key(&self, g: u32) -> &[u8] {
        let (s, e) = (
            self.keys.offsets[g as usize] as usize,
            self.keys.offsets[g as usize + 1] as usize,
        );
        &self.keys.arena[s..e]
    }

    fn intern(&mut self, bytes: &[u8]) -> u32 {
        let hash = hash_of(&self.hasher, bytes);
        let keys = &self.keys;
        let found = self.index.find(hash, |&g| {
            let (s, e) = (
                keys.offsets[g as usize] as usize,
                keys.offsets[g as usize + 1] as usize,
            );
            &keys.arena[s..e] == bytes
        });
        if let Some(&g) = found {
            return g;
        }
        let g = self.keys.len;
        self.keys.arena.extend_from_slice(bytes);
        self.keys.offsets.push(self.keys.arena.len() as u32);
        self.keys.len += 1;
        let (hasher, keys) = (&self.hasher, &self.keys);
        self.index.insert_unique(hash, g, |&other| {
            let (s, e) = (
                keys.offsets[other as usize] as usize,
                keys.offsets[other as usize + 1] as usize,
            );
            hash_of(hasher, &keys.arena[s..e])
        });
        g
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
    pub fn group_ids(&mut self, keys: &[ArrayRef], n: usize, out: &mut Vec<u32>) -> Result<()> {
        out.clear();
        out.reserve(n);
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
                for i in 0..n {
                    let g = if strings.is_null(i) {
                        self.null_group()
                    } else {
                        self.intern(strings.value(i).as_bytes())
                    };
                    out.push(g);
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
                for i in 0..n {
                    let g = if ints.is_null(i) {
                        self.null_group()
                    } else {
                        self.intern(&ints.value(i).to_le_bytes())
                    };
                    out.push(g);
                }
            }
            Encoding::Rows(converter) => {
                // -0.0 and 0.0 are one key, and so is every NaN (SQL equality).
                let keys: Vec<ArrayRef> = keys
                    .iter()
                    .map(|k| canonical_float(Value::Array(k.clone())).array().clone())
                    .collect();
                let rows = converter.convert_columns(&keys)?;
                for row in rows.iter() {
                    let g = self.intern(row.as_ref());
                    out.push(g);
                }
            }
        }
        Ok(())
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
            let hash = hash_of(&self.hasher, self.key(g));
            let (hasher, keys) = (&self.hasher, &self.keys);
            index.insert_unique(hash, g, |&other| {
                let (s, e) = (
                    keys.offsets[other as usize] as usize,
                    keys.offsets[other as usize + 1] as usize,
                );
                hash_of(hasher, &keys.arena[s..e])
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
