//! The four services as separate `clm serve` processes exporting spans to a receiver in the
//! test: one interaction is one trace through every service and outbox hop, the admin
//! endpoints count what was done, and no email or name leaks into spans, logs or metrics.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clm_proto::contacts::v1 as cpb;
use clm_proto::contacts::v1::contacts_service_client::ContactsServiceClient;
use clm_proto::scoring::v1 as spb;
use clm_proto::scoring::v1::scoring_service_client::ScoringServiceClient;
use clm_testkit::{TestDatabase, backend_tests};
use tonic::transport::Channel;

use crate::CLM;
use crate::otlp::{ReceivedSpan, Receiver, SERVER, STATUS_ERROR};

pub(crate) const SERVICES: [&str; 4] = ["contacts", "scoring", "lifecycle", "analytics"];

/// One `clm serve` process.
pub(crate) struct Process {
    service: &'static str,
    pub(crate) child: Child,
    pub(crate) addr: String,
    admin: String,
    log: PathBuf,
    /// The shared Redis and the key prefix the process caches under, when it does.
    cache: Option<(String, String)>,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some((url, prefix)) = &self.cache {
            clm_testkit::remove_prefixed_keys(url, prefix);
        }
    }
}

impl Process {
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The admin endpoint's `/metrics`, over a plain HTTP/1.1 request.
    pub(crate) fn metrics(&self) -> String {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&self.admin).unwrap();
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.admin
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{}: {head}", self.service);
        body.to_owned()
    }

    /// The fully qualified name of the process's gRPC service.
    fn grpc_service(&self) -> String {
        let package = self.service;
        let mut name = package.to_owned();
        name[..1].make_ascii_uppercase();
        format!("clm.{package}.v1.{name}Service")
    }
}

/// Starts service number `offset` of the suite on a port of its own choosing, calling the
/// services downstream of it at `addrs` (known once they run), exporting spans to `otlp`
/// with the batch exporter's delay `export_delay_ms`. The ports are read back from the
/// service's "ready" log line, so no port is picked here and lost to a race.
pub(crate) async fn spawn(
    database: &TestDatabase,
    offset: usize,
    addrs: &HashMap<&str, String>,
    env: &[(&str, String)],
) -> Process {
    spawn_on(database, offset, addrs, env, "127.0.0.1:0").await
}

/// [`spawn`] listening on `listen` (a restarted service takes its old address back).
pub(crate) async fn spawn_on(
    database: &TestDatabase,
    offset: usize,
    addrs: &HashMap<&str, String>,
    env: &[(&str, String)],
    listen: &str,
) -> Process {
    let service = SERVICES[offset];
    let log = database.data_dir().join(format!("{service}.log"));
    let peer = |name: &str| {
        addrs
            .get(name)
            .cloned()
            .unwrap_or_else(|| "127.0.0.1:1".into())
    };
    let mut command = Command::new(CLM);
    command
        .args(["serve", service, "--listen", listen])
        .env("CLM_DATA_DIR", database.data_dir())
        .env("CLM_SCORING_ADDR", peer("scoring"))
        .env("CLM_LIFECYCLE_ADDR", peer("lifecycle"))
        .env("CLM_ANALYTICS_ADDR", peer("analytics"))
        .env("CLM_ADMIN_BASE_PORT", "0")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("CLM_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    if let Some(url) = database.database_url()
        && !env.iter().any(|(k, _)| *k == "CLM_DATABASE_URL")
    {
        command.env("CLM_DATABASE_URL", url);
    }
    let own_redis = env.iter().any(|(k, _)| *k == "CLM_REDIS_URL");
    let mut cache = None;
    if let Some(url) = clm_testkit::test_redis_url().await
        && !own_redis
    {
        let prefix = clm_testkit::unique_prefix();
        command
            .env("CLM_REDIS_URL", &url)
            .env("CLM_CACHE_PREFIX", &prefix);
        cache = Some((url, prefix));
    }
    let mut process = Process {
        service,
        child: command.spawn().expect("start clm serve"),
        addr: String::new(),
        admin: String::new(),
        log,
        cache,
    };
    let ready = format!("{service} ready");
    let deadline = Instant::now() + Duration::from_secs(30);
    let line = loop {
        let found = process.log().lines().find_map(|l| {
            let line: serde_json::Value = serde_json::from_str(l).ok()?;
            (line["fields"]["message"] == ready.as_str()).then_some(line)
        });
        if let Some(line) = found {
            break line;
        }
        if let Ok(Some(status)) = process.child.try_wait() {
            panic!("{service} exited with {status}: {}", process.log());
        }
        assert!(
            Instant::now() < deadline,
            "{service} never got ready: {}",
            process.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    process.addr = line["fields"]["addr"].as_str().unwrap().to_owned();
    // Logged with Debug formatting: Some(127.0.0.1:PORT).
    let admin = line["fields"]["admin_addr"].as_str().unwrap();
    process.admin = admin
        .trim_start_matches("Some(")
        .trim_end_matches(')')
        .to_owned();
    wait_until_serving(&mut process).await;
    process
}

/// The variables that make a service export spans to `otlp` every `delay_ms`.
fn exporting(otlp: std::net::SocketAddr, delay_ms: u64) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}")),
        ("OTEL_BSP_SCHEDULE_DELAY", delay_ms.to_string()),
    ]
}

