//! `clm bench ingest`: interactions streamed through RecordInteractions until the whole
//! chain (scoring, lifecycle, analytics) has them, beside the storage floor: the same
//! number of rows inserted straight into the contacts database in batches of the same
//! size, measured in the same run.

use std::time::{Duration, Instant};

use sea_orm::sea_query::{Alias, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};

use super::Report;
use super::stats::{Samples, Summary};
use crate::cli::BenchArgs;
use crate::client::{Contacts, connect_contacts, explain};
use crate::run::BoxError;
use clm_proto::common::v1::Money;
use clm_proto::contacts::v1 as pb;

/// Messages per RecordInteractions call: each worker streams its share as successive calls
/// of this many batches, so the latency columns say how long one such call took.
const MESSAGES_PER_STREAM: u64 = 10;

/// How long the chain may take to drain before the run is called failed.
const DRAIN_LIMIT: Duration = Duration::from_secs(600);

pub(super) async fn run(args: &BenchArgs) -> Result<Report, BoxError> {
    let run = uuid::Uuid::now_v7().simple().to_string();
    let db = clm_store::connect("contacts", crate::run::location(&args.store)).await?;
    let outboxes = crate::outboxes::open(&args.store).await?;
    // Earlier work still on its way would count in this run's drain time.
    wait_until_drained(&outboxes, "before the run").await?;
    let floor = storage_floor(&db, args, &run).await?;

    let mut contacts = connect_contacts(&args.client).await?;
    let ids = seed_contacts(&mut contacts, args, &run).await?;
    wait_until_drained(&outboxes, "after seeding the contacts").await?;
    let started = Instant::now();
    let ingest = ingest(&contacts, args, &run, ids).await;
    let acknowledged = started.elapsed();
    wait_until_drained(&outboxes, "after the run").await?;
    let drain = started.elapsed() - acknowledged;
    let through_chain = ingest.calls as f64 / started.elapsed().as_secs_f64();

    let mut report = Report::new("ingest", args, vec![floor, ingest]);
    report.header = format!(
        "ingest: {} interactions from {} streams in messages of {}",
        args.interactions, args.concurrency, args.batch_size
    );
    report.fact(
        "drained after the last acknowledgement (s)",
        drain.as_secs_f64(),
    );
    report.fact("interactions/s through the whole chain", through_chain);
    report.fact(
        "whole chain vs storage floor",
        through_chain / report.rows[0].per_second.max(1e-9),
    );
    Ok(report)
}

