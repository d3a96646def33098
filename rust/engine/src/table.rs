//! The keyed table: the latest row of every key, for CTAS tables and stream-table joins.
//!
//! Keys (one or more columns) map to dense, permanent key ids through the group-key
//! machinery of [`crate::groups::GroupTable`]; ids follow the order in which keys were
//! first inserted. Rows are kept in the batches they arrived in; the table records, per key
//! id, where its latest row is (batch, row). An upsert appends its batch and points each of
//! its keys at its last row in the batch (a later row wins). Rows that are no longer any
//! key's latest are dead: when they outnumber the live rows (or the batches pile up past
//! [`MAX_BATCHES`]) the table is compacted into one batch whose row `g` is key `g`'s row,
//! so memory stays proportional to the live rows however often keys are updated.
//!
//! A snapshot lists the keys in the order they were first inserted.
//!
//! A lookup maps probe keys to key ids (`None` when absent, also for a NULL probe key:
//! SQL equality) in O(1) per row, and [`KeyedTable::take`] gathers the table's columns for
//! those ids, NULL where absent: together, the probe side of a stream-table join.
//!
//! A NULL key is a key like any other (the NULL group of a GROUP BY, kept as SQL keeps
//! it), and no lookup finds it: a NULL probe equals nothing. Keys are never deleted.

use std::sync::Arc;

use arrow::array::{new_null_array, Array, ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::{cast, interleave, take};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::error::{EngineError, Result};
use crate::groups::GroupTable;

/// The most batches a table keeps before it is compacted into one.
pub const MAX_BATCHES: usize = 256;

/// What an upsert did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpsertStats {
    /// Rows of the batch.
    pub rows: usize,
    /// Keys the table did not hold before.
    pub inserted: usize,
    /// Rows that replaced an older row of their key (the table's or the batch's).
    pub replaced: usize,
}

/// A table of the latest row per key.
pub struct KeyedTable {
    schema: SchemaRef,
    /// `schema` with every field nullable: the schema of [`Self::take`] (absent keys).
    nullable: SchemaRef,
    key_columns: Vec<String>,
    key_indices: Vec<usize>,
    groups: GroupTable,
    batches: Vec<RecordBatch>,
    /// Key id → (batch, row) of its latest row.
    rows: Vec<(u32, u32)>,
    /// Key ids in the order their keys were first inserted (row order; ids themselves
    /// are not, within a batch: see `GroupTable::group_ids`).
    order: Vec<u32>,
    /// Rows held in `batches`, live and dead.
    stored: usize,
    /// Whether there is one batch whose row `g` is key `g`'s (right after compaction).
    aligned: bool,
    /// Scratch: the key ids of a batch.
    ids: Vec<u32>,
}

fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// Whether a column of type `t` can be a key.
fn keyable(t: &DataType) -> bool {
    t.is_integer()
        || is_string(t)
        || matches!(
            t,
            DataType::Boolean
                | DataType::Decimal128(..)
                | DataType::Decimal256(..)
                | DataType::Date32
                | DataType::Date64
                | DataType::Timestamp(..)
                | DataType::Binary
                | DataType::LargeBinary
        )
}

/// Whether probe keys of type `probe` may be cast to a key column of type `key` without
/// changing which values are equal (integers to integers: an out-of-range value becomes
/// NULL and finds nothing; strings to strings).
pub fn probe_fits(probe: &DataType, key: &DataType) -> bool {
    probe == key
        || *probe == DataType::Null
        || (probe.is_integer() && key.is_integer())
        || (is_string(probe) && is_string(key))
}

