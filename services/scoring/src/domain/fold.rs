//! A score is a fold over the ledger: caps are applied in time order, decay from each
//! award's instant. The result keeps, per rule, its points decayed to a reference instant,
//! so the exact score at any later instant is one multiplication per rule away: no
//! nightly rewrite, and a cached score stays exact as time passes.
//!
//! A stored state also keeps what its capped rules' windows hold, so entries that come
//! after everything folded so far can be folded onto it ([`extend`]) without reading the
//! ledger again: the cost of scoring an interaction does not grow with the history.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::Micros;
use super::model::{CompiledModel, EventRule};

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

impl LedgerEntry {
    /// `rule`'s award for `event_id`, which happened at `occurred_at`.
    pub fn award(event_id: &str, rule: &EventRule, occurred_at: Micros) -> Self {
        Self {
            event_id: event_id.to_owned(),
            rule_id: rule.id.clone(),
            points: rule.points,
            occurred_at,
        }
    }
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
    /// A capped rule's latest entry folded, counted or capped: (occurred_at, event_id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<(Micros, String)>,
    /// A capped rule's counted awards inside its window before `last`, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub window: Vec<Micros>,
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
    let mut folder = Folder::new(model, Vec::new(), now);
    for entry in in_time_order(ledger) {
        // Sorted, so every entry comes after the last of its rule.
        let added = folder.add(entry);
        debug_assert!(added, "a sorted ledger folds in order");
    }
    folder.finish(model, attributes, updated_at)
}

/// Folds `entries`, new to the ledger, onto `state`: the same as folding the whole ledger
/// again, or `None` where that needs the ledger: `state` is of another model version, or
/// an entry of a capped rule is not later than the rule's last one folded (a backdated
/// event can change which later awards the cap counts), or `state` was stored before
/// states kept their windows. `attributes` are the contact's where they changed since
/// `state`; `None` keeps its fit, which only the attributes and the model version decide.
pub fn extend(
    model: &CompiledModel,
    state: &ScoreState,
    entries: &[LedgerEntry],
    attributes: Option<&BTreeMap<String, String>>,
    now: Micros,
) -> Option<ScoreState> {
    if state.model_version != model.version {
        return None;
    }
    let parts = state
        .rules
        .iter()
        .map(|p| RulePart {
            value_at_ref: decay(p.value_at_ref, p.half_life, state.ref_time, now),
            ..p.clone()
        })
        .collect();
    let mut folder = Folder::new(model, parts, now);
    for entry in in_time_order(entries) {
        if !folder.add(entry) {
            return None;
        }
    }
    Some(match attributes {
        Some(attributes) => folder.finish(model, attributes, now),
        None => folder.finish_with_fit(model, state.fit.clone(), now),
    })
}

fn in_time_order(ledger: &[LedgerEntry]) -> Vec<&LedgerEntry> {
    let mut entries: Vec<&LedgerEntry> = ledger.iter().collect();
    entries.sort_by(|a, b| (a.occurred_at, &a.event_id).cmp(&(b.occurred_at, &b.event_id)));
    entries
}

/// Rule parts being folded, one entry at a time.
struct Folder<'m> {
    rules: HashMap<&'m str, &'m EventRule>,
    parts: Vec<RulePart>,
    index: HashMap<String, usize>,
    now: Micros,
}

impl<'m> Folder<'m> {
    fn new(model: &'m CompiledModel, parts: Vec<RulePart>, now: Micros) -> Self {
        let index = parts
            .iter()
            .enumerate()
            .map(|(at, p)| (p.rule_id.clone(), at))
            .collect();
        Self {
            rules: model
                .event_rules
                .iter()
                .map(|r| (r.rule.id.as_str(), &r.rule))
                .collect(),
            parts,
            index,
            now,
        }
    }

    /// Folds one entry; false, changing nothing, when it belongs to a capped rule and does
    /// not come after the rule's last entry folded.
    fn add(&mut self, entry: &LedgerEntry) -> bool {
        let rule = self.rules.get(entry.rule_id.as_str()).copied();
        let half_life = rule.and_then(|r| r.half_life);
        let at = match self.index.get(&entry.rule_id) {
            Some(at) => *at,
            None => {
                self.parts.push(RulePart {
                    rule_id: entry.rule_id.clone(),
                    half_life,
                    raw_points: 0.0,
                    awards: 0,
                    value_at_ref: 0.0,
                    last: None,
                    window: Vec::new(),
                });
                self.index
                    .insert(entry.rule_id.clone(), self.parts.len() - 1);
                self.parts.len() - 1
            }
        };
        let part = &mut self.parts[at];
        if let Some(rule) = rule.filter(|r| r.cap_count > 0) {
            let in_order = match &part.last {
                Some((t, id)) => (*t, id.as_str()) < (entry.occurred_at, entry.event_id.as_str()),
                // Awards without a last entry: stored before windows were kept.
                None => part.awards == 0,
            };
            if !in_order {
                return false;
            }
            part.last = Some((entry.occurred_at, entry.event_id.clone()));
            // Sliding window (t - window, t]: an award counts while fewer than cap_count
            // awards of the rule were counted inside it.
            part.window
                .retain(|t| *t > entry.occurred_at - rule.cap_window);
            if part.window.len() >= rule.cap_count as usize {
                return true;
            }
            part.window.push(entry.occurred_at);
        }
        part.raw_points += entry.points;
        part.awards += 1;
        part.value_at_ref += decay(entry.points, half_life, entry.occurred_at, self.now);
        true
    }

