//! Scoring models: what a caller defines, how it is validated, and the compiled form the
//! fold evaluates.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use clm_filter::{Mapped, Op};
use clm_runtime::FieldViolation;

use super::{DAY, Micros};

/// Most rules of each kind in one model.
pub const MAX_RULES: usize = 100;
/// Most thresholds in one model.
pub const MAX_THRESHOLDS: usize = 10;
/// Largest points of one rule, either sign.
pub const MAX_POINTS: f64 = 10_000.0;
/// Longest cap window and half-life.
pub const MAX_PERIOD: Micros = 3650 * DAY;

/// Points for an interaction type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRule {
    /// Unique within the model.
    pub id: String,
    /// The interaction type.
    pub interaction_type: String,
    /// Optional condition over the interaction's properties.
    #[serde(default)]
    pub property_condition: String,
    /// Points per counted award.
    pub points: f64,
    /// At most this many awards per `cap_window` (0: no cap).
    #[serde(default)]
    pub cap_count: u32,
    /// The cap's window.
    #[serde(default)]
    pub cap_window: Micros,
    /// Half-life of the points; `None` never decays.
    #[serde(default)]
    pub half_life: Option<Micros>,
}

/// Points for who the contact is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitRule {
    /// Unique within the model.
    pub id: String,
    /// The attribute the rule is about; with no condition, the rule holds when it is set.
    #[serde(default)]
    pub attribute: String,
    /// A condition over the contact's attributes.
    #[serde(default)]
    pub condition: String,
    /// Points while the rule holds.
    pub points: f64,
}

/// A named threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Threshold {
    /// The band's name.
    pub name: String,
    /// The total that reaches it.
    pub points: f64,
}

/// Everything a caller defines about a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// Unique name in the tenant.
    pub display_name: String,
    /// Behaviour rules.
    pub event_rules: Vec<EventRule>,
    /// Fit rules.
    pub fit_rules: Vec<FitRule>,
    /// Thresholds, increasing.
    pub thresholds: Vec<Threshold>,
}

/// A stored model.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoringModel {
    /// Id (the tenant's default model is `default` until another is chosen).
    pub id: String,
    /// The definition.
    pub spec: ModelSpec,
    /// Whether requests that name no model use this one.
    pub is_default: bool,
    /// Increases with each update.
    pub version: i64,
    /// Creation instant.
    pub created_at: Micros,
    /// Last update.
    pub updated_at: Micros,
}

impl ScoringModel {
    /// The opaque etag of this version.
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.version)
    }
}

/// The id of the model every tenant starts with.
pub const DEFAULT_MODEL_ID: &str = "default";

fn rule(
    id: &str,
    kind: &str,
    condition: &str,
    points: f64,
    cap: (u32, i64),
    half_life_days: Option<i64>,
) -> EventRule {
    EventRule {
        id: id.into(),
        interaction_type: kind.into(),
        property_condition: condition.into(),
        points,
        cap_count: cap.0,
        cap_window: cap.1 * DAY,
        half_life: half_life_days.map(|d| d * DAY),
    }
}

/// The model a tenant starts with, drawn from common B2B practice: engagement that
/// signals buying intent scores high and fades, unsubscribing costs points for good, and
/// seniority and a known company add fit.
pub fn default_spec() -> ModelSpec {
    ModelSpec {
        display_name: "Default lead score".into(),
        event_rules: vec![
            rule("email_open", "email_open", "", 1.0, (3, 7), Some(30)),
            rule("email_click", "email_click", "", 3.0, (5, 7), Some(30)),
            rule("page_view", "page_view", "", 1.0, (10, 1), Some(14)),
            rule("pricing_page_view", "page_view", r#"url ~ "/pricing""#, 10.0, (2, 7), Some(30)),
            rule("form_submit", "form_submit", "", 10.0, (0, 0), Some(60)),
            rule("webinar_attended", "webinar_attended", "", 15.0, (0, 0), Some(60)),
            rule("demo_request", "demo_request", "", 30.0, (0, 0), Some(90)),
            rule("trial_started", "trial_started", "", 25.0, (0, 0), Some(90)),
            rule("purchase", "purchase", "", 20.0, (0, 0), Some(180)),
            rule("unsubscribe", "unsubscribe", "", -20.0, (0, 0), None),
        ],
        fit_rules: vec![
            FitRule {
                id: "senior_title".into(),
                attribute: "job_title".into(),
                condition: r#"job_title ~ "chief" OR job_title ~ "cto" OR job_title ~ "ceo" OR job_title ~ "vp" OR job_title ~ "head" OR job_title ~ "director""#.into(),
                points: 15.0,
            },
            FitRule {
                id: "known_company".into(),
                attribute: "company".into(),
                condition: String::new(),
                points: 5.0,
            },
        ],
        thresholds: vec![
            Threshold {
                name: "MQL".into(),
                points: 50.0,
            },
            Threshold {
                name: "SQL".into(),
                points: 100.0,
            },
        ],
    }
}

/// One compiled comparison over a string map.
#[derive(Debug, Clone)]
pub struct Check {
    field: String,
    op: Op,
    value: String,
}

/// A compiled condition; `None` always holds.
pub type Condition = Option<Mapped<Check>>;

fn compile_condition(source: &str) -> Result<Condition, clm_filter::FilterError> {
    let Some(expr) = clm_filter::parse(source)? else {
        return Ok(None);
    };
    let mapped = expr.try_map(&|c: &clm_filter::Comparison| {
        if key_problem(&c.field).is_some() {
            return Err(clm_filter::FilterError::at(
                c.field_at,
                format!("{:?} is not a valid key (a-z, 0-9, '_', '.', '-')", c.field),
            ));
        }
        Ok(Check {
            field: c.field.clone(),
            op: c.op,
            value: c.value.clone(),
        })
    })?;
    Ok(Some(mapped))
}

/// Whether `condition` holds over `values` (a missing key never matches).
pub fn holds(condition: &Condition, values: &BTreeMap<String, String>) -> bool {
    condition.as_ref().is_none_or(|c| {
        c.eval(&|check: &Check| {
            values
                .get(&check.field)
                .is_some_and(|actual| clm_filter::compare_text(actual, check.op, &check.value))
        })
    })
}

fn key_problem(key: &str) -> Option<&'static str> {
    let ok = (1..=64).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
    (!ok).then_some("must be 1 to 64 characters of a-z, 0-9, '_', '.', '-'")
}

