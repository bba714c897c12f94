//! `clm bench overload`: GetFunnel offered at three times the capacity measured in the same
//! run, open loop (calls are sent on schedule whether or not earlier ones returned), to see
//! what admitted calls pay and how fast the excess is refused.
//!
//! The funnel runs over a demo tenant (`--demo-contacts`, 2,000 by default): a call costs
//! the server a few milliseconds and the generator a fraction of one, so three times the server's
//! capacity can be offered from the same machine. (A call as cheap to serve as to send,
//! such as GetScore, saturates a generator sharing the server's cores long before the
//! server.)

use std::time::{Duration, Instant};

use super::stats::Samples;
use super::{Report, measure};
use crate::cli::BenchArgs;
use crate::client::{Analytics, connect_analytics};
use crate::run::BoxError;

/// How many times the measured capacity is offered.
const OVERLOAD: f64 = 3.0;
/// Longest a refused caller of the closed loop waits for another call to finish.
const REFUSED_PAUSE: Duration = Duration::from_millis(100);
/// Most calls the generator keeps outstanding; a call due while this many are out is not
/// sent and counted as such, so a saturated client shows as such instead of queueing.
const MAX_OUTSTANDING: usize = 2048;

pub(super) async fn run(args: &BenchArgs) -> Result<Report, BoxError> {
    let analytics = connect_analytics(&args.client.once()).await?;
    load_tenant(args, analytics.clone()).await?;
    let get = move |_: usize, _: u64| {
        let mut analytics = analytics.clone();
        async move {
            analytics
                .get_funnel(super::reports::funnel())
                .await
                .map(drop)
        }
    };
    let unloaded = measure(
        "GetFunnel, 1 caller (unloaded)",
        1,
        args.duration,
        get.clone(),
    )
    .await;
    // A refused caller waits until another call finishes (a slot freed) before its next
    // call. Callers that call again at once spend the capacity being measured on refusals
    // (32 of them drew ~4,700 refusals/s from a server serving ~500 funnels/s); callers
    // that sleep a fixed time leave freed slots idle when the limit is a few calls.
    let finished = std::sync::Arc::new(tokio::sync::Notify::new());
    let waiting = get.clone();
    let capacity = measure(
        "GetFunnel, closed loop (capacity)",
        args.concurrency,
        args.duration,
        move |worker, n| {
            let call = waiting(worker, n);
            let finished = finished.clone();
            async move {
                let result = call.await;
                match &result {
                    Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                        let _ = tokio::time::timeout(REFUSED_PAUSE, finished.notified()).await;
                    }
                    _ => finished.notify_one(),
                }
                result
            }
        },
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
            "GetFunnel admitted, {offered:.0}/s offered, {not_sent} not sent (client saturated)"
        ),
        elapsed,
    );
    let refused = refused.summary("GetFunnel refused (RESOURCE_EXHAUSTED)", elapsed);
    // The targets' terms: admitted p99 against the unloaded p99, and how fast refusals come.
    let admitted_over_unloaded = admitted.p99_ms / unloaded.p99_ms.max(1e-9);
    let refused_p99 = refused.p99_ms;
    let mut report = Report::new(
        "overload",
        args,
        vec![unloaded, capacity, admitted, refused],
    );
    report.fact("admitted p99 over unloaded p99", admitted_over_unloaded);
    report.fact("refused p99 (ms)", refused_p99);
    Ok(report)
}

/// Loads the demo tenant (a second load the same day stores nothing new) and waits until
/// analytics has all of it: until the funnel reads the same twice, half a second apart.
async fn load_tenant(args: &BenchArgs, mut analytics: Analytics) -> Result<(), BoxError> {
    let mut demo = crate::demo::defaults()?;
    demo.contacts = args.demo_contacts;
    demo.client = args.client.clone();
    crate::demo::load(&demo).await?.complete()?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = None;
    loop {
        let funnel = analytics
            .get_funnel(super::reports::funnel())
            .await
            .map_err(|s| crate::client::explain(&s))?
            .into_inner();
        if last.as_ref() == Some(&funnel) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("analytics did not settle within 120 s of the demo's load".into());
        }
        last = Some(funnel);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
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
