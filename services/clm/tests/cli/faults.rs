//! Faults under load: while `clm bench ingest` streams interactions into contacts, scoring,
//! lifecycle and analytics (separate `clm serve` processes) are each killed with SIGKILL and
//! restarted on their address. Once the chain has drained, every acknowledged interaction
//! is stored once at contacts, applied once by scoring, counted once by analytics, and no
//! outbox row is left.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

use clm_testkit::{TestDatabase, backend_tests};

use crate::CLM;
use crate::telemetry::{Process, SERVICES, spawn, spawn_on};

const INTERACTIONS: i64 = 10_000;

/// `(rows, distinct event ids)` of `table` in `service`'s database.
async fn rows(db: &DatabaseConnection, table: &str) -> (i64, i64) {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            format!("SELECT COUNT(*), COUNT(DISTINCT event_id) FROM {table}"),
        ))
        .await
        .unwrap()
        .unwrap();
    (
        row.try_get_by_index(0).unwrap(),
        row.try_get_by_index(1).unwrap(),
    )
}

/// SIGKILL, a pause, and the service back on the address it had.
async fn kill_and_restart(
    database: &TestDatabase,
    processes: &mut [Process],
    addrs: &HashMap<&str, String>,
    offset: usize,
) {
    let process = &mut processes[offset];
    process.child.kill().unwrap();
    process.child.wait().unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let addr = process.addr.clone();
    processes[offset] = spawn_on(database, offset, addrs, &[], &addr).await;
}

backend_tests!(
    receivers_killed_under_load_lose_nothing_and_apply_nothing_twice,
    |database: TestDatabase| async move {
        let mut addrs = HashMap::new();
        let mut processes = Vec::new();
        for offset in (0..SERVICES.len()).rev() {
            let process = spawn(&database, offset, &addrs, &[]).await;
            addrs.insert(SERVICES[offset], process.addr.clone());
            processes.push(process);
        }
        processes.reverse();
        let open = |service: &'static str| {
            let location = database.location();
            async move { clm_store::connect(service, location).await.unwrap() }
        };
        let contacts = open("contacts").await;

        let mut bench = Command::new(CLM);
        bench
            .args([
                "bench",
                "ingest",
                "--interactions",
                &INTERACTIONS.to_string(),
            ])
            .args(["--concurrency", "2", "--batch-size", "250"])
            .env("CLM_DATA_DIR", database.data_dir())
            .env("CLM_CONTACTS_ADDR", &addrs["contacts"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(database.data_dir().join("bench.log")).unwrap());
        if let Some(url) = database.database_url() {
            bench.env("CLM_DATABASE_URL", url);
        }
        let mut bench = bench.spawn().unwrap();

        // Scoring goes down once a fifth has been acknowledged, with its backlog growing;
        // lifecycle once half has; analytics right after, while the others catch up.
        let deadline = Instant::now() + Duration::from_secs(300);
        for (offset, share) in [(1, 5), (2, 2), (3, 2)] {
            while rows(&contacts, "interactions").await.0 < INTERACTIONS / share {
                assert!(Instant::now() < deadline, "the stream never got that far");
                // A bench that ended before this point failed; its status says why.
                if bench.try_wait().unwrap().is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            kill_and_restart(&database, &mut processes, &addrs, offset).await;
        }
        // The bench waits until every outbox is empty.
        let status = bench.wait().unwrap();
        assert!(
            status.success(),
            "clm bench ingest failed: {}",
            std::fs::read_to_string(database.data_dir().join("bench.log")).unwrap_or_default()
        );

        // Contacts was never killed: its relays' retries show the faults met pending rows.
        let retried: f64 = processes[0]
            .metrics()
            .lines()
            .filter(|l| l.starts_with("clm_relay_retries_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert!(retried > 0.0, "no delivery met a dead receiver");

        let scoring = open("scoring").await;
        let lifecycle = open("lifecycle").await;
        let analytics = open("analytics").await;
        let expected = (INTERACTIONS, INTERACTIONS);
        assert_eq!(rows(&contacts, "interactions").await, expected, "contacts");
        assert_eq!(
            rows(&scoring, "interaction_history").await,
            expected,
            "scoring applied each once"
        );
        assert_eq!(
            rows(&analytics, "interaction_facts").await,
            expected,
            "analytics counted each once"
        );
        for (name, db) in [
            ("contacts", &contacts),
            ("scoring", &scoring),
            ("lifecycle", &lifecycle),
        ] {
            let (left, _) = rows(db, "outbox").await;
            assert_eq!(left, 0, "{name}'s outbox is empty");
        }
    }
);
