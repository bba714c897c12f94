//! Schema changes applied to databases that already hold data.

use clm_scoring::store::migration::Migrator;
use clm_testkit::{backend_tests, check_last_migration_swaps_index};

backend_tests!(
    the_ledger_index_covers_the_fold_and_rolls_back,
    |db: clm_testkit::TestDatabase| async move {
        let conn = clm_store::connect("scoring", db.location()).await.unwrap();
        check_last_migration_swaps_index::<Migrator>(
            &conn,
            "score_ledger",
            "ledger_by_contact",
            "ledger_by_contact_covering",
        )
        .await;
    }
);
