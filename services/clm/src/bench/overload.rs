//! `clm bench overload`: GetScore offered at three times the capacity measured in the same
//! run, open loop (calls are sent on schedule whether or not earlier ones returned), to see
//! what admitted calls pay and how fast the excess is refused.

use std::time::{Duration, Instant};

use super::score_read::ScoreReader;
use super::stats::Samples;
use super::{Report, measure};
use crate::cli::BenchArgs;
use crate::client::connect_scoring;
use crate::run::BoxError;

/// How many times the measured capacity is offered.
const OVERLOAD: f64 = 3.0;
/// Most calls the generator keeps outstanding; a call due while this many are out is not
/// sent and counted as such, so a saturated client shows as such instead of queueing.
const MAX_OUTSTANDING: usize = 2048;

pub(super) async fn run(args: &BenchArgs) -> Result<Report, BoxError> {
    let ids = super::score_read::seed(args).await?;
    let scoring = connect_scoring(&args.client).await?;
    let reader = ScoreReader { scoring, ids };
    let get = move |worker: usize, n: u64| reader.get(worker, n);
    let unloaded = measure(
        "GetScore, 1 caller (unloaded)",
        1,
        args.duration,
        get.clone(),
    )
    .await;
    let capacity = measure(
        "GetScore, closed loop (capacity)",
        args.concurrency,
        args.duration,
        get.clone(),
    )
    .await;
    let rate = capacity.per_second * OVERLOAD;
    let started = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    let (mut admitted, mut refused) = (Samples::default(), Samples::default());
    let outstanding = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_OUTSTANDING));
    let (mut due_so_far, mut sent, mut not_sent) = (0u64, 0u64, 0u64);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    while started.elapsed() < args.duration {
        tick.tick().await;
        let due = (started.elapsed().as_secs_f64() * rate) as u64;
        while due_so_far < due {
            due_so_far += 1;
            let Ok(permit) = outstanding.clone().try_acquire_owned() else {
                not_sent += 1;
                continue;
            };
            let call = get(0, sent);
            calls.spawn(async move {
                let at = Instant::now();
                let result = call.await;
                drop(permit);
                (at.elapsed(), result.err().map(|s| s.code()))
            });
            sent += 1;
        }
        // Collect what finished, so memory stays flat over a long run.
        while let Some(done) = calls.try_join_next() {
            record(&mut admitted, &mut refused, done);
        }
    }
    let offered = due_so_far as f64 / started.elapsed().as_secs_f64();
    while let Some(done) = calls.join_next().await {
        record(&mut admitted, &mut refused, done);
    }
    let elapsed = started.elapsed();
    let admitted = admitted.summary(
        &format!(
            "GetScore admitted, {offered:.0}/s offered, {not_sent} not sent (client saturated)"
        ),
        elapsed,
    );
    let refused = refused.summary("GetScore refused (RESOURCE_EXHAUSTED)", elapsed);
    Ok(Report::new(
        "overload",
        args,
        vec![unloaded, capacity, admitted, refused],
    ))
}

type Outcome = Result<(Duration, Option<tonic::Code>), tokio::task::JoinError>;

/// Files one finished call: admitted (with its latency or its error) or refused.
fn record(admitted: &mut Samples, refused: &mut Samples, outcome: Outcome) {
    match outcome {
        Ok((latency, None)) => admitted.ok(latency),
        Ok((latency, Some(tonic::Code::ResourceExhausted))) => refused.ok(latency),
        Ok((_, Some(code))) => admitted.failed(code),
        Err(_) => admitted.failed(tonic::Code::Unknown),
    }
}
