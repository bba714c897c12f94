//! Funnel timelines over all time: each contact that entered (its first event of the entry
//! type ever, from the entry rollup) and has an event of a later step in the range, with
//! those events. Read as one row per event plus one per entry, a 100,000-contact tenant's
//! funnel passed ~46,000 rows through the driver, and on SQLite every row was a hand-over
//! between the driver's thread and the caller's, which cost more than the query. Now the
//! database groups the events per contact and joins each contact's entry, and returns
//! each half of the contacts as one text value; the two halves are read at once, on two
//! connections. A half's text grows by ~60 bytes and ~15 per event for each contact it
//! holds; both databases cap a text at about 1 GB, some ten million such contacts a half.
//!
//! The halves split the contacts' ids at a pivot: the median id of the contacts the last
//! such funnel returned (kept per tenant and entry type). Any pivot splits correctly, only
//! the balance depends on it; the first funnel, with none known, reads everything in one
//! half. The split used to be by the parity of the id's last character: two function
//! calls for each of the ~30,000 events of the demo's funnel, where a comparison of bytes
//! now serves (7 % less CPU time per funnel on SQLite; on PostgreSQL no change measured).

use std::sync::Arc;

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
        // Two halves at once, on two connections, split at the pivot.
        let key = (tenant.to_owned(), entry.to_owned());
        let pivot = self.pivots.get(&key).unwrap_or_else(|| Arc::from(""));
        let (first, second) = tokio::try_join!(
            self.timelines_half(tenant, entry, later, range, (&pivot, Half::Below)),
            self.timelines_half(tenant, entry, later, range, (&pivot, Half::From)),
        )?;
        let mut out = first;
        out.extend(second);
        if let Some(median) = median_id(&out) {
            self.pivots.insert(key, median);
        }
        // `end` is applied here: in SQL it could lead SQLite's planner to the by-time index.
        out.retain(|t| t.entry_at < end);
        Ok(out)
    }

    async fn timelines_half(
        &self,
        tenant: &str,
        entry: &str,
        later: &[(&str, u16)],
        (start, until): (i64, i64),
        (pivot, half): (&str, Half),
    ) -> Result<Vec<Timeline>, DbErr> {
        let backend = self.db.get_database_backend();
        let values: Vec<Value> = [
            tenant.into(),
            entry.into(),
            start.into(),
            until.into(),
            pivot.into(),
        ]
        .into_iter()
        .chain(
            later
                .iter()
                .flat_map(|(kind, code)| [Value::from(*kind), i32::from(*code).into()]),
        )
        .collect();
        let row = self
            .db
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                timelines_sql(backend, later.len(), half),
                values,
            ))
            .await?;
        let text: Option<String> = match row {
            Some(row) => row.try_get_by_index(0)?,
            None => None,
        };
        text.map_or(Ok(Vec::new()), |text| parse(&text))
    }
}

/// Which side of the pivot a half reads.
#[derive(Debug, Clone, Copy)]
enum Half {
    /// Ids before the pivot.
    Below,
    /// The pivot and the ids after it.
    From,
}

/// The middle contact id of `timelines` (in byte order, as both halves compare), or
/// `None` when there is none.
fn median_id(timelines: &[Timeline]) -> Option<Arc<str>> {
    if timelines.is_empty() {
        return None;
    }
    let mut ids: Vec<&str> = timelines.iter().map(|t| t.contact_id.as_str()).collect();
    let middle = ids.len() / 2;
    let (_, median, _) = ids.select_nth_unstable(middle);
    Some(Arc::from(*median))
}

/// What the query says differently on each backend.
struct Dialect {
    /// Numbered parameters: `$1` or `?1`.
    placeholder: char,
    /// The aggregate joining texts.
    concat: &'static str,
    /// `contact_id` compared, sorted and grouped byte by byte (PostgreSQL's default
    /// collation may not compare so, and sorts through the locale: a third of the
    /// grouping's time in the demo's funnel, even under `C.UTF-8`).
    id_bytes: &'static str,
    /// The length of `t.contact_id` in bytes.
    bytes: &'static str,
    /// The entries' table; SQLite picks its primary key, then reads the row for the
    /// instant, unless pointed at the covering index.
    entries: &'static str,
    /// An entry's contact id, compared byte by byte: PostgreSQL then reads the half's
    /// entries in order from their index by bytes and merges them with the grouped events.
    entry_id: &'static str,
    /// The facts' table. SQLite, unless pointed at the by-type index, groups the events
    /// by walking the by-contact index over every fact of the tenant (3 s for the demo's
    /// funnel); it used to be kept off it by reading the events into a materialized table
    /// first, a copy of every event that cost each half a tenth of its time. PostgreSQL
    /// compares the ids in the "C" collation, which no index of the facts holds.
    facts: &'static str,
}

const POSTGRES: Dialect = Dialect {
    placeholder: '$',
    concat: "string_agg",
    id_bytes: "contact_id COLLATE \"C\"",
    bytes: "octet_length(t.contact_id)",
    entries: "first_events f",
    entry_id: "f.contact_id COLLATE \"C\"",
    facts: "interaction_facts",
};

