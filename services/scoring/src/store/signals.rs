//! The signals scoring sends lifecycle through its outbox: every interaction (stage rules
//! and segments count them), attribute changes, merges, erasures, and the default model's
//! score after each change (with the band before and after). A score changed by an
//! interaction rides on that interaction's signal: one signal, one outbox row and one
//! dedupe row downstream per interaction instead of two.

use std::collections::{BTreeMap, HashMap};

use prost::Message;

use clm_outbox::NewMessage;
use clm_proto::common::v1::Money;
use clm_proto::lifecycle::v1 as pb;

use super::Change;
use crate::domain::Micros;

/// The receiving service of signals.
pub const TARGET: &str = "lifecycle";

fn timestamp(micros: Micros) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1000) as i32,
    }
}

/// The outbox rows of `signals`, in order.
pub(crate) fn messages(tenant: &str, signals: Vec<pb::Signal>) -> Vec<NewMessage> {
    signals
        .into_iter()
        .map(|signal| NewMessage {
            target: TARGET,
            tenant_id: tenant.to_owned(),
            payload: signal.encode_to_vec(),
            event_id: signal.event_id,
        })
        .collect()
}

fn signal(event_id: &str, contact: &str, at: Micros, kind: pb::signal::Kind) -> pb::Signal {
    pb::Signal {
        event_id: event_id.to_owned(),
        contact_id: contact.to_owned(),
        occurred_at: Some(timestamp(at)),
        kind: Some(kind),
    }
}

pub(crate) fn interaction(
    event_id: &str,
    contact: &str,
    at: Micros,
    kind: &str,
    properties: &BTreeMap<String, String>,
    value: Option<&(i64, String)>,
) -> pb::Signal {
    let kind = pb::signal::Kind::Interaction(pb::InteractionSignal {
        r#type: kind.to_owned(),
        value: value.map(|(amount_micros, currency)| Money {
            amount_micros: *amount_micros,
            currency: currency.clone(),
        }),
        properties: properties.clone().into_iter().collect(),
        score: None,
    });
    signal(event_id, contact, at, kind)
}

pub(crate) fn attributes(
    event_id: &str,
    contact: &str,
    at: Micros,
    attributes: &BTreeMap<String, String>,
) -> pb::Signal {
    let kind = pb::signal::Kind::Attributes(pb::AttributesChanged {
        attributes: attributes.clone().into_iter().collect(),
    });
    signal(event_id, contact, at, kind)
}

pub(crate) fn merged(event_id: &str, survivor: &str, duplicate: &str, at: Micros) -> pb::Signal {
    let kind = pb::signal::Kind::MergedDuplicateId(duplicate.to_owned());
    signal(event_id, survivor, at, kind)
}

pub(crate) fn erased(event_id: &str, contact: &str, at: Micros) -> pb::Signal {
    signal(event_id, contact, at, pb::signal::Kind::Erased(true))
}

/// Adds the scores after `changes` (of the default model) to `signals`: on the signal of
/// the interaction that caused each, where it is among them, else as a signal of its own
/// (once per cause).
pub(crate) fn add_scores(signals: &mut Vec<pb::Signal>, changes: &[&Change], now: Micros) {
    let interactions: HashMap<String, usize> = signals
        .iter()
        .enumerate()
        .filter(|(_, s)| matches!(s.kind, Some(pb::signal::Kind::Interaction(_))))
        .map(|(at, s)| (s.event_id.clone(), at))
        .collect();
    for change in changes {
        let score = pb::BandChanged {
            model_id: change.model_id.clone(),
            from_band: change.band_before.clone(),
            to_band: change.band_after.clone(),
            total: change.state.at(now).0,
        };
        let cause = interactions
            .get(&change.cause)
            .and_then(|at| match &mut signals[*at].kind {
                Some(pb::signal::Kind::Interaction(i)) => Some(i),
                _ => None,
            });
        match cause {
            Some(interaction) => interaction.score = Some(score),
            None => {
                let event_id = format!("clm:score:{}:{}", change.contact_id, change.cause);
                let kind = pb::signal::Kind::BandChanged(score);
                signals.push(signal(&event_id, &change.contact_id, now, kind));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fold::ScoreState;

    fn change(contact: &str, cause: &str, fit: f64) -> Change {
        Change {
            model_id: "default".into(),
            contact_id: contact.into(),
            state: ScoreState {
                ref_time: 0,
                fit: vec![("fit".into(), fit)],
                rules: Vec::new(),
                model_version: 1,
                updated_at: 0,
            },
            crossed: None,
            band_before: String::new(),
            band_after: "MQL".into(),
            cause: cause.into(),
        }
    }

    fn score_of(signal: &pb::Signal) -> Option<f64> {
        match signal.kind.as_ref()? {
            pb::signal::Kind::Interaction(i) => i.score.as_ref().map(|s| s.total),
            pb::signal::Kind::BandChanged(b) => Some(b.total),
            _ => None,
        }
    }

    #[test]
    fn a_score_rides_on_the_interaction_that_caused_it_else_goes_alone() {
        let mut signals = vec![
            interaction("e1", "c1", 1, "page_view", &BTreeMap::new(), None),
            attributes("e2", "c2", 2, &BTreeMap::new()),
            interaction("e3", "c3", 3, "purchase", &BTreeMap::new(), None),
        ];
        let changes = [
            change("c1", "e1", 10.0),
            change("c2", "e2", 20.0),
            change("c4", "rescore:default:2", 40.0),
        ];
        add_scores(&mut signals, &changes.iter().collect::<Vec<_>>(), 100);
        let ids: Vec<&str> = signals.iter().map(|s| s.event_id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "e1",
                "e2",
                "e3",
                "clm:score:c2:e2",
                "clm:score:c4:rescore:default:2"
            ]
        );
        let scores: Vec<Option<f64>> = signals.iter().map(score_of).collect();
        assert_eq!(
            scores,
            [Some(10.0), None, None, Some(20.0), Some(40.0)],
            "c3's interaction changed no score"
        );
    }
}
