//! Funnels over ordered steps (interaction types, or stages entered). A contact enters at
//! its first step-1 event in the range; the conversion window is measured from it.
//!
//! - *sequential*: each next step is the first event of its type after the previous step;
//!   other events may come between.
//! - *strict*: the next step must be the contact's very next tracked event.
//! - *any*: steps may come in any order within the window; step k counts a contact that did
//!   all of steps 1..k.
//!
//! An exclusion event after entry stops the contact's progress at the step it had reached.
//!
//! Events at the same instant are taken in the order of the funnel's steps, then its
//! exclusions, then any other type: a demo request and a purchase recorded in the same
//! microsecond count as the steps list them, not by chance (such as their ids' order).

use std::collections::{BTreeMap, HashMap};

use super::{Micros, median};

/// How steps must follow each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// In order, others may come between.
    Sequential,
    /// In order, nothing between.
    Strict,
    /// In any order.
    Any,
}

/// One step's numbers, in the order of the steps.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StepRow {
    /// Contacts that reached it.
    pub contacts: i64,
    /// Share of step 1.
    pub overall: f64,
    /// Share of the previous step.
    pub from_previous: f64,
    /// Median micros from the previous step.
    pub median_from_previous: Option<Micros>,
}

/// How far one contact got, and when it reached each step. Events, steps and exclusions
/// are keyed alike: by name, or by a code standing for it.
fn progress<K: Copy + PartialEq>(
    events: &[(Micros, K)],
    steps: &[K],
    exclusions: &[K],
    order: Order,
    range: (Micros, Micros),
    window: Micros,
) -> Vec<Micros> {
    let Some(entry) = events
        .iter()
        .position(|(t, kind)| *kind == steps[0] && *t >= range.0 && *t < range.1)
    else {
        return Vec::new();
    };
    let start = events[entry].0;
    let deadline = start.saturating_add(window);
    // Events are sorted: those inside the window are a slice, borrowed, not collected.
    let rest = &events[entry + 1..];
    let after = &rest[..rest.partition_point(|(t, _)| *t <= deadline)];
    let stop = after
        .iter()
        .find(|(_, kind)| exclusions.contains(kind))
        .map_or(Micros::MAX, |(t, _)| *t);
    let mut reached = vec![start];
    match order {
        Order::Sequential => {
            let mut from = 0;
            for step in &steps[1..] {
                match after[from..]
                    .iter()
                    .position(|(t, kind)| kind == step && *t < stop)
                {
                    Some(i) => {
                        reached.push(after[from + i].0);
                        from += i + 1;
                    }
                    None => break,
                }
            }
        }
        Order::Strict => {
            for (i, step) in steps[1..].iter().enumerate() {
                match after.get(i) {
                    Some((t, kind)) if kind == step && *t < stop => reached.push(*t),
                    _ => break,
                }
            }
        }
        Order::Any => {
            let first_of = |step: &K| {
                after
                    .iter()
                    .find(|(t, kind)| kind == step && *t < stop)
                    .map(|(t, _)| *t)
            };
            for step in &steps[1..] {
                match first_of(step) {
                    Some(t) => reached.push(t),
                    None => break,
                }
            }
        }
    }
    reached
}

/// The funnel of `contacts` (each with its events sorted by time), and of
/// `entered_only` more contacts known to have entered and done nothing after.
pub fn funnel<K: Copy + PartialEq>(
    contacts: &[Vec<(Micros, K)>],
    entered_only: i64,
    steps: &[K],
    exclusions: &[K],
    order: Order,
    range: (Micros, Micros),
    window: Micros,
) -> Vec<StepRow> {
    let mut counts = vec![0i64; steps.len()];
    counts[0] = entered_only;
    let mut gaps: Vec<Vec<Micros>> = vec![Vec::new(); steps.len()];
    for events in contacts {
        let reached = progress(events, steps, exclusions, order, range, window);
        for (k, t) in reached.iter().enumerate() {
            counts[k] += 1;
            if k > 0 {
                gaps[k].push((t - reached[k - 1]).abs());
            }
        }
    }
    let share = |a: i64, b: i64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    (0..steps.len())
        .map(|k| StepRow {
            contacts: counts[k],
            overall: share(counts[k], counts[0]),
            from_previous: if k == 0 {
                share(counts[0], counts[0])
            } else {
                share(counts[k], counts[k - 1])
            },
            median_from_previous: if k == 0 { None } else { median(&mut gaps[k]) },
        })
        .collect()
}

/// Groups contacts by a breakdown value, keeping their events.
pub fn by_value<K>(
    contacts: Vec<(String, Vec<(Micros, K)>)>,
) -> BTreeMap<String, Vec<Vec<(Micros, K)>>> {
    let mut groups: BTreeMap<String, Vec<Vec<(Micros, K)>>> = BTreeMap::new();
    for (value, events) in contacts {
        groups.entry(value).or_default().push(events);
    }
    groups
}

/// A contact and its funnel events, as (instant, step code).
pub type ContactEvents = (String, Vec<(i64, u16)>);

