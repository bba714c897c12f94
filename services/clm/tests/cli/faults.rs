//! The fault suite: the four services as separate `clm serve` processes, a fixed workload
//! streamed through RecordInteractions, and faults injected while it runs: each service
//! killed with SIGKILL and restarted, contacts stopped with SIGTERM mid-stream, Redis
//! stopped and started again, the database connections cut by a proxy. The client retries
//! every batch that was not acknowledged, with the same event ids. Once every relay has
//! drained: every acknowledged interaction is stored once at contacts, applied once by
//! scoring, counted once by analytics; every cached score equals a fresh fold of the
//! ledger; no outbox row is left.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use tonic::transport::{Channel, Endpoint};

use clm_proto::common::v1::Money;
use clm_proto::contacts::v1 as cpb;
use clm_proto::contacts::v1::contacts_service_client::ContactsServiceClient;
use clm_proto::scoring::v1 as spb;
use clm_proto::scoring::v1::scoring_service_client::ScoringServiceClient;
use clm_testkit::{TestDatabase, backend_tests};

use crate::free_port;
use crate::telemetry::{Process, SERVICES, spawn_on};

const CONTACTS: usize = 2_000;
const INTERACTIONS: usize = 20_000;
const BATCH: usize = 250;
const WORKERS: usize = 2;
/// The pause between one worker's calls: the stream lasts about 25 s, long enough for
/// every fault to land while it runs.
const PACE: Duration = Duration::from_millis(600);

const CONTACTS_SVC: usize = 0;
const SCORING_SVC: usize = 1;
const LIFECYCLE_SVC: usize = 2;
const ANALYTICS_SVC: usize = 3;

/// What is done to the running suite.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// SIGKILL, a pause, a restart on the same address.
    Kill(usize),
    /// SIGTERM: the service drains its calls in flight and exits cleanly; then a restart.
    Terminate(usize),
    /// The Redis server is killed, and started again (empty) after a pause.
    Redis,
    /// Every database connection is cut and new ones refused for a few seconds.
    Database,
}

/// A Redis server of the test's own, so it can be stopped.
struct Redis {
    port: u16,
    child: Child,
}

impl Redis {
    fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (the fault suite's Redis) starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { port, child }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TCP proxy in front of PostgreSQL that can cut every connection.
struct Proxy {
    addr: std::net::SocketAddr,
    refusing: Arc<AtomicBool>,
    connections: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    accepting: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let refusing = Arc::new(AtomicBool::new(false));
        let connections: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let accepting = tokio::spawn({
            let refusing = refusing.clone();
            let connections = connections.clone();
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if refusing.load(Ordering::SeqCst) {
                        continue; // dropped: the connection is closed at once
                    }
                    let upstream = upstream.clone();
                    let task = tokio::spawn(async move {
                        if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    connections.lock().unwrap().push(task.abort_handle());
                }
            }
        });
        Self {
            addr,
            refusing,
            connections,
            accepting,
        }
    }

    /// Closes every open connection and refuses new ones for `outage`.
    async fn cut(&self, outage: Duration) {
        self.refusing.store(true, Ordering::SeqCst);
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
        tokio::time::sleep(outage).await;
        self.refusing.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accepting.abort();
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }
}

/// The running suite and what its faults need.
struct Suite<'a> {
    database: &'a TestDatabase,
    processes: Vec<Process>,
    addrs: HashMap<&'static str, String>,
    env: Vec<(&'static str, String)>,
    redis: Option<Redis>,
    proxy: Option<Proxy>,
}

impl<'a> Suite<'a> {
    /// Starts the four services, downstream first, each on a port of its own choosing that
    /// it takes back when restarted. On PostgreSQL they reach the database through the
    /// proxy; with Redis configured, they share a Redis of the test's own.
    async fn start(database: &'a TestDatabase) -> Self {
        let mut env = Vec::new();
        let proxy = match database.database_url() {
            Some(url) => {
                // postgres://user@host:port/name: the services go through the proxy.
                let (scheme_user, rest) = url.split_once('@').unwrap();
                let (upstream, name) = rest.split_once('/').unwrap();
                let proxy = Proxy::start(upstream.to_owned()).await;
                env.push((
                    "CLM_DATABASE_URL",
                    format!("{scheme_user}@{}/{name}", proxy.addr),
                ));
                Some(proxy)
            }
            None => None,
        };
        let redis = match clm_testkit::test_redis_url().await {
            Some(_) => {
                let redis = Redis::start(free_port());
                env.push(("CLM_REDIS_URL", redis.url()));
                env.push(("CLM_CACHE_PREFIX", clm_testkit::unique_prefix()));
                Some(redis)
            }
            None => None,
        };
        let mut suite = Suite {
            database,
            processes: Vec::new(),
            addrs: HashMap::new(),
            env,
            redis,
            proxy,
        };
        for offset in (0..SERVICES.len()).rev() {
            let process = spawn_on(database, offset, &suite.addrs, &suite.env, "127.0.0.1:0").await;
            suite.addrs.insert(SERVICES[offset], process.addr.clone());
            suite.processes.push(process);
        }
        suite.processes.reverse();
        suite
    }

