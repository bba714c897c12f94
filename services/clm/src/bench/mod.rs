//! `clm bench`: load against a running suite, with a baseline measured in the same run so
//! the numbers mean something on any machine.

mod ingest;
mod overload;
mod reports;
mod score_read;
mod stats;

use std::future::Future;
use std::time::{Duration, Instant};

use crate::cli::{BenchArgs, Workload};
use crate::run::BoxError;
use stats::{Samples, Summary};

pub(crate) async fn bench(args: BenchArgs) -> Result<(), BoxError> {
    let workloads = match args.workload {
        Workload::All => vec![
            Workload::Ingest,
            Workload::ScoreRead,
            Workload::Reports,
            Workload::Overload,
        ],
        one => vec![one],
    };
    let mut reports = Vec::new();
    for workload in workloads {
        let report = match workload {
            Workload::Ingest => ingest::run(&args).await?,
            Workload::ScoreRead => score_read::run(&args).await?,
            Workload::Reports => reports::run(&args).await?,
            Workload::Overload => overload::run(&args).await?,
            Workload::All => unreachable!("expanded above"),
        };
        if !args.json {
            print(&report);
        }
        reports.push(report);
    }
    if args.json {
        match reports.as_slice() {
            [one] => println!("{}", serde_json::to_string_pretty(one)?),
            all => println!("{}", serde_json::to_string_pretty(all)?),
        }
    }
    Ok(())
}

/// What a workload measured.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Report {
    workload: &'static str,
    concurrency: usize,
    duration_secs: f64,
    /// The baseline first, then the measured operations.
    rows: Vec<Summary>,
    /// Each measured row's throughput over the baseline's.
    ratios: Vec<(String, f64)>,
    /// Further numbers of the workload (name, value).
    facts: Vec<(String, f64)>,
    /// The line printed above the table.
    #[serde(skip)]
    header: String,
}

impl Report {
    fn new(workload: &'static str, args: &BenchArgs, rows: Vec<Summary>) -> Self {
        let baseline = rows.first().map_or(0.0, |r| r.per_second);
        let ratios = rows
            .iter()
            .skip(1)
            .map(|r| (r.name.clone(), r.per_second / baseline.max(1e-9)))
            .collect();
        Self {
            workload,
            concurrency: args.concurrency,
            duration_secs: args.duration.as_secs_f64(),
            rows,
            ratios,
            facts: Vec::new(),
            header: format!(
                "{workload}: {} concurrent callers, {:.1} s per row",
                args.concurrency,
                args.duration.as_secs_f64()
            ),
        }
    }

    fn fact(&mut self, name: &str, value: f64) {
        self.facts.push((name.to_owned(), value));
    }
}

fn print(report: &Report) {
    println!("{}", report.header);
    let mut table = crate::client::table::new(&[
        "operation",
        "calls/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "errors",
        "vs baseline",
    ]);
    for (i, row) in report.rows.iter().enumerate() {
        let errors: Vec<String> = row.errors.iter().map(|(c, n)| format!("{c} {n}")).collect();
        let ratio = match i {
            0 => "baseline".to_owned(),
            _ => format!("{:.2}", report.ratios[i - 1].1),
        };
        table.add_row(vec![
            row.name.clone(),
            format!("{:.0}", row.per_second),
            format!("{:.2}", row.p50_ms),
            format!("{:.2}", row.p90_ms),
            format!("{:.2}", row.p99_ms),
            format!("{:.2}", row.p999_ms),
            if errors.is_empty() {
                "0".into()
            } else {
                errors.join(", ")
            },
            ratio,
        ]);
    }
    println!("{table}");
    for (name, value) in &report.facts {
        println!("{name}: {value:.2}");
    }
}

/// The baseline row: the standard health check of the server at `addr`, measured like the
/// operations beside it.
async fn health_baseline(args: &BenchArgs, addr: &str, name: &str) -> Result<Summary, BoxError> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let health = HealthClient::new(crate::client::channel(&args.client, addr, name).await?);
    Ok(measure(
        "health check (baseline)",
        args.concurrency,
        args.duration,
        move |_, _| {
            let mut health = health.clone();
            async move {
                health
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                    .map(drop)
            }
        },
    )
    .await)
}

/// Runs `call` from `concurrency` workers for `duration`; `call(worker, n)` is the n-th call
/// of a worker.
async fn measure<F, Fut>(name: &str, concurrency: usize, duration: Duration, call: F) -> Summary
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), tonic::Status>> + Send,
{
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let call = call.clone();
        workers.spawn(async move {
            let mut samples = Samples::default();
            let mut n = 0;
            while Instant::now() < deadline {
                let at = Instant::now();
                match call(worker, n).await {
                    Ok(()) => samples.ok(at.elapsed()),
                    Err(status) => samples.failed(status.code()),
                }
                n += 1;
            }
            samples
        });
    }
    let mut all = Samples::default();
    while let Some(samples) = workers.join_next().await {
        all.merge(samples.unwrap_or_default());
    }
    all.summary(name, started.elapsed())
}