impl KeyedTable {
    /// An empty table of `schema` keyed by `key_columns` (at least one, each a column of
    /// `schema` of a keyable type: integers, strings, booleans, decimals, dates,
    /// timestamps, binary). Otherwise a validation error naming the column.
    pub fn new(schema: SchemaRef, key_columns: Vec<String>) -> Result<Self> {
        if key_columns.is_empty() {
            return Err(EngineError::validation(
                "a table needs a key: no key column given",
                None,
            ));
        }
        let mut key_indices = Vec::with_capacity(key_columns.len());
        let mut key_types = Vec::with_capacity(key_columns.len());
        for name in &key_columns {
            let Ok(i) = schema.index_of(name) else {
                let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                return Err(EngineError::validation(
                    format!(
                        "key column `{name}` is not a column of the table (columns: {names:?})"
                    ),
                    None,
                ));
            };
            if key_indices.contains(&i) {
                return Err(EngineError::validation(
                    format!("key column `{name}` is given twice"),
                    None,
                ));
            }
            let t = schema.field(i).data_type();
            if !keyable(t) {
                return Err(EngineError::validation(
                    format!("key column `{name}` has type {t}, which cannot be a table key"),
                    None,
                ));
            }
            key_indices.push(i);
            key_types.push(t.clone());
        }
        let nullable = Arc::new(Schema::new_with_metadata(
            schema
                .fields()
                .iter()
                .map(|f| Field::clone(f).with_nullable(true))
                .collect::<Vec<_>>(),
            schema.metadata().clone(),
        ));
        let mut groups = GroupTable::new(&key_types)?;
        groups.enable_probe_index();
        Ok(KeyedTable {
            groups,
            schema,
            nullable,
            key_columns,
            key_indices,
            batches: Vec::new(),
            rows: Vec::new(),
            order: Vec::new(),
            stored: 0,
            aligned: true,
            ids: Vec::new(),
        })
    }

    /// The table's schema.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The key columns' names.
    pub fn key_columns(&self) -> &[String] {
        &self.key_columns
    }

    /// Number of keys (live rows).
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Heap bytes held: the rows' buffers (live and dead), the key index and locations.
    pub fn bytes(&self) -> usize {
        self.batches
            .iter()
            .map(RecordBatch::get_array_memory_size)
            .sum::<usize>()
            + self.groups.state_bytes()
            + self.rows.capacity() * std::mem::size_of::<(u32, u32)>()
            + self.order.capacity() * 4
            + self.ids.capacity() * 4
    }

    /// Insert or replace the row of each row's key; a later row of the batch wins. The
    /// batch must have the table's columns (names and types, in order); a NULL in a
    /// non-nullable column is a `DataError` naming the column and the row, and
    /// leaves the table as it was.
    pub fn upsert(&mut self, batch: &RecordBatch) -> Result<UpsertStats> {
        self.check_batch(batch)?;
        let n = batch.num_rows();
        if n == 0 {
            return Ok(UpsertStats::default());
        }
        if self.stored + n > u32::MAX as usize || self.batches.len() >= u32::MAX as usize {
            self.compact()?;
        }
        let keys: Vec<ArrayRef> = self
            .key_indices
            .iter()
            .map(|&i| batch.column(i).clone())
            .collect();
        let before = self.rows.len();
        self.groups.group_ids(&keys, n, &mut self.ids)?;
        let b = self.batches.len() as u32;
        self.rows.resize(self.groups.len(), (u32::MAX, 0));
        for (row, &g) in self.ids.iter().enumerate() {
            let at = &mut self.rows[g as usize];
            if at.0 == u32::MAX {
                // The key's first row.
                self.order.push(g);
            }
            *at = (b, row as u32);
        }
        let inserted = self.rows.len() - before;
        self.batches.push(batch.clone());
        self.stored += n;
        self.aligned = false;
        let live = self.rows.len();
        if self.stored - live > live || self.batches.len() > MAX_BATCHES {
            self.compact()?;
        }
        Ok(UpsertStats {
            rows: n,
            inserted,
            replaced: n - inserted,
        })
    }

