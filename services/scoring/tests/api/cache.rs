//! The score cache: write-through on apply, cache-aside reads, and a dead Redis that
//! changes nothing for callers.

use clm_proto::scoring::v1 as pb;

use crate::helpers::*;

backend_tests!(
    reads_are_served_from_the_cache_after_write_through,
    |db| async move {
        let app = TestApp::spawn(db).await;
        app.apply(vec![interaction("d", "c1", "demo_request", T0)])
            .await;
        let before = app.cache.stats();
        for _ in 0..3 {
            assert!(close(app.score("c1").await.total, 30.0));
        }
        let after = app.cache.stats();
        assert_eq!(
            after.hits - before.hits,
            3,
            "written through on apply, so every read hits"
        );
        assert_eq!(after.errors, 0);
    }
);

backend_tests!(a_dead_redis_falls_back_to_the_database, |db| async move {
    let app = TestApp::spawn_with(db, CacheChoice::DeadRedis).await;
    app.apply(vec![
        interaction("d", "c1", "demo_request", T0),
        interaction("t", "c1", "trial_started", T0),
        interaction("f", "c2", "form_submit", T0),
    ])
    .await;
    let score = app.score("c1").await;
    assert!(close(score.total, 55.0));
    assert_eq!(score.band, "MQL");
    let batch = app
        .client
        .clone()
        .batch_get_scores(pb::BatchGetScoresRequest {
            contact_ids: vec!["c2".into(), "c1".into(), "c3".into()],
            model_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let totals: Vec<f64> = batch.scores.iter().map(|s| s.total).collect();
    assert_eq!(totals, [10.0, 55.0, 0.0]);
    let stats = app.cache.stats();
    assert!(
        stats.errors >= 3,
        "every failed cache call is counted: {stats:?}"
    );
    assert_eq!(stats.hits, 0);
});
