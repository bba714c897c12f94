//! What the shared runtime gives the service: health, reflection, gRPC-Web, limits,
//! deadlines and graceful shutdown.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

use clm_proto::contacts::v1 as pb;

use crate::helpers::*;

backend_tests!(reflection_lists_the_public_services, |db| async move {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let app = TestApp::spawn(db).await;
    let mut reflection = ServerReflectionClient::new(app.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let reply = replies.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("unexpected reply {reply:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"clm.contacts.v1.ContactsService".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_owned()),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n.contains("scoring")),
        "only served services: {names:?}"
    );
});

backend_tests!(
    oversize_requests_are_refused_before_anything_is_stored,
    |db| async move {
        let app = TestApp::spawn_with(db, |c| c.max_message_bytes = 64 * 1024).await;
        let before = app.snapshot().await;
        let mut big = contact("big@example.com");
        big.attributes.insert("blob".into(), "x".repeat(100 * 1024));
        let result = app
            .client
            .clone()
            .create_contact(pb::CreateContactRequest { contact: Some(big) })
            .await;
        expect_code(result, Code::OutOfRange);
        assert_eq!(app.snapshot().await, before);
    }
);

backend_tests!(the_callers_deadline_is_honoured, |db| async move {
    let app = TestApp::spawn(db).await;
    // A client stream that never ends: only the deadline can finish the call.
    let (_sender, receiver) = tokio::sync::mpsc::channel::<pb::RecordInteractionsRequest>(1);
    let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(receiver));
    request.set_timeout(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let result = app.client.clone().record_interactions(request).await;
    let status = result.expect_err("the call must not succeed");
    assert!(
        matches!(status.code(), Code::Cancelled | Code::DeadlineExceeded),
        "{status:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the server's 30 s cap did not apply"
    );
});

backend_tests!(grpc_web_over_http1_answers, |db| async move {
    use prost::Message;
    let app = TestApp::spawn(db).await;
    let created = app.create("web@example.com").await;
    let body = pb::GetContactRequest {
        id: created.id.clone(),
    }
    .encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    let head = format!(
        "POST /clm.contacts.v1.ContactsService/GetContact HTTP/1.1\r\nhost: {}\r\ncontent-type: application/grpc-web+proto\r\nx-grpc-web: 1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        app.addr,
        frame.len()
    );
    let mut socket = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(&frame).await.unwrap();
    let mut response = Vec::new();
    socket.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("application/grpc-web"), "{text}");
    assert!(text.contains("grpc-status:0"), "{text}");
    assert!(text.contains("web@example.com"), "{text}");
});

backend_tests!(shutdown_turns_health_off_and_drains, |db| async move {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let mut app = TestApp::spawn(db).await;
    let mut health = HealthClient::new(app.channel().await);
    let reply = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.status, 1, "SERVING before shutdown");
    tokio::time::timeout(Duration::from_secs(15), app.stop())
        .await
        .expect("the server stops within its grace period");
    let after = app
        .client
        .clone()
        .get_contact(pb::GetContactRequest { id: "x".into() })
        .await;
    assert!(after.is_err(), "no longer served");
});

/// A GET on the admin endpoint: (status line, body).
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    socket.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

backend_tests!(metrics_and_healthz_on_the_admin_endpoint, |db| async move {
    let app = TestApp::spawn_with(db, |c| {
        c.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    for i in 0..3 {
        app.create(&format!("m{i}@example.com")).await;
    }
    let refused = app
        .client
        .clone()
        .create_contact(pb::CreateContactRequest {
            contact: Some(contact("not-an-email")),
        })
        .await;
    assert!(refused.is_err());
    let admin = app.admin.expect("an admin endpoint");
    let (status, body) = http_get(admin, "/metrics").await;
    assert!(status.contains("200"), "{status}");
    let line = |needle: &str| {
        body.lines()
            .find(|l| l.starts_with(needle))
            .map(str::to_owned)
    };
    let created = line(
        r#"clm_rpc_requests_total{method="clm.contacts.v1.ContactsService/CreateContact",code="0"}"#,
    );
    assert_eq!(
        created.as_deref().and_then(|l| l.rsplit(' ').next()),
        Some("3"),
        "{body}"
    );
    let invalid = line(
        r#"clm_rpc_requests_total{method="clm.contacts.v1.ContactsService/CreateContact",code="3"}"#,
    );
    assert_eq!(
        invalid.as_deref().and_then(|l| l.rsplit(' ').next()),
        Some("1"),
        "{body}"
    );
    assert!(body.contains("clm_rpc_duration_seconds_bucket"), "{body}");
    let depth = line(r#"clm_outbox_depth{target="scoring"}"#);
    assert_eq!(
        depth.as_deref().and_then(|l| l.rsplit(' ').next()),
        Some("3"),
        "one event per contact: {body}"
    );
    assert!(body.contains("clm_rpc_in_flight"));
    assert!(body.contains("clm_db_pool_connections"), "{body}");
    let (health, text) = http_get(admin, "/healthz").await;
    assert!(
        health.contains("200") && text.contains("SERVING"),
        "{health} {text}"
    );
});

backend_tests!(
    relay_retries_are_counted_while_scoring_is_down,
    |db| async move {
        // Nothing listens at the scoring address: every delivery fails and is retried.
        let nowhere = format!("127.0.0.1:{}", clm_testkit::free_port());
        let app = TestApp::spawn_with(db, |c| {
            c.admin_listen = Some("127.0.0.1:0".parse().unwrap());
            c.scoring_addr = Some(nowhere);
            c.relay.backoff_base = Duration::from_millis(10);
            c.relay.backoff_max = Duration::from_millis(50);
        })
        .await;
        app.create("r@example.com").await;
        let admin = app.admin.expect("an admin endpoint");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (_, body) = http_get(admin, "/metrics").await;
            let retries = body
                .lines()
                .find(|l| l.starts_with(r#"clm_relay_retries_total{target="scoring"}"#))
                .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .unwrap_or(0);
            if retries > 0 {
                assert!(
                    body.contains(r#"clm_outbox_depth{target="scoring"} 1"#),
                    "{body}"
                );
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no retry was counted: {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
);