    fn finish(
        self,
        model: &CompiledModel,
        attributes: &BTreeMap<String, String>,
        updated_at: Micros,
    ) -> ScoreState {
        let fit = model
            .fit_rules
            .iter()
            .filter(|r| r.holds(attributes))
            .map(|r| (r.rule.id.clone(), r.rule.points))
            .collect();
        self.finish_with_fit(model, fit, updated_at)
    }

    fn finish_with_fit(
        self,
        model: &CompiledModel,
        fit: Vec<(String, f64)>,
        updated_at: Micros,
    ) -> ScoreState {
        ScoreState {
            ref_time: self.now,
            fit,
            rules: self.parts,
            model_version: model.version,
            updated_at,
        }
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
        totals(
            self.ref_time,
            now,
            self.rules.iter().map(|p| (p.value_at_ref, p.half_life)),
            self.fit.iter().map(|(_, points)| *points),
        )
    }

    /// What a read shows of the score at `now`.
    pub fn standing(&self, now: Micros) -> Standing {
        let (total, fit, engagement) = self.at(now);
        Standing {
            total,
            fit,
            engagement,
            model_version: self.model_version,
            updated_at: self.updated_at,
        }
    }
}

/// A score as a read shows it, at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Standing {
    /// Fit and engagement together.
    pub total: f64,
    /// Points of the fit rules that hold.
    pub fit: f64,
    /// Decayed points of the event rules.
    pub engagement: f64,
    /// The model version the score was computed with.
    pub model_version: i64,
    /// When the ledger or the attributes behind the score last changed.
    pub updated_at: Micros,
}

