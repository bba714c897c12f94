//! An interaction and the checks it must pass before it is stored.

use std::collections::BTreeMap;

use clm_runtime::FieldViolation;

use super::contact::{MAX_ATTRIBUTE_VALUE, MAX_ATTRIBUTES, attribute_key_problem};
use super::time::{DAY, Micros};

/// Event ids starting with this are the suite's own (contact changes).
pub const RESERVED_EVENT_PREFIX: &str = "clm:";

/// The largest accepted amount: one billion units of any currency.
pub const MAX_AMOUNT_MICROS: i64 = 1_000_000_000 * 1_000_000;
/// How far ahead of the server's clock `occurred_at` may be (clock skew, time zones).
pub const MAX_FUTURE: Micros = DAY;
/// The earliest accepted `occurred_at`: 1970-01-01.
pub const MIN_OCCURRED_AT: Micros = 0;

/// Money in micros of a currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Money {
    /// Millionths of the major unit.
    pub amount_micros: i64,
    /// ISO 4217 code.
    pub currency: String,
}

/// One recorded interaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interaction {
    /// Idempotency key.
    pub event_id: String,
    /// The contact.
    pub contact_id: String,
    /// The interaction type.
    pub kind: String,
    /// When it happened.
    pub occurred_at: Micros,
    /// Money involved.
    pub value: Option<Money>,
    /// Campaign.
    pub campaign: String,
    /// Channel.
    pub channel: String,
    /// Properties.
    pub properties: BTreeMap<String, String>,
    /// When it was stored.
    pub recorded_at: Micros,
}

/// Validates an interaction against the clock `now`, naming fields under `prefix`
/// (`interaction`, `interactions[7]`). `occurred_at` is `None` when the caller left it out.
pub fn validate(
    interaction: &Interaction,
    occurred_at_given: bool,
    prefix: &str,
    now: Micros,
) -> Vec<FieldViolation> {
    let mut violations = Vec::new();
    let mut bad = |field: &str, description: &str| {
        violations.push(FieldViolation::new(
            format!("{prefix}.{field}"),
            description,
        ));
    };
    let id = &interaction.event_id;
    if id.is_empty() || id.len() > 128 || id.chars().any(char::is_control) {
        bad("event_id", "must be 1 to 128 printable characters");
    } else if id.starts_with(RESERVED_EVENT_PREFIX) {
        bad(
            "event_id",
            "must not start with \"clm:\" (reserved for the suite's own events)",
        );
    }
    if interaction.contact_id.is_empty() {
        bad("contact_id", "is required");
    } else if interaction.contact_id.len() > 64 {
        bad("contact_id", "is not a contact id");
    }
    let kind = &interaction.kind;
    let kind_ok = (1..=64).contains(&kind.len())
        && kind.starts_with(|c: char| c.is_ascii_lowercase())
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !kind_ok {
        bad(
            "type",
            "must be 1 to 64 characters of a-z, 0-9 and '_', starting with a letter",
        );
    }
    if !occurred_at_given {
        bad("occurred_at", "is required");
    } else if interaction.occurred_at < MIN_OCCURRED_AT {
        bad("occurred_at", "is before 1970");
    } else if interaction.occurred_at > now + MAX_FUTURE {
        bad("occurred_at", "is more than 24 hours in the future");
    }
    if let Some(value) = &interaction.value {
        if value.amount_micros < 0 {
            bad(
                "value.amount_micros",
                "must not be negative (record a refund as its own type)",
            );
        } else if value.amount_micros > MAX_AMOUNT_MICROS {
            bad("value.amount_micros", "is larger than one billion units");
        }
        if !(value.currency.len() == 3 && value.currency.bytes().all(|b| b.is_ascii_uppercase())) {
            bad("value.currency", "must be an ISO 4217 code such as \"EUR\"");
        }
    }
    for (name, text) in [
        ("campaign", &interaction.campaign),
        ("channel", &interaction.channel),
    ] {
        if text.chars().count() > 256 {
            bad(name, "is longer than 256 characters");
        }
    }
    if interaction.properties.len() > MAX_ATTRIBUTES {
        bad("properties", "has more than 64 entries");
    }
    for (key, value) in &interaction.properties {
        if let Some(problem) = attribute_key_problem(key) {
            bad(&format!("properties[{key:?}]"), problem);
        } else if value.chars().count() > MAX_ATTRIBUTE_VALUE {
            bad(
                &format!("properties.{key}"),
                "is longer than 1024 characters",
            );
        }
    }
    if kind == "nps_response" {
        let score = interaction
            .properties
            .get("score")
            .and_then(|s| s.parse::<u8>().ok());
        if score.is_none_or(|s| s > 10) {
            bad(
                "properties.score",
                "an nps_response needs a score from 0 to 10",
            );
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn purchase() -> Interaction {
        Interaction {
            event_id: "e1".into(),
            contact_id: "c1".into(),
            kind: "purchase".into(),
            occurred_at: 1_000,
            value: Some(Money {
                amount_micros: 12_500_000,
                currency: "EUR".into(),
            }),
            campaign: String::new(),
            channel: "web".into(),
            properties: BTreeMap::new(),
            recorded_at: 0,
        }
    }

    fn fields_of(i: &Interaction, now: Micros) -> Vec<String> {
        validate(i, true, "interaction", now)
            .into_iter()
            .map(|v| v.field)
            .collect()
    }

    #[test]
    fn a_plain_purchase_is_valid() {
        assert!(fields_of(&purchase(), 2_000).is_empty());
    }

    #[test]
    fn negative_and_absurd_values_are_refused() {
        let mut i = purchase();
        i.value.as_mut().unwrap().amount_micros = -1;
        assert_eq!(fields_of(&i, 2_000), ["interaction.value.amount_micros"]);
        i.value.as_mut().unwrap().amount_micros = MAX_AMOUNT_MICROS + 1;
        assert_eq!(fields_of(&i, 2_000), ["interaction.value.amount_micros"]);
    }

    #[test]
    fn far_future_is_refused_but_clock_skew_is_not() {
        let mut i = purchase();
        i.occurred_at = 2_000 + MAX_FUTURE - 1;
        assert!(fields_of(&i, 2_000).is_empty());
        i.occurred_at = 2_000 + 365 * DAY;
        assert_eq!(fields_of(&i, 2_000), ["interaction.occurred_at"]);
    }

    #[test]
    fn nps_needs_a_score_in_range() {
        let mut i = purchase();
        i.kind = "nps_response".into();
        i.value = None;
        assert_eq!(fields_of(&i, 2_000), ["interaction.properties.score"]);
        i.properties.insert("score".into(), "11".into());
        assert_eq!(fields_of(&i, 2_000), ["interaction.properties.score"]);
        i.properties.insert("score".into(), "9".into());
        assert!(fields_of(&i, 2_000).is_empty());
    }
}
