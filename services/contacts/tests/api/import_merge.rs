//! ImportContacts and MergeContacts.

use tonic::Code;

use clm_proto::contacts::v1 as pb;

use crate::helpers::*;

fn row(email: &str, company: &str) -> pb::Contact {
    pb::Contact {
        email: email.into(),
        company: company.into(),
        ..Default::default()
    }
}

backend_tests!(import_reports_each_row_by_its_index, |db| async move {
    let app = TestApp::spawn(db).await;
    let existing = app.create("known@example.com").await;
    let messages = vec![
        pb::ImportContactsRequest {
            contacts: vec![
                row("new1@example.com", "Acme"),    // 0 created
                row("not an email", "Acme"),        // 1 rejected
                row("KNOWN@example.com", "Globex"), // 2 rejected: exists, no update
            ],
            update_existing: false,
        },
        pb::ImportContactsRequest {
            contacts: vec![
                row("new2@example.com", ""),      // 3 created
                row("new1@example.com", "Other"), // 4 rejected: created by row 0
            ],
            update_existing: true, // only the first message decides
        },
    ];
    let reply = app
        .client
        .clone()
        .import_contacts(tokio_stream::iter(messages))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((reply.created, reply.updated, reply.rejected), (2, 0, 3));
    let indices: Vec<u64> = reply.rejected_rows.iter().map(|r| r.index).collect();
    assert_eq!(indices, [1, 2, 4]);
    assert_eq!(reply.rejected_rows[0].field, "contacts[1].email");
    let snapshot = app.snapshot().await;
    assert_eq!(snapshot.contacts.len(), 3);
    let known = snapshot
        .contacts
        .iter()
        .find(|c| c.id == existing.id)
        .unwrap();
    assert_eq!(known.company, "", "not updated without update_existing");
});

backend_tests!(
    import_updates_existing_contacts_when_asked,
    |db| async move {
        let app = TestApp::spawn(db).await;
        let mut c = contact("known@example.com");
        c.first_name = "Kim".into();
        c.attributes.insert("tier".into(), "gold".into());
        let existing = app.create_in("default", c).await;
        let mut update = row("known@example.com", "Globex");
        update.attributes.insert("region".into(), "emea".into());
        let reply = app
            .client
            .clone()
            .import_contacts(tokio_stream::iter(vec![pb::ImportContactsRequest {
                contacts: vec![update],
                update_existing: true,
            }]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!((reply.created, reply.updated, reply.rejected), (0, 1, 0));
        let after = app
            .client
            .clone()
            .get_contact(pb::GetContactRequest {
                id: existing.id.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .contact
            .unwrap();
        assert_eq!(after.company, "Globex");
        assert_eq!(
            after.first_name, "Kim",
            "empty import cells keep what is stored"
        );
        assert_eq!(after.attributes["tier"], "gold");
        assert_eq!(after.attributes["region"], "emea");
        assert_ne!(after.etag, existing.etag);
    }
);

backend_tests!(
    a_contact_created_by_an_import_row_is_updated_by_a_later_row_of_the_same_batch,
    |db| async move {
        let app = TestApp::spawn(db).await;
        let reply = app
            .client
            .clone()
            .import_contacts(tokio_stream::iter(vec![pb::ImportContactsRequest {
                contacts: vec![
                    row("first@example.com", "Acme"),
                    row("twice@example.com", "Acme"),
                    row("last@example.com", "Acme"),
                    row("twice@example.com", "Globex"),
                ],
                update_existing: true,
            }]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!((reply.created, reply.updated, reply.rejected), (3, 1, 0));
        let snapshot = app.snapshot().await;
        let mut companies: Vec<(String, String)> = snapshot
            .contacts
            .iter()
            .map(|c| (c.email.clone(), c.company.clone()))
            .collect();
        companies.sort();
        assert_eq!(
            companies,
            [
                ("first@example.com".to_owned(), "Acme".to_owned()),
                ("last@example.com".to_owned(), "Acme".to_owned()),
                ("twice@example.com".to_owned(), "Globex".to_owned()),
            ]
        );
    }
);

backend_tests!(import_streams_many_batches, |db| async move {
    let app = TestApp::spawn(db).await;
    let messages: Vec<pb::ImportContactsRequest> = (0..10)
        .map(|batch| pb::ImportContactsRequest {
            contacts: (0..500)
                .map(|i| row(&format!("bulk{}@example.com", batch * 500 + i), "Bulk"))
                .collect(),
            update_existing: false,
        })
        .collect();
    let reply = app
        .client
        .clone()
        .import_contacts(tokio_stream::iter(messages))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((reply.created, reply.rejected), (5000, 0));
    assert_eq!(app.snapshot().await.contacts.len(), 5000);
});

backend_tests!(
    merge_moves_the_timeline_and_erases_the_duplicate,
    |db| async move {
        let app = TestApp::spawn(db).await;
        let mut s = contact("ada@example.com");
        s.first_name = "Ada".into();
        s.attributes.insert("plan".into(), "pro".into());
        let survivor = app.create_in("default", s).await;
        let mut d = contact("ada.lovelace@work.example");
        d.first_name = "Augusta".into();
        d.company = "Analytical Engines".into();
        d.attributes.insert("plan".into(), "free".into());
        d.attributes.insert("team".into(), "math".into());
        let duplicate = app.create_in("default", d).await;
        app.record(purchase("s1", &survivor.id, 1, 3))
            .await
            .unwrap();
        app.record(purchase("d1", &duplicate.id, 1, 2))
            .await
            .unwrap();
        app.record(purchase("d2", &duplicate.id, 1, 1))
            .await
            .unwrap();

        let merged = app
            .client
            .clone()
            .merge_contacts(pb::MergeContactsRequest {
                survivor_id: survivor.id.clone(),
                duplicate_id: duplicate.id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(merged.interactions_moved, 2);
        let contact = merged.contact.unwrap();
        assert_eq!(contact.first_name, "Ada", "the survivor's values win");
        assert_eq!(
            contact.company, "Analytical Engines",
            "empty fields are filled"
        );
        assert_eq!(contact.attributes["plan"], "pro");
        assert_eq!(contact.attributes["team"], "math");

        let timeline = app
            .client
            .clone()
            .list_interactions(pb::ListInteractionsRequest {
                contact_id: survivor.id.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(timeline.interactions.len(), 3);
        let gone = expect_code(
            app.client
                .clone()
                .get_contact(pb::GetContactRequest {
                    id: duplicate.id.clone(),
                })
                .await,
            Code::NotFound,
        );
        assert!(gone.message().contains(&survivor.id), "{}", gone.message());

        let before = app.snapshot().await;
        expect_invalid(
            app.client
                .clone()
                .merge_contacts(pb::MergeContactsRequest {
                    survivor_id: survivor.id.clone(),
                    duplicate_id: survivor.id.clone(),
                })
                .await,
            "duplicate_id",
        );
        expect_code(
            app.client
                .clone()
                .merge_contacts(pb::MergeContactsRequest {
                    survivor_id: survivor.id.clone(),
                    duplicate_id: duplicate.id.clone(),
                })
                .await,
            Code::NotFound,
        );
        expect_invalid(
            app.client
                .clone()
                .merge_contacts(pb::MergeContactsRequest {
                    survivor_id: String::new(),
                    duplicate_id: duplicate.id.clone(),
                })
                .await,
            "survivor_id",
        );
        assert_eq!(app.snapshot().await, before);
    }
);