/// An event rule ready to match.
#[derive(Debug, Clone)]
pub struct CompiledEventRule {
    /// The rule.
    pub rule: EventRule,
    condition: Condition,
}

impl CompiledEventRule {
    /// Whether an interaction of `kind` with `properties` earns this rule's points.
    pub fn matches(&self, kind: &str, properties: &BTreeMap<String, String>) -> bool {
        self.rule.interaction_type == kind && holds(&self.condition, properties)
    }
}

/// A fit rule ready to evaluate.
#[derive(Debug, Clone)]
pub struct CompiledFitRule {
    /// The rule.
    pub rule: FitRule,
    condition: Condition,
}

impl CompiledFitRule {
    /// Whether the contact's attributes satisfy the rule.
    pub fn holds(&self, attributes: &BTreeMap<String, String>) -> bool {
        if self.condition.is_none() {
            return attributes
                .get(&self.rule.attribute)
                .is_some_and(|v| !v.is_empty());
        }
        holds(&self.condition, attributes)
    }
}

/// A model with its conditions parsed.
#[derive(Debug, Clone)]
pub struct CompiledModel {
    /// The model's id.
    pub id: String,
    /// The model's version.
    pub version: i64,
    /// Whether it is the tenant's default model (whose scores lifecycle follows).
    pub is_default: bool,
    /// Event rules.
    pub event_rules: Vec<CompiledEventRule>,
    /// Fit rules.
    pub fit_rules: Vec<CompiledFitRule>,
    /// Thresholds, increasing.
    pub thresholds: Vec<Threshold>,
}

impl CompiledModel {
    /// Compiles a validated spec (conditions that do not parse are treated as never holding,
    /// which validation rules out before a spec is stored).
    pub fn new(id: &str, version: i64, spec: &ModelSpec) -> Self {
        let never = || {
            Some(Mapped::Not(Box::new(Mapped::Leaf(Check {
                field: String::new(),
                op: Op::Eq,
                value: String::new(),
            }))))
        };
        let compile = |source: &str| compile_condition(source).unwrap_or_else(|_| never());
        Self {
            id: id.to_owned(),
            version,
            is_default: false,
            event_rules: spec
                .event_rules
                .iter()
                .map(|r| CompiledEventRule {
                    rule: r.clone(),
                    condition: compile(&r.property_condition),
                })
                .collect(),
            fit_rules: spec
                .fit_rules
                .iter()
                .map(|r| CompiledFitRule {
                    rule: r.clone(),
                    condition: compile(&r.condition),
                })
                .collect(),
            thresholds: spec.thresholds.clone(),
        }
    }

    /// The highest threshold `total` reaches, or "".
    pub fn band(&self, total: f64) -> String {
        self.thresholds
            .iter()
            .rev()
            .find(|t| total >= t.points)
            .map(|t| t.name.clone())
            .unwrap_or_default()
    }

    /// The rank of a band (0 for none), for detecting upward crossings.
    pub fn rank(&self, band: &str) -> usize {
        self.thresholds
            .iter()
            .position(|t| t.name == band)
            .map_or(0, |i| i + 1)
    }
}

