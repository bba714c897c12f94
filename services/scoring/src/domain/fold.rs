//! A score is a fold over the ledger: caps are applied in time order, decay from each
//! award's instant. The result keeps, per rule, its points decayed to a reference instant,
//! so the exact score at any later instant is one multiplication per rule away: no
//! nightly rewrite, and a cached score stays exact as time passes.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::Micros;
use super::model::CompiledModel;

/// One ledger entry: a rule matched an event.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerEntry {
    /// The event.
    pub event_id: String,
    /// The rule that matched.
    pub rule_id: String,
    /// Points before caps and decay.
    pub points: f64,
    /// When the event happened.
    pub occurred_at: Micros,
}

/// One event rule's part of a score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RulePart {
    /// The rule.
    pub rule_id: String,
    /// Its half-life (`None`: no decay).
    pub half_life: Option<Micros>,
    /// Points of the counted awards, before decay.
    pub raw_points: f64,
    /// Awards counted (capped ones are not).
    pub awards: u32,
    /// Points after decay, as of the state's reference instant.
    pub value_at_ref: f64,
}

/// Everything needed to state a score exactly at any instant after `ref_time`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreState {
    /// The instant `value_at_ref` is measured at.
    pub ref_time: Micros,
    /// Fit rules that hold, with their points.
    pub fit: Vec<(String, f64)>,
    /// Event rules with counted awards.
    pub rules: Vec<RulePart>,
    /// The model version the state was computed with.
    pub model_version: i64,
    /// When the ledger or the attributes behind the state last changed.
    pub updated_at: Micros,
}

/// One rule's contribution at an instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Contribution {
    /// The rule.
    pub rule_id: String,
    /// "event" or "fit".
    pub kind: &'static str,
    /// Points before decay.
    pub raw_points: f64,
    /// Points after decay.
    pub points: f64,
    /// Awards counted.
    pub awards: u32,
}

fn decay(value: f64, half_life: Option<Micros>, from: Micros, to: Micros) -> f64 {
    match half_life {
        Some(h) if h > 0 => value * 0.5f64.powf((to - from) as f64 / h as f64),
        _ => value,
    }
}

/// Folds `ledger` under `model` with the contact's `attributes`, as of `now`.
pub fn fold(
    model: &CompiledModel,
    ledger: &[LedgerEntry],
    attributes: &BTreeMap<String, String>,
    now: Micros,
    updated_at: Micros,
) -> ScoreState {
    let mut entries: Vec<&LedgerEntry> = ledger.iter().collect();
    entries.sort_by(|a, b| (a.occurred_at, &a.event_id).cmp(&(b.occurred_at, &b.event_id)));
    let rules: HashMap<&str, _> = model
        .event_rules
        .iter()
        .map(|r| (r.rule.id.as_str(), &r.rule))
        .collect();
    let mut parts: Vec<RulePart> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut windows: HashMap<String, VecDeque<Micros>> = HashMap::new();
    for entry in entries {
        let rule = rules.get(entry.rule_id.as_str());
        if let Some(rule) = rule
            && rule.cap_count > 0
        {
            // Sliding window (t - window, t]: an award counts while fewer than cap_count
            // awards of the rule were counted inside it.
            let window = windows.entry(entry.rule_id.clone()).or_default();
            while window
                .front()
                .is_some_and(|t| *t <= entry.occurred_at - rule.cap_window)
            {
                window.pop_front();
            }
            if window.len() >= rule.cap_count as usize {
                continue;
            }
            window.push_back(entry.occurred_at);
        }
        let half_life = rule.and_then(|r| r.half_life);
        let at = *index.entry(entry.rule_id.clone()).or_insert_with(|| {
            parts.push(RulePart {
                rule_id: entry.rule_id.clone(),
                half_life,
                raw_points: 0.0,
                awards: 0,
                value_at_ref: 0.0,
            });
            parts.len() - 1
        });
        let part = &mut parts[at];
        part.raw_points += entry.points;
        part.awards += 1;
        part.value_at_ref += decay(entry.points, half_life, entry.occurred_at, now);
    }
    let fit = model
        .fit_rules
        .iter()
        .filter(|r| r.holds(attributes))
        .map(|r| (r.rule.id.clone(), r.rule.points))
        .collect();
    ScoreState {
        ref_time: now,
        fit,
        rules: parts,
        model_version: model.version,
        updated_at,
    }
}

impl ScoreState {
    /// An empty score (no ledger, no fit).
    pub fn empty(model_version: i64, now: Micros) -> Self {
        Self {
            ref_time: now,
            fit: Vec::new(),
            rules: Vec::new(),
            model_version,
            updated_at: now,
        }
    }

