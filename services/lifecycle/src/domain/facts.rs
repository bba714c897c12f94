//! What lifecycle knows about a contact, and the conditions of entry rules and segments
//! over it.
//!
//! Fields: `event` (the type of the interaction being applied, for entry rules), `stage`,
//! `band`, `score`, `attributes.KEY`, `count.TYPE.Nd` (interactions of a type in the last N
//! days), `spend.Nd` (purchase value in the last N days, in major units) and
//! `inactive_days` (days since the last interaction). Numbers compare as numbers; `band`
//! orders by rank (none < MQL < SQL) for `<`, `<=`, `>`, `>=`.

use std::collections::BTreeMap;

use clm_filter::{Comparison, FilterError, Mapped, Op};

use super::{DAY, Micros};

/// Band names in increasing order, for ordered comparisons of `band`.
const BAND_ORDER: &[&str] = &["", "MQL", "SQL"];
/// Longest window of `count` and `spend`.
pub const MAX_WINDOW_DAYS: i64 = 3650;

/// One recorded interaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    /// Its type.
    pub kind: String,
    /// When it happened.
    pub occurred_at: Micros,
    /// Its value in micros (0 without one).
    pub amount_micros: i64,
}

/// Everything conditions can look at.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// Attributes from contacts.
    pub attributes: BTreeMap<String, String>,
    /// The default model's score.
    pub score: f64,
    /// The default model's band.
    pub band: String,
    /// The contact's interactions (the recent ones conditions need).
    pub activities: Vec<Activity>,
    /// The contact's current stage (in the model being evaluated).
    pub stage: String,
    /// The type of the interaction being applied, if the signal is one.
    pub event: Option<String>,
    /// The contact's latest interaction when `activities` holds only part of the history.
    pub last_activity_at: Option<Micros>,
}

impl Facts {
    /// When the contact last did anything.
    pub fn last_activity(&self) -> Option<Micros> {
        self.activities
            .iter()
            .map(|a| a.occurred_at)
            .chain(self.last_activity_at)
            .max()
    }
}

/// The part of a contact's history a set of conditions can look at: the interactions of
/// the types they count (purchases for `spend`) within their longest window, and the time
/// of the latest interaction when one asks for `inactive_days`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// The interaction types counted.
    pub kinds: std::collections::BTreeSet<String>,
    /// The longest window of a count or a sum.
    pub span: Micros,
    /// Whether `inactive_days` is asked for.
    pub last: bool,
}

impl History {
    /// Only the time of the latest interaction.
    pub const LATEST: Self = Self {
        kinds: std::collections::BTreeSet::new(),
        span: 0,
        last: true,
    };

    /// What `conditions` read.
    pub fn of<'a>(conditions: impl IntoIterator<Item = &'a Condition>) -> Self {
        let (mut kinds, mut span, mut last) = (std::collections::BTreeSet::new(), 0, false);
        for check in conditions.into_iter().flatten().flat_map(|c| c.leaves()) {
            match &check.field {
                Field::Count(kind, window) => {
                    kinds.insert(kind.clone());
                    span = span.max(*window);
                }
                Field::Spend(window) => {
                    kinds.insert(PURCHASE.to_owned());
                    span = span.max(*window);
                }
                Field::InactiveDays => last = true,
                _ => {}
            }
        }
        Self { kinds, span, last }
    }
}

/// The interaction type whose values `spend` adds up.
const PURCHASE: &str = "purchase";

/// A compiled field reference.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// The current event's type.
    Event,
    /// The current stage.
    Stage,
    /// The band.
    Band,
    /// The score.
    Score,
    /// A contact attribute.
    Attribute(String),
    /// Interactions of a type within a window.
    Count(String, Micros),
    /// Purchase value within a window, in major units.
    Spend(Micros),
    /// Days since the last interaction.
    InactiveDays,
}

/// One comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    field: Field,
    op: Op,
    value: String,
}

/// A compiled condition; `None` always holds.
pub type Condition = Option<Mapped<Check>>;