/// `events` with the entry inserted before the other events at its instant, as step 1
/// comes first.
pub fn with_entry(mut events: Vec<(i64, u16)>, entry: (i64, u16)) -> Vec<(i64, u16)> {
    let at = events.partition_point(|(t, _)| *t < entry.0);
    events.insert(at, entry);
    events
}

/// A funnel's steps and exclusions as small codes (the position of a name among them), so
/// events are compared as numbers and not held as strings; events of other types share
/// one code of their own.
pub struct StepCodes<'a> {
    /// Steps, then exclusions.
    pub kinds: Vec<&'a str>,
    /// The steps' codes.
    pub steps: Vec<u16>,
    /// The exclusions' codes.
    pub exclusions: Vec<u16>,
}

impl<'a> StepCodes<'a> {
    /// The code of events whose type is no step and no exclusion.
    const OTHER: u16 = u16::MAX;

    /// The codes of a funnel's steps and exclusions.
    pub fn new(steps: &'a [String], exclusions: &'a [String]) -> Self {
        let kinds: Vec<&str> = steps.iter().chain(exclusions).map(String::as_str).collect();
        let mut codes = Self {
            kinds,
            steps: Vec::new(),
            exclusions: Vec::new(),
        };
        codes.steps = steps.iter().map(|s| codes.of(s)).collect();
        codes.exclusions = exclusions.iter().map(|s| codes.of(s)).collect();
        codes
    }

    /// The code of a type.
    pub fn of(&self, kind: &str) -> u16 {
        // At most 40 names (validated), so the position fits.
        self.kinds
            .iter()
            .position(|k| *k == kind)
            .map_or(Self::OTHER, |i| i as u16)
    }

    /// A contact's events as codes, in the order funnels take them (see the module's head).
    pub fn timeline(&self, events: Vec<(i64, String)>) -> Vec<(i64, u16)> {
        let mut coded: Vec<(i64, u16)> =
            events.into_iter().map(|(t, k)| (t, self.of(&k))).collect();
        coded.sort_unstable();
        coded
    }

    /// Each contact's events as codes, in the order funnels take them.
    pub fn of_all(&self, events: HashMap<String, Vec<(i64, String)>>) -> Vec<ContactEvents> {
        events
            .into_iter()
            .map(|(contact, list)| (contact, self.timeline(list)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps<'a>(names: &[&'a str]) -> Vec<&'a str> {
        names.to_vec()
    }

    #[test]
    fn sequential_strict_and_any_differ_as_defined() {
        let s = steps(&["visit", "signup", "buy"]);
        let contacts = vec![
            vec![(1, "visit"), (2, "email"), (3, "signup"), (5, "buy")], // all steps; not strict (email between)
            vec![(1, "visit"), (2, "signup")],                           // two steps
            vec![(1, "buy"), (2, "visit"), (4, "signup")], // buy before visit: any-order only
            vec![(0, "visit")],                            // entered before the range
        ];
        let seq = funnel(&contacts, 0, &s, &[], Order::Sequential, (1, 100), 50);
        assert_eq!(
            seq.iter().map(|r| r.contacts).collect::<Vec<_>>(),
            [3, 3, 1]
        );
        assert_eq!(seq[1].median_from_previous, Some(2)); // gaps 2, 1, 2
        let strict = funnel(&contacts, 0, &s, &[], Order::Strict, (1, 100), 50);
        assert_eq!(
            strict.iter().map(|r| r.contacts).collect::<Vec<_>>(),
            [3, 2, 0]
        );
        let any = funnel(&contacts, 0, &s, &[], Order::Any, (1, 100), 50);
        assert_eq!(
            any.iter().map(|r| r.contacts).collect::<Vec<_>>(),
            [3, 3, 1],
            "the buy came before entry"
        );
        assert!((seq[2].overall - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn step_codes_name_each_type_once_and_order_ties_by_step() {
        let steps = ["visit".to_owned(), "buy".to_owned()];
        let exclusions = ["unsubscribe".to_owned(), "visit".to_owned()];
        let codes = StepCodes::new(&steps, &exclusions);
        assert_eq!(codes.steps, [0, 1]);
        assert_eq!(
            codes.exclusions,
            [2, 0],
            "a type listed twice keeps one code"
        );
        assert_eq!(codes.of("email"), StepCodes::OTHER);
        let events = vec![
            (5, "email".into()),
            (5, "buy".into()),
            (5, "visit".into()),
            (3, "buy".into()),
        ];
        assert_eq!(
            codes.timeline(events),
            [(3, 1), (5, 0), (5, 1), (5, StepCodes::OTHER)]
        );
    }

    #[test]
    fn windows_and_exclusions_stop_progress() {
        let s = steps(&["visit", "buy"]);
        let contacts = vec![
            vec![(1, "visit"), (100, "buy")],
            vec![(1, "visit"), (2, "unsubscribe"), (3, "buy")],
        ];
        let rows = funnel(
            &contacts,
            0,
            &s,
            &steps(&["unsubscribe"]),
            Order::Sequential,
            (0, 10),
            50,
        );
        assert_eq!(rows.iter().map(|r| r.contacts).collect::<Vec<_>>(), [2, 0]);
    }
}