    /// The batch's columns against the table's, and non-nullable ones against NULL.
    fn check_batch(&self, batch: &RecordBatch) -> Result<()> {
        let (have, want) = (batch.schema(), &self.schema);
        if have.fields().len() != want.fields().len()
            || have
                .fields()
                .iter()
                .zip(want.fields())
                .any(|(h, w)| h.name() != w.name() || h.data_type() != w.data_type())
        {
            let show = |s: &Schema| {
                s.fields()
                    .iter()
                    .map(|f| format!("{} {}", f.name(), f.data_type()))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(EngineError::validation(
                format!(
                    "a batch of columns ({}) cannot go into a table of columns ({})",
                    show(&have),
                    show(want)
                ),
                None,
            ));
        }
        for (i, field) in want.fields().iter().enumerate() {
            let column = batch.column(i);
            if !field.is_nullable() && column.null_count() > 0 {
                let row = (0..column.len()).find(|&r| column.is_null(r)).unwrap_or(0);
                return Err(EngineError::Data(format!(
                    "non-nullable column `{}` is NULL at row {row}",
                    field.name()
                )));
            }
        }
        Ok(())
    }

    /// Rewrite the live rows into one batch, key `g`'s row at row `g`.
    pub fn compact(&mut self) -> Result<()> {
        if self.aligned && self.batches.len() <= 1 && self.stored == self.rows.len() {
            return Ok(());
        }
        let batch = self.gather_rows(self.schema.clone(), |out| {
            out.extend(self.rows.iter().map(|&(b, r)| (b as usize, r as usize)))
        })?;
        self.batches = vec![batch];
        for (g, row) in self.rows.iter_mut().enumerate() {
            *row = (0, g as u32);
        }
        self.stored = self.rows.len();
        self.aligned = true;
        Ok(())
    }

    /// A batch of `schema` whose rows are (batch, row) locations written by `locate`
    /// (batch index `self.batches.len()` is an all-NULL row).
    fn gather_rows(
        &self,
        schema: SchemaRef,
        locate: impl FnOnce(&mut Vec<(usize, usize)>),
    ) -> Result<RecordBatch> {
        let mut at = Vec::new();
        locate(&mut at);
        let columns = (0..self.schema.fields().len())
            .map(|c| {
                let null = new_null_array(self.schema.field(c).data_type(), 1);
                let mut values: Vec<&dyn Array> =
                    self.batches.iter().map(|b| b.column(c).as_ref()).collect();
                values.push(null.as_ref());
                interleave(&values, &at)
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(RecordBatch::try_new_with_options(
            schema,
            columns,
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(at.len())),
        )?)
    }

    /// The key id of each probe row (`keys`: one array per key column, in the order of
    /// the key columns, of equal length), NULL where the table does not hold the key or a
    /// probe key is NULL. Integer probes fit integer keys and string probes string keys
    /// (cast); any other type must equal the key column's, else a validation error naming
    /// the column.
    pub fn lookup(&self, keys: &[ArrayRef]) -> Result<UInt32Array> {
        if keys.len() != self.key_columns.len() {
            return Err(EngineError::validation(
                format!(
                    "a lookup needs {} key column(s) ({}), got {}",
                    self.key_columns.len(),
                    self.key_columns.join(", "),
                    keys.len()
                ),
                None,
            ));
        }
        let n = keys.first().map_or(0, |k| k.len());
        let mut probes = Vec::with_capacity(keys.len());
        for ((probe, name), &i) in keys.iter().zip(&self.key_columns).zip(&self.key_indices) {
            let key_type = self.schema.field(i).data_type();
            if probe.len() != n {
                return Err(EngineError::validation(
                    format!(
                        "lookup key arrays differ in length: `{name}` has {}, the first {n}",
                        probe.len()
                    ),
                    None,
                ));
            }
            if !probe_fits(probe.data_type(), key_type) {
                return Err(EngineError::validation(
                    format!(
                        "key column `{name}` has type {key_type}: a lookup key of type {} cannot match it",
                        probe.data_type()
                    ),
                    None,
                ));
            }
            probes.push(if probe.data_type() == key_type {
                probe.clone()
            } else {
                cast(probe.as_ref(), key_type)?
            });
        }
        let mut found = Vec::new();
        self.groups.find_ids(&probes, n, &mut found)?;
        Ok(found.into_iter().collect())
    }

    /// The table's rows of key ids `ids` (from [`Self::lookup`]), in that order: every
    /// column NULL where the id is NULL. An id the table never gave is a usage error.
    pub fn take(&self, ids: &UInt32Array) -> Result<RecordBatch> {
        let len = self.rows.len();
        if let Some(bad) = ids.iter().flatten().find(|&g| g as usize >= len) {
            return Err(EngineError::Usage(format!(
                "key id {bad} is not in the table ({len} keys)"
            )));
        }
        if self.aligned && self.batches.len() == 1 {
            let batch = &self.batches[0];
            let columns = batch
                .columns()
                .iter()
                .map(|c| take(c.as_ref(), ids, None))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            return Ok(RecordBatch::try_new_with_options(
                self.nullable.clone(),
                columns,
                &arrow::array::RecordBatchOptions::new().with_row_count(Some(ids.len())),
            )?);
        }
        let absent = (self.batches.len(), 0);
        self.gather_rows(self.nullable.clone(), |out| {
            out.extend(ids.iter().map(|g| {
                g.map_or(absent, |g| {
                    let (b, r) = self.rows[g as usize];
                    (b as usize, r as usize)
                })
            }))
        })
    }

    /// Columns `columns` of the table's rows of key ids `ids` (from [`Self::lookup`]),
    /// in that order, NULL where the id is NULL: the probe side of a join, which takes
    /// only the columns its query reads.
    pub fn take_columns(&self, ids: &UInt32Array, columns: &[usize]) -> Result<Vec<ArrayRef>> {
        let len = self.rows.len();
        if ids.null_count() < ids.len() {
            let max = arrow::compute::max(ids).unwrap_or(0);
            if max as usize >= len {
                return Err(EngineError::Usage(format!(
                    "key id {max} is not in the table ({len} keys)"
                )));
            }
        }
        if let Some(&bad) = columns.iter().find(|&&c| c >= self.schema.fields().len()) {
            return Err(EngineError::Usage(format!(
                "column {bad} is not in the table ({} columns)",
                self.schema.fields().len()
            )));
        }
        if self.aligned && self.batches.len() == 1 {
            let batch = &self.batches[0];
            return Ok(columns
                .iter()
                .map(|&c| take(batch.column(c).as_ref(), ids, None))
                .collect::<std::result::Result<Vec<_>, _>>()?);
        }
        if self.batches.is_empty() {
            return Ok(columns
                .iter()
                .map(|&c| new_null_array(self.schema.field(c).data_type(), ids.len()))
                .collect());
        }
        let absent = (self.batches.len(), 0);
        let at: Vec<(usize, usize)> = ids
            .iter()
            .map(|g| {
                g.map_or(absent, |g| {
                    let (b, r) = self.rows[g as usize];
                    (b as usize, r as usize)
                })
            })
            .collect();
        columns
            .iter()
            .map(|&c| {
                let null = new_null_array(self.schema.field(c).data_type(), 1);
                let mut values: Vec<&dyn Array> =
                    self.batches.iter().map(|b| b.column(c).as_ref()).collect();
                values.push(null.as_ref());
                Ok(interleave(&values, &at)?)
            })
            .collect()
    }

    /// The live rows, one per key, in the order keys were first inserted (row order).
    pub fn snapshot(&self) -> Result<RecordBatch> {
        self.gather_rows(self.schema.clone(), |out| {
            out.extend(self.order.iter().map(|&g| {
                let (b, r) = self.rows[g as usize];
                (b as usize, r as usize)
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Float64Array, Int32Array, Int64Array, StringArray};
    use arrow::datatypes::{Float64Type, Int64Type};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("score", DataType::Float64, true),
        ]))
    }

    fn batch(ids: &[i64], names: &[&str], scores: &[f64]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from(ids.to_vec())),
                Arc::new(StringArray::from(names.to_vec())),
                Arc::new(Float64Array::from(scores.to_vec())),
            ],
        )
        .unwrap()
    }