fn window(text: &str) -> Option<Micros> {
    let days: i64 = text.strip_suffix('d')?.parse().ok()?;
    (1..=MAX_WINDOW_DAYS).contains(&days).then_some(days * DAY)
}

fn field(c: &Comparison, allow_event: bool) -> Result<Field, FilterError> {
    let name = c.field.as_str();
    let bad = |message: String| FilterError::at(c.field_at, message);
    let field = match name {
        "event" if allow_event => Field::Event,
        "stage" => Field::Stage,
        "band" => Field::Band,
        "score" => Field::Score,
        "inactive_days" => Field::InactiveDays,
        _ => {
            if let Some(key) = name.strip_prefix("attributes.") {
                if key.is_empty() || key.len() > 64 {
                    return Err(bad("attribute keys are 1 to 64 characters".into()));
                }
                Field::Attribute(key.to_owned())
            } else if let Some(rest) = name.strip_prefix("count.") {
                let (kind, days) = rest
                    .rsplit_once('.')
                    .ok_or_else(|| bad("write count.TYPE.Nd, e.g. count.purchase.90d".into()))?;
                let span = window(days).ok_or_else(|| {
                    bad(format!("window {days:?} must be 1d to {MAX_WINDOW_DAYS}d"))
                })?;
                Field::Count(kind.to_owned(), span)
            } else if let Some(days) = name.strip_prefix("spend.") {
                Field::Spend(window(days).ok_or_else(|| {
                    bad(format!("window {days:?} must be 1d to {MAX_WINDOW_DAYS}d"))
                })?)
            } else {
                return Err(bad(format!(
                    "unknown field {name:?}; use {}stage, band, score, attributes.KEY, count.TYPE.Nd, spend.Nd or inactive_days",
                    if allow_event { "event, " } else { "" }
                )));
            }
        }
    };
    let numeric = matches!(
        field,
        Field::Score | Field::Count(..) | Field::Spend(_) | Field::InactiveDays
    );
    if numeric && c.value.trim().parse::<f64>().is_err() {
        return Err(FilterError::at(
            c.value_at,
            format!("{name} compares with a number, not {:?}", c.value),
        ));
    }
    Ok(field)
}

/// Compiles `source`; `event` is allowed in entry rules, not in segments.
pub fn compile(source: &str, allow_event: bool) -> Result<Condition, FilterError> {
    let Some(expr) = clm_filter::parse(source)? else {
        return Ok(None);
    };
    Ok(Some(expr.try_map(&|c: &Comparison| {
        Ok(Check {
            field: field(c, allow_event)?,
            op: c.op,
            value: c.value.clone(),
        })
    })?))
}

fn band_rank(band: &str) -> Option<usize> {
    BAND_ORDER.iter().position(|b| *b == band)
}

fn number(value: f64) -> String {
    format!("{value}")
}

