//! `clm demo`: loads a synthetic tenant through the public API (contacts, campaign spend, a
//! history of interactions with realistic funnel drop-off), the same for the same seed.

mod tenant;

use std::collections::HashMap;
use std::time::Instant;

use futures_util::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use clm_proto::contacts::v1 as pb;

use crate::cli::DemoArgs;
use crate::client::{Contacts, connect_analytics, connect_contacts, explain, table};
use crate::run::BoxError;
pub(crate) use tenant::Plan;

/// Contacts per ImportContacts message and interactions per RecordInteractions message.
const BATCH: usize = 500;

/// Contacts per ImportContacts call (and a tenth of that per RecordInteractions call,
/// about 5,000 interactions).
const CONTACTS_PER_CALL: u64 = 5_000;

pub(crate) async fn demo(args: DemoArgs) -> Result<(), BoxError> {
    let started = Instant::now();
    let loaded = load(&args).await?;
    let mut summary = table::new(&["what", "stored", "already there", "rejected"]);
    summary.add_row(vec![
        "contacts".to_owned(),
        loaded.imported.created.to_string(),
        loaded.imported.updated.to_string(),
        loaded.imported.rejected.to_string(),
    ]);
    summary.add_row(vec![
        "spend periods".to_owned(),
        loaded.spend.0.to_string(),
        loaded.spend.1.to_string(),
        "0".to_owned(),
    ]);
    summary.add_row(vec![
        "interactions".to_owned(),
        loaded.recorded.accepted.to_string(),
        loaded.recorded.duplicates.to_string(),
        loaded.recorded.rejected_count.to_string(),
    ]);
    println!("{summary}");
    println!(
        "seed {}, {} days up to {}, loaded in {:.1} s; scores, stages and reports follow as the \
         services deliver their events (`clm outbox` shows what is still on its way)",
        loaded.plan.seed,
        loaded.plan.days,
        chrono::DateTime::from_timestamp_micros(loaded.plan.anchor).unwrap_or_default(),
        started.elapsed().as_secs_f64()
    );
    loaded.complete()
}

/// What a load stored.
pub(crate) struct Loaded {
    plan: Plan,
    imported: pb::ImportContactsResponse,
    /// Spend periods (stored, already there).
    spend: (u64, u64),
    recorded: pb::RecordInteractionsResponse,
}

impl Loaded {
    /// An error when any generated row was rejected.
    pub(crate) fn complete(&self) -> Result<(), BoxError> {
        if self.imported.rejected + self.recorded.rejected_count > 0 {
            return Err("some generated rows were rejected: see the table above".into());
        }
        Ok(())
    }
}

/// Loads the demo tenant `args` describes (progress bars on standard error, nothing on
/// standard output).
pub(crate) async fn load(args: &DemoArgs) -> Result<Loaded, BoxError> {
    let plan = Plan {
        seed: args.seed,
        days: args.days,
        anchor: match &args.as_of {
            Some(text) => crate::client::parse_time(text)?.timestamp_micros(),
            // The start of today (UTC): the same seed gives the same data all day.
            None => chrono::Utc::now().timestamp_micros() / DAY * DAY,
        },
    };
    let bars = MultiProgress::new();
    let mut contacts = connect_contacts(&args.client).await?;

    let imported = import(&mut contacts, &plan, args.contacts, &bars).await?;
    let filter = format!("attributes.demo_seed = \"{}\"", plan.seed);
    let ids = crate::client::ids_by_email(&mut contacts, &filter).await?;
    let spend = record_spend(args, &plan, &bars).await?;
    let recorded =
        record_interactions(&contacts, &plan, args.contacts, &ids, args.streams, &bars).await?;
    bars.clear()?;
    Ok(Loaded {
        plan,
        imported,
        spend,
        recorded,
    })
}

const DAY: i64 = 86_400_000_000;

/// The demo's arguments as `clm demo` takes them without any.
pub(crate) fn defaults() -> Result<DemoArgs, BoxError> {
    use clap::Parser;
    #[derive(Parser)]
    struct Defaults {
        #[command(flatten)]
        demo: DemoArgs,
    }
    Ok(Defaults::try_parse_from(["demo"])?.demo)
}

/// `clm up --demo`: the demo's defaults against the suite `clm up` starts, with a token of
/// every public scope when tokens are checked.
pub(crate) fn for_up(up: &crate::cli::UpArgs) -> Result<DemoArgs, BoxError> {
    if up.server.tls.tls_cert_file.is_some() {
        return Err("--demo runs without TLS only; load the tenant with `clm demo`".into());
    }
    let settings = up.server.auth.settings();
    let token = if settings.secret.is_some() || settings.public_key_file.is_some() {
        let issuer = clm_runtime::auth::TokenIssuer::from_settings(&settings)?;
        Some(issuer.issue(&clm_runtime::auth::IssueOptions {
            subject: "clm-demo".to_owned(),
            tenant: "default".to_owned(),
            scopes: clm_runtime::auth::public_scopes(),
            ttl: std::time::Duration::from_secs(3_600),
        })?)
    } else {
        None
    };
    let mut demo = defaults()?;
    demo.client.contacts_addr = up.contacts_addr.to_string();
    demo.client.scoring_addr = up.scoring_addr.to_string();
    demo.client.lifecycle_addr = up.lifecycle_addr.to_string();
    demo.client.analytics_addr = up.analytics_addr.to_string();
    demo.client.tenant = "default".to_owned();
    demo.client.token = token;
    (
        demo.client.tls_ca_file,
        demo.client.tls_cert_file,
        demo.client.tls_key_file,
    ) = (None, None, None);
    Ok(demo)
}

