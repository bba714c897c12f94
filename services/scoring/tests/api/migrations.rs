//! Schema changes applied to databases that already hold data.

use clm_scoring::store::migration::Migrator;
use clm_testkit::{backend_tests, check_migration_swaps_index};
use sea_orm_migration::MigratorTrait;

fn step_named(name: &str) -> u32 {
    clm_testkit::migrations_before::<Migrator>(name)
}

backend_tests!(
    the_ledger_index_covers_the_fold_and_rolls_back,
    |db: clm_testkit::TestDatabase| async move {
        let conn = clm_store::connect("scoring", db.location()).await.unwrap();
        let later = Migrator::migrations().len() as u32
            - step_named("m20261201_000001_cover_ledger_by_contact")
            - 1;
        check_migration_swaps_index::<Migrator>(
            &conn,
            later,
            "score_ledger",
            "ledger_by_contact",
            "ledger_by_contact_covering",
        )
        .await;
    }
);

backend_tests!(
    states_stored_as_json_are_read_after_they_became_bytes_and_the_step_rolls_back,
    |db: clm_testkit::TestDatabase| async move {
        use clm_scoring::domain::fold::{RulePart, ScoreState};
        use clm_scoring::state_bytes::{decode, encode_stored};
        use clm_scoring::store::{Store, entities::score};
        use sea_orm::{ActiveValue::Set, ConnectionTrait, DbBackend, EntityTrait, Statement};

        let conn = clm_store::connect("scoring", db.location()).await.unwrap();
        let steps = Migrator::migrations().len() as u32;
        let before = step_named("m20261203_000001_score_states_as_bytes");
        // The schema as it was before, holding a state as JSON.
        Migrator::up(&conn, Some(before)).await.unwrap();
        let state = ScoreState {
            ref_time: 1_700_000_000_000_000,
            fit: vec![("senior_title".into(), 15.0)],
            rules: vec![RulePart {
                rule_id: "page_view".into(),
                half_life: Some(1_209_600_000_000),
                raw_points: 2.0,
                awards: 2,
                value_at_ref: 1.5,
                last: Some((1_699_999_000_000_000, "evt-2".into())),
                window: vec![1_699_990_000_000_000, 1_699_999_000_000_000],
            }],
            model_version: 1,
            updated_at: 1_700_000_000_000_000,
        };
        let json = serde_json::to_string(&state).unwrap();
        let backend = conn.get_database_backend();
        let insert = match backend {
            DbBackend::Postgres => "INSERT INTO scores VALUES ($1, $2, $3, $4::json, $5, $6)",
            _ => "INSERT INTO scores VALUES (?, ?, ?, ?, ?, ?)",
        };
        let row = |contact: &str| {
            Statement::from_sql_and_values(
                backend,
                insert,
                [
                    "t".into(),
                    "default".into(),
                    contact.into(),
                    json.clone().into(),
                    "warm".into(),
                    1i64.into(),
                ],
            )
        };
        conn.execute_raw(row("as-json")).await.unwrap();
        Migrator::up(&conn, None).await.unwrap();
        let store = Store::new(conn.clone(), clm_outbox::Wake::default());
        let contacts = ["as-json".to_owned(), "as-bytes".to_owned()];
        let read = store.states("t", "default", &contacts).await.unwrap();
        assert_eq!(read.get("as-json"), Some(&state));
        // A state written now is protobuf, under half the JSON, windows included.
        score::Entity::insert(score::ActiveModel {
            tenant_id: Set("t".into()),
            model_id: Set("default".into()),
            contact_id: Set("as-bytes".into()),
            state: Set(encode_stored(&state)),
            band: Set("warm".into()),
            updated_at: Set(2),
        })
        .exec_without_returning(&conn)
        .await
        .unwrap();
        let stored = score::Entity::find_by_id(("t".into(), "default".into(), "as-bytes".into()))
            .one(&conn)
            .await
            .unwrap()
            .unwrap()
            .state;
        assert!(stored.len() * 2 < json.len(), "{} bytes", stored.len());
        assert_eq!(decode(&stored), Some(state.clone()));
        let read = store.states("t", "default", &contacts).await.unwrap();
        assert_eq!(
            (read.get("as-json"), read.get("as-bytes")),
            (Some(&state), Some(&state))
        );

        // Rolled back: every state JSON again, the new form's included.
        Migrator::down(&conn, Some(steps - before)).await.unwrap();
        let select = "SELECT contact_id, CAST(state AS text) FROM scores ORDER BY contact_id";
        let rows = conn
            .query_all_raw(Statement::from_string(backend, select))
            .await
            .unwrap();
        for row in &rows {
            let text: String = row.try_get_by_index(1).unwrap();
            assert_eq!(serde_json::from_str::<ScoreState>(&text).unwrap(), state);
        }
        assert_eq!(rows.len(), 2);
        Migrator::up(&conn, None).await.unwrap();
        let read = store.states("t", "default", &contacts).await.unwrap();
        assert_eq!(
            (read.get("as-json"), read.get("as-bytes")),
            (Some(&state), Some(&state))
        );
    }
);

backend_tests!(
    ids_kept_twice_before_are_kept_once,
    |db: clm_testkit::TestDatabase| async move {
        use clm_scoring::store::entities::history;
        use sea_orm::{ActiveValue::Set, EntityTrait};

        let conn = clm_store::connect("scoring", db.location()).await.unwrap();
        // As a build before left it: "h" applied with its history row, "gone" applied by
        // a contact erased since, "upsert" a contact event.
        let before = step_named("m20261203_000002_forget_ids_kept_by_history");
        Migrator::up(&conn, Some(before)).await.unwrap();
        clm_testkit::record_event_ids(&conn, "applied_events", "t", &["h", "gone", "upsert"]).await;
        history::Entity::insert(history::ActiveModel {
            tenant_id: Set("t".into()),
            event_id: Set("h".into()),
            contact_id: Set("a".into()),
            kind: Set("page_view".into()),
            occurred_at: Set(1),
            properties: Set(serde_json::json!({})),
        })
        .exec_without_returning(&conn)
        .await
        .unwrap();
        Migrator::up(&conn, None).await.unwrap();
        assert_eq!(
            clm_testkit::recorded_event_ids(&conn, "applied_events").await,
            ["gone", "upsert"]
        );
    }
);
