//! The signals scoring sends lifecycle through its outbox: every interaction (stage rules
//! and segments count them), attribute changes, merges, erasures, and the default model's
//! score after each change (with the band before and after).

use std::collections::BTreeMap;

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

fn message(tenant: &str, signal: &pb::Signal) -> NewMessage {
    NewMessage {
        target: TARGET,
        tenant_id: tenant.to_owned(),
        event_id: signal.event_id.clone(),
        payload: signal.encode_to_vec(),
    }
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
    tenant: &str,
    event_id: &str,
    contact: &str,
    at: Micros,
    kind: &str,
    properties: &BTreeMap<String, String>,
    value: Option<&(i64, String)>,
) -> NewMessage {
    let kind = pb::signal::Kind::Interaction(pb::InteractionSignal {
        r#type: kind.to_owned(),
        value: value.map(|(amount_micros, currency)| Money {
            amount_micros: *amount_micros,
            currency: currency.clone(),
        }),
        properties: properties.clone().into_iter().collect(),
    });
    message(tenant, &signal(event_id, contact, at, kind))
}

pub(crate) fn attributes(
    tenant: &str,
    event_id: &str,
    contact: &str,
    at: Micros,
    attributes: &BTreeMap<String, String>,
) -> NewMessage {
    let kind = pb::signal::Kind::Attributes(pb::AttributesChanged {
        attributes: attributes.clone().into_iter().collect(),
    });
    message(tenant, &signal(event_id, contact, at, kind))
}

pub(crate) fn merged(
    tenant: &str,
    event_id: &str,
    survivor: &str,
    duplicate: &str,
    at: Micros,
) -> NewMessage {
    let kind = pb::signal::Kind::MergedDuplicateId(duplicate.to_owned());
    message(tenant, &signal(event_id, survivor, at, kind))
}

pub(crate) fn erased(tenant: &str, event_id: &str, contact: &str, at: Micros) -> NewMessage {
    message(
        tenant,
        &signal(event_id, contact, at, pb::signal::Kind::Erased(true)),
    )
}

/// The score after `change` (of the default model), once per cause.
pub(crate) fn score(tenant: &str, change: &Change, now: Micros) -> NewMessage {
    let kind = pb::signal::Kind::BandChanged(pb::BandChanged {
        model_id: change.model_id.clone(),
        from_band: change.band_before.clone(),
        to_band: change.band_after.clone(),
        total: change.state.at(now).0,
    });
    let event_id = format!("clm:score:{}:{}", change.contact_id, change.cause);
    message(tenant, &signal(&event_id, &change.contact_id, now, kind))
}