    async fn restart(&mut self, offset: usize) {
        let addr = self.processes[offset].addr.clone();
        self.processes[offset] =
            spawn_on(self.database, offset, &self.addrs, &self.env, &addr).await;
    }

    /// Injects `fault`; returns false when it does not apply to this suite.
    async fn inject(&mut self, fault: Fault) -> bool {
        match fault {
            Fault::Kill(offset) => {
                let process = &mut self.processes[offset];
                process.child.kill().unwrap();
                process.child.wait().unwrap();
                tokio::time::sleep(Duration::from_secs(1)).await;
                self.restart(offset).await;
            }
            Fault::Terminate(offset) => {
                let process = &mut self.processes[offset];
                let pid = process.child.id().to_string();
                let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
                assert!(sent.success());
                let deadline = Instant::now() + Duration::from_secs(30);
                let status = loop {
                    if let Some(status) = process.child.try_wait().unwrap() {
                        break status;
                    }
                    assert!(Instant::now() < deadline, "no exit after SIGTERM");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                };
                assert!(
                    status.success(),
                    "a clean exit after SIGTERM: {status:?}\n{}",
                    process.log()
                );
                self.restart(offset).await;
            }
            Fault::Redis => {
                let Some(redis) = &mut self.redis else {
                    return false;
                };
                redis.stop();
                tokio::time::sleep(Duration::from_secs(2)).await;
                *redis = Redis::start(redis.port);
            }
            Fault::Database => {
                let Some(proxy) = &self.proxy else {
                    return false;
                };
                proxy.cut(Duration::from_secs(3)).await;
            }
        }
        true
    }
}

/// `(rows, distinct event ids)` of `table`.
async fn rows(db: &DatabaseConnection, table: &str) -> (usize, usize) {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            format!("SELECT COUNT(*), COUNT(DISTINCT event_id) FROM {table}"),
        ))
        .await
        .unwrap()
        .unwrap();
    let count = |i| usize::try_from(row.try_get_by_index::<i64>(i).unwrap()).unwrap();
    (count(0), count(1))
}

fn lazy_channel(addr: &str) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(1))
        .connect_lazy()
}

