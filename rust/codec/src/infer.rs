//! Column type inference shared by JSON Lines and CSV: the narrowest type that holds every
//! value of the inference window exactly, and the widenings that led to it.
//!
//! Each value of the window has a [`Kind`] (see [`crate::values`]); a column's type is the
//! [`join`](crate::values::join) of its kinds, except for values no type should be chosen
//! for: numbers beyond every exact type, and a minority (fewer than 1 in 10) of non-numeric
//! text in a numeric column (one corrupt record must not turn a numeric column into a
//! string column). Those become bad records when the data is decoded.
//!
//! When a later value of the window widens a column's type (`Int64` to `Float64` for a
//! `2.5`, to `Utf8` for a quoted value), the widening is returned with the line and the
//! value that caused it, so that the file source can log it: a type never changes silently.
use std::sync::Arc;

use arrow::datatypes::{DataType, Field};
use arrow::json::reader::infer_json_schema_from_iterator;
use serde_json::Value;

use crate::is_minority;
use crate::values::{join, shown, Kind, MAX_DECIMAL_DIGITS};

/// A column whose type was widened by a value of the inference window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Widening {
    /// The column.
    pub column: String,
    /// Its type before the value.
    pub from: DataType,
    /// Its type after it.
    pub to: DataType,
    /// 0-based index of the value's line in the inferred sample.
    pub line: usize,
    /// The value, as written.
    pub value: String,
}

/// An inferred schema and the widenings that happened while inferring it.
#[derive(Debug, Clone)]
pub struct Inferred {
    /// Every field nullable, in the order of the data.
    pub schema: arrow::datatypes::Schema,
    /// In column order, then line order.
    pub widenings: Vec<Widening>,
}

/// What the inference window holds for one column.
#[derive(Debug, Clone)]
pub(crate) struct ColumnStats {
    name: String,
    /// Line and value of the first value of each kind.
    first: [Option<(usize, String)>; Kind::ALL.len()],
    counts: [usize; Kind::ALL.len()],
    /// JSON objects and arrays, for Arrow's nested type inference.
    nested: Vec<Value>,
}

impl ColumnStats {
    pub fn new(name: String) -> Self {
        Self {
            name,
            first: Default::default(),
            counts: [0; Kind::ALL.len()],
            nested: Vec::new(),
        }
    }

    /// Records one non-null value of `kind` at `line`.
    pub fn observe(&mut self, kind: Kind, line: usize, value: &str) {
        let i = kind.index();
        self.counts[i] += 1;
        if self.first[i].is_none() {
            self.first[i] = Some((line, shown(value)));
        }
    }

    /// Records a JSON object or array.
    pub fn observe_nested(&mut self, line: usize, raw: &str) {
        self.observe(Kind::Nested, line, raw);
        if let Ok(value) = serde_json::from_str::<Value>(raw) {
            self.nested.push(value);
        }
    }

    fn count(&self, kind: Kind) -> usize {
        self.counts[kind.index()]
    }

