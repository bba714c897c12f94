//! The contact events written to the outbox with every change, for scoring (and later
//! analytics). Names, email and phone never leave the service.

use prost::Message;

use clm_outbox::NewMessage;
use clm_proto::common::v1 as pb;

use crate::domain::time::Micros;
use crate::domain::{Contact, Interaction};

/// The receiving services of contact events.
pub const TARGETS: &[&str] = &["scoring", "analytics"];

use crate::domain::interaction::RESERVED_EVENT_PREFIX;

fn timestamp(micros: Micros) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1000) as i32,
    }
}

fn fan_out(tenant: &str, event: &pb::ContactEvent) -> impl Iterator<Item = NewMessage> {
    let payload = event.encode_to_vec();
    let tenant = tenant.to_owned();
    let event_id = event.event_id.clone();
    TARGETS.iter().map(move |target| NewMessage {
        target,
        tenant_id: tenant.clone(),
        event_id: event_id.clone(),
        payload: payload.clone(),
    })
}

fn change_id() -> String {
    format!("{RESERVED_EVENT_PREFIX}contact:{}", uuid::Uuid::now_v7())
}

/// The attributes downstream rules may use: the descriptive columns and every custom
/// attribute (a built-in wins over a custom attribute of the same name).
fn attributes(contact: &Contact) -> std::collections::HashMap<String, String> {
    let f = &contact.fields;
    let mut map: std::collections::HashMap<String, String> =
        f.attributes.clone().into_iter().collect();
    for (key, value) in [
        ("company", &f.company),
        ("job_title", &f.job_title),
        ("country", &f.country),
        ("city", &f.city),
        ("source", &f.source),
        ("campaign", &f.campaign),
    ] {
        if value.is_empty() {
            map.remove(key);
        } else {
            map.insert(key.to_owned(), value.clone());
        }
    }
    map
}

/// A contact was created (`created`) or changed.
pub(crate) fn upserted(
    tenant: &str,
    contact: &Contact,
    created: bool,
    now: Micros,
) -> Vec<NewMessage> {
    let event = pb::ContactEvent {
        event_id: change_id(),
        contact_id: contact.id.clone(),
        occurred_at: Some(timestamp(now)),
        kind: Some(pb::contact_event::Kind::Upserted(pb::ContactUpserted {
            attributes: attributes(contact),
            created_at: Some(timestamp(contact.created_at)),
            created,
        })),
    };
    fan_out(tenant, &event).collect()
}

/// `duplicate_id` was merged into `survivor_id`.
pub(crate) fn merged(
    tenant: &str,
    survivor_id: &str,
    duplicate_id: &str,
    now: Micros,
) -> Vec<NewMessage> {
    let event = pb::ContactEvent {
        event_id: change_id(),
        contact_id: survivor_id.to_owned(),
        occurred_at: Some(timestamp(now)),
        kind: Some(pb::contact_event::Kind::Merged(pb::ContactsMerged {
            duplicate_id: duplicate_id.to_owned(),
        })),
    };
    fan_out(tenant, &event).collect()
}

/// The contact was erased.
pub(crate) fn erased(tenant: &str, contact_id: &str, now: Micros) -> Vec<NewMessage> {
    let event = pb::ContactEvent {
        event_id: change_id(),
        contact_id: contact_id.to_owned(),
        occurred_at: Some(timestamp(now)),
        kind: Some(pb::contact_event::Kind::Erased(pb::ContactErased {})),
    };
    fan_out(tenant, &event).collect()
}

/// An interaction was recorded.
pub(crate) fn interaction(tenant: &str, i: &Interaction) -> Vec<NewMessage> {
    let event = pb::ContactEvent {
        event_id: i.event_id.clone(),
        contact_id: i.contact_id.clone(),
        occurred_at: Some(timestamp(i.occurred_at)),
        kind: Some(pb::contact_event::Kind::Interaction(
            pb::InteractionRecorded {
                r#type: i.kind.clone(),
                value: i.value.as_ref().map(|v| clm_proto::common::v1::Money {
                    amount_micros: v.amount_micros,
                    currency: v.currency.clone(),
                }),
                campaign: i.campaign.clone(),
                channel: i.channel.clone(),
                properties: i.properties.clone().into_iter().collect(),
            },
        )),
    };
    fan_out(tenant, &event).collect()
}