/// Whether `condition` holds for `facts` at `now`.
pub fn holds(condition: &Condition, facts: &Facts, now: Micros) -> bool {
    let Some(condition) = condition else {
        return true;
    };
    condition.eval(&|check: &Check| {
        let actual = match &check.field {
            Field::Event => match &facts.event {
                Some(event) => event.clone(),
                None => return false,
            },
            Field::Stage => facts.stage.clone(),
            Field::Band => {
                if !matches!(check.op, Op::Eq | Op::Ne | Op::Contains)
                    && let (Some(a), Some(b)) = (band_rank(&facts.band), band_rank(&check.value))
                {
                    return clm_filter::compare_text(&a.to_string(), check.op, &b.to_string());
                }
                facts.band.clone()
            }
            Field::Score => number(facts.score),
            Field::Attribute(key) => match facts.attributes.get(key) {
                Some(value) => value.clone(),
                None => return false,
            },
            Field::Count(kind, span) => facts
                .activities
                .iter()
                .filter(|a| &a.kind == kind && a.occurred_at > now - span && a.occurred_at <= now)
                .count()
                .to_string(),
            Field::Spend(span) => number(
                facts
                    .activities
                    .iter()
                    .filter(|a| {
                        a.kind == PURCHASE && a.occurred_at > now - span && a.occurred_at <= now
                    })
                    .map(|a| a.amount_micros as f64 / 1e6)
                    .sum(),
            ),
            Field::InactiveDays => match facts.last_activity() {
                Some(last) => number(((now - last) / DAY) as f64),
                None => return false,
            },
        };
        clm_filter::compare_text(&actual, check.op, &check.value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn activity(kind: &str, at: Micros, amount: i64) -> Activity {
        Activity {
            kind: kind.into(),
            occurred_at: at,
            amount_micros: amount,
        }
    }

    #[test]
    fn windows_count_and_sum_only_recent_activity() {
        let now = 1000 * DAY;
        let facts = Facts {
            activities: vec![
                activity("purchase", now - 10 * DAY, 2_000_000_000),
                activity("purchase", now - 100 * DAY, 4_000_000_000),
                activity("email_open", now - DAY, 0),
            ],
            ..Facts::default()
        };
        let c = |s: &str| compile(s, false).unwrap();
        assert!(holds(&c(r#"count.purchase.90d = "1""#), &facts, now));
        assert!(holds(&c(r#"count.purchase.365d >= "2""#), &facts, now));
        assert!(holds(&c(r#"spend.365d >= "6000""#), &facts, now));
        assert!(!holds(&c(r#"spend.30d > "2000""#), &facts, now));
        assert!(holds(&c(r#"inactive_days = "1""#), &facts, now));
        // The window slides: 81 days later the recent purchase is out of 90 days too.
        assert!(holds(
            &c(r#"count.purchase.90d = "0""#),
            &facts,
            now + 81 * DAY
        ));
    }

    #[test]
    fn history_needed_is_the_counted_types_over_the_longest_window() {
        let c = |s: &str| compile(s, true).unwrap();
        let rules = [
            c(r#"event = "purchase" AND count.purchase.365d >= "2""#),
            c(r#"NOT count.demo_request.30d = "0" OR spend.400d > "10""#),
            c(r#"band = "SQL""#),
            None,
        ];
        assert_eq!(
            History::of(&rules),
            History {
                kinds: ["demo_request", "purchase"].map(String::from).into(),
                span: 400 * DAY,
                last: false,
            }
        );
        assert_eq!(
            History::of(&[c(r#"stage = "x" OR inactive_days > "30""#)]),
            History {
                kinds: Default::default(),
                span: 0,
                last: true,
            }
        );
    }

    #[test]
    fn the_latest_interaction_counts_when_the_history_is_partial() {
        let facts = Facts {
            activities: vec![activity("purchase", 5 * DAY, 1)],
            last_activity_at: Some(9 * DAY),
            ..Facts::default()
        };
        assert_eq!(facts.last_activity(), Some(9 * DAY));
        let c = compile(r#"inactive_days = "1""#, false).unwrap();
        assert!(holds(&c, &facts, 10 * DAY));
    }

    #[test]
    fn bands_order_by_rank_and_events_match_the_signal() {
        let facts = Facts {
            band: "SQL".into(),
            event: Some("demo_request".into()),
            ..Facts::default()
        };
        let rule = compile(r#"band >= "MQL" OR event = "webinar_attended""#, true).unwrap();
        assert!(holds(&rule, &facts, 0));
        let below = Facts {
            band: String::new(),
            ..facts.clone()
        };
        assert!(!holds(&rule, &below, 0));
        assert!(holds(
            &compile(r#"event = "demo_request""#, true).unwrap(),
            &facts,
            0
        ));
    }

    #[test]
    fn unknown_fields_and_bad_windows_name_the_position() {
        assert_eq!(
            compile(r#"event = "x""#, false).unwrap_err().position,
            1,
            "no event in segments"
        );
        assert_eq!(
            compile(r#"stage = "a" AND colour = "b""#, false)
                .unwrap_err()
                .position,
            17
        );
        assert!(compile(r#"count.purchase.0d > "1""#, false).is_err());
        assert!(compile(r#"count.purchase > "1""#, false).is_err());
        assert_eq!(compile(r#"score > "high""#, false).unwrap_err().position, 9);
    }
}
