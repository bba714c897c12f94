//! Stage models: ordered stages, side stages, entry rules and timed triggers; strict
//! validation; the default model; and the decision of where a contact moves next.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use clm_runtime::FieldViolation;

use super::facts::{self, Condition, Facts};
use super::{DAY, Micros};

/// One stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    /// Unique within the model.
    pub name: String,
    /// Outside the forward order (churned).
    #[serde(default)]
    pub side: bool,
    /// For a side stage: where reactivation leads.
    #[serde(default)]
    pub reactivates_to: String,
}

/// A rule that moves a contact into `to_stage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryRule {
    /// Unique within the model.
    pub id: String,
    /// The stage entered.
    pub to_stage: String,
    /// Only from these stages (empty: any earlier main stage).
    #[serde(default)]
    pub from_stages: Vec<String>,
    /// The condition over the contact's facts and the current event.
    #[serde(default)]
    pub condition: String,
}

/// An action fired before a date attribute, or after inactivity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimedTrigger {
    /// Unique within the model.
    pub id: String,
    /// The action put on the stream.
    pub action: String,
    /// The date attribute (empty: an inactivity trigger, which also moves the contact
    /// into the model's first side stage).
    #[serde(default)]
    pub attribute: String,
    /// How long before the date (or after the last interaction) it fires.
    pub offset: Micros,
    /// Only for contacts in these stages (empty: all).
    #[serde(default)]
    pub stages: Vec<String>,
}

/// Everything a caller defines about a stage model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageSpec {
    /// Unique name in the tenant.
    pub display_name: String,
    /// Main stages in order, then side stages.
    pub stages: Vec<Stage>,
    /// Entry rules.
    pub entry_rules: Vec<EntryRule>,
    /// Timed triggers.
    pub triggers: Vec<TimedTrigger>,
}

/// A stored model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageModel {
    /// Id (`default` for the tenant's first model).
    pub id: String,
    /// The definition.
    pub spec: StageSpec,
    /// Whether requests that name no model use it.
    pub is_default: bool,
    /// Increases with each update.
    pub version: i64,
}

impl StageModel {
    /// The opaque etag of this version.
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.version)
    }
}

/// The id of the model every tenant starts with.
pub const DEFAULT_MODEL_ID: &str = "default";

fn stage(name: &str) -> Stage {
    Stage {
        name: name.into(),
        side: false,
        reactivates_to: String::new(),
    }
}

fn rule(id: &str, to: &str, from: &[&str], condition: &str) -> EntryRule {
    EntryRule {
        id: id.into(),
        to_stage: to.into(),
        from_stages: from.iter().map(|s| (*s).to_owned()).collect(),
        condition: condition.into(),
    }
}

/// The default model of DESIGN.md: awareness, consideration, conversion, retention,
/// loyalty, churned on the side with reactivation into retention.
pub fn default_spec() -> StageSpec {
    StageSpec {
        display_name: "Customer lifecycle".into(),
        stages: vec![
            stage("awareness"),
            stage("consideration"),
            stage("conversion"),
            stage("retention"),
            stage("loyalty"),
            Stage {
                name: "churned".into(),
                side: true,
                reactivates_to: "retention".into(),
            },
        ],
        entry_rules: vec![
            rule(
                "engaged",
                "consideration",
                &["awareness"],
                r#"band >= "MQL" OR event = "demo_request" OR event = "webinar_attended" OR event = "trial_started""#,
            ),
            rule(
                "first_purchase",
                "conversion",
                &["awareness", "consideration"],
                r#"event = "purchase""#,
            ),
            rule(
                "repeat_purchase",
                "retention",
                &["conversion"],
                r#"event = "purchase" AND count.purchase.365d >= "2""#,
            ),
            rule(
                "advocate",
                "loyalty",
                &["retention"],
                r#"event = "referral" OR event = "review" OR spend.365d >= "5000""#,
            ),
            rule(
                "reactivation",
                "retention",
                &["churned"],
                r#"event = "purchase""#,
            ),
        ],
        triggers: vec![
            TimedTrigger {
                id: "churn".into(),
                action: "win_back".into(),
                attribute: String::new(),
                offset: 180 * DAY,
                stages: vec!["conversion".into(), "retention".into(), "loyalty".into()],
            },
            TimedTrigger {
                id: "warranty".into(),
                action: "offer_warranty_extension".into(),
                attribute: "warranty_expires_at".into(),
                offset: 30 * DAY,
                stages: Vec::new(),
            },
        ],
    }
}

