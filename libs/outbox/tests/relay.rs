//! The outbox and its relay on SQLite and (when configured) PostgreSQL.
#![allow(unreachable_pub)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, Statement, TransactionTrait,
};
use sea_orm_migration::{MigrationTrait, MigratorTrait};

use clm_outbox::{
    Deliver, DeliveryError, Message, NewMessage, Relay, RelayOptions, Wake, any_pending, enqueue,
    stats,
};
use clm_runtime::Shutdown;
use clm_testkit::{TestDatabase, backend_tests};

struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        clm_outbox::migrations()
    }
}

async fn open(db: &TestDatabase) -> DatabaseConnection {
    let conn = clm_store::connect("outbox_test", db.location())
        .await
        .unwrap();
    clm_store::migrate::<Migrator>(&conn).await.unwrap();
    conn
}

fn message(tenant: &str, event: &str) -> NewMessage {
    NewMessage {
        target: "receiver",
        tenant_id: tenant.into(),
        event_id: event.into(),
        payload: event.as_bytes().to_vec(),
    }
}

/// `n` messages `e00000`, `e00001`, ... (ids that sort in the order written), spread over
/// `tenants` in turn.
fn backlog(n: usize, tenants: &[&str]) -> Vec<NewMessage> {
    (0..n)
        .map(|i| message(tenants[i % tenants.len()], &format!("e{i:05}")))
        .collect()
}

/// Writes `messages` one call each, so each is a row of its own: the relay's batching
/// of rows is under test, not the packing of one call's messages.
async fn enqueue_each(conn: &DatabaseConnection, messages: Vec<NewMessage>) {
    for message in messages {
        enqueue(conn, 1, vec![message]).await.unwrap();
    }
}

/// A receiver that dedupes by (tenant, event) like the real ones, counts how often each
/// message arrived, and can be told to lose its acknowledgement after applying (the next
/// `lose_acks` calls', or call number `lose_ack_of_call`'s), or to refuse calls heavier
/// than `max_bytes` as a gRPC server refuses a request over its message size.
#[derive(Clone, Default)]
struct Receiver {
    applied: Arc<Mutex<HashMap<(String, String), u32>>>,
    received: Arc<Mutex<HashMap<(String, String), u32>>>,
    lose_acks: Arc<Mutex<u32>>,
    lose_ack_of_call: Option<u32>,
    max_bytes: Option<usize>,
    /// Each call's request size: its messages and, per message, a tag and a length.
    calls: Arc<Mutex<Vec<usize>>>,
}

#[async_trait::async_trait]
impl Deliver for Receiver {
    async fn deliver(&self, tenant: &str, batch: &[Message]) -> Result<(), DeliveryError> {
        let bytes = batch
            .iter()
            .map(|m| m.payload.len() + 1 + prost::length_delimiter_len(m.payload.len()))
            .sum();
        let call = {
            let mut calls = self.calls.lock().unwrap();
            calls.push(bytes);
            calls.len() as u32
        };
        if self.max_bytes.is_some_and(|max| bytes > max) {
            return Err(DeliveryError(format!(
                "OutOfRange: decoded message length too large: found {bytes} bytes"
            )));
        }
        let mut applied = self.applied.lock().unwrap();
        let mut received = self.received.lock().unwrap();
        for m in batch {
            assert_eq!(m.payload, m.event_id.as_bytes());
            let key = (tenant.to_owned(), m.event_id.clone());
            *received.entry(key.clone()).or_default() += 1;
            // Dedupe: a message seen before changes nothing.
            applied.entry(key).or_insert(1);
        }
        if self.lose_ack_of_call == Some(call) {
            return Err(DeliveryError(
                "applied, but the acknowledgement was lost".into(),
            ));
        }
        let mut lose = self.lose_acks.lock().unwrap();
        if *lose > 0 {
            *lose -= 1;
            return Err(DeliveryError(
                "applied, but the acknowledgement was lost".into(),
            ));
        }
        Ok(())
    }
}

/// A receiver that records each delivery's size and what arrived, in order, after
/// waiting `delay` per delivery (to let the next claim overlap).
#[derive(Clone, Default)]
struct Recording {
    delay: Duration,
    log: Arc<Mutex<Log>>,
}

#[derive(Clone, Default)]
struct Log {
    sizes: Vec<usize>,
    arrived: Vec<(String, String)>,
}