    fn ids_of(b: &RecordBatch) -> Vec<i64> {
        b.column(0).as_primitive::<Int64Type>().values().to_vec()
    }

    fn names_of(b: &RecordBatch) -> Vec<Option<String>> {
        b.column(1)
            .as_string::<i32>()
            .iter()
            .map(|s| s.map(str::to_string))
            .collect()
    }

    #[test]
    fn upsert_inserts_then_replaces_and_a_later_row_wins() {
        let mut t = KeyedTable::new(schema(), vec!["id".into()]).unwrap();
        let s = t
            .upsert(&batch(&[1, 2, 1], &["a", "b", "c"], &[1.0, 2.0, 3.0]))
            .unwrap();
        assert_eq!(
            s,
            UpsertStats {
                rows: 3,
                inserted: 2,
                replaced: 1
            }
        );
        assert_eq!(t.len(), 2);
        let snap = t.snapshot().unwrap();
        assert_eq!(ids_of(&snap), vec![1, 2]);
        assert_eq!(names_of(&snap), vec![Some("c".into()), Some("b".into())]);
        let s = t
            .upsert(&batch(&[2, 3], &["B", "x"], &[20.0, 30.0]))
            .unwrap();
        assert_eq!((s.inserted, s.replaced), (1, 1));
        let snap = t.snapshot().unwrap();
        assert_eq!(ids_of(&snap), vec![1, 2, 3], "insertion order of keys");
        assert_eq!(
            names_of(&snap),
            vec![Some("c".into()), Some("B".into()), Some("x".into())]
        );
        let scores = snap
            .column(2)
            .as_primitive::<Float64Type>()
            .values()
            .to_vec();
        assert_eq!(scores, vec![3.0, 20.0, 30.0]);
        assert_eq!(snap.schema(), schema());
    }