/// Starts the four services, downstream first, each exporting spans to `otlp`.
async fn start_suite(database: &TestDatabase, otlp: std::net::SocketAddr) -> Vec<Process> {
    let mut addrs = HashMap::new();
    let mut processes = Vec::new();
    for offset in (0..SERVICES.len()).rev() {
        let process = spawn(database, offset, &addrs, &exporting(otlp, 100)).await;
        addrs.insert(SERVICES[offset], process.addr.clone());
        processes.push(process);
    }
    processes.reverse();
    processes
}

async fn wait_until_serving(process: &mut Process) {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = process.child.try_wait() {
            panic!(
                "{} exited with {status}: {}",
                process.service,
                process.log()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{} never became SERVING: {}",
            process.service,
            process.log()
        );
        if let Ok(channel) = Channel::from_shared(format!("http://{}", process.addr))
            .unwrap()
            .connect()
            .await
        {
            let reply = HealthClient::new(channel)
                .check(HealthCheckRequest {
                    service: process.grpc_service(),
                })
                .await;
            if reply.is_ok_and(|r| r.into_inner().status == 1) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn channel(process: &Process) -> Channel {
    Channel::from_shared(format!("http://{}", process.addr))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// The server spans a trace must hold before it is complete: (service, rpc method).
const HOPS: [(&str, &str); 5] = [
    ("clm-contacts", "RecordInteraction"),
    ("clm-scoring", "ApplyInteractions"),
    ("clm-lifecycle", "ApplySignals"),
    ("clm-analytics", "IngestInteractions"),
    ("clm-analytics", "IngestTransitions"),
];

fn is_server(span: &ReceivedSpan, service: &str, method: &str) -> bool {
    span.kind == SERVER && span.service == service && span.attribute("rpc.method") == Some(method)
}

/// Waits until the receiver holds every hop of the interaction's trace, then returns it.
async fn whole_trace(receiver: &Receiver, processes: &[Process]) -> Vec<ReceivedSpan> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let root = receiver
            .spans()
            .into_iter()
            .find(|s| is_server(s, "clm-contacts", "RecordInteraction"));
        if let Some(root) = root {
            let trace = receiver.trace(&root.trace_id);
            let complete = HOPS
                .iter()
                .all(|(service, method)| trace.iter().any(|s| is_server(s, service, method)));
            if complete {
                // Let the last batches of spans arrive (the exporters send every 100 ms).
                tokio::time::sleep(Duration::from_millis(500)).await;
                return receiver.trace(&root.trace_id);
            }
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = processes.iter().map(Process::log).collect();
            let seen: Vec<String> = receiver
                .spans()
                .iter()
                .map(|s| format!("{} {} {}", s.service, s.name, s.trace_id))
                .collect();
            panic!("the trace never held every hop; spans: {seen:#?}\nlogs: {logs:#?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The chain of spans from `span` up to the trace's root, `span` first.
fn ancestors<'a>(trace: &'a [ReceivedSpan], span: &'a ReceivedSpan) -> Vec<&'a ReceivedSpan> {
    let by_id: HashMap<&str, &ReceivedSpan> =
        trace.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let mut chain = vec![span];
    let mut current = span;
    while let Some(parent) = by_id.get(current.parent_span_id.as_str()) {
        chain.push(parent);
        current = parent;
    }
    chain
}

/// Checks that the receiver's server span for `method` at `service` was reached through a
/// relay span of `writer`, which itself sits under `writer`'s server span.
fn check_hop(trace: &[ReceivedSpan], writer: &str, service: &str, method: &str) {
    let server = trace
        .iter()
        .find(|s| is_server(s, service, method))
        .unwrap();
    let chain = ancestors(trace, server);
    let relay = chain[1];
    assert_eq!(
        (relay.service.as_str(), relay.name.as_str()),
        (writer, "outbox.deliver"),
        "{service} {method} is called from {writer}'s relay span"
    );
    let target = service.trim_start_matches("clm-");
    assert_eq!(relay.attribute("messaging.destination.name"), Some(target));
    let batch: u32 = relay
        .attribute("messaging.batch.message_count")
        .unwrap()
        .parse()
        .unwrap();
    assert!(batch >= 1);
    assert!(relay.attribute("attempt").is_some());
    assert!(
        chain[2..]
            .iter()
            .any(|s| s.kind == SERVER && s.service == writer),
        "the relay span continues the writer's request: {chain:#?}"
    );
}

backend_tests!(
    one_interaction_is_one_trace_across_four_processes,
    |db| async move {
        let (receiver, otlp) = Receiver::start().await;
        let processes = start_suite(&db, otlp).await;
        let mut contacts = ContactsServiceClient::new(channel(&processes[0]).await);
        let mut scoring = ScoringServiceClient::new(channel(&processes[1]).await);

        // Distinctive personal data, to be searched for everywhere afterwards.
        let marker = uuid::Uuid::new_v4().simple().to_string();
        let email = format!("grace.{marker}@example.com");
        let first_name = format!("Gracelyn{}", &marker[..8]);
        let last_name = format!("Hoppersmith{}", &marker[8..16]);
        let contact = contacts
            .create_contact(cpb::CreateContactRequest {
                contact: Some(cpb::Contact {
                    email: email.clone(),
                    first_name: first_name.clone(),
                    last_name: last_name.clone(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .contact
            .unwrap();
        // The contact's own change events go out first: a relay batch continues the trace of
        // its first row only (the others are linked), so the interaction gets a batch of its own.
        let deadline = Instant::now() + Duration::from_secs(20);
        while ["scoring", "analytics"].iter().any(|target| {
            value(
                &processes[0].metrics(),
                &format!(r#"clm_outbox_depth{{target="{target}"}}"#),
            ) != Some(0.0)
        }) {
            assert!(
                Instant::now() < deadline,
                "the contact's events were never delivered"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let now = chrono::Utc::now();
        contacts
            .record_interaction(cpb::RecordInteractionRequest {
                interaction: Some(cpb::Interaction {
                    event_id: "order-1".into(),
                    contact_id: contact.id.clone(),
                    r#type: "purchase".into(),
                    occurred_at: Some(prost_types::Timestamp {
                        seconds: now.timestamp(),
                        nanos: 0,
                    }),
                    value: Some(clm_proto::common::v1::Money {
                        amount_micros: 49_900_000,
                        currency: "EUR".into(),
                    }),
                    ..Default::default()
                }),
            })
            .await
            .unwrap();

        let trace = whole_trace(&receiver, &processes).await;
        let trace_id = &trace[0].trace_id;
        assert_ne!(trace_id, &"0".repeat(32), "a real trace id");

        // Server spans from all four services, each with the RPC attributes.
        for service in [
            "clm-contacts",
            "clm-scoring",
            "clm-lifecycle",
            "clm-analytics",
        ] {
            assert!(
                trace
                    .iter()
                    .any(|s| s.kind == SERVER && s.service == service),
                "{service} has a server span in the trace"
            );
        }
        for span in trace.iter().filter(|s| s.kind == SERVER) {
            assert_eq!(span.attribute("rpc.system"), Some("grpc"), "{span:#?}");
            assert!(
                span.attribute("rpc.service")
                    .is_some_and(|s| s.starts_with("clm."))
            );
            assert_eq!(
                span.attribute("rpc.grpc.status_code"),
                Some("0"),
                "{span:#?}"
            );
            assert_eq!(
                span.attribute("server.address"),
                Some("127.0.0.1"),
                "{span:#?}"
            );
            let port = span.attribute("server.port").unwrap();
            assert!(
                processes
                    .iter()
                    .any(|p| p.addr.ends_with(&format!(":{port}"))),
                "server.port {port} is a service's port"
            );
            assert_ne!(span.status_code, STATUS_ERROR);
        }

        // One root, and every other span's parent is in the trace.
        let roots: Vec<_> = trace
            .iter()
            .filter(|s| s.parent_span_id.is_empty())
            .collect();
        assert_eq!(roots.len(), 1, "one root: {roots:#?}");
        assert!(is_server(roots[0], "clm-contacts", "RecordInteraction"));
        let ids: Vec<&str> = trace.iter().map(|s| s.span_id.as_str()).collect();
        for span in &trace {
            assert!(
                span.parent_span_id.is_empty() || ids.contains(&span.parent_span_id.as_str()),
                "the parent of {} ({}) is in the trace",
                span.name,
                span.service
            );
        }

        // Each outbox hop: writer's request -> relay span -> receiver's server span.
        check_hop(&trace, "clm-contacts", "clm-scoring", "ApplyInteractions");
        check_hop(
            &trace,
            "clm-contacts",
            "clm-analytics",
            "IngestInteractions",
        );
        check_hop(&trace, "clm-scoring", "clm-lifecycle", "ApplySignals");
        check_hop(
            &trace,
            "clm-lifecycle",
            "clm-analytics",
            "IngestTransitions",
        );

        // Database transactions have spans, and so do Redis calls when Redis is in use.
        let system = if db.database_url().is_some() {
            "postgresql"
        } else {
            "sqlite"
        };
        for service in [
            "clm-contacts",
            "clm-scoring",
            "clm-lifecycle",
            "clm-analytics",
        ] {
            assert!(
                trace.iter().any(|s| s.service == service
                    && s.name == "db.transaction"
                    && s.attribute("db.system.name") == Some(system)),
                "{service} has a db.transaction span on {system}"
            );
        }
        if clm_testkit::test_redis_url().await.is_some() {
            assert!(
                trace.iter().any(|s| s.service == "clm-scoring"
                    && s.attribute("db.system.name") == Some("redis")),
                "scoring's Redis writes have spans"
            );
        }

        // Some traffic to count: three score reads.
        for _ in 0..3 {
            scoring
                .get_score(spb::GetScoreRequest {
                    contact_id: contact.id.clone(),
                    model_id: String::new(),
                })
                .await
                .unwrap();
        }
        // A caller's mistake is recorded on the span, but is not the server's failure.
        let refused = contacts
            .get_contact(cpb::GetContactRequest { id: String::new() })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        let span = eventually_span(&receiver, |s| {
            s.attribute("rpc.method") == Some("GetContact")
        })
        .await;
        assert_eq!(span.attribute("rpc.grpc.status_code"), Some("3"));
        assert_ne!(span.status_code, STATUS_ERROR);

        let pii = [email.as_str(), first_name.as_str(), last_name.as_str()];
        check_metrics(&processes, &pii).await;

        // Nothing personal in any span of any trace, in any log line or metric.
        for span in receiver.spans() {
            for text in &span.texts {
                for needle in pii {
                    assert!(!text.contains(needle), "{needle} in span {span:#?}");
                }
            }
        }
        for process in &processes {
            let log = process.log();
            for needle in pii {
                assert!(
                    !log.contains(needle),
                    "{needle} in the {} log",
                    process.service
                );
            }
            // JSON lines, and those written inside a request carry its trace.
            let lines: Vec<serde_json::Value> = log
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
                .collect();
            assert!(!lines.is_empty(), "{} logs something", process.service);
            for line in lines.iter().filter(|l| l.get("span").is_some()) {
                let id = line["trace_id"].as_str().unwrap_or_default();
                assert_eq!(
                    id.len(),
                    32,
                    "a log line inside a span has its trace id: {line}"
                );
            }
        }
    }
);

/// Waits for a span that `matches`.
async fn eventually_span(
    receiver: &Receiver,
    matches: impl Fn(&ReceivedSpan) -> bool,
) -> ReceivedSpan {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(span) = receiver.spans().into_iter().find(|s| matches(s)) {
            return span;
        }
        assert!(Instant::now() < deadline, "the span never arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

backend_tests!(spans_are_flushed_when_a_service_stops, |db| async move {
    let (receiver, otlp) = Receiver::start().await;
    // An export delay far beyond the test: only the flush at shutdown can send the span.
    let mut analytics = spawn(&db, 3, &HashMap::new(), &exporting(otlp, 600_000)).await;
    let mut client =
        clm_proto::analytics::v1::analytics_service_client::AnalyticsServiceClient::new(
            channel(&analytics).await,
        );
    client
        .get_nps(clm_proto::analytics::v1::GetNpsRequest::default())
        .await
        .unwrap();
    assert!(
        receiver.spans().is_empty(),
        "nothing is exported before the delay"
    );
    let pid = analytics.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while analytics.child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "analytics did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let flushed = receiver.spans();
    assert!(
        flushed
            .iter()
            .any(|s| s.service == "clm-analytics" && s.attribute("rpc.method") == Some("GetNps")),
        "the request's span was flushed at shutdown: {flushed:#?}\n{}",
        analytics.log()
    );
});

/// The value of the series `name{labels}` (exact label text) in a scrape, if present.
fn value(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn rpc(body: &str, method: &str) -> f64 {
    value(
        body,
        &format!(r#"clm_rpc_requests_total{{method="{method}",code="0"}}"#),
    )
    .unwrap_or(0.0)
}

async fn check_metrics(processes: &[Process], pii: &[&str]) {
    let mut scraped = HashMap::new();
    for process in processes {
        let body = process.metrics();
        for needle in pii {
            assert!(
                !body.contains(needle),
                "{needle} in {} metrics",
                process.service
            );
        }
        for series in [
            "clm_rpc_in_flight 0",
            "clm_rpc_shed_total 0",
            "clm_rpc_duration_seconds_bucket",
            "clm_db_pool_connections",
        ] {
            assert!(
                body.contains(series),
                "{}: {series} in {body}",
                process.service
            );
        }
        assert!(value(&body, "clm_db_pool_connections").unwrap() >= 1.0);
        scraped.insert(process.service, body);
    }
    let contacts = &scraped["contacts"];
    assert_eq!(
        rpc(contacts, "clm.contacts.v1.ContactsService/CreateContact"),
        1.0
    );
    assert_eq!(
        rpc(
            contacts,
            "clm.contacts.v1.ContactsService/RecordInteraction"
        ),
        1.0
    );
    let scoring = &scraped["scoring"];
    assert_eq!(rpc(scoring, "clm.scoring.v1.ScoringService/GetScore"), 3.0);
    assert_eq!(
        value(
            scoring,
            r#"clm_rpc_duration_seconds_count{method="clm.scoring.v1.ScoringService/GetScore",code="0"}"#
        ),
        Some(3.0)
    );
    let hits = value(scoring, "clm_cache_hits").unwrap();
    let misses = value(scoring, "clm_cache_misses").unwrap();
    assert_eq!(hits + misses, 3.0, "every score read is a hit or a miss");
    assert!(
        hits >= 2.0,
        "the score is cached after the first read at most"
    );

    // Each relay delivered what it wrote (contact changes travel too, and rows may share a
    // call), with nothing left behind and nothing retried.
    for (writer, target, receiver, method) in [
        (
            "contacts",
            "scoring",
            "scoring",
            "clm.scoring.v1.ScoringService/ApplyInteractions",
        ),
        (
            "contacts",
            "analytics",
            "analytics",
            "clm.analytics.v1.AnalyticsService/IngestInteractions",
        ),
        (
            "scoring",
            "lifecycle",
            "lifecycle",
            "clm.lifecycle.v1.LifecycleService/ApplySignals",
        ),
        (
            "lifecycle",
            "analytics",
            "analytics",
            "clm.analytics.v1.AnalyticsService/IngestTransitions",
        ),
    ] {
        let body = &scraped[writer];
        let target_label = format!(r#"{{target="{target}"}}"#);
        let delivered = value(body, &format!("clm_relay_delivered_total{target_label}")).unwrap();
        let calls = rpc(&scraped[receiver], method);
        assert!(
            calls >= 1.0 && delivered >= calls,
            "{writer} delivered {delivered} rows to {target} in {calls} calls"
        );
        assert_eq!(
            value(body, &format!("clm_outbox_depth{target_label}")),
            Some(0.0)
        );
        assert_eq!(
            value(body, &format!("clm_relay_retries_total{target_label}")),
            Some(0.0)
        );
    }
}