#[async_trait::async_trait]
impl Deliver for Recording {
    async fn deliver(&self, tenant: &str, batch: &[Message]) -> Result<(), DeliveryError> {
        tokio::time::sleep(self.delay).await;
        let mut log = self.log.lock().unwrap();
        log.sizes.push(batch.len());
        for m in batch {
            assert_eq!(m.payload, m.event_id.as_bytes(), "each message whole");
            log.arrived.push((tenant.to_owned(), m.event_id.clone()));
        }
        Ok(())
    }
}

impl Recording {
    /// Checks that each of `tenants` got `each` messages, in the order written.
    fn assert_in_order(&self, tenants: &[&str], each: usize) {
        let log = self.log.lock().unwrap();
        assert_eq!(
            log.arrived.len(),
            tenants.len() * each,
            "every message once"
        );
        for tenant in tenants {
            let events: Vec<&String> = log
                .arrived
                .iter()
                .filter(|(t, _)| t == tenant)
                .map(|(_, e)| e)
                .collect();
            assert_eq!(events.len(), each);
            assert!(
                events.windows(2).all(|w| w[0] < w[1]),
                "{tenant}'s messages arrived in the order they were written"
            );
        }
    }
}

fn fast() -> RelayOptions {
    RelayOptions {
        batch_size: 50,
        poll_interval: Duration::from_secs(3600),
        lease: Duration::from_secs(60),
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        breaker_threshold: 3,
        max_call_bytes: clm_runtime::DEFAULT_MAX_MESSAGE_BYTES,
    }
}

/// A relay of the "receiver" rows of `conn`, turned by the test.
fn relay<D: Deliver>(conn: &DatabaseConnection, deliver: D, options: RelayOptions) -> Relay<D> {
    Relay::new(conn.clone(), "receiver", deliver, Wake::new(), options)
}

/// Drains `conn` turn by turn with a relay of at most `limit` messages per claim into a
/// [`Recording`], checking every claim and delivery keeps to it; returns the recording
/// and the number of turns that delivered.
async fn drain_in_batches_of(conn: &DatabaseConnection, limit: u64) -> (Recording, usize) {
    let receiver = Recording::default();
    let relay = relay(
        conn,
        receiver.clone(),
        RelayOptions {
            batch_size: limit,
            ..fast()
        },
    );
    let mut turns = 0;
    loop {
        let turn = relay.turn().await.unwrap();
        if turn.delivered == 0 {
            break;
        }
        assert!(
            turn.delivered as u64 <= limit,
            "a claim of {} messages",
            turn.delivered
        );
        turns += 1;
    }
    let sizes = receiver.log.lock().unwrap().sizes.clone();
    assert!(
        sizes.iter().all(|n| *n as u64 <= limit),
        "deliveries of {sizes:?}"
    );
    (receiver, turns)
}