fn name_ok(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Checks a spec strictly; every problem is reported with its path under `prefix`.
pub fn validate(spec: &StageSpec, prefix: &str) -> Vec<FieldViolation> {
    let mut violations = Vec::new();
    let mut bad = |field: String, description: String| {
        violations.push(FieldViolation::new(
            format!("{prefix}.{field}"),
            description,
        ));
    };
    let name = spec.display_name.trim();
    if name.is_empty() || name.chars().count() > 128 {
        bad("display_name".into(), "must be 1 to 128 characters".into());
    }
    if spec.stages.len() > 32 || !spec.stages.iter().any(|s| !s.side) {
        bad(
            "stages".into(),
            "must have 1 to 32 stages, at least one of them a main stage".into(),
        );
    }
    let mut names = HashSet::new();
    for (i, s) in spec.stages.iter().enumerate() {
        if !name_ok(&s.name) {
            bad(
                format!("stages[{i}].name"),
                "must be 1 to 32 characters of a-z, 0-9 and '_'".into(),
            );
        } else if !names.insert(s.name.as_str()) {
            bad(
                format!("stages[{i}].name"),
                format!("{:?} is used twice", s.name),
            );
        }
    }
    let main = |n: &str| spec.stages.iter().any(|s| s.name == n && !s.side);
    let known = |n: &str| spec.stages.iter().any(|s| s.name == n);
    for (i, s) in spec.stages.iter().enumerate() {
        if s.side && !s.reactivates_to.is_empty() && !main(&s.reactivates_to) {
            bad(
                format!("stages[{i}].reactivates_to"),
                format!("{:?} is not a main stage", s.reactivates_to),
            );
        }
        if !s.side && !s.reactivates_to.is_empty() {
            bad(
                format!("stages[{i}].reactivates_to"),
                "only side stages reactivate".into(),
            );
        }
    }
    let mut ids = HashSet::new();
    for (i, r) in spec.entry_rules.iter().enumerate() {
        let path = format!("entry_rules[{i}]");
        if !name_ok(&r.id) {
            bad(
                format!("{path}.id"),
                "must be 1 to 32 characters of a-z, 0-9 and '_'".into(),
            );
        } else if !ids.insert(r.id.as_str()) {
            bad(format!("{path}.id"), format!("{:?} is used twice", r.id));
        }
        if !known(&r.to_stage) {
            bad(
                format!("{path}.to_stage"),
                format!("{:?} is not a stage of the model", r.to_stage),
            );
        }
        for (j, from) in r.from_stages.iter().enumerate() {
            if !known(from) {
                bad(
                    format!("{path}.from_stages[{j}]"),
                    format!("{from:?} is not a stage of the model"),
                );
            }
        }
        if let Err(e) = facts::compile(&r.condition, true) {
            bad(format!("{path}.condition"), e.to_string());
        }
    }
    // Every main stage after the first must be reachable by some rule.
    let first_main = spec
        .stages
        .iter()
        .find(|s| !s.side)
        .map(|s| s.name.as_str());
    for (i, s) in spec.stages.iter().enumerate() {
        let entered = spec.entry_rules.iter().any(|r| r.to_stage == s.name)
            || (s.side && spec.triggers.iter().any(|t| t.attribute.is_empty()));
        if Some(s.name.as_str()) != first_main && name_ok(&s.name) && !entered {
            bad(
                format!("stages[{i}]"),
                format!("no entry rule or trigger leads into {:?}", s.name),
            );
        }
    }
    let mut trigger_ids = HashSet::new();
    for (i, t) in spec.triggers.iter().enumerate() {
        let path = format!("triggers[{i}]");
        if !name_ok(&t.id) {
            bad(
                format!("{path}.id"),
                "must be 1 to 32 characters of a-z, 0-9 and '_'".into(),
            );
        } else if !trigger_ids.insert(t.id.as_str()) {
            bad(format!("{path}.id"), format!("{:?} is used twice", t.id));
        }
        if !name_ok(&t.action) {
            bad(
                format!("{path}.action"),
                "must be 1 to 32 characters of a-z, 0-9 and '_'".into(),
            );
        }
        if t.attribute.is_empty() {
            if t.offset <= 0 {
                bad(
                    format!("{path}.offset"),
                    "an inactivity trigger needs a positive offset".into(),
                );
            }
            if !spec.stages.iter().any(|s| s.side) {
                bad(
                    format!("{path}.attribute"),
                    "an inactivity trigger needs a side stage to move into".into(),
                );
            }
        }
        if t.offset.abs() > facts::MAX_WINDOW_DAYS * DAY {
            bad(format!("{path}.offset"), "must be within 10 years".into());
        }
        for (j, s) in t.stages.iter().enumerate() {
            if !known(s) {
                bad(
                    format!("{path}.stages[{j}]"),
                    format!("{s:?} is not a stage of the model"),
                );
            }
        }
    }
    violations
}

/// A rule ready to evaluate.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    /// The rule.
    pub rule: EntryRule,
    condition: Condition,
}

/// A model with its conditions compiled.
#[derive(Debug, Clone)]
pub struct CompiledModel {
    /// Its id.
    pub id: String,
    /// The definition.
    pub spec: StageSpec,
    rules: Vec<CompiledRule>,
}