    /// Each rule's contribution at `now`; they add up to [`ScoreState::total_at`].
    pub fn contributions_at(&self, now: Micros) -> Vec<Contribution> {
        let events = self.rules.iter().map(|p| Contribution {
            rule_id: p.rule_id.clone(),
            kind: "event",
            raw_points: p.raw_points,
            points: decay(p.value_at_ref, p.half_life, self.ref_time, now),
            awards: p.awards,
        });
        let fits = self.fit.iter().map(|(id, points)| Contribution {
            rule_id: id.clone(),
            kind: "fit",
            raw_points: *points,
            points: *points,
            awards: 1,
        });
        events.chain(fits).collect()
    }

    /// (total, fit, engagement) at `now`.
    pub fn at(&self, now: Micros) -> (f64, f64, f64) {
        let contributions = self.contributions_at(now);
        let engagement: f64 = contributions
            .iter()
            .filter(|c| c.kind == "event")
            .map(|c| c.points)
            .sum();
        let fit: f64 = contributions
            .iter()
            .filter(|c| c.kind == "fit")
            .map(|c| c.points)
            .sum();
        let total: f64 = contributions.iter().map(|c| c.points).sum();
        (total, fit, engagement)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::DAY;
    use crate::domain::model::{ModelSpec, default_spec};

    const T0: Micros = 1_767_225_600_000_000; // 2026-01-01

    fn entry(event: &str, rule: &str, points: f64, at: Micros) -> LedgerEntry {
        LedgerEntry {
            event_id: event.into(),
            rule_id: rule.into(),
            points,
            occurred_at: at,
        }
    }

    fn model(spec: &ModelSpec) -> CompiledModel {
        CompiledModel::new("m", 1, spec)
    }

    #[test]
    fn points_halve_every_half_life_exactly() {
        let m = model(&default_spec());
        // demo_request: 30 points, half-life 90 days.
        let state = fold(
            &m,
            &[entry("e1", "demo_request", 30.0, T0)],
            &BTreeMap::new(),
            T0,
            T0,
        );
        assert!((state.at(T0).0 - 30.0).abs() < 1e-9);
        assert!((state.at(T0 + 90 * DAY).0 - 15.0).abs() < 1e-9);
        assert!((state.at(T0 + 180 * DAY).0 - 7.5).abs() < 1e-9);
        // A state folded later agrees with one folded earlier and read later.
        let later = fold(
            &m,
            &[entry("e1", "demo_request", 30.0, T0)],
            &BTreeMap::new(),
            T0 + 45 * DAY,
            T0,
        );
        assert!((later.at(T0 + 180 * DAY).0 - state.at(T0 + 180 * DAY).0).abs() < 1e-9);
    }

    #[test]
    fn unsubscribe_does_not_decay_and_is_negative() {
        let m = model(&default_spec());
        let state = fold(
            &m,
            &[entry("u", "unsubscribe", -20.0, T0)],
            &BTreeMap::new(),
            T0,
            T0,
        );
        assert!((state.at(T0 + 3650 * DAY).0 + 20.0).abs() < 1e-9);
    }

    #[test]
    fn caps_count_awards_in_a_sliding_window_in_time_order() {
        let mut spec = default_spec();
        spec.event_rules[0].half_life = None; // email_open: 1 point, at most 3 per 7 days
        let m = model(&spec);
        // Arrival order does not matter: the fold sorts by occurrence.
        let ledger = vec![
            entry("e5", "email_open", 1.0, T0 + 7 * DAY), // window (T0, T0+7d]: e2, e3 counted -> counts
            entry("e1", "email_open", 1.0, T0),
            entry("e2", "email_open", 1.0, T0 + DAY),
            entry("e3", "email_open", 1.0, T0 + 2 * DAY),
            entry("e4", "email_open", 1.0, T0 + 3 * DAY), // fourth inside 7 days -> capped
        ];
        let state = fold(&m, &ledger, &BTreeMap::new(), T0 + 8 * DAY, T0);
        assert_eq!(state.rules[0].awards, 4);
        assert!((state.at(T0 + 8 * DAY).0 - 4.0).abs() < 1e-9);
    }

    #[test]
    fn fit_and_engagement_add_up_to_the_total() {
        let m = model(&default_spec());
        let attrs = BTreeMap::from([
            (
                "job_title".to_owned(),
                "Chief Technology Officer".to_owned(),
            ),
            ("company".to_owned(), "Acme".to_owned()),
        ]);
        let state = fold(
            &m,
            &[
                entry("d", "demo_request", 30.0, T0),
                entry("w", "webinar_attended", 15.0, T0 + DAY),
            ],
            &attrs,
            T0 + DAY,
            T0,
        );
        let now = T0 + 40 * DAY;
        let (total, fit, engagement) = state.at(now);
        assert!((fit - 20.0).abs() < 1e-9);
        assert!((total - fit - engagement).abs() < 1e-9);
        let sum: f64 = state.contributions_at(now).iter().map(|c| c.points).sum();
        assert!((sum - total).abs() < 1e-9);
    }
}