    /// The column's field and the widenings of its type.
    pub fn resolve(self) -> (Field, Vec<Widening>) {
        let present: Vec<Kind> = Kind::ALL
            .into_iter()
            .filter(|&k| self.count(k) > 0)
            .collect();
        let numeric: usize = present
            .iter()
            .filter(|k| k.is_numeric())
            .map(|&k| self.count(k))
            .sum();
        let mut outliers = vec![Kind::Unrepresentable];
        let text = self.count(Kind::Text);
        if text > 0
            && numeric > 0
            && !present.contains(&Kind::NumericText)
            && !present.contains(&Kind::Bool)
            && !present.contains(&Kind::Nested)
            && is_minority(text, numeric + text)
        {
            outliers.push(Kind::Text);
        }
        if present.contains(&Kind::Nested) {
            let scalars: usize = present
                .iter()
                .filter(|k| !outliers.contains(k) && **k != Kind::Nested)
                .map(|&k| self.count(k))
                .sum();
            if self.count(Kind::Nested) >= scalars {
                // The other values of the column become bad records when decoded.
                let data_type = self.nested_type();
                return (Field::new(&self.name, data_type, true), Vec::new());
            }
            outliers.push(Kind::Nested);
        }
        let mut kept: Vec<Kind> = present
            .iter()
            .copied()
            .filter(|k| !outliers.contains(k))
            .collect();
        let data_type = match join(&kept) {
            Some(t) => t,
            // Only numbers no type holds: the type they come closest to; they are bad records.
            None if self.count(Kind::Unrepresentable) > 0 => {
                DataType::Decimal128(MAX_DECIMAL_DIGITS as u8, 0)
            }
            None => DataType::Utf8,
        };
        kept.sort_by_key(|&k| self.first[k.index()].as_ref().map(|(line, _)| *line));
        let mut widenings = Vec::new();
        let mut current: Option<DataType> = None;
        for end in 1..=kept.len() {
            let next = join(&kept[..end]);
            if let (Some(from), Some(to)) = (&current, &next) {
                if from != to {
                    let (line, value) = self.first[kept[end - 1].index()]
                        .clone()
                        .expect("a kept kind was observed");
                    widenings.push(Widening {
                        column: self.name.clone(),
                        from: from.clone(),
                        to: to.clone(),
                        line,
                        value,
                    });
                }
            }
            current = next;
        }
        (Field::new(&self.name, data_type, true), widenings)
    }

    fn nested_type(&self) -> DataType {
        let objects: Vec<Value> = self
            .nested
            .iter()
            .map(|v| Value::Object([("v".to_string(), v.clone())].into_iter().collect()))
            .collect();
        infer_json_schema_from_iterator(objects.iter().map(Ok))
            .ok()
            .and_then(|schema| {
                schema
                    .field_with_name("v")
                    .ok()
                    .map(|f| f.data_type().clone())
            })
            .filter(|t| t != &DataType::Null)
            .unwrap_or(DataType::Utf8)
    }
}

/// Resolves every column, in order.
pub(crate) fn resolve(columns: Vec<ColumnStats>) -> Inferred {
    let mut fields = Vec::with_capacity(columns.len());
    let mut widenings = Vec::new();
    for column in columns {
        let (field, widened) = column.resolve();
        fields.push(Arc::new(field));
        widenings.extend(widened);
    }
    Inferred {
        schema: arrow::datatypes::Schema::new(fields),
        widenings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(values: &[(Kind, &str)]) -> (Field, Vec<Widening>) {
        let mut stats = ColumnStats::new("c".into());
        for (line, (kind, value)) in values.iter().enumerate() {
            stats.observe(*kind, line, value);
        }
        stats.resolve()
    }

    #[test]
    fn widenings_name_the_line_and_the_value() {
        let (field, widenings) =
            column(&[(Kind::Int, "1"), (Kind::Int, "2"), (Kind::Float, "2.5")]);
        assert_eq!(field.data_type(), &DataType::Float64);
        assert_eq!(
            widenings,
            vec![Widening {
                column: "c".into(),
                from: DataType::Int64,
                to: DataType::Float64,
                line: 2,
                value: "2.5".into()
            }]
        );
        let (field, widenings) = column(&[
            (Kind::Int, "1"),
            (Kind::Float, "2.5"),
            (Kind::WideInt, "9007199254740993"),
        ]);
        assert_eq!(field.data_type(), &DataType::Utf8);
        assert_eq!(widenings.len(), 2);
        assert_eq!((widenings[1].line, &widenings[1].to), (2, &DataType::Utf8));
    }

    #[test]
    fn a_minority_of_text_is_left_out_and_huge_numbers_never_widen() {
        let mut values = vec![(Kind::Int, "1"); 20];
        values.push((Kind::Text, "oops"));
        values.push((Kind::Unrepresentable, "1e400"));
        let (field, widenings) = column(&values);
        assert_eq!(field.data_type(), &DataType::Int64);
        assert!(widenings.is_empty());
        let (field, _) = column(&[(Kind::Unrepresentable, "1e400")]);
        assert_eq!(field.data_type(), &DataType::Decimal128(38, 0));
        let (field, _) = column(&[]);
        assert_eq!(field.data_type(), &DataType::Utf8);
    }
}
