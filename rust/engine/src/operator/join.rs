//! The stream-table lookup join: each batch of the stream probes a keyed table's index.
//!
//! `[LEFT] JOIN t ON stream_expr = t.key [AND ...]` evaluates the stream-side key
//! expressions over the whole batch, maps them to the table's key ids in one pass over
//! its hash index ([`KeyedTable::lookup`]) and gathers the table columns the query reads
//! for those ids (Arrow `take`). The table is shared (`Arc<RwLock<_>>`) with whoever
//! loads it: a loader's upserts take the write lock between batches, so every batch sees
//! the table as it was when the batch was probed, and a row upserted before a batch is
//! seen by that batch (SPEC section 8).
//!
//! A stream row whose key the table does not hold (or whose key is NULL: SQL equality)
//! goes as `join.missing.strategy` says: NULL table columns, dropped, default values,
//! a bounded wait for the key to arrive, or a `DataError`. Every such row is counted
//! (`Ctx::join_misses`). The join keeps no state of its own.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use arrow::array::{new_null_array, Array, ArrayRef, BooleanArray, Scalar, UInt32Array};
use arrow::compute::kernels::zip::zip;
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};

use super::{Chunk, Ctx, Operator};
use crate::error::{EngineError, Result};
use crate::expr::{Input, PhysExpr};
use crate::plan::{JoinKind, MissingStrategy};
use crate::table::KeyedTable;

/// A keyed table shared between its loader and the queries that join it.
pub type SharedTable = Arc<RwLock<KeyedTable>>;

/// The first wait between probes of [`MissingStrategy::WaitAndRetry`]; it doubles up to
/// [`MAX_RETRY_PAUSE`].
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(1);
const MAX_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// A bound join.
pub struct JoinDef {
    /// The table's name, for messages.
    pub name: String,
    pub table: SharedTable,
    /// Stream-side key expressions, in the order of the table's key columns.
    pub probes: Vec<PhysExpr>,
    /// The SQL of each probe's equality (`o.customer_id = c.id`), for messages.
    pub probe_text: Vec<String>,
    /// Table columns the query reads; the others are passed on as NULL placeholders
    /// (nothing reads them).
    pub take: Vec<usize>,
    /// The table's column types.
    pub types: Vec<DataType>,
    pub kind: JoinKind,
    pub missing: MissingStrategy,
    /// Per table column, its `join.defaults.<col>` value (one-row array of its type).
    pub defaults: Vec<Option<ArrayRef>>,
    pub wait_timeout: Duration,
    /// Columns passed on after the join (all of them when `None`).
    pub keep: Option<Vec<usize>>,
}

/// The join operator (stateless: the table lives outside it).
pub struct LookupJoin {
    def: Arc<JoinDef>,
}

impl LookupJoin {
    pub fn new(def: Arc<JoinDef>) -> Self {
        LookupJoin { def }
    }

    /// The table's key ids of `keys`, under its read lock.
    fn probe(&self, keys: &[ArrayRef]) -> Result<UInt32Array> {
        let table = self
            .def
            .table
            .read()
            .map_err(|_| poisoned(&self.def.name))?;
        table.lookup(keys)
    }

    /// With `wait_and_retry`: probe again, with growing pauses, until every key with no
    /// NULL in it is found or the timeout passes; returns the last ids.
    fn wait_for_keys(&self, keys: &[ArrayRef], mut ids: UInt32Array) -> Result<UInt32Array> {
        let probeable = all_valid(keys);
        let deadline = Instant::now() + self.def.wait_timeout;
        let mut pause = FIRST_RETRY_PAUSE;
        while missing_probeable(&ids, probeable.as_ref()) > 0 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(MAX_RETRY_PAUSE);
            ids = self.probe(keys)?;
        }
        Ok(ids)
    }

    /// The `DataError` of `fail` for the first row not found.
    fn missing_error(&self, keys: &[ArrayRef], ids: &UInt32Array) -> EngineError {
        let row = (0..ids.len()).find(|&i| ids.is_null(i)).unwrap_or(0);
        let options = FormatOptions::default().with_null("NULL");
        let values: Vec<String> = keys
            .iter()
            .map(|k| {
                ArrayFormatter::try_new(k.as_ref(), &options)
                    .map(|f| f.value(row).to_string())
                    .unwrap_or_else(|_| "?".into())
            })
            .collect();
        let shown: Vec<String> = values
            .iter()
            .zip(&self.def.probe_text)
            .map(|(value, text)| format!("{text} = {value}"))
            .collect();
        EngineError::BadValue {
            message: format!(
                "JOIN {}: the table has no row with {} (row {row} of the batch; \
                 'join.missing.strategy' = 'fail')",
                self.def.name,
                shown.join(" and ")
            ),
            value: values.join(", "),
        }
    }
}