/// Imports the workload's contacts and returns their ids.
async fn import_contacts(channel: Channel) -> Vec<String> {
    let mut client = ContactsServiceClient::new(channel);
    let batches: Vec<_> = (0..CONTACTS)
        .collect::<Vec<_>>()
        .chunks(500)
        .map(|chunk| cpb::ImportContactsRequest {
            contacts: chunk
                .iter()
                .map(|i| cpb::Contact {
                    email: format!("fault-{i}@example.com"),
                    source: "fault-suite".into(),
                    ..Default::default()
                })
                .collect(),
            update_existing: false,
        })
        .collect();
    let imported = client
        .import_contacts(futures_util::stream::iter(batches))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(imported.created, CONTACTS as u64);
    let mut ids = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_contacts(cpb::ListContactsRequest {
                page_size: 1000,
                page_token: page_token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        ids.extend(page.contacts.into_iter().map(|c| c.id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(ids.len(), CONTACTS);
    ids
}

/// The workload's `n`th interaction: a fixed mix of engagement and purchases.
fn interaction(n: usize, ids: &[String], now: i64) -> cpb::Interaction {
    const KINDS: [&str; 8] = [
        "page_view",
        "email_open",
        "page_view",
        "email_click",
        "form_submit",
        "page_view",
        "demo_request",
        "purchase",
    ];
    let kind = KINDS[n % KINDS.len()];
    cpb::Interaction {
        event_id: format!("fault-{n}"),
        contact_id: ids[(n * 7_919) % ids.len()].clone(),
        r#type: kind.into(),
        occurred_at: Some(prost_types::Timestamp {
            seconds: now - (INTERACTIONS - n) as i64,
            nanos: 0,
        }),
        value: (kind == "purchase").then(|| Money {
            amount_micros: 1_000_000 * (10 + (n % 90) as i64),
            currency: "EUR".into(),
        }),
        channel: "web".into(),
        ..Default::default()
    }
}

/// Streams the workload from [`WORKERS`] clients, one batch per call, each batch sent again
/// (same event ids) until a call acknowledges it. Counts acknowledged batches in `acked`.
async fn stream(addr: String, ids: Arc<Vec<String>>, now: i64, acked: Arc<AtomicUsize>) -> usize {
    let batches: Vec<Vec<cpb::Interaction>> = (0..INTERACTIONS)
        .map(|n| interaction(n, &ids, now))
        .collect::<Vec<_>>()
        .chunks(BATCH)
        .map(<[_]>::to_vec)
        .collect();
    let batches = Arc::new(batches);
    let workers = (0..WORKERS).map(|worker| {
        let batches = batches.clone();
        let acked = acked.clone();
        let channel = lazy_channel(&addr);
        tokio::spawn(async move {
            let mut client = ContactsServiceClient::new(channel);
            let mut retries = 0;
            for batch in batches.iter().skip(worker).step_by(WORKERS) {
                loop {
                    let mut request = tonic::Request::new(futures_util::stream::iter(vec![
                        cpb::RecordInteractionsRequest {
                            interactions: batch.clone(),
                        },
                    ]));
                    request.set_timeout(Duration::from_secs(10));
                    match client.record_interactions(request).await {
                        Ok(reply) => {
                            let reply = reply.into_inner();
                            assert_eq!(reply.rejected_count, 0, "{:?}", reply.rejected);
                            assert_eq!(reply.accepted + reply.duplicates, batch.len() as u64);
                            break;
                        }
                        Err(_) => {
                            retries += 1;
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
                acked.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(PACE).await;
            }
            retries
        })
    });
    let mut retries = 0;
    for worker in workers.collect::<Vec<_>>() {
        retries += worker.await.unwrap();
    }
    retries
}

/// Waits until the outboxes of contacts, scoring and lifecycle are all empty.
async fn drained(outboxes: &[(&str, DatabaseConnection)]) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let mut left = Vec::new();
        for (name, db) in outboxes {
            let (rows, _) = rows(db, "outbox").await;
            if rows > 0 {
                left.push(format!("{name}: {rows}"));
            }
        }
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the outboxes never drained: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A fresh fold of each contact's ledger (ExplainScore): its total and band.
type Fresh = HashMap<String, (f64, String)>;

/// Whether two reads of a score agree, beyond the decay between them.
fn agree(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-3 * b.abs().max(1.0)
}

/// Contacts whose cached score (BatchGetScores) differs from a fresh fold of their ledger
/// (ExplainScore); and the fresh scores.
async fn mismatched_scores(addr: &str, ids: &[String]) -> (Vec<String>, Fresh) {
    let mut client = ScoringServiceClient::new(lazy_channel(addr));
    let mut mismatched = Vec::new();
    let mut fresh = Fresh::new();
    for chunk in ids.chunks(100) {
        let cached: HashMap<String, f64> = client
            .batch_get_scores(spb::BatchGetScoresRequest {
                contact_ids: chunk.to_vec(),
                model_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .scores
            .into_iter()
            .map(|s| (s.contact_id, s.total))
            .collect();
        for id in chunk {
            let score = client
                .explain_score(spb::ExplainScoreRequest {
                    contact_id: id.clone(),
                    model_id: String::new(),
                })
                .await
                .unwrap()
                .into_inner()
                .score
                .unwrap_or_default();
            let cached = cached.get(id).copied().unwrap_or(0.0);
            if !agree(cached, score.total) {
                mismatched.push(format!("{id}: cached {cached}, fresh {}", score.total));
            }
            fresh.insert(id.clone(), (score.total, score.band));
        }
    }
    (mismatched, fresh)
}

/// Contacts whose score stored in scoring's database differs from the fresh fold, or has
/// no stored score.
async fn mismatched_stored_scores(db: &DatabaseConnection, fresh: &Fresh) -> Vec<String> {
    use clm_scoring::domain::fold::ScoreState;
    let now = chrono::Utc::now().timestamp_micros();
    let stored: HashMap<String, f64> = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT contact_id, state FROM scores",
        ))
        .await
        .unwrap()
        .into_iter()
        .map(|row| {
            let state: Vec<u8> = row.try_get_by_index(1).unwrap();
            let state: ScoreState = clm_scoring::state_bytes::decode(&state).unwrap();
            (row.try_get_by_index(0).unwrap(), state.at(now).0)
        })
        .collect();
    fresh
        .iter()
        .filter_map(|(contact, (total, _))| match stored.get(contact) {
            Some(kept) if agree(*kept, *total) => None,
            kept => Some(format!("{contact}: stored {kept:?}, fresh {total}")),
        })
        .collect()
}

/// Contacts whose stage at lifecycle differs from a replay of the default stage model's
/// rules over their interactions in occurrence order. Scores only rise in this workload,
/// so the final band stands for the band at every step: a rule it lets fire late would
/// have fired no later in order.
async fn mismatched_stages(
    addr: &str,
    workload: &[cpb::Interaction],
    fresh: &Fresh,
) -> Vec<String> {
    use clm_lifecycle::domain::facts::{Activity, Facts};
    use clm_lifecycle::domain::model::{CompiledModel, DEFAULT_MODEL_ID, default_spec};
    use clm_proto::lifecycle::v1 as lpb;
    use clm_proto::lifecycle::v1::lifecycle_service_client::LifecycleServiceClient;

    let model = CompiledModel::new(DEFAULT_MODEL_ID, &default_spec());
    let now = chrono::Utc::now().timestamp_micros();
    let mut by_contact: HashMap<&str, Vec<&cpb::Interaction>> = HashMap::new();
    for interaction in workload {
        by_contact
            .entry(&interaction.contact_id)
            .or_default()
            .push(interaction);
    }
    let mut client = LifecycleServiceClient::new(lazy_channel(addr));
    let mut mismatched = Vec::new();
    let mut replayed: std::collections::BTreeMap<String, usize> = Default::default();
    for (contact, mut events) in by_contact {
        events.sort_by_key(|e| e.occurred_at.as_ref().map(|t| t.seconds));
        let mut facts = Facts {
            band: fresh
                .get(contact)
                .map(|(_, band)| band.clone())
                .unwrap_or_default(),
            ..Facts::default()
        };
        let mut stage = model.first_stage().to_owned();
        for event in events {
            facts.activities.push(Activity {
                kind: event.r#type.clone(),
                occurred_at: event
                    .occurred_at
                    .as_ref()
                    .map_or(0, |t| t.seconds * 1_000_000),
                amount_micros: event.value.as_ref().map_or(0, |v| v.amount_micros),
            });
            facts.event = Some(event.r#type.clone());
            for _ in 0..model.spec.stages.len() {
                facts.stage.clone_from(&stage);
                let Some((to, _)) = model.next_stage(&stage, &facts, now) else {
                    break;
                };
                stage = to.to_owned();
            }
        }
        let stored = client
            .get_contact_stage(lpb::GetContactStageRequest {
                contact_id: contact.to_owned(),
                model_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .stage
            .map(|s| s.stage)
            .unwrap_or_default();
        if stored != stage {
            mismatched.push(format!("{contact}: stage {stored}, replay {stage}"));
        }
        *replayed.entry(stage).or_default() += 1;
    }
    eprintln!("stages by replay: {replayed:?}");
    mismatched
}

backend_tests!(
    faults_under_load_lose_nothing_apply_nothing_twice_and_leave_no_mismatch,
    |database: TestDatabase| async move {
        let mut suite = Suite::start(&database).await;
        let contacts_addr = suite.addrs["contacts"].clone();
        let ids = Arc::new(import_contacts(lazy_channel(&contacts_addr)).await);

        let acked = Arc::new(AtomicUsize::new(0));
        let now = chrono::Utc::now().timestamp();
        let streaming = tokio::spawn(stream(contacts_addr, ids.clone(), now, acked.clone()));
        let faults = [
            Fault::Kill(SCORING_SVC),
            Fault::Kill(LIFECYCLE_SVC),
            Fault::Kill(ANALYTICS_SVC),
            Fault::Kill(CONTACTS_SVC),
            Fault::Redis,
            Fault::Database,
            Fault::Terminate(CONTACTS_SVC),
        ];
        let batches = INTERACTIONS.div_ceil(BATCH);
        let mut injected = Vec::new();
        for (i, fault) in faults.into_iter().enumerate() {
            // Spread over the stream: fault i once i+1 ninths of the batches are in.
            let due = batches * (i + 1) / (faults.len() + 2);
            let deadline = Instant::now() + Duration::from_secs(120);
            while acked.load(Ordering::SeqCst) < due && !streaming.is_finished() {
                assert!(
                    Instant::now() < deadline,
                    "the stream stalled before {fault:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if suite.inject(fault).await {
                injected.push(format!("{fault:?}"));
            }
        }
        let retries = tokio::time::timeout(Duration::from_secs(180), streaming)
            .await
            .expect("every batch acknowledged")
            .unwrap();
        let started = Instant::now();

        let open = |service: &'static str| {
            let location = database.location();
            async move { clm_store::connect(service, location).await.unwrap() }
        };
        let contacts = open("contacts").await;
        let scoring = open("scoring").await;
        let lifecycle = open("lifecycle").await;
        let analytics = open("analytics").await;
        drained(&[
            ("contacts", contacts.clone()),
            ("scoring", scoring.clone()),
            ("lifecycle", lifecycle.clone()),
        ])
        .await;
        eprintln!(
            "drained {:.1} s after the last acknowledgement",
            started.elapsed().as_secs_f64()
        );

        let acknowledged = acked.load(Ordering::SeqCst) * BATCH;
        let mut lost = 0;
        let mut duplicated = 0;
        for (name, db, table) in [
            ("contacts", &contacts, "interactions"),
            ("scoring", &scoring, "interaction_history"),
            ("analytics", &analytics, "interaction_facts"),
        ] {
            let (count, distinct) = rows(db, table).await;
            eprintln!("{name}: {count} rows, {distinct} distinct event ids");
            lost += INTERACTIONS.saturating_sub(distinct);
            duplicated += count - distinct;
        }
        let (mut mismatched, fresh) = mismatched_scores(&suite.addrs["scoring"], &ids).await;
        mismatched.extend(mismatched_stored_scores(&scoring, &fresh).await);
        let workload: Vec<_> = (0..INTERACTIONS)
            .map(|n| interaction(n, &ids, now))
            .collect();
        mismatched.extend(mismatched_stages(&suite.addrs["lifecycle"], &workload, &fresh).await);
        println!(
            "fault suite ({:?}): faults {injected:?}, client retries {retries}; \
             acknowledged {acknowledged}, lost {lost}, duplicated {duplicated}, \
             mismatched {}",
            database.backend(),
            mismatched.len()
        );
        assert_eq!(acknowledged, INTERACTIONS);
        assert_eq!(
            (lost, duplicated, mismatched.len()),
            (0, 0, 0),
            "{mismatched:?}"
        );
        assert!(
            injected.len() >= 5,
            "every fault that applies was injected: {injected:?}"
        );
    }
);