    #[test]
    fn repeated_updates_keep_memory_bounded() {
        let mut t = KeyedTable::new(schema(), vec!["id".into()]).unwrap();
        let ids: Vec<i64> = (0..1000).collect();
        let names: Vec<String> = (0..1000).map(|i| format!("name-{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut peak = 0;
        for round in 0..200 {
            let scores = vec![round as f64; 1000];
            t.upsert(&batch(&ids, &names, &scores)).unwrap();
            assert!(t.stored <= 2 * t.len() + 1000, "round {round}");
            if round >= 10 {
                peak = peak.max(t.bytes());
            }
        }
        let first = {
            let mut fresh = KeyedTable::new(schema(), vec!["id".into()]).unwrap();
            fresh.upsert(&batch(&ids, &names, &[0.0; 1000])).unwrap();
            fresh.bytes()
        };
        assert!(
            peak < 4 * first,
            "peak {peak} bytes vs {first} for one copy"
        );
        assert_eq!(t.len(), 1000);
        let snap = t.snapshot().unwrap();
        let scores = snap.column(2).as_primitive::<Float64Type>();
        assert!(scores.values().iter().all(|&s| s == 199.0));
        // Many small batches of new keys: the batches are merged too.
        let mut t = KeyedTable::new(schema(), vec!["id".into()]).unwrap();
        for i in 0..1000 {
            t.upsert(&batch(&[i], &["n"], &[i as f64])).unwrap();
            assert!(t.batches.len() <= MAX_BATCHES);
        }
        assert_eq!(
            ids_of(&t.snapshot().unwrap()),
            (0..1000).collect::<Vec<_>>()
        );
    }

    #[test]
    fn snapshot_lists_keys_in_first_insertion_row_order() {
        // Batches that mix new and known keys: key ids are not row order then.
        let mut t = KeyedTable::new(schema(), vec!["id".into()]).unwrap();
        let mut expected: Vec<i64> = Vec::new();
        let mut state = 7u64;
        for _ in 0..20 {
            let ids: Vec<i64> = (0..700)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((state >> 33) % 5000) as i64
                })
                .collect();
            for &k in &ids {
                if !expected.contains(&k) {
                    expected.push(k);
                }
            }
            t.upsert(&batch(&ids, &vec!["n"; 700], &vec![0.0; 700]))
                .unwrap();
            assert_eq!(ids_of(&t.snapshot().unwrap()), expected);
        }
    }