impl CompiledModel {
    /// Compiles a validated spec (an unparsable condition never holds).
    pub fn new(id: &str, spec: &StageSpec) -> Self {
        let rules = spec
            .entry_rules
            .iter()
            .map(|r| CompiledRule {
                rule: r.clone(),
                condition: facts::compile(&r.condition, true).unwrap_or_else(|_| {
                    facts::compile(r#"stage = "" AND NOT stage = """#, true).unwrap_or_default()
                }),
            })
            .collect();
        Self {
            id: id.to_owned(),
            spec: spec.clone(),
            rules,
        }
    }

    /// The compiled conditions of the entry rules.
    pub fn conditions(&self) -> impl Iterator<Item = &Condition> {
        self.rules.iter().map(|r| &r.condition)
    }

    /// The stage a new contact enters.
    pub fn first_stage(&self) -> &str {
        self.spec
            .stages
            .iter()
            .find(|s| !s.side)
            .map_or("", |s| s.name.as_str())
    }

    /// The side stage inactivity moves contacts into.
    pub fn churn_stage(&self) -> Option<&str> {
        self.spec
            .stages
            .iter()
            .find(|s| s.side)
            .map(|s| s.name.as_str())
    }

    /// The position of a main stage, `None` for a side stage or an unknown one.
    pub fn rank(&self, stage: &str) -> Option<usize> {
        self.spec
            .stages
            .iter()
            .filter(|s| !s.side)
            .position(|s| s.name == stage)
    }

    /// Whether `stage` exists.
    pub fn has_stage(&self, stage: &str) -> bool {
        self.spec.stages.iter().any(|s| s.name == stage)
    }

    /// Where the facts move a contact in `current`, and the rule that moves it: the
    /// furthest forward stage a matching rule allows. Automatic moves only go forward;
    /// from a side stage, a rule leads back into the main order (reactivation).
    pub fn next_stage(
        &self,
        current: &str,
        facts: &Facts,
        now: Micros,
    ) -> Option<(&str, &CompiledRule)> {
        let current_rank = self.rank(current);
        self.rules
            .iter()
            .filter(|r| {
                let allowed_from = if r.rule.from_stages.is_empty() {
                    current_rank.is_some_and(|c| self.rank(&r.rule.to_stage).is_some_and(|t| t > c))
                } else {
                    r.rule.from_stages.iter().any(|f| f == current)
                };
                let forward = match (current_rank, self.rank(&r.rule.to_stage)) {
                    (Some(c), Some(t)) => t > c,
                    (None, _) => true,       // from a side stage: reactivation
                    (Some(_), None) => true, // into a side stage
                };
                allowed_from
                    && forward
                    && r.rule.to_stage != current
                    && facts::holds(&r.condition, facts, now)
            })
            .max_by_key(|r| self.rank(&r.rule.to_stage).map_or(0, |t| t + 1))
            .map(|r| (r.rule.to_stage.as_str(), r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::facts::Activity;

    fn fields(spec: &StageSpec) -> Vec<String> {
        validate(spec, "model")
            .into_iter()
            .map(|v| v.field)
            .collect()
    }

    #[test]
    fn the_default_model_is_valid() {
        assert!(
            fields(&default_spec()).is_empty(),
            "{:?}",
            validate(&default_spec(), "model")
        );
    }

    #[test]
    fn broken_models_name_their_paths() {
        let mut spec = default_spec();
        spec.stages[1].name = "awareness".into();
        spec.entry_rules[1].to_stage = "nowhere".into();
        spec.entry_rules[2].condition = r#"count.purchase = "2""#.into();
        spec.triggers[1].stages = vec!["limbo".into()];
        assert_eq!(
            fields(&spec),
            [
                "model.stages[1].name",
                // Renaming "consideration" away breaks the rules that use it.
                "model.entry_rules[0].to_stage",
                "model.entry_rules[1].to_stage",
                "model.entry_rules[1].from_stages[1]",
                "model.entry_rules[2].condition",
                "model.stages[2]",
                "model.triggers[1].stages[0]",
            ]
        );
    }

    #[test]
    fn moves_go_forward_and_reactivate_from_the_side() {
        let model = CompiledModel::new("m", &default_spec());
        let now = 1000 * DAY;
        let purchase = |at: Micros| Activity {
            kind: "purchase".into(),
            occurred_at: at,
            amount_micros: 10_000_000,
        };
        let mut facts = Facts {
            event: Some("purchase".into()),
            activities: vec![purchase(now)],
            ..Facts::default()
        };
        assert_eq!(
            model.next_stage("awareness", &facts, now).unwrap().0,
            "conversion"
        );
        facts.activities.push(purchase(now - 30 * DAY));
        assert_eq!(
            model.next_stage("conversion", &facts, now).unwrap().0,
            "retention"
        );
        assert!(
            model.next_stage("loyalty", &facts, now).is_none(),
            "never backwards"
        );
        assert_eq!(
            model.next_stage("churned", &facts, now).unwrap().0,
            "retention"
        );
    }
}
