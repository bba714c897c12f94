//! ListContacts: the filter language, order, and page tokens.

use clm_proto::contacts::v1 as pb;

use crate::helpers::*;

async fn list(
    app: &TestApp,
    filter: &str,
    order_by: &str,
    page_size: i32,
    page_token: &str,
) -> Result<pb::ListContactsResponse, tonic::Status> {
    app.client
        .clone()
        .list_contacts(pb::ListContactsRequest {
            filter: filter.into(),
            order_by: order_by.into(),
            page_size,
            page_token: page_token.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn emails(app: &TestApp, filter: &str) -> Vec<String> {
    let mut emails: Vec<String> = list(app, filter, "", 1000, "")
        .await
        .unwrap()
        .contacts
        .into_iter()
        .map(|c| c.email)
        .collect();
    emails.sort();
    emails
}

async fn seed(app: &TestApp) {
    for (email, country, title, city, plan) in [
        ("ada@example.com", "DE", "CTO", "Berlin", "pro"),
        ("grace@example.com", "DE", "Engineer", "Munich", "free"),
        (
            "linus@example.com",
            "FI",
            "Chief Technology Officer (CTO)",
            "Helsinki",
            "pro",
        ),
        (
            "barbara@example.com",
            "US",
            "VP 100% Sales_Ops",
            "x' OR '1'='1",
            "",
        ),
    ] {
        let mut c = contact(email);
        c.country = country.into();
        c.job_title = title.into();
        c.city = city.into();
        if !plan.is_empty() {
            c.attributes.insert("plan".into(), plan.into());
        }
        app.create_in("default", c).await;
    }
}

backend_tests!(
    filters_select_exactly_the_matching_contacts,
    |db| async move {
        let app = TestApp::spawn(db).await;
        seed(&app).await;
        assert_eq!(
            emails(&app, r#"country = "DE""#).await,
            ["ada@example.com", "grace@example.com"]
        );
        assert_eq!(
            emails(&app, r#"country = "DE" AND job_title ~ "cto""#).await,
            ["ada@example.com"]
        );
        assert_eq!(
            emails(&app, r#"job_title ~ "CTO" OR city = "Munich""#).await,
            ["ada@example.com", "grace@example.com", "linus@example.com"]
        );
        assert_eq!(
            emails(&app, r#"NOT country = "DE" AND attributes.plan = "pro""#).await,
            ["linus@example.com"]
        );
        assert_eq!(
            emails(&app, r#"attributes.plan != "pro""#).await,
            ["grace@example.com"]
        );
        assert_eq!(emails(&app, r#"created_at >= "2000-01-01""#).await.len(), 4);
        assert!(
            emails(&app, r#"created_at < "2000-01-01T00:00:00Z""#)
                .await
                .is_empty()
        );
        // LIKE wildcards in a value match literally.
        assert_eq!(
            emails(&app, r#"job_title ~ "100%""#).await,
            ["barbara@example.com"]
        );
        assert_eq!(
            emails(&app, r#"job_title ~ "s_o""#).await,
            ["barbara@example.com"]
        );
        assert!(emails(&app, r#"job_title ~ "1_0""#).await.is_empty());
    }
);

backend_tests!(hostile_filter_values_match_literally, |db| async move {
    let app = TestApp::spawn(db).await;
    seed(&app).await;
    assert_eq!(
        emails(&app, r#"city = "x' OR '1'='1""#).await,
        ["barbara@example.com"]
    );
    assert!(
        emails(&app, r#"city = "x\" OR \"1\"=\"1""#)
            .await
            .is_empty()
    );
    assert!(emails(&app, r#"email = "' OR 1=1 --""#).await.is_empty());
    assert!(
        emails(
            &app,
            r#"attributes.plan = "pro'); DROP TABLE contacts; --""#
        )
        .await
        .is_empty()
    );
    assert_eq!(emails(&app, "").await.len(), 4, "nothing was dropped");
});

backend_tests!(malformed_filters_name_the_position, |db| async move {
    let app = TestApp::spawn(db).await;
    for (filter, position) in [
        (r#"country = "DE" AND"#, 19),
        (r#"country == "DE""#, 10),
        (r#"shoe_size > "42""#, 1),
        (r#"country = DE"#, 11),
        (r#"created_at >= "last tuesday""#, 15),
        (r#"(country = "DE""#, 16),
        (r#"country = "DE" ; DROP"#, 16),
    ] {
        let status = expect_invalid(list(&app, filter, "", 10, "").await, "filter");
        let expected = format!("at position {position}:");
        assert!(
            status.message().contains(&expected),
            "{filter:?}: {}",
            status.message()
        );
    }
    expect_invalid(list(&app, "", "shoe_size", 10, "").await, "order_by");
    expect_invalid(list(&app, "", "", 1001, "").await, "page_size");
    expect_invalid(list(&app, "", "", -1, "").await, "page_size");
    let deep = format!("{}city = \"a\"{}", "(".repeat(40), ")".repeat(40));
    expect_invalid(list(&app, &deep, "", 10, "").await, "filter");
    expect_invalid(list(&app, &"a".repeat(5000), "", 10, "").await, "filter");
});

backend_tests!(
    pages_cover_everything_once_in_a_stable_order,
    |db| async move {
        let app = TestApp::spawn(db).await;
        for i in 0..23 {
            let mut c = contact(&format!("person{i:02}@example.com"));
            c.company = ["Acme", "Globex", "Initech"][i % 3].into();
            app.create_in("default", c).await;
        }
        for order in [
            "",
            "created_at desc",
            "email",
            "company",
            "company desc",
            "updated_at",
        ] {
            let mut seen = Vec::new();
            let mut token = String::new();
            let mut pages = 0;
            loop {
                let page = list(&app, "", order, 5, &token).await.unwrap();
                pages += 1;
                seen.extend(
                    page.contacts
                        .into_iter()
                        .map(|c| (c.company, c.email, c.id)),
                );
                token = page.next_page_token;
                if token.is_empty() {
                    break;
                }
            }
            assert_eq!(pages, 5, "{order}");
            assert_eq!(seen.len(), 23, "{order}");
            let mut unique = seen.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), 23, "no contact twice ({order})");
            if order.starts_with("company") {
                let companies: Vec<_> = seen.iter().map(|s| s.0.clone()).collect();
                let mut sorted = companies.clone();
                sorted.sort();
                if order.ends_with("desc") {
                    sorted.reverse();
                }
                assert_eq!(companies, sorted);
            }
            if order == "email" {
                let emails: Vec<_> = seen.iter().map(|s| s.1.clone()).collect();
                let mut sorted = emails.clone();
                sorted.sort();
                assert_eq!(emails, sorted);
            }
        }
    }
);

backend_tests!(
    tampered_and_foreign_page_tokens_are_refused,
    |db| async move {
        let app = TestApp::spawn(db).await;
        for i in 0..4 {
            app.create(&format!("p{i}@example.com")).await;
        }
        let first = list(&app, r#"email ~ "example""#, "", 2, "").await.unwrap();
        let token = first.next_page_token;
        assert!(!token.is_empty());
        // Every single-character change is detected.
        let bytes = token.as_bytes();
        for at in [0, bytes.len() / 2, bytes.len() - 1] {
            let mut altered = bytes.to_vec();
            altered[at] = if altered[at] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(altered).unwrap();
            expect_invalid(
                list(&app, r#"email ~ "example""#, "", 2, &altered).await,
                "page_token",
            );
        }
        expect_invalid(
            list(&app, r#"email ~ "example""#, "", 2, "not a token").await,
            "page_token",
        );
        // Another filter, another order, or another tenant: the token is foreign.
        expect_invalid(list(&app, "", "", 2, &token).await, "page_token");
        expect_invalid(
            list(&app, r#"email ~ "example""#, "email", 2, &token).await,
            "page_token",
        );
        let foreign = app
            .client
            .clone()
            .list_contacts(as_tenant(
                "other",
                pb::ListContactsRequest {
                    filter: r#"email ~ "example""#.into(),
                    page_size: 2,
                    page_token: token.clone(),
                    ..Default::default()
                },
            ))
            .await;
        expect_invalid(foreign, "page_token");
        // A token signed by another deployment's secret is refused too.
        let next = list(&app, r#"email ~ "example""#, "", 2, &token)
            .await
            .unwrap();
        assert_eq!(next.contacts.len(), 2);
    }
);
