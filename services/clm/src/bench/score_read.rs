//! `clm bench score-read`: GetScore and BatchGetScores(100) on cached scores, beside the
//! stack ceiling: the standard health check on the same server.

use std::time::{Duration, Instant};

use super::{Report, health_baseline, measure};
use crate::cli::BenchArgs;
use crate::client::{Scoring, connect_contacts, connect_scoring};
use crate::run::BoxError;
use clm_proto::contacts::v1 as cpb;
use clm_proto::scoring::v1 as spb;

/// Contacts read by the benchmark (and the size of each batch read).
const CONTACTS: usize = 100;

pub(super) async fn run(args: &BenchArgs) -> Result<Report, BoxError> {
    let ids = seed(args).await?;
    let scoring = connect_scoring(&args.client.once()).await?;
    let (c, d) = (args.concurrency, args.duration);

    let baseline = health_baseline(args, &args.client.scoring_addr, "scoring").await?;
    let reader = ScoreReader {
        scoring: scoring.clone(),
        ids: ids.clone(),
    };
    let single = measure("GetScore", c, d, move |worker, n| reader.get(worker, n)).await;
    let batch = measure("BatchGetScores(100)", c, d, move |_, _| {
        let mut scoring = scoring.clone();
        let contact_ids = ids.clone();
        async move {
            scoring
                .batch_get_scores(spb::BatchGetScoresRequest {
                    contact_ids,
                    model_id: String::new(),
                })
                .await
                .map(drop)
        }
    })
    .await;
    Ok(Report::new(
        "score-read",
        args,
        vec![baseline, single, batch],
    ))
}

/// GetScore over the seeded contacts, each worker rotating through them.
#[derive(Clone)]
struct ScoreReader {
    scoring: Scoring,
    ids: Vec<String>,
}

impl ScoreReader {
    /// The `n`-th read of `worker`.
    fn get(
        &self,
        worker: usize,
        n: u64,
    ) -> impl Future<Output = Result<(), tonic::Status>> + Send + use<> {
        let mut scoring = self.scoring.clone();
        let contact_id = self.ids[(worker * 7 + n as usize) % self.ids.len()].clone();
        async move {
            scoring
                .get_score(spb::GetScoreRequest {
                    contact_id,
                    model_id: String::new(),
                })
                .await
                .map(drop)
        }
    }
}

/// Creates the contacts, each with a demo request, and waits until all have a score (so
/// every later read is served from the cache).
async fn seed(args: &BenchArgs) -> Result<Vec<String>, BoxError> {
    let mut contacts = connect_contacts(&args.client).await?;
    let run = uuid::Uuid::now_v7().simple().to_string();
    let mut ids = Vec::with_capacity(CONTACTS);
    let now = chrono::Utc::now().timestamp();
    for i in 0..CONTACTS {
        let contact = contacts
            .create_contact(cpb::CreateContactRequest {
                contact: Some(cpb::Contact {
                    email: format!("bench-{run}-{i}@example.com"),
                    source: "bench".into(),
                    ..Default::default()
                }),
            })
            .await
            .map_err(|s| crate::client::explain(&s))?
            .into_inner()
            .contact
            .unwrap_or_default();
        contacts
            .record_interaction(cpb::RecordInteractionRequest {
                interaction: Some(cpb::Interaction {
                    event_id: format!("bench-{run}-{i}"),
                    contact_id: contact.id.clone(),
                    r#type: "demo_request".into(),
                    occurred_at: Some(prost_types::Timestamp {
                        seconds: now,
                        nanos: 0,
                    }),
                    ..Default::default()
                }),
            })
            .await
            .map_err(|s| crate::client::explain(&s))?;
        ids.push(contact.id);
    }
    let mut scoring = connect_scoring(&args.client).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let scores = scoring
            .batch_get_scores(spb::BatchGetScoresRequest {
                contact_ids: ids.clone(),
                model_id: String::new(),
            })
            .await
            .map_err(|s| crate::client::explain(&s))?
            .into_inner()
            .scores;
        if scores.len() == ids.len() && scores.iter().all(|s| s.total > 0.0) {
            return Ok(ids);
        }
        if Instant::now() > deadline {
            return Err(
                "the seeded contacts were not scored within 60 s: is the whole suite running?"
                    .into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
