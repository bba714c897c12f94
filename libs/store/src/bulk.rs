//! Multi-row inserts that PostgreSQL plans once.
//!
//! A multi-row `INSERT ... VALUES` binds one parameter per value: 1,000 rows of ten columns
//! are 10,000 parameters that PostgreSQL binds and plans again at every execution, and
//! every row count is a statement of its own. On PostgreSQL the rows go instead as one
//! JSON parameter that `json_populate_recordset` turns into rows of the table's own type:
//! the statement's text depends only on the table and the columns, so each connection
//! prepares it once, and binding it is one string. Outside the suite (40 batches of 1,000
//! rows into a table of ten columns and four indexes) this took about half the time of
//! VALUES; in the suite's ingest the server saves the parsing and binding (executing the
//! inserts costs what it did) and clm the thousands of values it no longer builds and
//! encodes per statement. BENCHMARKS.md has the numbers.

use sea_orm::sea_query::{Alias, Expr, ExprTrait, Func, Query};
use sea_orm::{
    ActiveModelTrait, ActiveValue, ConnectionTrait, DbBackend, EntityName, EntityTrait, IdenStatic,
    InsertMany, Iterable, QueryTrait, Value,
};

/// `Entity::insert_many(models)`; on PostgreSQL its rows are sent as one JSON parameter
/// (see the module's comment). Conflict clauses and `RETURNING` chain on as usual. Rows
/// whose columns differ in which are set, or that hold bytes or a value JSON cannot carry
/// exactly (a non-finite float, a date type), go as VALUES.
pub fn insert_many<A, C>(conn: &C, models: impl IntoIterator<Item = A>) -> InsertMany<A>
where
    A: ActiveModelTrait,
    C: ConnectionTrait,
{
    let models: Vec<A> = models.into_iter().collect();
    if conn.get_database_backend() != DbBackend::Postgres {
        return A::Entity::insert_many(models);
    }
    let Some((columns, json)) = as_json(&models) else {
        return A::Entity::insert_many(models);
    };
    let last = models.into_iter().next_back();
    // One row gives the statement its table, columns and primary key; its VALUES are then
    // replaced by the rows of the JSON parameter.
    let mut insert = A::Entity::insert_many(last);
    let table = A::Entity::default().table_name().replace('"', "\"\"");
    let mut rows = Query::select();
    rows.columns(columns.iter().copied()).from_function(
        Func::cust(Alias::new("json_populate_recordset"))
            .arg(Expr::cust(format!("NULL::\"{table}\"")))
            .arg(Expr::val(json).cast_as(Alias::new("json"))),
        Alias::new("r"),
    );
    insert
        .query()
        .select_from(rows)
        .expect("the select lists the insert's own columns");
    insert
}

/// The columns set in every model and the models as a JSON array of objects keyed by
/// column name, or `None` when the models cannot go as JSON.
fn as_json<A: ActiveModelTrait>(
    models: &[A],
) -> Option<(Vec<<A::Entity as EntityTrait>::Column>, String)> {
    let first = models.first()?;
    let columns: Vec<_> = <A::Entity as EntityTrait>::Column::iter()
        .filter(|c| !first.is_not_set(*c))
        .collect();
    let names: Vec<String> = columns
        .iter()
        .map(|c| serde_json::to_string(c.as_str()).expect("a column name"))
        .collect();
    let mut out = Vec::with_capacity(models.len() * 32 * columns.len());
    out.push(b'[');
    for (i, model) in models.iter().enumerate() {
        // sea-orm inserts the union of the models' columns; JSON rows all carry the same.
        let set = <A::Entity as EntityTrait>::Column::iter().filter(|c| !model.is_not_set(*c));
        if set.count() != columns.len() {
            return None;
        }
        out.extend_from_slice(if i == 0 { b"{" } else { b",{" });
        for (at, column) in columns.iter().enumerate() {
            let (ActiveValue::Set(value) | ActiveValue::Unchanged(value)) = model.get(*column)
            else {
                return None;
            };
            if at > 0 {
                out.push(b',');
            }
            out.extend_from_slice(names[at].as_bytes());
            out.push(b':');
            write_json(&mut out, &value)?;
        }
        out.push(b'}');
    }
    out.push(b']');
    Some((columns, String::from_utf8(out).expect("JSON is UTF-8")))
}

/// Writes `value` as the JSON that `json_populate_recordset` reads back into the column's
/// type: NULL of any type as `null`, numbers and booleans as such, text as strings, JSON as
/// itself. `None` for a value JSON cannot carry exactly, and for bytes: as hex text they
/// travel twice their size and are parsed twice (the outbox's packed payloads, a few
/// hundred KB a row, took twice as long to insert that way as bound in binary).
fn write_json(out: &mut Vec<u8>, value: &Value) -> Option<()> {
    if *value == value.as_null() {
        out.extend_from_slice(b"null");
        return Some(());
    }
    let written = match value {
        Value::Bool(Some(v)) => serde_json::to_writer(&mut *out, v),
        Value::TinyInt(Some(v)) => serde_json::to_writer(&mut *out, v),
        Value::SmallInt(Some(v)) => serde_json::to_writer(&mut *out, v),
        Value::Int(Some(v)) => serde_json::to_writer(&mut *out, v),
        Value::BigInt(Some(v)) => serde_json::to_writer(&mut *out, v),
        Value::TinyUnsigned(Some(v)) => serde_json::to_writer(&mut *out, v),
        Value::SmallUnsigned(Some(v)) => serde_json::to_writer(&mut *out, v),
        Value::Unsigned(Some(v)) => serde_json::to_writer(&mut *out, v),
        Value::BigUnsigned(Some(v)) => serde_json::to_writer(&mut *out, v),
        Value::Float(Some(v)) if v.is_finite() => serde_json::to_writer(&mut *out, v),
        Value::Double(Some(v)) if v.is_finite() => serde_json::to_writer(&mut *out, v),
        Value::String(Some(v)) => serde_json::to_writer(&mut *out, v),
        Value::Json(Some(v)) => serde_json::to_writer(&mut *out, v),
        _ => return None,
    };
    written.ok()
}
