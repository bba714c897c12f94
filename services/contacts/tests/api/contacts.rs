//! CreateContact, GetContact, UpdateContact, DeleteContact, and tenant isolation.

use prost_types::FieldMask;
use tonic::Code;
use tonic_types::StatusExt;

use clm_proto::contacts::v1 as pb;

use crate::helpers::*;

backend_tests!(create_normalises_and_get_returns_it, |db| async move {
    let app = TestApp::spawn(db).await;
    let mut c = contact("  Ada.Lovelace@Example.COM ");
    c.first_name = "Ada".into();
    c.country = "gb".into();
    c.attributes
        .insert("warranty_expires_at".into(), "2027-03-01".into());
    c.consent = Some(pb::Consent {
        email_opt_in: true,
        ..Default::default()
    });
    let created = app.create_in("default", c).await;
    assert_eq!(created.email, "ada.lovelace@example.com");
    assert_eq!(created.country, "GB");
    assert!(uuid::Uuid::parse_str(&created.id).is_ok_and(|u| u.get_version_num() == 7));
    assert!(!created.etag.is_empty());
    assert!(
        created.consent.as_ref().unwrap().email_updated_at.is_some(),
        "opt-in is stamped"
    );
    assert!(created.consent.as_ref().unwrap().sms_updated_at.is_none());

    let got = app
        .client
        .clone()
        .get_contact(pb::GetContactRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .contact
        .unwrap();
    assert_eq!(got, created);
});

backend_tests!(
    create_refuses_bad_email_and_stores_nothing,
    |db| async move {
        let app = TestApp::spawn(db).await;
        let before = app.snapshot().await;
        for email in [
            "",
            "   ",
            "not-an-email",
            "a@",
            &format!("{}@example.com", "x".repeat(260)),
        ] {
            let result = app
                .client
                .clone()
                .create_contact(pb::CreateContactRequest {
                    contact: Some(contact(email)),
                })
                .await;
            expect_invalid(result, "contact.email");
        }
        let missing = app
            .client
            .clone()
            .create_contact(pb::CreateContactRequest { contact: None })
            .await;
        expect_invalid(missing, "contact");
        let mut bad = contact("ok@example.com");
        bad.country = "Germany".into();
        bad.phone = "call me".into();
        bad.attributes.insert("Bad Key".into(), "v".into());
        let status = expect_code(
            app.client
                .clone()
                .create_contact(pb::CreateContactRequest { contact: Some(bad) })
                .await,
            Code::InvalidArgument,
        );
        let fields = violated_fields(&status);
        for field in [
            "contact.country",
            "contact.phone",
            "contact.attributes[\"Bad Key\"]",
        ] {
            assert!(
                fields.iter().any(|f| f == field),
                "{field} missing from {fields:?}"
            );
        }
        assert_eq!(app.snapshot().await, before);
    }
);

backend_tests!(
    duplicate_email_names_the_existing_contact,
    |db| async move {
        let app = TestApp::spawn(db).await;
        let first = app.create("ada@example.com").await;
        let before = app.snapshot().await;
        let status = expect_code(
            app.client
                .clone()
                .create_contact(pb::CreateContactRequest {
                    contact: Some(contact("ADA@example.com")),
                })
                .await,
            Code::AlreadyExists,
        );
        assert!(status.message().contains(&first.id), "{}", status.message());
        let info = status.get_details_resource_info().expect("resource info");
        assert_eq!(info.resource_name, first.id);
        assert_eq!(app.snapshot().await, before);
        // The same email in another tenant is another person.
        app.create_in("other", contact("ada@example.com")).await;
    }
);

backend_tests!(
    update_applies_the_mask_and_guards_the_etag,
    |db| async move {
        let app = TestApp::spawn(db).await;
        let mut c = contact("ada@example.com");
        c.first_name = "Ada".into();
        c.attributes.insert("plan".into(), "free".into());
        c.attributes.insert("team".into(), "r&d".into());
        let created = app.create_in("default", c).await;

        let mut change = created.clone();
        change.city = "London".into();
        change.first_name = "ignored".into();
        change.attributes.insert("plan".into(), "pro".into());
        change.attributes.remove("team");
        let updated = app
            .client
            .clone()
            .update_contact(pb::UpdateContactRequest {
                contact: Some(change.clone()),
                update_mask: Some(FieldMask {
                    paths: vec!["city".into(), "attributes.plan".into()],
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .contact
            .unwrap();
        assert_eq!(updated.city, "London");
        assert_eq!(updated.first_name, "Ada", "fields outside the mask stay");
        assert_eq!(updated.attributes["plan"], "pro");
        assert_eq!(
            updated.attributes["team"], "r&d",
            "attributes.KEY changes one key only"
        );
        assert_ne!(updated.etag, created.etag);

        // The etag read before the update is stale now.
        let before = app.snapshot().await;
        let mut stale = created.clone();
        stale.city = "Paris".into();
        let result = app
            .client
            .clone()
            .update_contact(pb::UpdateContactRequest {
                contact: Some(stale),
                update_mask: Some(FieldMask {
                    paths: vec!["city".into()],
                }),
            })
            .await;
        expect_code(result, Code::Aborted);
        for path in ["id", "created_at", "etag", "nonsense", "attributes.Bad Key"] {
            let result = app
                .client
                .clone()
                .update_contact(pb::UpdateContactRequest {
                    contact: Some(updated.clone()),
                    update_mask: Some(FieldMask {
                        paths: vec![path.into()],
                    }),
                })
                .await;
            expect_invalid(result, "update_mask");
        }
        let mut invalid = updated.clone();
        invalid.email = "broken".into();
        let result = app
            .client
            .clone()
            .update_contact(pb::UpdateContactRequest {
                contact: Some(invalid),
                update_mask: Some(FieldMask {
                    paths: vec!["email".into()],
                }),
            })
            .await;
        expect_invalid(result, "contact.email");
        assert_eq!(app.snapshot().await, before);

        // Moving to an email another contact has is refused.
        let other = app.create("grace@example.com").await;
        let mut taken = updated.clone();
        taken.email = other.email.clone();
        let result = app
            .client
            .clone()
            .update_contact(pb::UpdateContactRequest {
                contact: Some(taken),
                update_mask: Some(FieldMask {
                    paths: vec!["email".into()],
                }),
            })
            .await;
        let status = expect_code(result, Code::AlreadyExists);
        assert!(status.message().contains(&other.id));
    }
);

backend_tests!(
    delete_erases_the_timeline_and_keeps_a_tombstone,
    |db| async move {
        let app = TestApp::spawn(db).await;
        let ada = app.create("ada@example.com").await;
        let grace = app.create("grace@example.com").await;
        app.record(purchase("p1", &ada.id, 10_000_000, 3))
            .await
            .unwrap();
        app.record(purchase("p2", &ada.id, 20_000_000, 2))
            .await
            .unwrap();
        app.record(purchase("g1", &grace.id, 5_000_000, 1))
            .await
            .unwrap();

        let stale = app
            .client
            .clone()
            .delete_contact(pb::DeleteContactRequest {
                id: ada.id.clone(),
                etag: "\"999\"".into(),
            })
            .await;
        expect_code(stale, Code::Aborted);

        let deleted = app
            .client
            .clone()
            .delete_contact(pb::DeleteContactRequest {
                id: ada.id.clone(),
                etag: ada.etag.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(deleted.interactions_erased, 2);
        let gone = app
            .client
            .clone()
            .get_contact(pb::GetContactRequest { id: ada.id.clone() })
            .await;
        expect_code(gone, Code::NotFound);
        let again = app
            .client
            .clone()
            .delete_contact(pb::DeleteContactRequest {
                id: ada.id.clone(),
                etag: String::new(),
            })
            .await;
        expect_code(again, Code::NotFound);
        expect_code(
            app.record(purchase("p3", &ada.id, 1, 0)).await,
            Code::NotFound,
        );

        let snapshot = app.snapshot().await;
        assert!(snapshot.contacts.iter().all(|c| c.id != ada.id));
        assert!(snapshot.interactions.iter().all(|i| i.contact_id != ada.id));
        assert_eq!(
            snapshot.interactions.len(),
            1,
            "other contacts keep their timeline"
        );
        // The tombstone keeps a pseudonym of the id, never the id itself.
        let pseudonym = clm_store::pseudonym(clm_runtime::DEFAULT_TENANT, &ada.id);
        assert!(
            snapshot
                .tombstones
                .iter()
                .any(|t| t.contact_id == pseudonym)
        );
        assert!(snapshot.tombstones.iter().all(|t| t.contact_id != ada.id));
        // The email is free again: a new person may use it, under a new id.
        let again = app.create("ada@example.com").await;
        assert_ne!(again.id, ada.id);
    }
);

backend_tests!(another_tenants_contact_does_not_exist, |db| async move {
    let app = TestApp::spawn(db).await;
    let theirs = app.create_in("acme", contact("ada@acme.test")).await;
    app.client
        .clone()
        .record_interaction(as_tenant(
            "acme",
            pb::RecordInteractionRequest {
                interaction: Some(purchase("a1", &theirs.id, 1_000_000, 1)),
            },
        ))
        .await
        .unwrap();
    let before = app.snapshot().await;
    let mut client = app.client.clone();
    expect_code(
        client
            .get_contact(as_tenant(
                "globex",
                pb::GetContactRequest {
                    id: theirs.id.clone(),
                },
            ))
            .await,
        Code::NotFound,
    );
    let mut change = theirs.clone();
    change.city = "Springfield".into();
    expect_code(
        client
            .update_contact(as_tenant(
                "globex",
                pb::UpdateContactRequest {
                    contact: Some(change),
                    update_mask: None,
                },
            ))
            .await,
        Code::NotFound,
    );
    expect_code(
        client
            .delete_contact(as_tenant(
                "globex",
                pb::DeleteContactRequest {
                    id: theirs.id.clone(),
                    etag: String::new(),
                },
            ))
            .await,
        Code::NotFound,
    );
    expect_code(
        client
            .list_interactions(as_tenant(
                "globex",
                pb::ListInteractionsRequest {
                    contact_id: theirs.id.clone(),
                    ..Default::default()
                },
            ))
            .await,
        Code::NotFound,
    );
    expect_code(
        client
            .record_interaction(as_tenant(
                "globex",
                pb::RecordInteractionRequest {
                    interaction: Some(purchase("g1", &theirs.id, 1, 0)),
                },
            ))
            .await,
        Code::NotFound,
    );
    let listed = client
        .list_contacts(as_tenant("globex", pb::ListContactsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.contacts.is_empty());
    expect_invalid(
        client
            .get_contact(as_tenant(
                "bad tenant!",
                pb::GetContactRequest {
                    id: theirs.id.clone(),
                },
            ))
            .await,
        "x-tenant-id",
    );
    assert_eq!(app.snapshot().await, before);
});

backend_tests!(
    every_change_writes_its_contact_event_in_the_same_transaction,
    |db| async move {
        use clm_proto::common::v1::{ContactEvent, contact_event::Kind};
        use prost::Message;
        let app = TestApp::spawn(db).await;
        let mut c = contact("ada@example.com");
        c.first_name = "Ada".into();
        c.company = "Analytical".into();
        c.attributes.insert("plan".into(), "pro".into());
        let ada = app.create_in("default", c).await;
        let grace = app.create("grace@example.com").await;
        app.record(purchase("p1", &ada.id, 1_000_000, 1))
            .await
            .unwrap();
        app.record(purchase("p1", &ada.id, 1_000_000, 1))
            .await
            .unwrap(); // duplicate: no event
        expect_invalid(
            app.record(purchase("clm:contact:x", &ada.id, 1, 1)).await,
            "interaction.event_id",
        );
        app.client
            .clone()
            .merge_contacts(pb::MergeContactsRequest {
                survivor_id: ada.id.clone(),
                duplicate_id: grace.id.clone(),
            })
            .await
            .unwrap();
        app.client
            .clone()
            .delete_contact(pb::DeleteContactRequest {
                id: ada.id.clone(),
                etag: String::new(),
            })
            .await
            .unwrap();

        let events: Vec<ContactEvent> = app
            .snapshot()
            .await
            .outbox
            .iter()
            .filter(|row| row.receiver() == "scoring")
            .inspect(|row| assert_eq!(row.tenant_id, "default"))
            .flat_map(|row| row.messages().unwrap())
            .map(|(_, payload)| ContactEvent::decode(payload.as_slice()).unwrap())
            .collect();
        let kinds: Vec<&str> = events
            .iter()
            .map(|e| match e.kind.as_ref().unwrap() {
                Kind::Upserted(u) if u.created => "created",
                Kind::Upserted(_) => "updated",
                Kind::Interaction(_) => "interaction",
                Kind::Merged(_) => "merged",
                Kind::Erased(_) => "erased",
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "created",
                "created",
                "interaction",
                "merged",
                "updated",
                "erased"
            ]
        );
        let outbox = app.snapshot().await.outbox;
        let for_analytics: usize = outbox
            .iter()
            .filter(|row| row.receiver() == "analytics")
            .map(|row| row.messages as usize)
            .sum();
        assert_eq!(
            for_analytics,
            events.len(),
            "analytics gets every event too"
        );
        let Some(Kind::Upserted(first)) = &events[0].kind else {
            unreachable!()
        };
        assert_eq!(
            first.attributes.get("company").map(String::as_str),
            Some("Analytical")
        );
        assert_eq!(
            first.attributes.get("plan").map(String::as_str),
            Some("pro")
        );
        assert!(
            !first.attributes.contains_key("first_name"),
            "no names downstream"
        );
        assert!(
            !first.attributes.values().any(|v| v.contains('@')),
            "no email downstream"
        );
        assert_eq!(events[2].event_id, "p1");
        assert!(events[0].event_id.starts_with("clm:contact:"));
    }
);
