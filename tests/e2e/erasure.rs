//! Erasure: after DeleteContact and the relays drain, no table of any of the four
//! services holds the contact's id, email or name.

use std::time::Duration;

use clm_e2e::{eventually, start_secured_suite};
use clm_proto::contacts::v1 as cpb;
use clm_proto::contacts::v1::contacts_service_client::ContactsServiceClient;
use clm_proto::lifecycle::v1 as lpb;
use clm_proto::lifecycle::v1::lifecycle_service_client::LifecycleServiceClient;
use clm_runtime::{Security, Shutdown};
use clm_testkit::{Backend, TestDatabase, backend_tests};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use tonic::transport::Channel;

const SERVICES: [&str; 4] = ["contacts", "scoring", "lifecycle", "analytics"];

/// Every row of every table of `service`'s database, as text, with the table's name.
async fn every_row(db: &TestDatabase, service: &str) -> Vec<(String, String)> {
    let conn: DatabaseConnection = clm_store::connect(service, db.location()).await.unwrap();
    let backend = conn.get_database_backend();
    let tables_sql = match db.backend() {
        Backend::Sqlite => {
            "SELECT name AS t FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
                .to_owned()
        }
        Backend::Postgres => format!(
            "SELECT table_name::text AS t FROM information_schema.tables \
             WHERE table_schema = '{service}' AND table_type = 'BASE TABLE'"
        ),
    };
    let tables: Vec<String> = conn
        .query_all_raw(Statement::from_string(backend, tables_sql))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get::<String>("", "t").unwrap())
        .collect();
    assert!(tables.len() > 2, "{service} has tables: {tables:?}");
    let mut rows = Vec::new();
    for table in tables {
        // The whole row as one text: its columns joined in SQLite, the row literal in
        // PostgreSQL. Binary columns come out as hex in both, so needles are searched as
        // text and as hex.
        let sql = match db.backend() {
            Backend::Sqlite => {
                let columns: Vec<String> = conn
                    .query_all_raw(Statement::from_string(
                        backend,
                        format!("SELECT name AS c FROM pragma_table_info('{table}')"),
                    ))
                    .await
                    .unwrap()
                    .iter()
                    .map(|row| {
                        let name = row.try_get::<String>("", "c").unwrap();
                        format!(
                            "COALESCE(CASE WHEN typeof(\"{name}\") = 'blob' THEN hex(\"{name}\") \
                             ELSE CAST(\"{name}\" AS TEXT) END, '')"
                        )
                    })
                    .collect();
                format!(
                    "SELECT ({}) AS r FROM \"{table}\"",
                    columns.join(" || '|' || ")
                )
            }
            Backend::Postgres => format!("SELECT t::text AS r FROM \"{table}\" t"),
        };
        for row in conn
            .query_all_raw(Statement::from_string(backend, sql))
            .await
            .unwrap()
        {
            let text: Option<String> = row.try_get("", "r").unwrap();
            rows.push((table.clone(), text.unwrap_or_default()));
        }
    }
    rows
}

backend_tests!(
    an_erased_contact_leaves_nothing_in_any_service,
    |db| async move {
        let shutdown = Shutdown::new();
        let suite = start_secured_suite(&db, |_| Security::default(), &shutdown).await;
        let connect = |i: usize| {
            Channel::from_shared(format!("http://{}", suite.addrs[i]))
                .unwrap()
                .connect_lazy()
        };
        let mut contacts = ContactsServiceClient::new(connect(0));
        let lifecycle = LifecycleServiceClient::new(connect(2));
        let marker = uuid::Uuid::now_v7().simple().to_string();
        let email = format!("erase.{marker}@example.com");
        let first_name = format!("Eraseme{}", &marker[..10]);
        let last_name = format!("Forgotten{}", &marker[10..20]);
        let contact = clm_e2e::create_contact(
            &mut contacts,
            cpb::Contact {
                email: email.clone(),
                first_name: first_name.clone(),
                last_name: last_name.clone(),
                phone: "+4915112345678".into(),
                ..Default::default()
            },
        )
        .await;
        let id = contact.id.clone();
        // A timeline that reaches every service: a purchase (scores, a stage, revenue), an
        // NPS answer, page views.
        let now = chrono::Utc::now().timestamp();
        for (event, kind, value) in [
            ("o-1", "purchase", 25_000_000),
            ("n-1", "nps_response", 0),
            ("p-1", "pricing_page_view", 0),
        ] {
            let mut properties = std::collections::HashMap::new();
            if kind == "nps_response" {
                properties.insert("score".to_owned(), "9".to_owned());
            }
            contacts
                .record_interaction(cpb::RecordInteractionRequest {
                    interaction: Some(cpb::Interaction {
                        event_id: event.into(),
                        contact_id: id.clone(),
                        r#type: kind.into(),
                        occurred_at: Some(prost_types::Timestamp {
                            seconds: now - 60,
                            nanos: 0,
                        }),
                        value: (value > 0).then(|| clm_proto::common::v1::Money {
                            amount_micros: value,
                            currency: "EUR".into(),
                        }),
                        properties,
                        ..Default::default()
                    }),
                })
                .await
                .unwrap();
        }
        eventually(Duration::from_secs(30), || {
            let mut lifecycle = lifecycle.clone();
            let id = id.clone();
            async move {
                let stage = lifecycle
                    .get_contact_stage(lpb::GetContactStageRequest {
                        contact_id: id,
                        model_id: String::new(),
                    })
                    .await
                    .ok()?
                    .into_inner()
                    .stage?;
                (stage.stage == "conversion").then_some(())
            }
        })
        .await;
        // Before erasure the scan finds the contact in every service: it can see what it seeks.
        let needles: Vec<String> = [&id, &email, &first_name, &last_name]
            .iter()
            .flat_map(|n| {
                let hex: String = n.bytes().map(|b| format!("{b:02x}")).collect();
                [n.to_string(), hex.to_uppercase(), hex]
            })
            .collect();
        for service in SERVICES {
            let rows = every_row(&db, service).await;
            assert!(
                rows.iter().any(|(_, row)| row.contains(id.as_str())),
                "{service} holds the contact before erasure"
            );
        }

        contacts
            .delete_contact(cpb::DeleteContactRequest {
                id: id.clone(),
                etag: String::new(),
            })
            .await
            .unwrap();
        // Wait for every relay to drain (no outbox row left anywhere), then scan.
        let mut leftovers = Vec::new();
        for _ in 0..300 {
            leftovers.clear();
            for service in SERVICES {
                for (table, row) in every_row(&db, service).await {
                    if needles.iter().any(|n| row.contains(n.as_str())) || table == "outbox" {
                        leftovers
                            .push(format!("{service}.{table}: {}", &row[..row.len().min(160)]));
                    }
                }
            }
            if leftovers.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(leftovers.is_empty(), "left after erasure: {leftovers:#?}");
        shutdown.trigger();
    }
);
