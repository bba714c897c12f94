//! Mutual TLS: the four services require client certificates from the suite's CA, and
//! their relays present their own to each other.

use std::time::Duration;

use clm_e2e::{eventually, start_secured_suite};
use clm_proto::contacts::v1 as cpb;
use clm_proto::contacts::v1::contacts_service_client::ContactsServiceClient;
use clm_proto::scoring::v1 as spb;
use clm_proto::scoring::v1::scoring_service_client::ScoringServiceClient;
use clm_runtime::{Security, Shutdown, TlsFiles};
use clm_testkit::{backend_tests, fixture};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

fn mutual_tls(_subject: &str) -> Security {
    Security {
        tls: Some(TlsFiles {
            cert: fixture("server.pem"),
            key: fixture("server-key.pem"),
            client_ca: Some(fixture("ca.pem")),
            server_ca: None,
        }),
        ..Security::default()
    }
}

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

/// A client that trusts the suite's CA and presents `identity` (certificate, key), if any.
async fn client(addr: std::net::SocketAddr, identity: Option<(&str, &str)>) -> Option<Channel> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem("ca.pem")));
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(pem(cert), pem(key)));
    }
    Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .ok()
}

/// True when a health check over `channel` answers SERVING.
async fn serves(channel: Option<Channel>) -> bool {
    let Some(channel) = channel else {
        return false;
    };
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .is_ok_and(|r| r.into_inner().status == 1)
}

backend_tests!(
    only_clients_with_a_certificate_from_the_ca_get_in,
    |db| async move {
        let shutdown = Shutdown::new();
        let suite = start_secured_suite(&db, mutual_tls, &shutdown).await;
        let contacts_addr = suite.addrs[0];

        assert!(
            !serves(client(contacts_addr, None).await).await,
            "no client certificate"
        );
        assert!(
            !serves(
                client(
                    contacts_addr,
                    Some(("rogue-client.pem", "rogue-client-key.pem"))
                )
                .await
            )
            .await,
            "a certificate from another CA"
        );
        let plaintext = Channel::from_shared(format!("http://{contacts_addr}"))
            .unwrap()
            .connect()
            .await
            .ok();
        assert!(!serves(plaintext).await, "plaintext");

        let trusted = client(contacts_addr, Some(("client.pem", "client-key.pem"))).await;
        assert!(serves(trusted.clone()).await, "a certificate from the CA");

        // The relays reach scoring over mutual TLS with the services' own certificate.
        let mut contacts = ContactsServiceClient::new(trusted.unwrap());
        let contact = clm_e2e::create_contact(
            &mut contacts,
            cpb::Contact {
                email: "tls@example.com".into(),
                ..Default::default()
            },
        )
        .await;
        let now = chrono::Utc::now().timestamp();
        contacts
            .record_interaction(cpb::RecordInteractionRequest {
                interaction: Some(cpb::Interaction {
                    event_id: "demo-1".into(),
                    contact_id: contact.id.clone(),
                    r#type: "demo_request".into(),
                    occurred_at: Some(prost_types::Timestamp {
                        seconds: now,
                        nanos: 0,
                    }),
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
        let scoring = client(suite.addrs[1], Some(("client.pem", "client-key.pem")))
            .await
            .unwrap();
        eventually(Duration::from_secs(30), || {
            let mut scoring = ScoringServiceClient::new(scoring.clone());
            let id = contact.id.clone();
            async move {
                let score = scoring
                    .get_score(spb::GetScoreRequest {
                        contact_id: id,
                        model_id: String::new(),
                    })
                    .await
                    .ok()?
                    .into_inner()
                    .score?;
                (score.total > 0.0).then_some(())
            }
        })
        .await;
        shutdown.trigger();
    }
);