const SQLITE: Dialect = Dialect {
    placeholder: '?',
    concat: "group_concat",
    id_bytes: "contact_id",
    bytes: "length(CAST(t.contact_id AS BLOB))",
    entries: "first_events f INDEXED BY first_events_covering",
    entry_id: "f.contact_id",
    facts: "interaction_facts INDEXED BY facts_by_kind_with_id",
};

/// One query: the later steps' events of one half of the contacts, read from the by-kind
/// index and grouped per contact, each joined to the contact's entry, all as one text:
/// per contact `<id's length in bytes> <entry> <instant>/<code>,... <id>`, back to back
/// (the length makes any id safe to carry). `CROSS JOIN` makes SQLite look each contact's
/// entry up rather than scan every entry of the type.
fn timelines_sql(backend: DbBackend, later: usize, half: Half) -> String {
    let d = if backend == DbBackend::Postgres {
        &POSTGRES
    } else {
        &SQLITE
    };
    let p = |n: usize| format!("{}{n}", d.placeholder);
    // Parameters: 1 tenant, 2 entry type, 3 start, 4 until, 5 the pivot, then (type, code)
    // pairs.
    let kinds: Vec<String> = (0..later).map(|i| p(6 + 2 * i)).collect();
    let codes: String = (0..later)
        .map(|i| format!(" WHEN {} THEN {}", p(6 + 2 * i), p(7 + 2 * i)))
        .collect();
    format!(
        "WITH later AS (\
           SELECT {id_bytes} AS contact_id, occurred_at, CASE kind{codes} END AS code \
           FROM {facts} \
           WHERE tenant_id = {tenant} AND kind IN ({kinds}) \
             AND occurred_at >= {start} AND occurred_at < {until} \
             AND {id_bytes} {side} {pivot}), \
         timelines AS (\
           SELECT contact_id, {concat}(\
             CAST(occurred_at AS TEXT) || '/' || CAST(code AS TEXT), ',') AS events \
           FROM later GROUP BY contact_id) \
         SELECT {concat}(\
           CAST({bytes} AS TEXT) || ' ' || CAST(f.first_at AS TEXT) || ' ' || t.events \
             || ' ' || t.contact_id, '') \
         FROM timelines t CROSS JOIN {entries} \
         WHERE f.tenant_id = {tenant} AND f.kind = {entry} AND {entry_id} = t.contact_id \
           AND {entry_id} {side} {pivot}",
        concat = d.concat,
        id_bytes = d.id_bytes,
        side = match half {
            Half::Below => "<",
            Half::From => ">=",
        },
        bytes = d.bytes,
        entries = d.entries,
        entry_id = d.entry_id,
        facts = d.facts,
        tenant = p(1),
        entry = p(2),
        start = p(3),
        until = p(4),
        pivot = p(5),
        kinds = kinds.join(", "),
    )
}

/// Parses what [`timelines_sql`] returns.
fn parse(text: &str) -> Result<Vec<Timeline>, DbErr> {
    let malformed = || {
        DbErr::Custom(format!(
            "a funnel timeline that does not parse: {text:.200}"
        ))
    };
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut fields = rest.splitn(4, ' ');
        let (Some(bytes), Some(entry_at), Some(events), Some(tail)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(malformed());
        };
        let bytes: usize = bytes.parse().map_err(|_| malformed())?;
        let contact_id = tail.get(..bytes).ok_or_else(malformed)?;
        out.push(Timeline {
            contact_id: contact_id.to_owned(),
            entry_at: entry_at.parse().map_err(|_| malformed())?,
            events: parse_events(events).ok_or_else(malformed)?,
        });
        rest = &tail[bytes..];
    }
    Ok(out)
}

/// Parses `instant/code,instant/code,...` (in any order) into a sorted list.
fn parse_events(text: &str) -> Option<Vec<(i64, u16)>> {
    let mut events = text
        .split(',')
        .map(|event| {
            let (at, code) = event.split_once('/')?;
            Some((at.parse().ok()?, code.parse().ok()?))
        })
        .collect::<Option<Vec<_>>>()?;
    // Sorted here: ordering inside the aggregate cost SQLite a sort per contact.
    events.sort_unstable();
    Some(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_with_separators_and_many_bytes_come_back_whole() {
        let text = "3 10 12/2,11/1 a b5 20 21/1 x;y,z";
        assert_eq!(
            parse(text).unwrap(),
            [
                Timeline {
                    contact_id: "a b".into(),
                    entry_at: 10,
                    events: vec![(11, 1), (12, 2)],
                },
                Timeline {
                    contact_id: "x;y,z".into(),
                    entry_at: 20,
                    events: vec![(21, 1)],
                },
            ]
        );
        let multibyte = "4 1 2/0 éé";
        assert_eq!(parse(multibyte).unwrap()[0].contact_id, "éé");
        assert!(parse("9 1 2/0 short").is_err());
        assert!(parse("1 1 2-0 a").is_err());
    }
}
