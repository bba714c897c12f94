//! Proto messages to domain values and back.

use prost_types::Timestamp;

use clm_proto::common::v1 as common;
use clm_proto::contacts::v1 as pb;

use crate::domain::time::Micros;
use crate::domain::{Consent, Contact, ContactFields, Interaction, Money};

/// A proto timestamp as micros, or `None` when it is out of range.
pub(crate) fn micros(t: &Timestamp) -> Option<Micros> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        return None;
    }
    t.seconds
        .checked_mul(1_000_000)
        .and_then(|s| s.checked_add(i64::from(t.nanos / 1000)))
}

/// Micros as a proto timestamp.
pub(crate) fn timestamp(micros: Micros) -> Timestamp {
    Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1000) as i32,
    }
}

pub(crate) fn fields_from_proto(c: pb::Contact) -> ContactFields {
    let consent = c.consent.unwrap_or_default();
    ContactFields {
        email: c.email,
        first_name: c.first_name,
        last_name: c.last_name,
        phone: c.phone,
        company: c.company,
        job_title: c.job_title,
        country: c.country,
        city: c.city,
        source: c.source,
        campaign: c.campaign,
        attributes: c.attributes.into_iter().collect(),
        consent: Consent {
            email_opt_in: consent.email_opt_in,
            email_updated_at: consent.email_updated_at.as_ref().and_then(micros),
            sms_opt_in: consent.sms_opt_in,
            sms_updated_at: consent.sms_updated_at.as_ref().and_then(micros),
        },
    }
}

pub(crate) fn contact_to_proto(c: Contact) -> pb::Contact {
    let etag = c.etag();
    let f = c.fields;
    pb::Contact {
        id: c.id,
        email: f.email,
        first_name: f.first_name,
        last_name: f.last_name,
        phone: f.phone,
        company: f.company,
        job_title: f.job_title,
        country: f.country,
        city: f.city,
        source: f.source,
        campaign: f.campaign,
        attributes: f.attributes.into_iter().collect(),
        consent: Some(pb::Consent {
            email_opt_in: f.consent.email_opt_in,
            email_updated_at: f.consent.email_updated_at.map(timestamp),
            sms_opt_in: f.consent.sms_opt_in,
            sms_updated_at: f.consent.sms_updated_at.map(timestamp),
        }),
        created_at: Some(timestamp(c.created_at)),
        updated_at: Some(timestamp(c.updated_at)),
        etag,
    }
}

/// The domain interaction, and whether `occurred_at` was given (and in range).
pub(crate) fn interaction_from_proto(
    i: pb::Interaction,
    recorded_at: Micros,
) -> (Interaction, bool) {
    let occurred_at = i.occurred_at.as_ref().and_then(micros);
    let interaction = Interaction {
        event_id: i.event_id,
        contact_id: i.contact_id,
        kind: i.r#type,
        occurred_at: occurred_at.unwrap_or_default(),
        value: i.value.map(|v| Money {
            amount_micros: v.amount_micros,
            currency: v.currency,
        }),
        campaign: i.campaign,
        channel: i.channel,
        properties: i.properties.into_iter().collect(),
        recorded_at,
    };
    (interaction, occurred_at.is_some())
}

pub(crate) fn interaction_to_proto(i: Interaction) -> pb::Interaction {
    pb::Interaction {
        event_id: i.event_id,
        contact_id: i.contact_id,
        r#type: i.kind,
        occurred_at: Some(timestamp(i.occurred_at)),
        value: i.value.map(|v| common::Money {
            amount_micros: v.amount_micros,
            currency: v.currency,
        }),
        campaign: i.campaign,
        channel: i.channel,
        properties: i.properties.into_iter().collect(),
        recorded_at: Some(timestamp(i.recorded_at)),
    }
}

pub(crate) fn rejected(index: u64, field: String, reason: String) -> common::RejectedItem {
    common::RejectedItem {
        index,
        reason,
        field,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_including_before_1970() {
        for m in [0, 1, -1, 1_767_225_600_123_456, -86_400_000_001] {
            assert_eq!(micros(&timestamp(m)), Some(m));
        }
        assert_eq!(
            micros(&Timestamp {
                seconds: 0,
                nanos: -1
            }),
            None
        );
        assert_eq!(
            micros(&Timestamp {
                seconds: i64::MAX,
                nanos: 0
            }),
            None
        );
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn every_instant_survives_the_proto_round_trip(m in any::<i64>()) {
            prop_assert_eq!(micros(&timestamp(m)), Some(m));
        }

        #[test]
        fn any_proto_timestamp_is_converted_or_refused(seconds in any::<i64>(), nanos in any::<i32>()) {
            let t = Timestamp { seconds, nanos };
            if let Some(m) = micros(&t) {
                let back = timestamp(m);
                prop_assert_eq!(back.seconds, seconds);
                prop_assert_eq!(back.nanos, nanos / 1000 * 1000);
            } else {
                let in_range = seconds.checked_mul(1_000_000).is_some();
                prop_assert!(!(0..1_000_000_000).contains(&nanos) || !in_range || seconds > i64::MAX / 1_000_000 - 1);
            }
        }
    }
}