async fn wait_until_drained(
    outboxes: &[crate::outboxes::Outbox],
    when: &str,
) -> Result<(), BoxError> {
    let deadline = Instant::now() + DRAIN_LIMIT;
    while !crate::outboxes::drained(outboxes).await? {
        if Instant::now() > deadline {
            return Err(format!("the outboxes did not drain within {DRAIN_LIMIT:?} {when}").into());
        }
        // Often enough to time the drain to a few tens of milliseconds; each poll is one
        // index probe per outbox.
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Ok(())
}

/// Inserts `--interactions` rows shaped like the interactions table (same columns, same
/// keys and index) into a scratch table of the contacts database, `--batch-size` rows per
/// multi-row INSERT and transaction, from `--concurrency` tasks; the table is dropped after.
async fn storage_floor(
    db: &DatabaseConnection,
    args: &BenchArgs,
    run: &str,
) -> Result<Summary, BoxError> {
    let table = format!("bench_floor_{run}");
    let payload = if db.get_database_backend() == sea_orm::DbBackend::Postgres {
        "JSONB"
    } else {
        "TEXT"
    };
    db.execute_unprepared(&format!(
        "CREATE TABLE {table} (tenant_id TEXT NOT NULL, event_id TEXT NOT NULL, \
         contact_id TEXT NOT NULL, kind TEXT NOT NULL, occurred_at BIGINT NOT NULL, \
         amount_micros BIGINT, currency TEXT NOT NULL, campaign TEXT NOT NULL, \
         channel TEXT NOT NULL, properties {payload} NOT NULL, recorded_at BIGINT NOT NULL, \
         PRIMARY KEY (tenant_id, event_id))"
    ))
    .await?;
    db.execute_unprepared(&format!(
        "CREATE INDEX {table}_timeline ON {table} (tenant_id, contact_id, occurred_at)"
    ))
    .await?;
    let measured = insert_floor_rows(db, args, &table).await;
    db.execute_unprepared(&format!("DROP TABLE {table}"))
        .await?;
    let (samples, elapsed) = measured?;
    let name = format!(
        "storage floor: INSERT of {} rows (rows/s; latency per INSERT)",
        args.batch_size
    );
    Ok(per_row(
        samples.summary(&name, elapsed),
        args.interactions,
        elapsed,
    ))
}

async fn insert_floor_rows(
    db: &DatabaseConnection,
    args: &BenchArgs,
    table: &str,
) -> Result<(Samples, Duration), BoxError> {
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..args.concurrency as u64 {
        let (db, table) = (db.clone(), table.to_owned());
        let (share, batch) = (share(args, worker), args.batch_size);
        workers.spawn(async move {
            let mut samples = Samples::default();
            let now = chrono::Utc::now().timestamp_micros();
            let mut k = 0;
            while k < share {
                let rows = batch.min(share - k);
                let mut insert = Query::insert();
                insert.into_table(Alias::new(&table)).columns(
                    [
                        "tenant_id",
                        "event_id",
                        "contact_id",
                        "kind",
                        "occurred_at",
                        "amount_micros",
                        "currency",
                        "campaign",
                        "channel",
                        "properties",
                        "recorded_at",
                    ]
                    .map(Alias::new),
                );
                for n in k..k + rows {
                    let kind = kind_of(n);
                    insert.values_panic([
                        "bench".into(),
                        format!("floor-{worker}-{n}").into(),
                        format!("contact-{}", n % 10_000).into(),
                        kind.0.into(),
                        (now - age_seconds(n) * 1_000_000).into(),
                        kind.1.map(|m| m.amount_micros).into(),
                        "EUR".into(),
                        "".into(),
                        "web".into(),
                        serde_json::json!({}).into(),
                        now.into(),
                    ]);
                }
                let at = Instant::now();
                let txn = db.begin().await?;
                txn.execute(&insert).await?;
                txn.commit().await?;
                samples.ok(at.elapsed());
                k += rows;
            }
            Ok::<_, sea_orm::DbErr>(samples)
        });
    }
    let mut all = Samples::default();
    while let Some(samples) = workers.join_next().await {
        all.merge(samples??);
    }
    Ok((all, started.elapsed()))
}

/// Worker `worker`'s part of `--interactions` (the first workers take the remainder).
fn share(args: &BenchArgs, worker: u64) -> u64 {
    let workers = args.concurrency as u64;
    args.interactions / workers + u64::from(worker < args.interactions % workers)
}

/// A mix like real traffic: mostly page views, some engagement, one purchase in twenty.
fn kind_of(n: u64) -> (&'static str, Option<Money>) {
    match n % 20 {
        0..=13 => ("page_view", None),
        14..=16 => ("email_open", None),
        17 => ("demo_request", None),
        18 => ("webinar_attended", None),
        _ => (
            "purchase",
            Some(Money {
                amount_micros: 49_900_000,
                currency: "EUR".into(),
            }),
        ),
    }
}

/// How long before the run interaction `n` of a stream happened: a stream's interactions
/// span the last day, sent oldest first, as live traffic arrives.
fn age_seconds(n: u64) -> i64 {
    86_400 - (n % 86_400) as i64
}

/// A summary whose throughput counts rows rather than calls.
fn per_row(mut summary: Summary, rows: u64, elapsed: Duration) -> Summary {
    summary.calls = rows;
    summary.per_second = rows as f64 / elapsed.as_secs_f64().max(1e-9);
    summary
}

/// Imports the contacts the interactions are spread over (one per ten interactions, at
/// most 10,000) and returns their ids.
async fn seed_contacts(
    contacts: &mut Contacts,
    args: &BenchArgs,
    run: &str,
) -> Result<Vec<String>, BoxError> {
    let count = (args.interactions / 10).clamp(1, 10_000);
    let rows = (0..count).map(|i| pb::Contact {
        email: format!("bench-{run}-{i}@example.com"),
        source: "bench".into(),
        attributes: [("bench_run".to_owned(), run.to_owned())].into(),
        ..Default::default()
    });
    let batches: Vec<_> = rows
        .collect::<Vec<_>>()
        .chunks(500)
        .map(|chunk| pb::ImportContactsRequest {
            contacts: chunk.to_vec(),
            update_existing: false,
        })
        .collect();
    contacts
        .import_contacts(futures_util::stream::iter(batches))
        .await
        .map_err(|s| explain(&s))?;
    let filter = format!("attributes.bench_run = \"{run}\"");
    Ok(crate::client::ids_by_email(contacts, &filter)
        .await?
        .into_values()
        .collect())
}

/// Streams the interactions from `--concurrency` workers; the summary counts accepted
/// interactions, with the latency of each call of MESSAGES_PER_STREAM batches.
async fn ingest(contacts: &Contacts, args: &BenchArgs, run: &str, ids: Vec<String>) -> Summary {
    let ids = std::sync::Arc::new(ids);
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..args.concurrency as u64 {
        let (mut contacts, ids, run) = (contacts.clone(), ids.clone(), run.to_owned());
        let (share, batch) = (share(args, worker), args.batch_size);
        workers.spawn(async move {
            let mut samples = Samples::default();
            let mut accepted = 0;
            let now = chrono::Utc::now().timestamp();
            let mut k = 0;
            while k < share {
                let rows = (batch * MESSAGES_PER_STREAM).min(share - k);
                let interaction = |n: u64| {
                    let (kind, value) = kind_of(n);
                    pb::Interaction {
                        event_id: format!("bench-{run}-{worker}-{n}"),
                        contact_id: ids[((worker * 7_919 + n) % ids.len() as u64) as usize].clone(),
                        r#type: kind.into(),
                        occurred_at: Some(prost_types::Timestamp {
                            seconds: now - age_seconds(n),
                            nanos: 0,
                        }),
                        value,
                        channel: "web".into(),
                        ..Default::default()
                    }
                };
                let messages: Vec<_> = (k..k + rows)
                    .map(interaction)
                    .collect::<Vec<_>>()
                    .chunks(batch as usize)
                    .map(|chunk| pb::RecordInteractionsRequest {
                        interactions: chunk.to_vec(),
                    })
                    .collect();
                let at = Instant::now();
                match contacts
                    .record_interactions(futures_util::stream::iter(messages))
                    .await
                {
                    Ok(reply) => {
                        samples.ok(at.elapsed());
                        accepted += reply.into_inner().accepted;
                    }
                    Err(status) => samples.failed(status.code()),
                }
                k += rows;
            }
            (samples, accepted)
        });
    }
    let (mut all, mut accepted) = (Samples::default(), 0);
    while let Some(result) = workers.join_next().await {
        if let Ok((samples, n)) = result {
            all.merge(samples);
            accepted += n;
        }
    }
    let elapsed = started.elapsed();
    let name = format!(
        "RecordInteractions, {} streams (accepted/s; latency per call of {MESSAGES_PER_STREAM} x {})",
        args.concurrency, args.batch_size
    );
    per_row(all.summary(&name, elapsed), accepted, elapsed)
}