fn bar(bars: &MultiProgress, what: &str, total: u64) -> Result<ProgressBar, BoxError> {
    let bar = bars.add(ProgressBar::new(total));
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{what:<13} [{{bar:40}}] {{pos}}/{{len}} {{per_sec}} eta {{eta}}"
        ))?
        .progress_chars("=> "),
    );
    Ok(bar)
}

/// Imports the contacts in batches over one stream (existing ones, by email, are updated).
async fn import(
    contacts: &mut Contacts,
    plan: &Plan,
    count: u64,
    bars: &MultiProgress,
) -> Result<pb::ImportContactsResponse, BoxError> {
    let progress = bar(bars, "contacts", count)?;
    let mut sum = pb::ImportContactsResponse::default();
    // One call per CONTACTS_PER_CALL contacts keeps each call well inside the servers'
    // request timeout.
    for first in (0..count).step_by(CONTACTS_PER_CALL as usize) {
        let (plan, progress) = (*plan, progress.clone());
        let last = (first + CONTACTS_PER_CALL).min(count);
        let batches = futures_util::stream::iter(first..last)
            .chunks(BATCH)
            .map(move |chunk| {
                progress.inc(chunk.len() as u64);
                pb::ImportContactsRequest {
                    contacts: chunk.into_iter().map(|i| plan.contact(i).contact).collect(),
                    update_existing: true,
                }
            });
        let reply = contacts
            .import_contacts(batches)
            .await
            .map_err(|s| explain(&s))?
            .into_inner();
        sum.created += reply.created;
        sum.updated += reply.updated;
        sum.rejected += reply.rejected;
        sum.rejected_rows.extend(reply.rejected_rows);
    }
    Ok(sum)
}

/// Records the campaigns' spend; returns (stored, already there).
async fn record_spend(
    args: &DemoArgs,
    plan: &Plan,
    bars: &MultiProgress,
) -> Result<(u64, u64), BoxError> {
    let mut analytics = connect_analytics(&args.client).await?;
    let requests = plan.spend(args.contacts);
    let progress = bar(bars, "spend", requests.len() as u64)?;
    let (mut stored, mut duplicates) = (0, 0);
    for request in requests {
        let reply = analytics
            .record_spend(request)
            .await
            .map_err(|s| explain(&s))?
            .into_inner();
        if reply.duplicate {
            duplicates += 1;
        } else {
            stored += 1;
        }
        progress.inc(1);
    }
    Ok((stored, duplicates))
}

fn add(sum: &mut pb::RecordInteractionsResponse, reply: pb::RecordInteractionsResponse) {
    sum.accepted += reply.accepted;
    sum.duplicates += reply.duplicates;
    sum.rejected_count += reply.rejected_count;
    sum.rejected.extend(reply.rejected);
}

/// Streams every contact's interactions from `streams` concurrent workers, each making
/// successive RecordInteractions calls (a contact's events always in one call, in time
/// order); returns the sums.
async fn record_interactions(
    contacts: &Contacts,
    plan: &Plan,
    count: u64,
    ids: &HashMap<String, String>,
    streams: usize,
    bars: &MultiProgress,
) -> Result<pb::RecordInteractionsResponse, BoxError> {
    let total: usize = (0..count).map(|i| plan.contact(i).interactions.len()).sum();
    let progress = bar(bars, "interactions", total as u64)?;
    let streams = streams.max(1) as u64;
    let mut calls = tokio::task::JoinSet::new();
    for stream in 0..streams {
        let (plan, mut contacts, progress) = (*plan, contacts.clone(), progress.clone());
        let mut timelines = Vec::new();
        for index in (stream..count).step_by(streams as usize) {
            let generated = plan.contact(index);
            let id = ids.get(&generated.contact.email).ok_or_else(|| {
                format!(
                    "contact {} was not stored: was it rejected?",
                    generated.contact.email
                )
            })?;
            timelines.push((id.clone(), index));
        }
        calls.spawn(async move {
            let mut sum = pb::RecordInteractionsResponse::default();
            for group in timelines.chunks(CONTACTS_PER_CALL as usize / 10) {
                let progress = progress.clone();
                let batches = futures_util::stream::iter(group.to_vec())
                    .flat_map(move |(id, index)| {
                        let interactions = plan.contact(index).interactions;
                        futures_util::stream::iter(interactions.into_iter().map(move |mut i| {
                            i.contact_id.clone_from(&id);
                            i
                        }))
                    })
                    .chunks(BATCH)
                    .map(move |interactions| {
                        progress.inc(interactions.len() as u64);
                        pb::RecordInteractionsRequest { interactions }
                    });
                add(
                    &mut sum,
                    contacts.record_interactions(batches).await?.into_inner(),
                );
            }
            Ok::<_, tonic::Status>(sum)
        });
    }
    let mut sum = pb::RecordInteractionsResponse::default();
    while let Some(reply) = calls.join_next().await {
        add(&mut sum, reply?.map_err(|s| explain(&s))?);
    }
    Ok(sum)
}
