//! `clm up` as a user runs it: the client commands against it, and SIGTERM.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use clm_testkit::{TestDatabase, backend_tests};

use crate::{CLM, free_port};

struct Suite {
    child: Child,
    addr: String,
    scoring_addr: String,
    lifecycle_addr: String,
    analytics_addr: String,
    _database: TestDatabase,
}

impl Suite {
    fn command(&self, args: &[&str]) -> Output {
        let mut command = Command::new(CLM);
        command.env("CLM_DATA_DIR", self._database.data_dir());
        if let Some(url) = self._database.database_url() {
            command.env("CLM_DATABASE_URL", url);
        }
        let output = command
            .args(args)
            .env("CLM_CONTACTS_ADDR", &self.addr)
            .env("CLM_SCORING_ADDR", &self.scoring_addr)
            .env("CLM_LIFECYCLE_ADDR", &self.lifecycle_addr)
            .env("CLM_ANALYTICS_ADDR", &self.analytics_addr)
            .env("CLM_TENANT", "cli-test")
            .output()
            .expect("run clm");
        assert!(
            output.status.success(),
            "clm {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Runs `args` until its output contains `needle` (data flows through outboxes).
    async fn wait_for(&self, args: &[&str], needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = self.stdout(args);
            if out.contains(needle) {
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "clm {args:?} never showed {needle:?}: {out}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stdout(&self, args: &[&str]) -> String {
        String::from_utf8(self.command(args).stdout).unwrap()
    }
}

impl Drop for Suite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `clm up` on free ports and waits until contacts serves. A port picked here can be
/// taken by another test before the child binds it; then the child exits and `clm up` is
/// started again on other ports.
async fn start(database: TestDatabase) -> (Suite, Duration) {
    for _ in 0..3 {
        let addrs: Vec<String> = (0..4)
            .map(|_| format!("127.0.0.1:{}", free_port()))
            .collect();
        let log_path = database.data_dir().join("clm-up.log");
        let mut command = Command::new(CLM);
        command
            .arg("up")
            .env("CLM_DATA_DIR", database.data_dir())
            .env("CLM_CONTACTS_ADDR", &addrs[0])
            .env("CLM_SCORING_ADDR", &addrs[1])
            .env("CLM_LIFECYCLE_ADDR", &addrs[2])
            .env("CLM_ANALYTICS_ADDR", &addrs[3])
            .env("CLM_ADMIN_BASE_PORT", "0")
            .env("CLM_DASHBOARD_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).expect("a log file"));
        if let Some(url) = database.database_url() {
            command.env("CLM_DATABASE_URL", url);
        }
        let started = Instant::now();
        let mut child = command.spawn().expect("start clm up");
        let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
        match wait_until_serving(&mut child, &addrs[0], started).await {
            Ok(()) => {
                let ready_after = started.elapsed();
                let [addr, scoring_addr, lifecycle_addr, analytics_addr] =
                    <[String; 4]>::try_from(addrs).unwrap();
                let suite = Suite {
                    child,
                    addr,
                    scoring_addr,
                    lifecycle_addr,
                    analytics_addr,
                    _database: database,
                };
                return (suite, ready_after);
            }
            Err(status) if log().contains("Address already in use") => {
                eprintln!("clm up lost a port to another test ({status}); starting again");
            }
            Err(status) => panic!("clm up exited with {status}: {}", log()),
        }
    }
    panic!("clm up could not bind free ports three times");
}

/// Polls the standard health check of contacts at `addr` until it answers SERVING; the
/// child's exit status if it stops first.
async fn wait_until_serving(
    child: &mut Child,
    addr: &str,
    started: Instant,
) -> Result<(), std::process::ExitStatus> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let deadline = started + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(status);
        }
        assert!(Instant::now() < deadline, "contacts never became SERVING");
        if let Ok(channel) = tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
        {
            let reply = HealthClient::new(channel)
                .check(HealthCheckRequest {
                    service: "clm.contacts.v1.ContactsService".into(),
                })
                .await;
            if reply.is_ok_and(|r| r.into_inner().status == 1) {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

backend_tests!(
    up_serves_the_client_commands_and_stops_on_sigterm,
    |db| async move {
        let (mut suite, ready_after) = start(db).await;
        eprintln!(
            "clm up: contacts SERVING after {} ms",
            ready_after.as_millis()
        );

        let created = suite.stdout(&[
            "contacts",
            "create",
            "--email",
            "Ada@Example.com",
            "--first-name",
            "Ada",
            "--country",
            "de",
            "--attr",
            "plan=pro",
        ]);
        assert!(created.contains("ada@example.com"), "{created}");
        let id = created
            .lines()
            .find(|l| l.contains(" id "))
            .and_then(|l| l.split_whitespace().find(|w| w.len() == 36))
            .expect("the id row")
            .to_owned();
        assert!(suite.stdout(&["contacts", "get", &id]).contains("plan"));

        let csv = suite._database.data_dir().join("people.csv");
        let mut text = String::from("email,first_name,country,plan\n");
        for i in 0..1200 {
            text.push_str(&format!("user{i}@example.com,User {i},FR,basic\n"));
        }
        text.push_str("broken-email,Nobody,FR,basic\n");
        std::fs::write(&csv, text).unwrap();
        let imported = suite.stdout(&[
            "contacts",
            "import",
            csv.to_str().unwrap(),
            "--batch-size",
            "250",
        ]);
        assert!(
            imported.contains("1201") && imported.contains("1200"),
            "{imported}"
        );
        assert!(
            imported.contains("1202"),
            "the bad row is reported by its line: {imported}"
        );

        let listed = suite.stdout(&["contacts", "list", "--filter", r#"country = "DE""#]);
        assert!(
            listed.contains("ada@example.com") && listed.contains("1 contacts"),
            "{listed}"
        );

        let recorded = suite.stdout(&[
            "interactions",
            "record",
            "--contact",
            &id,
            "--type",
            "purchase",
            "--value",
            "49.90",
            "--currency",
            "eur",
            "--event-id",
            "order-1",
        ]);
        assert!(recorded.contains("recorded: order-1"), "{recorded}");
        let again = suite.stdout(&[
            "interactions",
            "record",
            "--contact",
            &id,
            "--type",
            "purchase",
            "--event-id",
            "order-1",
        ]);
        assert!(again.contains("duplicate"), "{again}");
        let timeline = suite.stdout(&["interactions", "list", "--contact", &id]);
        assert!(
            timeline.contains("49.90 EUR") && timeline.contains("1 interactions"),
            "{timeline}"
        );

        // The purchase reaches scoring through the outbox: 20 points.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let score = suite.stdout(&["score", "get", "--contact", &id]);
            if score.contains("20.00") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the score never arrived: {score}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let explained = suite.stdout(&["score", "explain", "--contact", &id]);
        assert!(explained.contains("purchase"), "{explained}");
        assert!(
            suite
                .stdout(&["score", "history", "--contact", &id])
                .contains("order-1")
        );
        // The purchase moves the contact to conversion through scoring and lifecycle.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let stage = Command::new(CLM)
                .args(["stage", "get", "--contact", &id])
                .env("CLM_LIFECYCLE_ADDR", &suite.lifecycle_addr)
                .env("CLM_TENANT", "cli-test")
                .output()
                .unwrap();
            if String::from_utf8_lossy(&stage.stdout).contains("conversion") {
                break;
            }
            assert!(Instant::now() < deadline, "the stage never arrived");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let history = suite.stdout(&["stage", "history", "--contact", &id]);
        assert!(history.contains("rule:first_purchase"), "{history}");
        let created = suite.stdout(&[
            "segments",
            "create",
            "--name",
            "Buyers",
            "--filter",
            r#"count.purchase.30d >= "1""#,
        ]);
        assert!(created.contains("with 1 members"), "{created}");
        assert!(suite.stdout(&["segments", "list"]).contains("Buyers"));
        let moved = suite.stdout(&[
            "stage",
            "move",
            "--contact",
            &id,
            "--to",
            "awareness",
            "--override",
            "--reason",
            "test",
        ]);
        assert!(moved.contains("awareness"), "{moved}");
        // The purchase reaches analytics: one customer, 49.90 of revenue.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let rfm = suite.stdout(&["report", "rfm", "--json"]);
            if rfm.contains("49900000") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the order never reached analytics: {rfm}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Transitions reach analytics through lifecycle's outbox, a path of their own.
        suite.wait_for(&["report", "stages"], "conversion").await;
        assert!(suite.stdout(&["report", "activity"]).contains("returning"));
        assert!(
            suite
                .stdout(&["report", "cohorts", "--json"])
                .contains("\"size\":1")
        );
        let funnel = suite.stdout(&["report", "funnel", "--stages", "awareness", "conversion"]);
        assert!(funnel.contains("100.0 %"), "{funnel}");
        let backlog = suite.stdout(&["outbox"]);
        assert!(backlog.contains("scoring"), "{backlog}");
        let models = suite.stdout(&["models", "list"]);
        assert!(
            models.contains("Default lead score") && models.contains("MQL 50"),
            "{models}"
        );
        assert!(
            suite
                .stdout(&["models", "show"])
                .contains("pricing_page_view")
        );
        let simulated = suite.stdout(&["models", "simulate", "--threshold", "MQL=10"]);
        assert!(simulated.contains("would change band"), "{simulated}");

        // The benchmark at a tiny size: a table of numbers beside its baseline.
        let bench = suite.stdout(&[
            "bench",
            "score-read",
            "--duration",
            "300ms",
            "--concurrency",
            "2",
            "--json",
        ]);
        let report: serde_json::Value = serde_json::from_str(&bench).expect("JSON");
        let rows = report["rows"].as_array().unwrap();
        let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            ["health check (baseline)", "GetScore", "BatchGetScores(100)"]
        );
        for row in rows {
            assert!(row["calls"].as_u64().unwrap() > 0, "{row}");
            assert!(row["errors"].as_object().unwrap().is_empty(), "{row}");
            assert!(row["p50_ms"].as_f64().unwrap() <= row["p999_ms"].as_f64().unwrap());
        }
        assert!(
            suite
                .stdout(&["bench", "score-read", "--duration", "200ms"])
                .contains("vs baseline")
        );
        let overload = suite.stdout(&[
            "bench",
            "overload",
            "--demo-contacts",
            "20",
            "--duration",
            "200ms",
            "--concurrency",
            "2",
            "--json",
        ]);
        let overload: serde_json::Value = serde_json::from_str(&overload).expect("JSON");
        let rows = overload["rows"].as_array().unwrap();
        assert_eq!(
            rows.len(),
            4,
            "unloaded, capacity, admitted, refused: {overload}"
        );
        for row in &rows[..3] {
            assert!(row["calls"].as_u64().unwrap() > 0, "{row}");
            assert!(row["errors"].as_object().unwrap().is_empty(), "{row}");
        }
        let facts: Vec<&str> = overload["facts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|fact| fact[0].as_str().unwrap())
            .collect();
        assert_eq!(
            facts,
            ["admitted p99 over unloaded p99", "refused p99 (ms)"],
            "{overload}"
        );
        let reports = suite.stdout(&[
            "bench",
            "reports",
            "--duration",
            "100ms",
            "--concurrency",
            "2",
            "--json",
        ]);
        let reports: serde_json::Value = serde_json::from_str(&reports).expect("JSON");
        let rows = reports["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 9, "the baseline and eight reports");
        for row in rows {
            if row["name"] == "GetCustomerValue" {
                // One customer is too few to fit the predictive models: refused, and counted.
                assert!(
                    row["errors"]["FailedPrecondition"].as_u64().unwrap() > 0,
                    "{row}"
                );
                continue;
            }
            assert!(row["calls"].as_u64().unwrap() > 0, "{row}");
            assert!(row["errors"].as_object().unwrap().is_empty(), "{row}");
        }

        // The demo tenant, twice: the same seed stores nothing new the second time.
        let demo = ["demo", "--contacts", "300", "--days", "200", "--seed", "7"];
        let first = counts(&suite.stdout(&demo));
        assert_eq!(first["contacts"], [300, 0, 0]);
        assert!(first["spend periods"][0] > 0);
        assert!(first["interactions"][0] > 300, "{first:?}");
        assert_eq!(first["interactions"][2], 0, "nothing rejected");
        let second = counts(&suite.stdout(&demo));
        assert_eq!(second["contacts"], [0, 300, 0]);
        assert_eq!(second["spend periods"], [0, first["spend periods"][0], 0]);
        assert_eq!(second["interactions"], [0, first["interactions"][0], 0]);
        // Enough customers for every report, the predictive CLV fit among them.
        let demo_reports: serde_json::Value = serde_json::from_str(&suite.stdout(&[
            "bench",
            "reports",
            "--duration",
            "100ms",
            "--concurrency",
            "1",
            "--json",
        ]))
        .unwrap();
        for row in demo_reports["rows"].as_array().unwrap() {
            assert!(row["errors"].as_object().unwrap().is_empty(), "{row}");
        }

        // Ingest at a tiny size: every interaction accepted, the chain drained, the floor
        // measured beside it.
        let ingest: serde_json::Value = serde_json::from_str(&suite.stdout(&[
            "bench",
            "ingest",
            "--interactions",
            "1000",
            "--batch-size",
            "100",
            "--concurrency",
            "2",
            "--json",
        ]))
        .unwrap();
        let rows = ingest["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 2, "{ingest}");
        assert!(
            rows[0]["name"]
                .as_str()
                .unwrap()
                .starts_with("storage floor")
        );
        assert_eq!(rows[0]["calls"], 1000);
        assert_eq!(rows[1]["calls"], 1000, "accepted: {ingest}");
        assert!(rows[1]["errors"].as_object().unwrap().is_empty());
        let facts = ingest["facts"].as_array().unwrap();
        assert_eq!(facts.len(), 3, "{ingest}");
        assert!(
            facts.iter().all(|f| f[1].as_f64().unwrap() > 0.0),
            "{ingest}"
        );
        assert!(
            suite
                .stdout(&["outbox"])
                .lines()
                .skip(1)
                .all(|l| l.split_whitespace().nth(2) == Some("0"))
        );

        let refused = Command::new(CLM)
            .args(["contacts", "create", "--email", "nope"])
            .env("CLM_CONTACTS_ADDR", &suite.addr)
            .output()
            .unwrap();
        assert!(!refused.status.success());
        assert!(String::from_utf8_lossy(&refused.stderr).contains("contact.email"));

        let pid = suite.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(status) = suite.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "clm up did not stop on SIGTERM");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(status.success(), "clean exit after SIGTERM: {status:?}");
        // Each service closed its database: on SQLite no write-ahead log is left, so the
        // files alone hold everything (a copy of them is a whole backup).
        let logs = clm_testkit::sqlite_logs(suite._database.data_dir());
        assert!(logs.is_empty(), "logs left after a stop: {logs:?}");
    }
);

#[test]
fn a_public_address_without_auth_is_refused() {
    let output = Command::new(CLM)
        .args(["serve", "contacts", "--listen", "0.0.0.0:0"])
        .env("CLM_DATA_DIR", std::env::temp_dir().join("clm-refused"))
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--insecure"), "{stderr}");
}

#[test]
fn logs_written_to_a_file_carry_no_terminal_colours() {
    let dir = std::env::temp_dir().join(format!("clm-plain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log_path = dir.join("analytics.log");
    let mut child = Command::new(CLM)
        .args(["serve", "analytics", "--listen", "127.0.0.1:0"])
        .env("CLM_DATA_DIR", &dir)
        .env("CLM_ADMIN_BASE_PORT", "0")
        .env("RUST_LOG", "info")
        .env_remove("CLM_LOG_FORMAT")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let log = loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log.contains("ready") || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(log.contains("analytics ready"), "{log}");
    assert!(!log.contains('\u{1b}'), "plain text: {log:?}");
}

/// The demo's summary table as row name to (stored, already there, rejected).
fn counts(table: &str) -> std::collections::HashMap<String, [u64; 3]> {
    table
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line
                .split(|c: char| c == '│' || c.is_whitespace())
                .filter(|c| !c.is_empty())
                .collect();
            let (name, numbers) = cells.split_last_chunk::<3>()?;
            let numbers = numbers.map(|n| n.parse::<u64>().ok());
            let [Some(a), Some(b), Some(c)] = numbers else {
                return None;
            };
            Some((name.join(" "), [a, b, c]))
        })
        .collect()
}
