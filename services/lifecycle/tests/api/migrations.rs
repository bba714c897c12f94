//! Schema changes applied to databases that already hold data.

use clm_lifecycle::store::migration::Migrator;
use clm_testkit::{backend_tests, check_migration_swaps_index};
use sea_orm_migration::MigratorTrait;

backend_tests!(
    the_activities_index_covers_the_facts_and_rolls_back,
    |db: clm_testkit::TestDatabase| async move {
        let conn = clm_store::connect("lifecycle", db.location())
            .await
            .unwrap();
        let later = Migrator::migrations().len() as u32
            - clm_testkit::migrations_before::<Migrator>(
                "m20261201_000001_cover_activities_by_contact",
            )
            - 1;
        check_migration_swaps_index::<Migrator>(
            &conn,
            later,
            "activities",
            "activities_by_contact",
            "activities_by_contact_covering",
        )
        .await;
    }
);

backend_tests!(
    ids_kept_twice_before_are_kept_once,
    |db: clm_testkit::TestDatabase| async move {
        use clm_lifecycle::store::entities::activity;
        use sea_orm::{ActiveValue::Set, EntityTrait};

        let conn = clm_store::connect("lifecycle", db.location())
            .await
            .unwrap();
        // As a build before left it: "a" applied with its activity, "gone" applied by a
        // contact erased since, "band" another signal.
        let before = clm_testkit::migrations_before::<Migrator>(
            "m20261203_000001_forget_ids_kept_by_activities",
        );
        Migrator::up(&conn, Some(before)).await.unwrap();
        clm_testkit::record_event_ids(&conn, "applied_signals", "t", &["a", "gone", "band"]).await;
        activity::Entity::insert(activity::ActiveModel {
            tenant_id: Set("t".into()),
            event_id: Set("a".into()),
            contact_id: Set("c1".into()),
            kind: Set("page_view".into()),
            occurred_at: Set(1),
            amount_micros: Set(0),
        })
        .exec_without_returning(&conn)
        .await
        .unwrap();
        Migrator::up(&conn, None).await.unwrap();
        assert_eq!(
            clm_testkit::recorded_event_ids(&conn, "applied_signals").await,
            ["band", "gone"]
        );
    }
);
