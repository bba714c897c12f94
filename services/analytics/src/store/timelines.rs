//! Funnel timelines over all time: each contact that entered (its first event of the entry
//! type ever, from the entry rollup) and has an event of a later step in the range, with
//! those events.
//!
//! Read as one row per event plus one per entry, a 100,000-contact tenant's funnel passed
//! ~46,000 rows through the driver, and on SQLite every row was a hand-over between the
//! driver's thread and the caller's, which cost more than the query. So each read returns
//! one text: first the later steps' events, ungrouped (grouping them per contact in the
//! database was a sort costing more than the read), then the entries of the contacts they
//! name, looked up by id in two halves at once on two connections. Each record is numbers
//! then the contact's id after its length in bytes, so any id is safe to carry. Both
//! databases cap a text at about 1 GB: some twenty million events.

use std::collections::HashMap;

use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, Value};

use super::Store;

/// A contact's way through a funnel, as far as the database holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeline {
    /// The contact.
    pub contact_id: String,
    /// Its first event of the entry type.
    pub entry_at: i64,
    /// Its events of the later types in the range, each as (instant, the code the caller
    /// gave its type), sorted: in time order, and at the same instant by code.
    pub events: Vec<(i64, u16)>,
}

impl Store {
    /// The timelines of contacts whose first `entry` event is before `end` and who have an
    /// event of one of `later` (type, code) in [start, until), in no particular order.
    pub async fn entry_timelines(
        &self,
        tenant: &str,
        entry: &str,
        end: i64,
        later: &[(&str, u16)],
        range: (i64, i64),
    ) -> Result<Vec<Timeline>, DbErr> {
        let mut events = self.later_events(tenant, later, range).await?;
        let ids: Vec<&str> = events.keys().map(String::as_str).collect();
        let (first, second) = ids.split_at(ids.len() / 2);
        let (first, second) = tokio::try_join!(
            self.entries_of(tenant, entry, first),
            self.entries_of(tenant, entry, second),
        )?;
        let mut out = Vec::with_capacity(first.len() + second.len());
        // `end` is applied here: in SQL it could lead SQLite's planner to the by-time index.
        for (contact_id, entry_at) in first.into_iter().chain(second) {
            if entry_at >= end {
                continue;
            }
            let Some(mut events) = events.remove(&contact_id) else {
                continue;
            };
            // Sorted here: ordering in the database cost SQLite a sort.
            events.sort_unstable();
            out.push(Timeline {
                contact_id,
                entry_at,
                events,
            });
        }
        Ok(out)
    }

    /// The events of `later` (type, code) in [start, until), by contact.
    async fn later_events(
        &self,
        tenant: &str,
        later: &[(&str, u16)],
        (start, until): (i64, i64),
    ) -> Result<HashMap<String, Vec<(i64, u16)>>, DbErr> {
        let backend = self.db.get_database_backend();
        let values: Vec<Value> = [tenant.into(), start.into(), until.into()]
            .into_iter()
            .chain(
                later
                    .iter()
                    .flat_map(|(kind, code)| [Value::from(*kind), i32::from(*code).into()]),
            )
            .collect();
        let text = self
            .one_text(later_events_sql(backend, later.len()), values)
            .await?;
        let mut by_contact: HashMap<String, Vec<(i64, u16)>> = HashMap::new();
        for ([at, code], contact) in records::<2>(&text)? {
            let code = u16::try_from(code).map_err(|_| malformed(&text))?;
            match by_contact.get_mut(contact) {
                Some(events) => events.push((at, code)),
                None => {
                    by_contact.insert(contact.to_owned(), vec![(at, code)]);
                }
            }
        }
        Ok(by_contact)
    }

    /// The first `entry` event of each of `contacts` that has one: (contact, instant).
    async fn entries_of(
        &self,
        tenant: &str,
        entry: &str,
        contacts: &[&str],
    ) -> Result<Vec<(String, i64)>, DbErr> {
        if contacts.is_empty() {
            return Ok(Vec::new());
        }
        let backend = self.db.get_database_backend();
        let ids = serde_json::to_string(contacts).map_err(|e| DbErr::Custom(e.to_string()))?;
        let text = self
            .one_text(
                entries_of_sql(backend),
                vec![tenant.into(), entry.into(), ids.into()],
            )
            .await?;
        Ok(records::<1>(&text)?
            .into_iter()
            .map(|([at], contact)| (contact.to_owned(), at))
            .collect())
    }

    /// The text a query of one aggregate returns; empty when it aggregated no rows.
    async fn one_text(&self, sql: String, values: Vec<Value>) -> Result<String, DbErr> {
        let backend = self.db.get_database_backend();
        let row = self
            .db
            .query_one_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?;
        let text: Option<String> = match row {
            Some(row) => row.try_get_by_index(0)?,
            None => None,
        };
        Ok(text.unwrap_or_default())
    }
}