fn poisoned(name: &str) -> EngineError {
    EngineError::Usage(format!(
        "the table {name} is unusable: an internal error interrupted an update of it"
    ))
}

/// The rows where every key is non-NULL (`None`: all of them).
fn all_valid(keys: &[ArrayRef]) -> Option<BooleanArray> {
    let mut mask: Option<BooleanArray> = None;
    for k in keys {
        if k.null_count() == 0 {
            continue;
        }
        let valid = arrow::compute::is_not_null(k.as_ref()).expect("is_not_null never fails");
        mask = Some(match mask {
            None => valid,
            Some(m) => arrow::compute::and(&m, &valid).expect("equal lengths"),
        });
    }
    mask
}

/// Rows not found whose keys could have been (no NULL in them).
fn missing_probeable(ids: &UInt32Array, probeable: Option<&BooleanArray>) -> usize {
    match (ids.nulls(), probeable) {
        (None, _) => 0,
        (Some(nulls), None) => nulls.null_count(),
        (Some(nulls), Some(valid)) => (0..ids.len())
            .filter(|&i| nulls.is_null(i) && valid.value(i))
            .count(),
    }
}

impl Operator for LookupJoin {
    fn process(&mut self, chunk: Chunk, ctx: &mut Ctx) -> Result<Chunk> {
        let def = &*self.def;
        let rows = chunk.rows;
        let input = Input {
            columns: &chunk.columns,
            num_rows: rows,
            now_ms: ctx.now_ms,
        };
        let keys = def
            .probes
            .iter()
            .map(|p| p.eval(&input)?.into_array(rows))
            .collect::<Result<Vec<_>>>()?;
        let mut ids = self.probe(&keys)?;
        if ids.null_count() > 0 && def.missing == MissingStrategy::WaitAndRetry {
            ids = self.wait_for_keys(&keys, ids)?;
        }
        let misses = ids.null_count();
        ctx.join_misses += misses as u64;
        if misses > 0 && def.missing == MissingStrategy::Fail {
            return Err(self.missing_error(&keys, &ids));
        }
        let mut taken = {
            let table = def.table.read().map_err(|_| poisoned(&def.name))?;
            table.take_columns(&ids, &def.take)?
        };
        if misses > 0 && def.missing == MissingStrategy::UseDefaults {
            let found = BooleanArray::new(ids.nulls().expect("misses").inner().clone(), None);
            for (column, &c) in taken.iter_mut().zip(&def.take) {
                if let Some(default) = &def.defaults[c] {
                    *column = zip(&found, column, &Scalar::new(default.clone()))?;
                }
            }
        }
        // Columns nothing reads are NULL placeholders (a `NullArray` holds no buffers).
        let mut table_columns: Vec<ArrayRef> = (0..def.types.len())
            .map(|_| new_null_array(&DataType::Null, rows))
            .collect();
        for (column, &c) in taken.into_iter().zip(&def.take) {
            table_columns[c] = column;
        }
        let mut columns = chunk.columns;
        columns.extend(table_columns);
        let mut out = Chunk {
            columns,
            rows,
            times: chunk.times,
        };
        let drop_missing = misses > 0
            && match def.missing {
                MissingStrategy::SkipRecord => true,
                MissingStrategy::WaitAndRetry => def.kind == JoinKind::Inner,
                _ => false,
            };
        if drop_missing {
            let found = BooleanArray::new(ids.nulls().expect("misses").inner().clone(), None);
            out = out.filter(&found, def.keep.as_deref())?;
        } else if let Some(keep) = &def.keep {
            out.columns = keep.iter().map(|&i| out.columns[i].clone()).collect();
        }
        Ok(out)
    }
}
