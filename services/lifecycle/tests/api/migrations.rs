//! Schema changes applied to databases that already hold data.

use clm_lifecycle::store::migration::Migrator;
use clm_testkit::{backend_tests, check_migration_swaps_index};

backend_tests!(
    the_activities_index_covers_the_facts_and_rolls_back,
    |db: clm_testkit::TestDatabase| async move {
        let conn = clm_store::connect("lifecycle", db.location())
            .await
            .unwrap();
        check_migration_swaps_index::<Migrator>(
            &conn,
            0,
            "activities",
            "activities_by_contact",
            "activities_by_contact_covering",
        )
        .await;
    }
);