    #[test]
    fn multi_column_keys() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("region", DataType::Utf8, false),
            Field::new("id", DataType::Int32, false),
            Field::new("v", DataType::Int64, true),
        ]));
        let make = |r: Vec<&str>, i: Vec<i32>, v: Vec<i64>| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from(r)),
                    Arc::new(Int32Array::from(i)),
                    Arc::new(Int64Array::from(v)),
                ],
            )
            .unwrap()
        };
        let mut t = KeyedTable::new(schema.clone(), vec!["region".into(), "id".into()]).unwrap();
        t.upsert(&make(
            vec!["eu", "us", "eu"],
            vec![1, 1, 2],
            vec![10, 20, 30],
        ))
        .unwrap();
        t.upsert(&make(vec!["us"], vec![1], vec![21])).unwrap();
        assert_eq!(t.len(), 3);
        let found = t
            .lookup(&[
                Arc::new(StringArray::from(vec![
                    Some("us"),
                    Some("eu"),
                    Some("us"),
                    None,
                ])),
                // Int64 probes of an Int32 key are cast.
                Arc::new(Int64Array::from(vec![1, 2, 2, 1])),
            ])
            .unwrap();
        assert_eq!(
            found.iter().collect::<Vec<_>>(),
            vec![Some(1), Some(2), None, None]
        );
        let rows = t.take(&found).unwrap();
        let v: Vec<Option<i64>> = rows.column(2).as_primitive::<Int64Type>().iter().collect();
        assert_eq!(v, vec![Some(21), Some(30), None, None]);
        assert!(rows.schema().fields().iter().all(|f| f.is_nullable()));
    }

    #[test]
    fn a_null_key_is_kept_and_never_found() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("v", DataType::Int64, true),
        ]));
        let mut t = KeyedTable::new(schema.clone(), vec!["k".into()]).unwrap();
        let b = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some("a"), None, None])),
                Arc::new(Int64Array::from(vec![1, 2, 3])),
            ],
        )
        .unwrap();
        t.upsert(&b).unwrap();
        assert_eq!(t.len(), 2, "the NULL key is one key; its last row wins");
        let v: Vec<Option<i64>> = t
            .snapshot()
            .unwrap()
            .column(1)
            .as_primitive::<Int64Type>()
            .iter()
            .collect();
        assert_eq!(v, vec![Some(1), Some(3)]);
        let probe: ArrayRef = Arc::new(StringArray::from(vec![None, Some("a")]));
        let found = t.lookup(&[probe]).unwrap();
        assert_eq!(found.iter().collect::<Vec<_>>(), vec![None, Some(0)]);
    }

    #[test]
    fn lookup_hits_and_misses_across_batches() {
        let mut t = KeyedTable::new(schema(), vec!["id".into()]).unwrap();
        t.upsert(&batch(&[1, 2], &["a", "b"], &[1.0, 2.0])).unwrap();
        t.upsert(&batch(&[3], &["c"], &[3.0])).unwrap();
        let probe: ArrayRef = Arc::new(Int64Array::from(vec![Some(3), Some(9), None, Some(1)]));
        let found = t.lookup(&[probe]).unwrap();
        assert_eq!(
            found.iter().collect::<Vec<_>>(),
            vec![Some(2), None, None, Some(0)]
        );
        let rows = t.take(&found).unwrap();
        assert_eq!(
            names_of(&rows),
            vec![Some("c".into()), None, None, Some("a".into())]
        );
        // The same after compaction (the aligned fast path).
        t.compact().unwrap();
        assert_eq!(names_of(&t.take(&found).unwrap()), names_of(&rows));
        assert!(t.take(&UInt32Array::from(vec![7])).is_err());
    }

    #[test]
    fn type_mismatches_are_validation_errors_naming_the_column() {
        let err = |r: Result<KeyedTable>| match r {
            Err(e @ EngineError::Validation { .. }) => e.to_string(),
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("accepted"),
        };
        assert!(err(KeyedTable::new(schema(), vec!["nope".into()])).contains("`nope`"));
        assert!(err(KeyedTable::new(schema(), vec!["score".into()])).contains("`score`"));
        assert!(err(KeyedTable::new(schema(), vec![])).contains("needs a key"));
        let mut t = KeyedTable::new(schema(), vec!["id".into()]).unwrap();
        t.upsert(&batch(&[1], &["a"], &[1.0])).unwrap();
        let e = t
            .lookup(&[Arc::new(StringArray::from(vec!["1"])) as ArrayRef])
            .unwrap_err();
        assert!(matches!(e, EngineError::Validation { .. }));
        assert!(e.to_string().contains("`id`"), "{e}");
        assert!(t.lookup(&[]).is_err());
        let other = Arc::new(Schema::new(vec![Field::new("id", DataType::Int32, false)]));
        let b = RecordBatch::try_new(other, vec![Arc::new(Int32Array::from(vec![1]))]).unwrap();
        let e = t.upsert(&b).unwrap_err();
        assert!(matches!(e, EngineError::Validation { .. }), "{e:?}");
    }
}