/// (total, fit, engagement) at `now` of event rules' values at `ref_time` (with their
/// half-lives) and fit rules' points. Added in the order [`ScoreState::contributions_at`]
/// lists them, events first, so the total is the same float as the contributions' sum.
pub fn totals(
    ref_time: Micros,
    now: Micros,
    events: impl Iterator<Item = (f64, Option<Micros>)>,
    fits: impl Iterator<Item = f64> + Clone,
) -> (f64, f64, f64) {
    let engagement: f64 = events
        .map(|(value, half_life)| decay(value, half_life, ref_time, now))
        .sum();
    let fit: f64 = fits.clone().sum();
    let total = fits.fold(engagement, |total, points| total + points);
    (total, fit, engagement)
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
    fn totals_are_the_sums_of_the_contributions_to_the_last_bit() {
        let m = model(&default_spec());
        let mut attributes = BTreeMap::new();
        attributes.insert("job_title".to_owned(), "VP Sales".to_owned());
        attributes.insert("company".to_owned(), "Acme".to_owned());
        let state = fold(&m, &spread_ledger(200), &attributes, T0 + 61 * DAY, T0);
        let now = T0 + 75 * DAY;
        let contributions = state.contributions_at(now);
        let sum = |kind: Option<&str>| -> f64 {
            contributions
                .iter()
                .filter(|c| kind.is_none_or(|k| c.kind == k))
                .map(|c| c.points)
                .sum()
        };
        let (total, fit, engagement) = state.at(now);
        assert_eq!(total.to_bits(), sum(None).to_bits());
        assert_eq!(fit.to_bits(), sum(Some("fit")).to_bits());
        assert_eq!(engagement.to_bits(), sum(Some("event")).to_bits());
        assert_eq!(contributions.iter().filter(|c| c.kind == "fit").count(), 2);
        assert!(contributions.iter().filter(|c| c.kind == "event").count() > 2);
    }

    /// A ledger over capped and uncapped rules, `n` entries spread over 60 days in
    /// increasing time (a fixed-seed generator: the same ledger on every run).
    fn spread_ledger(n: usize) -> Vec<LedgerEntry> {
        let rules = [
            ("email_open", 1.0),
            ("page_view", 1.0),
            ("pricing_page_view", 10.0),
            ("demo_request", 30.0),
            ("unsubscribe", -20.0),
        ];
        let mut seed: u64 = 0x5eed;
        let mut at = T0;
        (0..n)
            .map(|i| {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                at += (seed >> 33) as i64 % (DAY / 2);
                let (rule, points) = rules[(seed >> 20) as usize % rules.len()];
                entry(&format!("e{i:04}"), rule, points, at)
            })
            .collect()
    }

    fn assert_same(a: &ScoreState, b: &ScoreState, at: Micros) {
        assert_eq!(a.rules.len(), b.rules.len());
        for (x, y) in a.rules.iter().zip(&b.rules) {
            assert_eq!(
                (&x.rule_id, x.awards, &x.last, &x.window),
                (&y.rule_id, y.awards, &y.last, &y.window)
            );
            assert!((x.raw_points - y.raw_points).abs() < 1e-9);
        }
        assert!(
            (a.at(at).0 - b.at(at).0).abs() < 1e-9,
            "{} vs {}",
            a.at(at).0,
            b.at(at).0
        );
    }

    #[test]
    fn extending_a_state_agrees_with_folding_the_whole_ledger() {
        let m = model(&default_spec());
        let ledger = spread_ledger(400);
        let attrs = BTreeMap::new();
        let end = ledger[ledger.len() - 1].occurred_at + DAY;
        let whole = fold(&m, &ledger, &attrs, end, end);
        assert!(
            whole.rules.iter().any(|p| p.awards < 100),
            "the caps capped something"
        );
        // Folded in steps of every size, each step later than the one before, as
        // successive calls fold what each brought.
        for step in [1, 7, 64, 399] {
            let (first, rest) = ledger.split_at(step.min(ledger.len()));
            let mut state = fold(&m, first, &attrs, first[first.len() - 1].occurred_at, T0);
            for chunk in rest.chunks(step) {
                let now = chunk[chunk.len() - 1].occurred_at;
                state = extend(&m, &state, chunk, Some(&attrs), now).expect("in order");
            }
            let state = extend(&m, &state, &[], Some(&attrs), end).expect("nothing new");
            assert_same(&state, &whole, end + 30 * DAY);
        }
    }

    #[test]
    fn a_backdated_entry_extends_only_rules_without_a_cap() {
        let m = model(&default_spec());
        let ledger = spread_ledger(50);
        let attrs = BTreeMap::new();
        let now = ledger[49].occurred_at + DAY;
        let state = fold(&m, &ledger, &attrs, now, now);
        let early = ledger[0].occurred_at - DAY;
        // Uncapped: the award decays from its own instant whatever the order.
        let late_demo = entry("late-demo", "demo_request", 30.0, early);
        let extended = extend(
            &m,
            &state,
            std::slice::from_ref(&late_demo),
            Some(&attrs),
            now,
        );
        let mut all = ledger;
        all.push(late_demo);
        assert_same(
            &extended.expect("uncapped"),
            &fold(&m, &all, &attrs, now, now),
            now,
        );
        // Capped: it may take the place of a later award, so the ledger is needed.
        let late_open = entry("late-open", "email_open", 1.0, early);
        assert_eq!(extend(&m, &state, &[late_open], Some(&attrs), now), None);
    }

    #[test]
    fn a_state_without_windows_or_of_another_version_is_folded_again() {
        let m = model(&default_spec());
        let ledger = spread_ledger(20);
        let attrs = BTreeMap::new();
        let now = ledger[19].occurred_at;
        let next = [entry("next", "email_open", 1.0, now + DAY)];
        let state = fold(&m, &ledger, &attrs, now, now);
        assert!(extend(&m, &state, &next, Some(&attrs), now + DAY).is_some());
        // As stored before states kept their windows.
        let mut old = state.clone();
        for part in &mut old.rules {
            part.last = None;
            part.window.clear();
        }
        let old: ScoreState = serde_json::from_value(serde_json::to_value(&old).unwrap()).unwrap();
        assert_eq!(extend(&m, &old, &next, Some(&attrs), now + DAY), None);
        // Uncapped entries still extend such a state.
        let demo = [entry("demo", "demo_request", 30.0, now + DAY)];
        assert!(extend(&m, &old, &demo, Some(&attrs), now + DAY).is_some());
        let newer = CompiledModel::new("m", 2, &default_spec());
        assert_eq!(extend(&newer, &state, &next, Some(&attrs), now + DAY), None);
    }

    #[test]
    fn an_extension_without_attributes_keeps_the_fit_and_one_with_them_recomputes_it() {
        let m = model(&default_spec());
        let ledger = spread_ledger(20);
        let now = ledger[19].occurred_at;
        let senior = BTreeMap::from([("job_title".to_owned(), "VP Sales".to_owned())]);
        let state = fold(&m, &ledger, &senior, now, now);
        assert!(!state.fit.is_empty(), "the title is a fit");
        let next = [entry("next", "demo_request", 30.0, now + DAY)];
        let kept = extend(&m, &state, &next, None, now + DAY).expect("in order");
        let given = extend(&m, &state, &next, Some(&senior), now + DAY).expect("in order");
        assert_eq!(kept, given);
        let changed = BTreeMap::from([("job_title".to_owned(), "Intern".to_owned())]);
        let refit = extend(&m, &state, &next, Some(&changed), now + DAY).expect("in order");
        assert!(refit.fit.is_empty());
        assert_eq!(refit.rules, kept.rules);
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