/// Checks a spec strictly; every problem is reported with its path under `prefix`.
pub fn validate(spec: &ModelSpec, prefix: &str) -> Vec<FieldViolation> {
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
    if spec.event_rules.len() > MAX_RULES {
        bad(
            "event_rules".into(),
            format!("has more than {MAX_RULES} rules"),
        );
    }
    if spec.fit_rules.len() > MAX_RULES {
        bad(
            "fit_rules".into(),
            format!("has more than {MAX_RULES} rules"),
        );
    }
    let mut ids = HashSet::new();
    let mut check_id = |bad: &mut dyn FnMut(String, String), path: String, id: &str| {
        if key_problem(id).is_some() {
            bad(
                format!("{path}.id"),
                "must be 1 to 64 characters of a-z, 0-9, '_', '.', '-'".into(),
            );
        } else if !ids.insert(id.to_owned()) {
            bad(
                format!("{path}.id"),
                format!("{id:?} is used by another rule of the model"),
            );
        }
    };
    let check_points = |bad: &mut dyn FnMut(String, String), path: String, points: f64| {
        if !points.is_finite() || points == 0.0 || points.abs() > MAX_POINTS {
            bad(
                format!("{path}.points"),
                format!("must be non-zero, finite and within ±{MAX_POINTS}"),
            );
        }
    };
    for (i, r) in spec.event_rules.iter().enumerate() {
        let path = format!("event_rules[{i}]");
        check_id(&mut bad, path.clone(), &r.id);
        let kind_ok = (1..=64).contains(&r.interaction_type.len())
            && r.interaction_type
                .starts_with(|c: char| c.is_ascii_lowercase())
            && r.interaction_type
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !kind_ok {
            bad(
                format!("{path}.interaction_type"),
                "must be an interaction type of a-z, 0-9 and '_'".into(),
            );
        }
        if let Err(e) = compile_condition(&r.property_condition) {
            bad(format!("{path}.property_condition"), e.to_string());
        }
        check_points(&mut bad, path.clone(), r.points);
        match (r.cap_count, r.cap_window) {
            (0, 0) => {}
            (0, _) => bad(
                format!("{path}.cap_count"),
                "a cap window needs a cap count above 0".into(),
            ),
            (n, _) if n > 10_000 => {
                bad(format!("{path}.cap_count"), "must be at most 10000".into());
            }
            (_, w) if w <= 0 || w > MAX_PERIOD => {
                bad(
                    format!("{path}.cap_window"),
                    "a cap needs a window of more than 0 and at most 10 years".into(),
                );
            }
            _ => {}
        }
        if let Some(h) = r.half_life
            && (h <= 0 || h > MAX_PERIOD)
        {
            bad(
                format!("{path}.half_life"),
                "must be positive and at most 10 years".into(),
            );
        }
    }
    for (i, r) in spec.fit_rules.iter().enumerate() {
        let path = format!("fit_rules[{i}]");
        check_id(&mut bad, path.clone(), &r.id);
        if r.condition.trim().is_empty() {
            if key_problem(&r.attribute).is_some() {
                bad(
                    format!("{path}.attribute"),
                    "name an attribute, or give a condition".into(),
                );
            }
        } else if let Err(e) = compile_condition(&r.condition) {
            bad(format!("{path}.condition"), e.to_string());
        }
        check_points(&mut bad, path.clone(), r.points);
    }
    if spec.thresholds.is_empty() || spec.thresholds.len() > MAX_THRESHOLDS {
        bad(
            "thresholds".into(),
            format!("must have 1 to {MAX_THRESHOLDS} thresholds"),
        );
    }
    let mut names = HashSet::new();
    for (i, t) in spec.thresholds.iter().enumerate() {
        let path = format!("thresholds[{i}]");
        let name_ok = (1..=32).contains(&t.name.len())
            && t.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !name_ok {
            bad(
                format!("{path}.name"),
                "must be 1 to 32 characters of letters, digits and '_'".into(),
            );
        } else if !names.insert(t.name.clone()) {
            bad(
                format!("{path}.name"),
                format!("{:?} is used twice", t.name),
            );
        }
        if !t.points.is_finite() || t.points <= 0.0 {
            bad(
                format!("{path}.points"),
                "must be positive and finite".into(),
            );
        } else if i > 0 && t.points <= spec.thresholds[i - 1].points {
            bad(format!("{path}.points"), "thresholds must increase".into());
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(spec: &ModelSpec) -> Vec<String> {
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
    fn every_problem_names_its_path() {
        let mut spec = default_spec();
        spec.thresholds[1].points = 40.0;
        spec.event_rules[0].half_life = Some(0);
        spec.event_rules[1].cap_window = 0;
        spec.event_rules[2].property_condition = r#"url ~ "#.into();
        spec.event_rules[3].id = "email_open".into();
        spec.event_rules[4].points = f64::NAN;
        spec.fit_rules[0].condition = r#"Job_Title = "x""#.into();
        assert_eq!(
            fields(&spec),
            [
                "model.event_rules[0].half_life",
                "model.event_rules[1].cap_window",
                "model.event_rules[2].property_condition",
                "model.event_rules[3].id",
                "model.event_rules[4].points",
                "model.fit_rules[0].condition",
                "model.thresholds[1].points",
            ]
        );
    }

    #[test]
    fn conditions_match_properties_and_attributes() {
        let model = CompiledModel::new("m", 1, &default_spec());
        let pricing = &model.event_rules[3];
        let props = BTreeMap::from([("url".to_owned(), "https://x.test/Pricing/team".to_owned())]);
        assert!(pricing.matches("page_view", &props));
        assert!(!pricing.matches("page_view", &BTreeMap::new()));
        assert!(!pricing.matches("email_open", &props));
        let attrs = BTreeMap::from([("job_title".to_owned(), "VP Engineering".to_owned())]);
        assert!(model.fit_rules[0].holds(&attrs));
        assert!(!model.fit_rules[1].holds(&attrs), "no company");
        assert_eq!(model.band(49.9), "");
        assert_eq!(model.band(50.0), "MQL");
        assert_eq!(model.band(250.0), "SQL");
        assert!(model.rank("SQL") > model.rank("MQL"));
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Text that is sometimes a valid id, type or condition and often not.
    fn word() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z][a-z0-9_]{0,10}",
            any::<String>(),
            Just(String::new()),
            Just(r#"plan = "pro""#.to_owned()),
            Just("((((".to_owned()),
        ]
    }

    fn points() -> impl Strategy<Value = f64> {
        prop_oneof![
            -20_000.0..20_000.0f64,
            Just(0.0),
            Just(f64::NAN),
            Just(f64::INFINITY),
            any::<f64>(),
        ]
    }

    /// Arbitrary specs, and the default spec with its points and thresholds drawn at random,
    /// so valid models are generated often enough for the second half of the property.
    fn spec() -> impl Strategy<Value = ModelSpec> {
        let near_default = (points(), 1.0..500.0f64).prop_map(|(points, first)| {
            let mut spec = default_spec();
            if let Some(rule) = spec.event_rules.first_mut() {
                rule.points = points;
            }
            for (i, t) in spec.thresholds.iter_mut().enumerate() {
                t.points = first * (i + 1) as f64;
            }
            spec
        });
        prop_oneof![any_spec(), near_default]
    }

    fn any_spec() -> impl Strategy<Value = ModelSpec> {
        let event = (
            word(),
            word(),
            word(),
            points(),
            0u32..20_000,
            any::<i64>(),
            any::<Option<i64>>(),
        )
            .prop_map(
                |(
                    id,
                    interaction_type,
                    property_condition,
                    points,
                    cap_count,
                    cap_window,
                    half_life,
                )| {
                    EventRule {
                        id,
                        interaction_type,
                        property_condition,
                        points,
                        cap_count,
                        cap_window,
                        half_life,
                    }
                },
            );
        let fit =
            (word(), word(), word(), points()).prop_map(|(id, attribute, condition, points)| {
                FitRule {
                    id,
                    attribute,
                    condition,
                    points,
                }
            });
        let threshold = (word(), points()).prop_map(|(name, points)| Threshold { name, points });
        (
            word(),
            proptest::collection::vec(event, 0..4),
            proptest::collection::vec(fit, 0..4),
            proptest::collection::vec(threshold, 0..4),
        )
            .prop_map(
                |(display_name, event_rules, fit_rules, thresholds)| ModelSpec {
                    display_name,
                    event_rules,
                    fit_rules,
                    thresholds,
                },
            )
    }

    proptest! {
        #[test]
        fn validation_names_fields_under_its_prefix_and_valid_models_behave(spec in spec(), total in -1e6..1e6f64) {
            let violations = validate(&spec, "model");
            for v in &violations {
                prop_assert!(v.field.starts_with("model."), "{}", v.field);
                prop_assert!(!v.description.is_empty());
            }
            if violations.is_empty() {
                // What passes validation compiles, and its bands rise with the score.
                for rule in spec.event_rules.iter().map(|r| r.points).chain(spec.fit_rules.iter().map(|r| r.points)) {
                    prop_assert!(rule.is_finite() && rule != 0.0 && rule.abs() <= MAX_POINTS);
                }
                let model = CompiledModel::new("m", 1, &spec);
                let low = model.rank(&model.band(total));
                let high = model.rank(&model.band(total + 1.0));
                prop_assert!(low <= high);
                prop_assert_eq!(model.rank(&model.band(f64::MAX)), spec.thresholds.len());
            }
        }
    }
}
