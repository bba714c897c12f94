//! Starts the contacts service on a port-0 listener with a fresh database, and the small
//! tools the tests share.

use std::time::Duration;

use sea_orm::{EntityTrait, QueryOrder};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

use clm_contacts::store::entities::{contact, interaction, tombstone};
use clm_proto::common::v1::Money;
use clm_proto::contacts::v1 as pb;
use clm_proto::contacts::v1::contacts_service_client::ContactsServiceClient;
use clm_runtime::Shutdown;
use clm_testkit::TestDatabase;

pub use clm_testkit::backend_tests;

/// A running contacts service and a client of it.
pub struct TestApp {
    pub addr: std::net::SocketAddr,
    pub admin: Option<std::net::SocketAddr>,
    pub client: ContactsServiceClient<Channel>,
    pub db: sea_orm::DatabaseConnection,
    shutdown: Shutdown,
    server: Option<tokio::task::JoinHandle<Result<(), clm_runtime::Error>>>,
    _database: TestDatabase,
}

/// Everything stored, to prove that a refused request changed nothing.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub contacts: Vec<contact::Model>,
    pub interactions: Vec<interaction::Model>,
    pub tombstones: Vec<tombstone::Model>,
    pub outbox: Vec<clm_outbox::entity::Model>,
}

impl TestApp {
    /// Starts the service over `database` and waits until health says SERVING.
    pub async fn spawn(database: TestDatabase) -> Self {
        Self::spawn_with(database, |_| {}).await
    }

    /// Like `spawn`, after `adjust` has changed the configuration.
    pub async fn spawn_with(
        database: TestDatabase,
        adjust: impl FnOnce(&mut clm_contacts::Config),
    ) -> Self {
        let mut config = clm_contacts::Config::embedded(
            "127.0.0.1:0".parse().unwrap(),
            database.data_dir().to_path_buf(),
        );
        config.database_url = database.database_url();
        config.page_token_secret = Some("test-secret".into());
        adjust(&mut config);
        let app = clm_contacts::Application::build(config)
            .await
            .expect("the service starts");
        let addr = app.local_addr();
        let admin = app.admin_addr();
        let db = clm_store::connect("contacts", database.location())
            .await
            .expect("a second connection");
        let shutdown = Shutdown::new();
        let server = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .expect("connect to the service");
        wait_until_serving(channel.clone()).await;
        Self {
            addr,
            admin,
            client: ContactsServiceClient::new(channel),
            db,
            shutdown,
            server: Some(server),
            _database: database,
        }
    }

    /// A channel to the service.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// Stops the server and waits for it to drain.
    pub async fn stop(&mut self) {
        self.shutdown.trigger();
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server stopped cleanly");
        }
    }

    /// Every stored row.
    pub async fn snapshot(&self) -> Snapshot {
        Snapshot {
            contacts: contact::Entity::find()
                .order_by_asc(contact::Column::Id)
                .all(&self.db)
                .await
                .unwrap(),
            interactions: interaction::Entity::find()
                .order_by_asc(interaction::Column::EventId)
                .all(&self.db)
                .await
                .unwrap(),
            tombstones: tombstone::Entity::find().all(&self.db).await.unwrap(),
            outbox: clm_outbox::entity::Entity::find()
                .order_by_asc(clm_outbox::entity::Column::Id)
                .all(&self.db)
                .await
                .unwrap(),
        }
    }

    /// Creates a contact with `email` in the default tenant.
    pub async fn create(&self, email: &str) -> pb::Contact {
        self.create_in("default", contact(email)).await
    }

    /// Creates `c` in `tenant`.
    pub async fn create_in(&self, tenant: &str, c: pb::Contact) -> pb::Contact {
        self.client
            .clone()
            .create_contact(as_tenant(
                tenant,
                pb::CreateContactRequest { contact: Some(c) },
            ))
            .await
            .expect("create a contact")
            .into_inner()
            .contact
            .unwrap()
    }

    /// Records `i` and returns the reply.
    pub async fn record(
        &self,
        i: pb::Interaction,
    ) -> Result<pb::RecordInteractionResponse, Status> {
        self.client
            .clone()
            .record_interaction(pb::RecordInteractionRequest {
                interaction: Some(i),
            })
            .await
            .map(tonic::Response::into_inner)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

async fn wait_until_serving(channel: Channel) {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    let mut health = HealthClient::new(channel);
    for _ in 0..200 {
        let reply = health
            .check(HealthCheckRequest {
                service: clm_contacts::SERVICE_NAME.into(),
            })
            .await;
        if reply.is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the service never reported SERVING");
}

/// A request acting for `tenant`.
pub fn as_tenant<T>(tenant: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("x-tenant-id", tenant.parse().unwrap());
    request
}

/// A contact with only an email.
pub fn contact(email: &str) -> pb::Contact {
    pb::Contact {
        email: email.into(),
        ..Default::default()
    }
}

/// A purchase of `amount_micros` EUR by `contact_id`, `days_ago` days ago.
pub fn purchase(
    event_id: &str,
    contact_id: &str,
    amount_micros: i64,
    days_ago: i64,
) -> pb::Interaction {
    pb::Interaction {
        event_id: event_id.into(),
        contact_id: contact_id.into(),
        r#type: "purchase".into(),
        occurred_at: Some(ago(days_ago)),
        value: Some(Money {
            amount_micros,
            currency: "EUR".into(),
        }),
        channel: "web".into(),
        ..Default::default()
    }
}

/// The instant `days` days before now.
pub fn ago(days: i64) -> prost_types::Timestamp {
    let t = chrono::Utc::now() - chrono::Duration::days(days);
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    }
}

/// Asserts `result` failed with `code`, and returns the status.
#[track_caller]
pub fn expect_code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code) -> Status {
    match result {
        Ok(value) => panic!("expected {code:?}, got {value:?}"),
        Err(status) => {
            assert_eq!(status.code(), code, "unexpected status: {status:?}");
            status
        }
    }
}

/// The fields named by the status's BadRequest violations.
pub fn violated_fields(status: &Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// Asserts INVALID_ARGUMENT with a violation of `field`.
#[track_caller]
pub fn expect_invalid<T: std::fmt::Debug>(result: Result<T, Status>, field: &str) -> Status {
    let status = expect_code(result, Code::InvalidArgument);
    let fields = violated_fields(&status);
    assert!(
        fields.iter().any(|f| f == field),
        "expected a violation of {field}, got {fields:?}"
    );
    status
}
