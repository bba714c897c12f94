//! Proto messages to domain values and back.

use prost_types::{Duration, Timestamp};

use clm_proto::common::v1 as common;
use clm_proto::scoring::v1 as pb;

use crate::domain::Micros;
use crate::domain::fold::Standing;
use crate::domain::model::{CompiledModel, EventRule, FitRule, ModelSpec, ScoringModel, Threshold};
use crate::store::{Event, EventKind};

pub(crate) fn timestamp(micros: Micros) -> Timestamp {
    Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1000) as i32,
    }
}

fn micros_of_timestamp(t: &Timestamp) -> Option<Micros> {
    t.seconds
        .checked_mul(1_000_000)
        .and_then(|s| s.checked_add(i64::from(t.nanos / 1000)))
}

/// A duration in micros; out-of-range durations saturate and are refused by validation.
fn micros_of_duration(d: &Duration) -> Micros {
    d.seconds
        .saturating_mul(1_000_000)
        .saturating_add(i64::from(d.nanos / 1000))
}

fn duration(micros: Micros) -> Duration {
    Duration {
        seconds: micros / 1_000_000,
        nanos: ((micros % 1_000_000) * 1000) as i32,
    }
}

pub(crate) fn spec_from_proto(m: &pb::ScoringModel) -> ModelSpec {
    ModelSpec {
        display_name: m.display_name.trim().to_owned(),
        event_rules: m
            .event_rules
            .iter()
            .map(|r| EventRule {
                id: r.id.clone(),
                interaction_type: r.interaction_type.clone(),
                property_condition: r.property_condition.clone(),
                points: r.points,
                cap_count: u32::try_from(r.cap_count).unwrap_or(u32::MAX),
                cap_window: r.cap_window.as_ref().map_or(0, micros_of_duration),
                half_life: r.half_life.as_ref().map(micros_of_duration),
            })
            .collect(),
        fit_rules: m
            .fit_rules
            .iter()
            .map(|r| FitRule {
                id: r.id.clone(),
                attribute: r.attribute.clone(),
                condition: r.condition.clone(),
                points: r.points,
            })
            .collect(),
        thresholds: m
            .thresholds
            .iter()
            .map(|t| Threshold {
                name: t.name.clone(),
                points: t.points,
            })
            .collect(),
    }
}

pub(crate) fn model_to_proto(m: &ScoringModel) -> pb::ScoringModel {
    pb::ScoringModel {
        id: m.id.clone(),
        display_name: m.spec.display_name.clone(),
        event_rules: m
            .spec
            .event_rules
            .iter()
            .map(|r| pb::EventRule {
                id: r.id.clone(),
                interaction_type: r.interaction_type.clone(),
                property_condition: r.property_condition.clone(),
                points: r.points,
                cap_count: i32::try_from(r.cap_count).unwrap_or(i32::MAX),
                cap_window: (r.cap_window > 0).then(|| duration(r.cap_window)),
                half_life: r.half_life.map(duration),
            })
            .collect(),
        fit_rules: m
            .spec
            .fit_rules
            .iter()
            .map(|r| pb::FitRule {
                id: r.id.clone(),
                attribute: r.attribute.clone(),
                condition: r.condition.clone(),
                points: r.points,
            })
            .collect(),
        thresholds: m
            .spec
            .thresholds
            .iter()
            .map(|t| pb::Threshold {
                name: t.name.clone(),
                points: t.points,
            })
            .collect(),
        default: m.is_default,
        version: m.version,
        created_at: Some(timestamp(m.created_at)),
        updated_at: Some(timestamp(m.updated_at)),
        etag: m.etag(),
    }
}

/// A score as the API shows it; the contact's id moves into it (a reply of a hundred
/// scores copies none).
pub(crate) fn score_to_proto(
    contact_id: String,
    model: &CompiledModel,
    standing: &Standing,
) -> pb::Score {
    pb::Score {
        contact_id,
        model_id: model.id.clone(),
        total: standing.total,
        fit: standing.fit,
        engagement: standing.engagement,
        band: model.band(standing.total),
        model_version: standing.model_version,
        updated_at: Some(timestamp(standing.updated_at)),
    }
}

/// A contact event as the store applies it; `None` for an event with no kind (logged and
/// acknowledged, so one malformed row cannot block the outbox behind it).
pub(crate) fn event_from_proto(e: common::ContactEvent) -> Option<Event> {
    use common::contact_event::Kind;
    let occurred_at = e
        .occurred_at
        .as_ref()
        .and_then(micros_of_timestamp)
        .unwrap_or_default();
    let kind = match e.kind? {
        Kind::Interaction(i) => EventKind::Interaction {
            kind: i.r#type,
            properties: i.properties.into_iter().collect(),
            value: i.value.map(|v| (v.amount_micros, v.currency)),
        },
        Kind::Upserted(u) => EventKind::Upserted {
            attributes: u.attributes.into_iter().collect(),
        },
        Kind::Merged(m) => EventKind::Merged {
            duplicate_id: m.duplicate_id,
        },
        Kind::Erased(_) => EventKind::Erased,
    };
    Some(Event {
        event_id: e.event_id,
        contact_id: e.contact_id,
        occurred_at,
        kind,
    })
}