async fn drain(relay: &Relay<Receiver>) {
    for _ in 0..1000 {
        let turn = relay.turn().await.unwrap();
        if turn.delivered == 0 && turn.failed == 0 {
            return;
        }
        if turn.failed > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    panic!("the outbox never drained");
}

/// A running relay of the "receiver" rows of `conn`, with its wake-up and its shutdown.
struct Running {
    wake: Wake,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn spawn<D: Deliver>(conn: &DatabaseConnection, deliver: D, options: RelayOptions) -> Self {
        let wake = Wake::new();
        let shutdown = Shutdown::new();
        let relay = Relay::new(conn.clone(), "receiver", deliver, wake.clone(), options);
        let task = tokio::spawn(relay.run(shutdown.clone()));
        Self {
            wake,
            shutdown,
            task,
        }
    }

    async fn stop(self) {
        self.shutdown.trigger();
        self.task.await.unwrap();
    }
}

backend_tests!(
    a_receiver_may_enqueue_more_rows_than_one_statement_can_bind,
    |db| async move {
        // Messages of different tenants take rows of their own: 10,000 messages of 2,000
        // tenants are 2,000 rows, and SQLite binds at most 32,766 parameters per statement.
        let conn = open(&db).await;
        assert!(!any_pending(&conn, "receiver").await.unwrap());
        let tenants: Vec<String> = (0..2000).map(|i| format!("t{i}")).collect();
        let tenants: Vec<&str> = tenants.iter().map(String::as_str).collect();
        let many = backlog(10_000, &tenants);
        let txn = conn.begin().await.unwrap();
        enqueue(&txn, 10, many).await.unwrap();
        txn.commit().await.unwrap();
        assert_eq!(stats(&conn, "receiver").await.unwrap().depth, 10_000);
        let rows = clm_outbox::entity::Entity::find()
            .count(&conn)
            .await
            .unwrap();
        assert_eq!(rows, 2000);
        assert!(any_pending(&conn, "receiver").await.unwrap());
        assert!(!any_pending(&conn, "elsewhere").await.unwrap());
    }
);

backend_tests!(
    rows_exist_only_when_the_transaction_commits,
    |db| async move {
        let conn = open(&db).await;
        let txn = conn.begin().await.unwrap();
        enqueue(&txn, 10, vec![message("t1", "rolled-back")])
            .await
            .unwrap();
        txn.rollback().await.unwrap();
        assert_eq!(stats(&conn, "receiver").await.unwrap().depth, 0);

        let txn = conn.begin().await.unwrap();
        enqueue(&txn, 10, vec![message("t1", "a"), message("t2", "b")])
            .await
            .unwrap();
        enqueue(&txn, 20, vec![message("t1", "c")]).await.unwrap();
        txn.commit().await.unwrap();
        let s = stats(&conn, "receiver").await.unwrap();
        assert_eq!((s.depth, s.oldest_created_at), (3, Some(10)));
        assert_eq!(stats(&conn, "elsewhere").await.unwrap().depth, 0);
    }
);

backend_tests!(
    a_lost_acknowledgement_is_retried_and_applied_once,
    |db| async move {
        let conn = open(&db).await;
        // One call: two rows of 60 (one per tenant), each resent whole when its
        // acknowledgement is lost.
        let events = backlog(120, &["t1", "t2"]);
        enqueue(&conn, 1, events).await.unwrap();
        let receiver = Receiver::default();
        *receiver.lose_acks.lock().unwrap() = 2;
        let relay = relay(&conn, receiver.clone(), fast());
        drain(&relay).await;
        assert_eq!(
            receiver.applied.lock().unwrap().len(),
            120,
            "every message arrived"
        );
        let received = receiver.received.lock().unwrap().clone();
        let repeated = received.values().filter(|n| **n > 1).count();
        assert!(
            repeated > 0,
            "batches whose acknowledgement was lost were sent again"
        );
        assert!(
            received.values().all(|n| *n <= 3),
            "no message beyond its retries"
        );
        assert_eq!(
            stats(&conn, "receiver").await.unwrap().depth,
            0,
            "delivered rows are removed"
        );
    }
);

/// `n` messages of `tenant` whose ids (and so payloads) are `e00000` ... padded with
/// `-` to 1 to 600 bytes more, varying.
fn heavy_backlog(n: usize, tenant: &str) -> Vec<NewMessage> {
    (0..n)
        .map(|i| {
            let padding = "-".repeat(1 + i * 97 % 600);
            message(tenant, &format!("e{i:05}{padding}"))
        })
        .collect()
}

backend_tests!(
    calls_stay_within_the_receivers_largest_message,
    |db| async move {
        let conn = open(&db).await;
        // Three rows of 100 messages, ~300 bytes each: 50 to a claim are ~15 KB.
        enqueue(&conn, 1, heavy_backlog(300, "t1")).await.unwrap();
        let receiver = Receiver {
            max_bytes: Some(4000),
            ..Receiver::default()
        };
        let options = RelayOptions {
            max_call_bytes: 4000,
            ..fast()
        };
        drain(&relay(&conn, receiver.clone(), options)).await;
        let calls = receiver.calls.lock().unwrap().clone();
        assert!(
            calls.iter().all(|bytes| *bytes <= 4000),
            "calls of {calls:?} bytes"
        );
        assert!(calls.len() > 300 / 50, "claims were cut into calls");
        let received = receiver.received.lock().unwrap().clone();
        assert_eq!(received.len(), 300, "every message arrived");
        assert!(received.values().all(|n| *n == 1), "each once");
        assert_eq!(stats(&conn, "receiver").await.unwrap().depth, 0);
    }
);

backend_tests!(
    a_row_cut_by_a_failed_call_is_sent_again_whole,
    |db| async move {
        let conn = open(&db).await;
        // One row of 100 messages of ~300 bytes, cut into calls of ~3 KB; the third
        // call's acknowledgement is lost: the calls after it are not made, and the row
        // stays until all of it has arrived.
        enqueue(&conn, 1, heavy_backlog(100, "t1")).await.unwrap();
        let receiver = Receiver {
            lose_ack_of_call: Some(3),
            ..Receiver::default()
        };
        let options = RelayOptions {
            batch_size: 100,
            max_call_bytes: 3000,
            ..fast()
        };
        drain(&relay(&conn, receiver.clone(), options)).await;
        let received = receiver.received.lock().unwrap().clone();
        assert_eq!(
            receiver.applied.lock().unwrap().len(),
            100,
            "every message arrived"
        );
        let twice = received.values().filter(|n| **n == 2).count();
        assert!(
            twice > 0 && received.values().all(|n| *n <= 2),
            "the first three calls' messages arrived twice, the rest once: {received:?}"
        );
        assert_eq!(stats(&conn, "receiver").await.unwrap().depth, 0);
    }
);

backend_tests!(
    concurrent_relays_never_deliver_a_row_twice,
    |db| async move {
        let conn = open(&db).await;
        enqueue_each(&conn, backlog(400, &["t1"])).await;
        let counts: Arc<Mutex<HashMap<String, u32>>> = Arc::default();

        #[derive(Clone)]
        struct Counting(Arc<Mutex<HashMap<String, u32>>>);
        #[async_trait::async_trait]
        impl Deliver for Counting {
            async fn deliver(&self, _tenant: &str, batch: &[Message]) -> Result<(), DeliveryError> {
                assert!(
                    batch.len() <= fast().batch_size as usize,
                    "a claim of {} rows, past the limit",
                    batch.len()
                );
                tokio::time::sleep(Duration::from_millis(2)).await;
                let mut counts = self.0.lock().unwrap();
                for m in batch {
                    *counts.entry(m.event_id.clone()).or_default() += 1;
                }
                Ok(())
            }
        }

        let mut tasks = Vec::new();
        for _ in 0..3 {
            let relay = relay(&conn, Counting(counts.clone()), fast());
            tasks.push(tokio::spawn(async move {
                loop {
                    let turn = relay.turn().await.unwrap();
                    if turn.delivered == 0 {
                        break;
                    }
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let counts = counts.lock().unwrap();
        assert_eq!(counts.len(), 400);
        assert!(
            counts.values().all(|n| *n == 1),
            "a row was delivered twice"
        );
    }
);

backend_tests!(
    a_wake_up_delivers_without_waiting_for_the_poll,
    |db| async move {
        let conn = open(&db).await;
        let receiver = Receiver::default();
        let running = Running::spawn(&conn, receiver.clone(), fast());
        // Let the relay go idle: with a one-hour poll, only the wake-up can start delivery.
        tokio::time::sleep(Duration::from_millis(100)).await;
        enqueue(&conn, 1, vec![message("t1", "woken")])
            .await
            .unwrap();
        running.wake.notify();
        tokio::time::timeout(Duration::from_secs(10), async {
            while receiver.applied.lock().unwrap().is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("delivered on wake-up");
        running.stop().await;
    }
);

backend_tests!(
    a_failing_receiver_is_probed_once_per_backoff_delay_not_at_every_wake_up,
    |db| async move {
        let conn = open(&db).await;
        enqueue_each(&conn, backlog(200, &["t1"])).await;
        let receiver = Receiver::default();
        *receiver.lose_acks.lock().unwrap() = u32::MAX; // every delivery fails
        let options = RelayOptions {
            batch_size: 1,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(400),
            ..fast()
        };
        let running = Running::spawn(&conn, receiver.clone(), options);
        // A busy producer: a wake-up every 5 ms, each of which would send the next due
        // batch to the dead receiver if nothing held the relay back.
        let attempts = || -> u32 { receiver.received.lock().unwrap().values().sum() };
        for _ in 0..200 {
            running.wake.notify();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let while_failing = attempts();
        assert!(
            (3..=8).contains(&while_failing),
            "three failed turns, then one probe per backoff delay (50-400 ms) in ~1 s: \
             {while_failing} attempts"
        );

        // The receiver recovers: the next probe closes the circuit and the rest drains.
        *receiver.lose_acks.lock().unwrap() = 0;
        for _ in 0..500 {
            if !any_pending(&conn, "receiver").await.unwrap() {
                break;
            }
            running.wake.notify();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            !any_pending(&conn, "receiver").await.unwrap(),
            "the backlog drained"
        );
        assert_eq!(receiver.applied.lock().unwrap().len(), 200);
        running.stop().await;
    }
);

backend_tests!(
    a_running_relay_delivers_a_backlog_in_order_and_once_while_claiming_ahead,
    |db| async move {
        let conn = open(&db).await;
        enqueue_each(&conn, backlog(600, &["t1", "t2"])).await;

        let receiver = Recording {
            delay: Duration::from_millis(3),
            ..Recording::default()
        };
        let running = Running::spawn(&conn, receiver.clone(), fast());
        running.wake.notify();
        tokio::time::timeout(Duration::from_secs(30), async {
            while any_pending(&conn, "receiver").await.unwrap() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the backlog drained and every delivered row was removed");
        running.stop().await;

        receiver.assert_in_order(&["t1", "t2"], 300);
    }
);

backend_tests!(
    a_failed_delivery_gives_back_the_rows_claimed_ahead_at_once,
    |db| async move {
        let conn = open(&db).await;
        enqueue_each(&conn, backlog(100, &["t1"])).await;
        let receiver = Receiver::default();
        // The first delivery fails; its rows wait for the backoff (a minute here).
        *receiver.lose_acks.lock().unwrap() = 1;
        let options = RelayOptions {
            backoff_base: Duration::from_secs(60),
            backoff_max: Duration::from_secs(60),
            ..fast()
        };
        let running = Running::spawn(&conn, receiver.clone(), options);
        running.wake.notify();
        // The second claim (rows 50-99), taken while the first was being delivered, is
        // not held for its lease: the next turn delivers it.
        tokio::time::timeout(Duration::from_secs(30), async {
            while receiver.applied.lock().unwrap().len() < 100 {
                running.wake.notify();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the rows claimed ahead were delivered without waiting for their lease");
        running.stop().await;
        let depth = stats(&conn, "receiver").await.unwrap().depth;
        assert_eq!(depth, 50, "only the failed batch waits for its retry");
    }
);

backend_tests!(
    a_relay_that_stops_gives_back_the_rows_it_claimed_ahead,
    |db| async move {
        let conn = open(&db).await;
        enqueue_each(&conn, backlog(200, &["t1"])).await;

        /// Takes 200 ms per delivery, so a claim ahead is in hand when the relay stops.
        #[derive(Clone, Default)]
        struct Slow(Receiver);
        #[async_trait::async_trait]
        impl Deliver for Slow {
            async fn deliver(&self, tenant: &str, batch: &[Message]) -> Result<(), DeliveryError> {
                tokio::time::sleep(Duration::from_millis(200)).await;
                self.0.deliver(tenant, batch).await
            }
        }

        let slow = Slow::default();
        let running = Running::spawn(&conn, slow.clone(), fast());
        running.wake.notify();
        tokio::time::timeout(Duration::from_secs(10), async {
            while slow.0.applied.lock().unwrap().is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("a first batch was delivered");
        running.stop().await;

        // A relay started afterwards finds every undelivered row due now: none is held
        // for the minute-long lease of the claim the stopped relay had taken ahead.
        let next = relay(&conn, slow.0.clone(), fast());
        drain(&next).await;
        assert_eq!(slow.0.applied.lock().unwrap().len(), 200);
        assert_eq!(stats(&conn, "receiver").await.unwrap().depth, 0);
    }
);

backend_tests!(
    one_call_s_messages_share_rows_and_arrive_in_order_within_the_batch_size,
    |db| async move {
        let conn = open(&db).await;
        // 250 messages of each tenant in one call: rows of 100, 100 and 50 per tenant.
        let txn = conn.begin().await.unwrap();
        enqueue(&txn, 1, backlog(500, &["t1", "t2"])).await.unwrap();
        txn.commit().await.unwrap();
        let rows = clm_outbox::entity::Entity::find()
            .order_by_asc(clm_outbox::entity::Column::Id)
            .all(&conn)
            .await
            .unwrap();
        let sizes: Vec<(String, i32)> = rows
            .iter()
            .map(|r| (r.tenant_id.clone(), r.messages))
            .collect();
        let expected: Vec<(String, i32)> = [
            ("t1", 100),
            ("t2", 100),
            ("t1", 100),
            ("t2", 100),
            ("t1", 50),
            ("t2", 50),
        ]
        .into_iter()
        .map(|(t, n)| (t.to_owned(), n))
        .collect();
        assert_eq!(sizes, expected);
        assert_eq!(stats(&conn, "receiver").await.unwrap().depth, 500);

        let (receiver, _) = drain_in_batches_of(&conn, 250).await;
        receiver.assert_in_order(&["t1", "t2"], 250);
        assert!(!any_pending(&conn, "receiver").await.unwrap());
    }
);

backend_tests!(
    rows_of_a_build_before_packing_are_adopted_in_place_and_packed_rows_hidden_from_it,
    |db| async move {
        let conn = open(&db).await;
        let backend = conn.get_database_backend();
        // Rows as a build before packing wrote them: the plain target name, one message
        // each. The second is leased by such a build's relay, delivering it now.
        let legacy = |event: &str, lease_until: i64| {
            Statement::from_sql_and_values(
                backend,
                if backend == DbBackend::Postgres {
                    "INSERT INTO outbox (target, tenant_id, event_id, payload, created_at, \
                     available_at, lease_until) VALUES ('receiver', 't1', $1, $2, 1, 1, $3)"
                } else {
                    "INSERT INTO outbox (target, tenant_id, event_id, payload, created_at, \
                     available_at, lease_until) VALUES ('receiver', 't1', ?1, ?2, 1, 1, ?3)"
                },
                [
                    event.into(),
                    event.as_bytes().to_vec().into(),
                    lease_until.into(),
                ],
            )
        };
        conn.execute_raw(legacy("e00000", 0)).await.unwrap();
        conn.execute_raw(legacy("e00001", i64::MAX)).await.unwrap();
        enqueue(
            &conn,
            1,
            vec![message("t1", "e00002"), message("t1", "e00003")],
        )
        .await
        .unwrap();
        assert_eq!(stats(&conn, "receiver").await.unwrap().depth, 4);

        // What that build's relay claims: rows under the plain name only, never a packed one.
        let plain: Vec<String> = clm_outbox::entity::Entity::find()
            .filter(clm_outbox::entity::Column::Target.eq("receiver"))
            .order_by_asc(clm_outbox::entity::Column::Id)
            .all(&conn)
            .await
            .unwrap()
            .into_iter()
            .map(|row| row.event_id)
            .collect();
        assert_eq!(plain, ["e00000", "e00001"]);

        let receiver = Receiver::default();
        let relay = relay(&conn, receiver.clone(), fast());
        drain(&relay).await;
        let mut applied: Vec<String> = receiver
            .applied
            .lock()
            .unwrap()
            .keys()
            .map(|(_, e)| e.clone())
            .collect();
        applied.sort();
        assert_eq!(
            applied,
            ["e00000", "e00002", "e00003"],
            "the unleased earlier row adopted and delivered, the leased one left to its relay"
        );
        let left = clm_outbox::entity::Entity::find().all(&conn).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(
            (left[0].event_id.as_str(), left[0].target.as_str()),
            ("e00001", "receiver")
        );
        assert_eq!(left[0].receiver(), "receiver");
        assert_eq!(stats(&conn, "receiver").await.unwrap().depth, 1);
        assert!(any_pending(&conn, "receiver").await.unwrap());
    }
);

backend_tests!(
    a_backlog_of_packed_rows_then_single_messages_drains_in_order_in_batches_of_the_limit,
    |db| async move {
        // Claims look at as many rows as the last claim's messages per row call for:
        // few over packed rows, many again once rows hold one message each.
        let conn = open(&db).await;
        enqueue(&conn, 1, backlog(1000, &["t1"])).await.unwrap();
        let singles: Vec<NewMessage> = (1000..1300)
            .map(|i| message("t1", &format!("e{i:05}")))
            .collect();
        enqueue_each(&conn, singles).await;
        let (receiver, turns) = drain_in_batches_of(&conn, 250).await;
        receiver.assert_in_order(&["t1"], 1300);
        let sizes = receiver.log.lock().unwrap().sizes.clone();
        assert!(
            turns <= 12,
            "1,300 messages in batches near 250, not row by row: {turns} turns ({sizes:?})"
        );
    }
);
