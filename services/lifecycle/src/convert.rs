//! Proto messages to domain values and back.

use prost_types::{Duration, Timestamp};

use clm_proto::lifecycle::v1 as pb;

use crate::domain::Micros;
use crate::domain::model::{EntryRule, Stage, StageModel, StageSpec, TimedTrigger};
use crate::store::{Signal, SignalKind};

pub(crate) fn timestamp(micros: Micros) -> Timestamp {
    Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1000) as i32,
    }
}

pub(crate) fn duration(micros: Micros) -> Duration {
    Duration {
        seconds: micros / 1_000_000,
        nanos: ((micros % 1_000_000) * 1000) as i32,
    }
}

fn micros_of(d: &Duration) -> Micros {
    d.seconds
        .saturating_mul(1_000_000)
        .saturating_add(i64::from(d.nanos / 1000))
}

pub(crate) fn spec_from_proto(m: &pb::StageModel) -> StageSpec {
    StageSpec {
        display_name: m.display_name.trim().to_owned(),
        stages: m
            .stages
            .iter()
            .map(|s| Stage {
                name: s.name.clone(),
                side: s.side,
                reactivates_to: s.reactivates_to.clone(),
            })
            .collect(),
        entry_rules: m
            .entry_rules
            .iter()
            .map(|r| EntryRule {
                id: r.id.clone(),
                to_stage: r.to_stage.clone(),
                from_stages: r.from_stages.clone(),
                condition: r.condition.clone(),
            })
            .collect(),
        triggers: m
            .triggers
            .iter()
            .map(|t| TimedTrigger {
                id: t.id.clone(),
                action: t.action.clone(),
                attribute: t.attribute.clone(),
                offset: t.offset.as_ref().map_or(0, micros_of),
                stages: t.stages.clone(),
            })
            .collect(),
    }
}

pub(crate) fn model_to_proto(m: &StageModel) -> pb::StageModel {
    pb::StageModel {
        id: m.id.clone(),
        display_name: m.spec.display_name.clone(),
        stages: m
            .spec
            .stages
            .iter()
            .map(|s| pb::Stage {
                name: s.name.clone(),
                side: s.side,
                reactivates_to: s.reactivates_to.clone(),
            })
            .collect(),
        entry_rules: m
            .spec
            .entry_rules
            .iter()
            .map(|r| pb::EntryRule {
                id: r.id.clone(),
                to_stage: r.to_stage.clone(),
                from_stages: r.from_stages.clone(),
                condition: r.condition.clone(),
            })
            .collect(),
        triggers: m
            .spec
            .triggers
            .iter()
            .map(|t| pb::TimedTrigger {
                id: t.id.clone(),
                action: t.action.clone(),
                attribute: t.attribute.clone(),
                offset: Some(duration(t.offset)),
                stages: t.stages.clone(),
            })
            .collect(),
        default: m.is_default,
        version: m.version,
        etag: m.etag(),
    }
}

/// A signal as the store applies it; `None` for one with no kind (acknowledged, logged).
pub(crate) fn signal_from_proto(s: pb::Signal) -> Option<Signal> {
    use pb::signal::Kind;
    let occurred_at = s
        .occurred_at
        .as_ref()
        .map(|t| t.seconds.saturating_mul(1_000_000) + i64::from(t.nanos / 1000))
        .unwrap_or_default();
    let kind = match s.kind? {
        Kind::Interaction(i) => SignalKind::Interaction {
            kind: i.r#type,
            amount_micros: i.value.map_or(0, |v| v.amount_micros),
            score: i.score.map(|b| (b.total, b.to_band)),
        },
        Kind::BandChanged(b) => SignalKind::Score {
            total: b.total,
            band: b.to_band,
        },
        Kind::Attributes(a) => SignalKind::Attributes(a.attributes.into_iter().collect()),
        Kind::MergedDuplicateId(d) => SignalKind::Merged(d),
        Kind::Erased(_) => SignalKind::Erased,
    };
    Some(Signal {
        event_id: s.event_id,
        contact_id: s.contact_id,
        occurred_at,
        kind,
    })
}
