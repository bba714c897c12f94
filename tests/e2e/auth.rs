//! The four services behind bearer-token authentication: every public RPC refuses callers
//! without the right token, a tenant never sees another's resources, and the relays' own
//! service tokens carry data through the whole chain.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clm_e2e::{SecuredSuite, eventually, start_secured_suite};
use clm_proto::contacts::v1 as cpb;
use clm_proto::lifecycle::v1 as lpb;
use clm_proto::scoring::v1 as spb;
use clm_runtime::auth::{ALL_SCOPES, AuthSettings, INTERNAL};
use clm_runtime::{Security, Shutdown};
use clm_testkit::backend_tests;
use prost::Message;
use tonic::Code;
use tonic::transport::Channel;

const SECRET: &str = "the-e2e-secret-of-more-than-32-bytes";
const TENANT: &str = "acme";
const OTHER_TENANT: &str = "globex";

fn settings() -> AuthSettings {
    AuthSettings {
        secret: Some(SECRET.into()),
        issuer: "clm".into(),
        audience: "clm".into(),
        ..AuthSettings::default()
    }
}

fn security(subject: &str) -> Security {
    Security::from_settings(&settings(), None, subject).expect("security")
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A token for `tenant` with `scopes`, expiring `expires_in` seconds from now, signed with
/// `secret`.
fn token(tenant: &str, scopes: &[&str], expires_in: i64, secret: &str) -> String {
    let claims = serde_json::json!({
        "sub": "e2e", "tenant_id": tenant, "scope": scopes.join(" "),
        "iss": "clm", "aud": "clm", "nbf": now() - 5, "exp": now() + expires_in,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn public_scopes() -> Vec<&'static str> {
    ALL_SCOPES
        .iter()
        .copied()
        .filter(|s| *s != INTERNAL)
        .collect()
}

/// One published RPC: its path, the index of its service in the suite, and its scope.
struct Rpc {
    path: String,
    service: usize,
    scope: &'static str,
}

fn published_rpcs() -> Vec<Rpc> {
    let set = prost_types::FileDescriptorSet::decode(clm_proto::FILE_DESCRIPTOR_SET).unwrap();
    let order = ["contacts", "scoring", "lifecycle", "analytics"];
    let mut rpcs = Vec::new();
    for file in set.file {
        for service in &file.service {
            let package = file.package();
            let index = order
                .iter()
                .position(|name| package == format!("clm.{name}.v1"))
                .expect("a clm service");
            for method in &service.method {
                let path = format!("/{package}.{}/{}", service.name(), method.name());
                let Some(clm_runtime::auth::Access::Scope(scope)) =
                    clm_runtime::auth::access(&path)
                else {
                    panic!("{path} has no scope");
                };
                rpcs.push(Rpc {
                    path,
                    service: index,
                    scope,
                });
            }
        }
    }
    rpcs
}

/// Calls `path` at `addr` with an empty request and `token`; the status code it gets (OK
/// once response headers arrive, for streams).
async fn call(addr: SocketAddr, path: &str, token: Option<&str>) -> Code {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(futures_util::stream::iter(vec![()]));
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let path = http::uri::PathAndQuery::try_from(path).unwrap();
    match grpc.streaming(request, path, codec).await {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

backend_tests!(every_public_rpc_refuses_the_wrong_caller, |db| async move {
    let shutdown = Shutdown::new();
    let suite = start_secured_suite(&db, security, &shutdown).await;
    let rpcs = published_rpcs();
    assert!(rpcs.len() > 40);
    let all = public_scopes();
    let expired = token(TENANT, &all, -3600, SECRET);
    let forged = token(TENANT, &all, 600, "another-secret-of-more-than-32-bytes!");
    for rpc in &rpcs {
        let addr = suite.addrs[rpc.service];
        let path = rpc.path.as_str();
        assert_eq!(
            call(addr, path, None).await,
            Code::Unauthenticated,
            "{path}: no token"
        );
        assert_eq!(
            call(addr, path, Some(&expired)).await,
            Code::Unauthenticated,
            "{path}: expired"
        );
        assert_eq!(
            call(addr, path, Some(&forged)).await,
            Code::Unauthenticated,
            "{path}: other key"
        );
        // Every scope but the one this RPC needs (internal RPCs: every public scope).
        let others: Vec<&str> = ALL_SCOPES
            .iter()
            .copied()
            .filter(|s| *s != rpc.scope)
            .collect();
        let lacking = token(TENANT, &others, 600, SECRET);
        assert_eq!(
            call(addr, path, Some(&lacking)).await,
            Code::PermissionDenied,
            "{path}: without {}",
            rpc.scope
        );
        if rpc.scope == INTERNAL {
            let public = token(TENANT, &all, 600, SECRET);
            assert_eq!(
                call(addr, path, Some(&public)).await,
                Code::PermissionDenied,
                "{path}"
            );
        }
    }
    // Health stays open for probes; reflection needs a token.
    let health = "/grpc.health.v1.Health/Check";
    assert_eq!(call(suite.addrs[0], health, None).await, Code::Ok);
    let reflection = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
    assert_eq!(
        call(suite.addrs[0], reflection, None).await,
        Code::Unauthenticated
    );
    shutdown.trigger();
});

/// Adds a fixed bearer token (and a tenant header that must be ignored) to every call.
#[derive(Clone)]
struct Bearer(String);

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let metadata = request.metadata_mut();
        metadata.insert(
            "authorization",
            format!("Bearer {}", self.0).parse().unwrap(),
        );
        // A caller cannot pick its tenant: the token's tenant wins.
        metadata.insert("x-tenant-id", TENANT.parse().unwrap());
        Ok(request)
    }
}

type Authed = tonic::service::interceptor::InterceptedService<Channel, Bearer>;

async fn channel(suite: &SecuredSuite, index: usize, tenant: &str) -> Authed {
    let channel = Channel::from_shared(format!("http://{}", suite.addrs[index]))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let token = token(tenant, &public_scopes(), 600, SECRET);
    tower::ServiceBuilder::new()
        .layer(tonic::service::interceptor::InterceptorLayer::new(Bearer(
            token,
        )))
        .service(channel)
}

fn at(seconds_ago: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: now() - seconds_ago,
        nanos: 0,
    })
}

/// `text` with every `Timestamp { .. }` blanked: "now" differs between two answers.
fn blank_times(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("Timestamp {") {
        out.push_str(&rest[..start]);
        out.push_str("Timestamp");
        rest = rest[start..].split_once('}').map_or("", |(_, after)| after);
    }
    out.push_str(rest);
    out
}

/// An answer as text with `id` and instants blanked, to compare answers about different
/// ids (only the status code of an error: its message names the id).
fn debug_of<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, tonic::Status>,
    id: &str,
) -> String {
    match result {
        Ok(response) => blank_times(&format!("{:?}", response.into_inner()).replace(id, "ID")),
        Err(status) => format!("{:?}", status.code()),
    }
}