/// What the queries say differently on each backend.
struct Dialect {
    /// Numbered parameters: `$1` or `?1`.
    placeholder: char,
    /// The aggregate joining texts.
    concat: &'static str,
    /// The length of a text column in bytes.
    bytes: fn(&str) -> String,
    /// The ids in a JSON array parameter as rows of `j.value`.
    ids: &'static str,
    /// The entries' table; SQLite picks its primary key, then reads the row for the
    /// instant, unless pointed at the covering index.
    entries: &'static str,
}

const POSTGRES: Dialect = Dialect {
    placeholder: '$',
    concat: "string_agg",
    bytes: |column| format!("octet_length({column})"),
    ids: "json_array_elements_text(CAST($3 AS json)) AS j(value)",
    entries: "first_events f",
};

const SQLITE: Dialect = Dialect {
    placeholder: '?',
    concat: "group_concat",
    bytes: |column| format!("length(CAST({column} AS BLOB))"),
    ids: "json_each(?3) j",
    entries: "first_events f INDEXED BY first_events_covering",
};

fn dialect(backend: DbBackend) -> &'static Dialect {
    if backend == DbBackend::Postgres {
        &POSTGRES
    } else {
        &SQLITE
    }
}

/// A record: each of `numbers`, then the length in bytes of the `id` column, then the id,
/// separated by spaces.
fn record(d: &Dialect, numbers: &[&str], id: &str) -> String {
    let numbers: String = numbers
        .iter()
        .map(|n| format!("CAST({n} AS TEXT) || ' ' || "))
        .collect();
    format!(
        "{numbers}CAST({bytes} AS TEXT) || ' ' || {id}",
        bytes = (d.bytes)(id)
    )
}

/// The later steps' events, read from the by-kind index: per event `<instant> <code>
/// <id's length in bytes> <id>`, back to back. Parameters: 1 tenant, 2 start, 3 until,
/// then (type, code) pairs.
fn later_events_sql(backend: DbBackend, later: usize) -> String {
    let d = dialect(backend);
    let p = |n: usize| format!("{}{n}", d.placeholder);
    let kinds: Vec<String> = (0..later).map(|i| p(4 + 2 * i)).collect();
    let codes: String = (0..later)
        .map(|i| format!(" WHEN {} THEN {}", p(4 + 2 * i), p(5 + 2 * i)))
        .collect();
    format!(
        "SELECT {concat}({record}, '') FROM interaction_facts \
         WHERE tenant_id = {tenant} AND kind IN ({kinds}) \
           AND occurred_at >= {start} AND occurred_at < {until}",
        concat = d.concat,
        record = record(
            d,
            &["occurred_at", &format!("CASE kind{codes} END")],
            "contact_id"
        ),
        tenant = p(1),
        start = p(2),
        until = p(3),
        kinds = kinds.join(", "),
    )
}

/// The entries of the contacts in a JSON array: per contact `<instant> <id's length in
/// bytes> <id>`. Parameters: 1 tenant, 2 entry type, 3 the array. `CROSS JOIN` makes
/// SQLite look each contact's entry up rather than scan every entry of the type.
fn entries_of_sql(backend: DbBackend) -> String {
    let d = dialect(backend);
    let p = |n: usize| format!("{}{n}", d.placeholder);
    format!(
        "SELECT {concat}({record}, '') FROM {ids} CROSS JOIN {entries} \
         WHERE f.tenant_id = {tenant} AND f.kind = {entry} AND f.contact_id = j.value",
        concat = d.concat,
        record = record(d, &["f.first_at"], "f.contact_id"),
        ids = d.ids,
        entries = d.entries,
        tenant = p(1),
        entry = p(2),
    )
}

fn malformed(text: &str) -> DbErr {
    DbErr::Custom(format!(
        "a funnel timeline that does not parse: {text:.200}"
    ))
}

/// Parses records of `N` numbers and an id, as the queries above write them.
fn records<const N: usize>(text: &str) -> Result<Vec<([i64; N], &str)>, DbErr> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut numbers = [0i64; N];
        for number in &mut numbers {
            let (n, tail) = rest.split_once(' ').ok_or_else(|| malformed(text))?;
            *number = n.parse().map_err(|_| malformed(text))?;
            rest = tail;
        }
        let (bytes, tail) = rest.split_once(' ').ok_or_else(|| malformed(text))?;
        let bytes: usize = bytes.parse().map_err(|_| malformed(text))?;
        let id = tail.get(..bytes).ok_or_else(|| malformed(text))?;
        out.push((numbers, id));
        rest = &tail[bytes..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_with_separators_and_many_bytes_come_back_whole() {
        let text = "12 2 3 a b11 1 5 x;y,z";
        assert_eq!(
            records::<2>(text).unwrap(),
            [([12, 2], "a b"), ([11, 1], "x;y,z")]
        );
        assert_eq!(records::<1>("1 4 éé").unwrap(), [([1], "éé")]);
        assert!(records::<1>("1 9 short").is_err());
        assert!(records::<2>("1-2 1 a").is_err());
        assert!(records::<1>("").unwrap().is_empty());
    }
}
