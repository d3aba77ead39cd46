//! Rows as Arrow record batches and back: the table's schema (id, content, metadata as JSON,
//! the vector, one typed column per filterable field), documents and vectors read from results.

use std::sync::Arc;

use arrow_array::types::Float32Type;
use arrow_array::{
    Array, ArrayRef, BooleanArray, FixedSizeListArray, Float32Array, Float64Array, Int64Array, RecordBatch,
    StringArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use catena_core::{Document, Embedded, Error, Metadata, Result};
use serde_json::Value;

use super::FieldKind;

pub(super) fn schema_for(dimensions: usize, fields: &[(String, FieldKind)]) -> Result<SchemaRef> {
    let dims = i32::try_from(dimensions).map_err(|_| Error::invalid_input("vector dimension too large"))?;
    let mut columns = vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("content", DataType::Utf8, false),
        Field::new("metadata", DataType::Utf8, false),
        Field::new(
            "vector",
            DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, true)), dims),
            false,
        ),
    ];
    columns.extend(fields.iter().map(|(name, kind)| Field::new(name, kind.data_type(), true)));
    Ok(Arc::new(Schema::new(columns)))
}

pub(super) fn batch_for(
    records: &[Embedded],
    ids: &[String],
    state_dims: usize,
    fields: &[(String, FieldKind)],
) -> Result<RecordBatch> {
    let schema = schema_for(state_dims, fields)?;
    let dims = i32::try_from(state_dims).map_err(|_| Error::invalid_input("vector dimension too large"))?;
    let metadata: Vec<String> = records
        .iter()
        .map(|r| serde_json::to_string(&r.document.metadata))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::invalid_input(format!("metadata cannot be encoded: {e}")))?;
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(ids)),
        Arc::new(StringArray::from_iter_values(records.iter().map(|r| r.document.content.as_str()))),
        Arc::new(StringArray::from_iter_values(metadata)),
        Arc::new(FixedSizeListArray::from_iter_primitive::<Float32Type, _, _>(
            records.iter().map(|r| Some(r.vector.iter().copied().map(Some).collect::<Vec<_>>())),
            dims,
        )),
    ];
    for (name, kind) in fields {
        let values = records.iter().map(|r| r.document.metadata.get(name));
        let column: ArrayRef = match kind {
            FieldKind::String => Arc::new(values.map(|v| v.and_then(Value::as_str)).collect::<StringArray>()),
            FieldKind::Integer => Arc::new(values.map(|v| v.and_then(Value::as_i64)).collect::<Int64Array>()),
            FieldKind::Float => Arc::new(values.map(|v| v.and_then(Value::as_f64)).collect::<Float64Array>()),
            FieldKind::Bool => Arc::new(values.map(|v| v.and_then(Value::as_bool)).collect::<BooleanArray>()),
        };
        columns.push(column);
    }
    RecordBatch::try_new(schema, columns)
        .map_err(|e| Error::store(format!("cannot build the record batch: {e}")))
}

fn string_column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a StringArray> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .ok_or_else(|| Error::store(format!("the table has no text column `{name}`")))
}

pub(super) fn float_column(batch: &RecordBatch, name: &str) -> Result<Vec<f32>> {
    let column =
        batch.column_by_name(name).ok_or_else(|| Error::store(format!("LanceDB returned no `{name}`")))?;
    if let Some(a) = column.as_any().downcast_ref::<Float32Array>() {
        return Ok(a.iter().map(|v| v.unwrap_or(f32::NAN)).collect());
    }
    if let Some(a) = column.as_any().downcast_ref::<Float64Array>() {
        return Ok(a.iter().map(|v| v.map_or(f32::NAN, |x| x as f32)).collect());
    }
    Err(Error::store(format!("LanceDB returned `{name}` of an unexpected type")))
}

pub(super) fn documents_of(batch: &RecordBatch) -> Result<Vec<Document>> {
    let ids = string_column(batch, "id")?;
    let contents = string_column(batch, "content")?;
    let metadata = string_column(batch, "metadata")?;
    (0..batch.num_rows())
        .map(|row| {
            let meta: Metadata = serde_json::from_str(metadata.value(row))
                .map_err(|e| Error::store(format!("corrupt metadata in row {row}: {e}")))?;
            Ok(Document {
                id: Some(ids.value(row).to_owned()),
                content: contents.value(row).to_owned(),
                metadata: meta,
            })
        })
        .collect()
}

pub(super) fn vectors_of(batch: &RecordBatch) -> Result<Vec<Vec<f32>>> {
    let list = batch
        .column_by_name("vector")
        .and_then(|c| c.as_any().downcast_ref::<FixedSizeListArray>())
        .ok_or_else(|| Error::store("LanceDB returned no `vector` column"))?;
    (0..list.len())
        .map(|row| {
            let values = list.value(row);
            let floats = values
                .as_any()
                .downcast_ref::<Float32Array>()
                .ok_or_else(|| Error::store("the vector column is not float32"))?;
            Ok(floats.values().to_vec())
        })
        .collect()
}