backend_tests!(
    a_tenant_never_sees_another_tenants_resources,
    |db| async move {
        use clm_proto::contacts::v1::contacts_service_client::ContactsServiceClient as Contacts;
        use clm_proto::lifecycle::v1::lifecycle_service_client::LifecycleServiceClient as Lifecycle;
        use clm_proto::scoring::v1::scoring_service_client::ScoringServiceClient as Scoring;

        let shutdown = Shutdown::new();
        let suite = start_secured_suite(&db, security, &shutdown).await;
        let mut contacts = Contacts::new(channel(&suite, 0, TENANT).await);
        let mut scoring = Scoring::new(channel(&suite, 1, TENANT).await);
        let mut lifecycle = Lifecycle::new(channel(&suite, 2, TENANT).await);

        // Tenant A: a contact with a purchase, scored and moved through the chain by the
        // relays' internal tokens; a scoring model and a segment of its own.
        let contact = clm_e2e::create_contact(
            &mut contacts,
            cpb::Contact {
                email: "ada@acme.example".into(),
                ..Default::default()
            },
        )
        .await;
        let id = contact.id.clone();
        contacts
            .record_interaction(cpb::RecordInteractionRequest {
                interaction: Some(cpb::Interaction {
                    event_id: "order-1".into(),
                    contact_id: id.clone(),
                    r#type: "purchase".into(),
                    occurred_at: at(60),
                    value: Some(clm_proto::common::v1::Money {
                        amount_micros: 10_000_000,
                        currency: "EUR".into(),
                    }),
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
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
        let score = scoring
            .get_score(spb::GetScoreRequest {
                contact_id: id.clone(),
                model_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .score
            .unwrap();
        assert!(
            score.total > 0.0,
            "the relays' service tokens carried the purchase"
        );
        let segment = lifecycle
            .create_segment(lpb::CreateSegmentRequest {
                segment: Some(lpb::Segment {
                    display_name: "Buyers".into(),
                    filter: r#"count.purchase.30d >= "1""#.into(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .segment
            .unwrap();

        // Tenant B, with every public scope, asks for A's resources by id: each is NOT_FOUND,
        // exactly as an id that never existed.
        let mut contacts_b = Contacts::new(channel(&suite, 0, OTHER_TENANT).await);
        let mut scoring_b = Scoring::new(channel(&suite, 1, OTHER_TENANT).await);
        let mut lifecycle_b = Lifecycle::new(channel(&suite, 2, OTHER_TENANT).await);
        let never = uuid::Uuid::now_v7().to_string();
        for target in [id.as_str(), never.as_str()] {
            let codes = [
                (
                    "GetContact",
                    contacts_b
                        .get_contact(cpb::GetContactRequest { id: target.into() })
                        .await
                        .map(drop),
                ),
                (
                    "UpdateContact",
                    contacts_b
                        .update_contact(cpb::UpdateContactRequest {
                            contact: Some(cpb::Contact {
                                id: target.into(),
                                first_name: "Mallory".into(),
                                ..Default::default()
                            }),
                            update_mask: Some(prost_types::FieldMask {
                                paths: vec!["first_name".into()],
                            }),
                        })
                        .await
                        .map(drop),
                ),
                (
                    "DeleteContact",
                    contacts_b
                        .delete_contact(cpb::DeleteContactRequest {
                            id: target.into(),
                            etag: String::new(),
                        })
                        .await
                        .map(drop),
                ),
                (
                    "MergeContacts",
                    contacts_b
                        .merge_contacts(cpb::MergeContactsRequest {
                            survivor_id: target.into(),
                            duplicate_id: uuid::Uuid::now_v7().to_string(),
                        })
                        .await
                        .map(drop),
                ),
                (
                    "ListInteractions",
                    contacts_b
                        .list_interactions(cpb::ListInteractionsRequest {
                            contact_id: target.into(),
                            ..Default::default()
                        })
                        .await
                        .map(drop),
                ),
                (
                    "RecordInteraction",
                    contacts_b
                        .record_interaction(cpb::RecordInteractionRequest {
                            interaction: Some(cpb::Interaction {
                                event_id: "forged".into(),
                                contact_id: target.into(),
                                r#type: "purchase".into(),
                                occurred_at: at(1),
                                ..Default::default()
                            }),
                        })
                        .await
                        .map(drop),
                ),
                (
                    "GetContactStage",
                    lifecycle_b
                        .get_contact_stage(lpb::GetContactStageRequest {
                            contact_id: target.into(),
                            model_id: String::new(),
                        })
                        .await
                        .map(drop),
                ),
                (
                    "TransitionContact",
                    lifecycle_b
                        .transition_contact(lpb::TransitionContactRequest {
                            contact_id: target.into(),
                            to_stage: "loyalty".into(),
                            reason: "forged".into(),
                            r#override: true,
                            ..Default::default()
                        })
                        .await
                        .map(drop),
                ),
            ];
            for (rpc, result) in codes {
                assert_eq!(
                    result.map_err(|s| s.code()).err(),
                    Some(Code::NotFound),
                    "{rpc} of {target} by another tenant"
                );
            }
        }
        let segment_members = lifecycle_b
            .list_segment_members(lpb::ListSegmentMembersRequest {
                segment_id: segment.id.clone(),
                ..Default::default()
            })
            .await;
        assert_eq!(segment_members.unwrap_err().code(), Code::NotFound);
        // Scores and explanations of an unknown contact are empty, the same for A's contact.
        let b_score = scoring_b
            .get_score(spb::GetScoreRequest {
                contact_id: id.clone(),
                model_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .score
            .unwrap();
        assert_eq!(b_score.total, 0.0, "B sees no points of A's contact");
        // The rest answer B about A's contact exactly as about a contact that never existed.
        for (rpc, theirs, unknown) in [
            (
                "ExplainScore",
                debug_of(
                    scoring_b
                        .explain_score(spb::ExplainScoreRequest {
                            contact_id: id.clone(),
                            model_id: String::new(),
                        })
                        .await,
                    &id,
                ),
                debug_of(
                    scoring_b
                        .explain_score(spb::ExplainScoreRequest {
                            contact_id: never.clone(),
                            model_id: String::new(),
                        })
                        .await,
                    &never,
                ),
            ),
            (
                "ListScoreHistory",
                debug_of(
                    scoring_b
                        .list_score_history(spb::ListScoreHistoryRequest {
                            contact_id: id.clone(),
                            ..Default::default()
                        })
                        .await,
                    &id,
                ),
                debug_of(
                    scoring_b
                        .list_score_history(spb::ListScoreHistoryRequest {
                            contact_id: never.clone(),
                            ..Default::default()
                        })
                        .await,
                    &never,
                ),
            ),
            (
                "ListStageHistory",
                debug_of(
                    lifecycle_b
                        .list_stage_history(lpb::ListStageHistoryRequest {
                            contact_id: id.clone(),
                            ..Default::default()
                        })
                        .await,
                    &id,
                ),
                debug_of(
                    lifecycle_b
                        .list_stage_history(lpb::ListStageHistoryRequest {
                            contact_id: never.clone(),
                            ..Default::default()
                        })
                        .await,
                    &never,
                ),
            ),
        ] {
            assert_eq!(
                theirs, unknown,
                "{rpc}: A's contact looks like no contact to B"
            );
        }
        let b_contacts = contacts_b
            .list_contacts(cpb::ListContactsRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert!(
            b_contacts.contacts.is_empty(),
            "B lists none of A's contacts"
        );

        // A's data is untouched by all of it.
        let still = contacts
            .get_contact(cpb::GetContactRequest { id: id.clone() })
            .await
            .unwrap()
            .into_inner()
            .contact
            .unwrap();
        assert_eq!(still.first_name, "");
        shutdown.trigger();
    }
);
