//! Rows to domain values and back.

use std::collections::BTreeMap;

use sea_orm::ActiveValue::Set;

use super::entities::{contact, interaction};
use crate::domain::{Consent, Contact, ContactFields, Interaction, Money};

fn json_map(map: &BTreeMap<String, String>) -> serde_json::Value {
    serde_json::to_value(map).expect("a string map always serialises")
}

fn map_json(value: serde_json::Value) -> BTreeMap<String, String> {
    serde_json::from_value(value).unwrap_or_default()
}

pub(crate) fn contact_from_row(row: contact::Model) -> Contact {
    Contact {
        id: row.id,
        fields: ContactFields {
            email: row.email,
            first_name: row.first_name,
            last_name: row.last_name,
            phone: row.phone,
            company: row.company,
            job_title: row.job_title,
            country: row.country,
            city: row.city,
            source: row.source,
            campaign: row.campaign,
            attributes: map_json(row.attributes),
            consent: Consent {
                email_opt_in: row.email_opt_in,
                email_updated_at: row.email_consent_at,
                sms_opt_in: row.sms_opt_in,
                sms_updated_at: row.sms_consent_at,
            },
        },
        created_at: row.created_at,
        updated_at: row.updated_at,
        version: row.version,
    }
}

pub(crate) fn contact_row(tenant: &str, c: &Contact) -> contact::ActiveModel {
    let f = &c.fields;
    contact::ActiveModel {
        tenant_id: Set(tenant.to_owned()),
        id: Set(c.id.clone()),
        email: Set(f.email.clone()),
        first_name: Set(f.first_name.clone()),
        last_name: Set(f.last_name.clone()),
        phone: Set(f.phone.clone()),
        company: Set(f.company.clone()),
        job_title: Set(f.job_title.clone()),
        country: Set(f.country.clone()),
        city: Set(f.city.clone()),
        source: Set(f.source.clone()),
        campaign: Set(f.campaign.clone()),
        attributes: Set(json_map(&f.attributes)),
        email_opt_in: Set(f.consent.email_opt_in),
        email_consent_at: Set(f.consent.email_updated_at),
        sms_opt_in: Set(f.consent.sms_opt_in),
        sms_consent_at: Set(f.consent.sms_updated_at),
        created_at: Set(c.created_at),
        updated_at: Set(c.updated_at),
        version: Set(c.version),
    }
}

pub(crate) fn interaction_from_row(row: interaction::Model) -> Interaction {
    Interaction {
        event_id: row.event_id,
        contact_id: row.contact_id,
        kind: row.kind,
        occurred_at: row.occurred_at,
        value: row.amount_micros.map(|amount_micros| Money {
            amount_micros,
            currency: row.currency,
        }),
        campaign: row.campaign,
        channel: row.channel,
        properties: map_json(row.properties),
        recorded_at: row.recorded_at,
    }
}

pub(crate) fn interaction_row(tenant: &str, i: &Interaction) -> interaction::ActiveModel {
    interaction::ActiveModel {
        tenant_id: Set(tenant.to_owned()),
        event_id: Set(i.event_id.clone()),
        contact_id: Set(i.contact_id.clone()),
        kind: Set(i.kind.clone()),
        occurred_at: Set(i.occurred_at),
        amount_micros: Set(i.value.as_ref().map(|v| v.amount_micros)),
        currency: Set(i
            .value
            .as_ref()
            .map(|v| v.currency.clone())
            .unwrap_or_default()),
        campaign: Set(i.campaign.clone()),
        channel: Set(i.channel.clone()),
        properties: Set(json_map(&i.properties)),
        recorded_at: Set(i.recorded_at),
    }
}
