//! The form a score state takes in the cache and in the database: a format byte, then the
//! state as a protobuf message. Decoding JSON was a fifth of a BatchGetScores(100) call's
//! handling (float and string parsing for every rule of every state); protobuf decodes the
//! same state from fixed-width numbers and length-prefixed strings. The database's copy
//! also keeps each capped rule's window, which only extending a stored state needs; the
//! cache's leaves it out. States written as JSON by earlier versions (they begin with `{`)
//! are still read: in the cache until they expire, in the database until rewritten.

use prost::Message;

use crate::domain::Micros;
use crate::domain::fold::{RulePart, ScoreState, Standing, totals};

/// The first byte of a protobuf-encoded state; JSON never starts with it.
const PROTOBUF: u8 = 1;

#[derive(Clone, PartialEq, Message)]
struct PackedState {
    #[prost(int64, tag = "1")]
    ref_time: i64,
    #[prost(message, repeated, tag = "2")]
    fit: Vec<PackedFit>,
    #[prost(message, repeated, tag = "3")]
    rules: Vec<PackedRule>,
    #[prost(int64, tag = "4")]
    model_version: i64,
    #[prost(int64, tag = "5")]
    updated_at: i64,
}

#[derive(Clone, PartialEq, Message)]
struct PackedFit {
    #[prost(string, tag = "1")]
    rule_id: String,
    #[prost(double, tag = "2")]
    points: f64,
}

#[derive(Clone, PartialEq, Message)]
struct PackedRule {
    #[prost(string, tag = "1")]
    rule_id: String,
    #[prost(int64, optional, tag = "2")]
    half_life: Option<i64>,
    #[prost(double, tag = "3")]
    raw_points: f64,
    #[prost(uint32, tag = "4")]
    awards: u32,
    #[prost(double, tag = "5")]
    value_at_ref: f64,
    /// `RulePart::last`: its instant, then its event id.
    #[prost(int64, optional, tag = "6")]
    last_at: Option<i64>,
    #[prost(string, tag = "7")]
    last_event: String,
    #[prost(int64, repeated, tag = "8")]
    window: Vec<i64>,
}

/// A cached state read for a score's totals: [`PackedState`] without the rule ids, which
/// prost skips as unknown fields instead of allocating a string for each. Reads of a
/// score (GetScore, BatchGetScores) need nothing else.
#[derive(Clone, PartialEq, Message)]
struct PackedTotals {
    #[prost(int64, tag = "1")]
    ref_time: i64,
    #[prost(message, repeated, tag = "2")]
    fit: Vec<PackedFitPoints>,
    #[prost(message, repeated, tag = "3")]
    rules: Vec<PackedRuleValue>,
    #[prost(int64, tag = "4")]
    model_version: i64,
    #[prost(int64, tag = "5")]
    updated_at: i64,
}

#[derive(Clone, PartialEq, Message)]
struct PackedFitPoints {
    #[prost(double, tag = "2")]
    points: f64,
}

#[derive(Clone, PartialEq, Message)]
struct PackedRuleValue {
    #[prost(int64, optional, tag = "2")]
    half_life: Option<i64>,
    #[prost(double, tag = "5")]
    value_at_ref: f64,
}

/// A state as the cache stores it: without the windows, which reads never use.
pub(crate) fn encode(state: &ScoreState) -> Vec<u8> {
    encode_with(state, false)
}

/// A state as the database stores it: whole.
pub fn encode_stored(state: &ScoreState) -> Vec<u8> {
    encode_with(state, true)
}

fn encode_with(state: &ScoreState, windows: bool) -> Vec<u8> {
    let message = PackedState {
        ref_time: state.ref_time,
        fit: state
            .fit
            .iter()
            .map(|(rule_id, points)| PackedFit {
                rule_id: rule_id.clone(),
                points: *points,
            })
            .collect(),
        rules: state
            .rules
            .iter()
            .map(|r| {
                let (last_at, last_event, window) = match (&r.last, windows) {
                    (Some((at, event)), true) => (Some(*at), event.clone(), r.window.clone()),
                    _ => (None, String::new(), Vec::new()),
                };
                PackedRule {
                    rule_id: r.rule_id.clone(),
                    half_life: r.half_life,
                    raw_points: r.raw_points,
                    awards: r.awards,
                    value_at_ref: r.value_at_ref,
                    last_at,
                    last_event,
                    window,
                }
            })
            .collect(),
        model_version: state.model_version,
        updated_at: state.updated_at,
    };
    let mut out = Vec::with_capacity(1 + message.encoded_len());
    out.push(PROTOBUF);
    message
        .encode(&mut out)
        .expect("a Vec grows to hold any message");
    out
}

/// A state from what the cache or the database holds; `None` when it holds something else
/// (then the database is read, as for a miss, or the ledger folded again).
pub fn decode(bytes: &[u8]) -> Option<ScoreState> {
    match bytes.split_first() {
        Some((&PROTOBUF, message)) => {
            let m = PackedState::decode(message).ok()?;
            Some(ScoreState {
                ref_time: m.ref_time,
                fit: m.fit.into_iter().map(|f| (f.rule_id, f.points)).collect(),
                rules: m
                    .rules
                    .into_iter()
                    .map(|r| RulePart {
                        rule_id: r.rule_id,
                        half_life: r.half_life,
                        raw_points: r.raw_points,
                        awards: r.awards,
                        value_at_ref: r.value_at_ref,
                        last: r.last_at.map(|at| (at, r.last_event)),
                        window: r.window,
                    })
                    .collect(),
                model_version: m.model_version,
                updated_at: m.updated_at,
            })
        }
        _ => serde_json::from_slice(bytes).ok(),
    }
}

/// The score at `now` of what the cache holds; `None` when it holds something else.
pub(crate) fn decode_standing(bytes: &[u8], now: Micros) -> Option<Standing> {
    match bytes.split_first() {
        Some((&PROTOBUF, message)) => {
            let m = PackedTotals::decode(message).ok()?;
            let (total, fit, engagement) = totals(
                m.ref_time,
                now,
                m.rules.iter().map(|r| (r.value_at_ref, r.half_life)),
                m.fit.iter().map(|f| f.points),
            );
            Some(Standing {
                total,
                fit,
                engagement,
                model_version: m.model_version,
                updated_at: m.updated_at,
            })
        }
        _ => decode(bytes).map(|state| state.standing(now)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> ScoreState {
        ScoreState {
            ref_time: 1_700_000_000_000_000,
            fit: vec![("title_vp".into(), 15.0), ("country_de".into(), -2.5)],
            rules: vec![
                RulePart {
                    rule_id: "pricing_page".into(),
                    half_life: Some(7 * 86_400_000_000),
                    raw_points: 30.0,
                    awards: 3,
                    value_at_ref: 21.25,
                    last: None,
                    window: Vec::new(),
                },
                RulePart {
                    rule_id: "demo".into(),
                    half_life: None,
                    raw_points: 0.0,
                    awards: 0,
                    value_at_ref: 0.0,
                    last: None,
                    window: Vec::new(),
                },
            ],
            model_version: 4,
            updated_at: -5,
        }
    }

    #[test]
    fn a_state_comes_back_as_it_went_in() {
        let bytes = encode(&state());
        assert_eq!(bytes[0], PROTOBUF);
        assert_eq!(decode(&bytes), Some(state()));
        let empty = ScoreState {
            fit: Vec::new(),
            rules: Vec::new(),
            ..state()
        };
        assert_eq!(decode(&encode(&empty)), Some(empty));
    }

    #[test]
    fn the_database_keeps_the_windows_and_the_cache_leaves_them_out() {
        let mut windowed = state();
        windowed.rules[0].last = Some((1_699_999_000_000_000, "evt-9".into()));
        windowed.rules[0].window = vec![1_699_990_000_000_000, 1_699_999_000_000_000];
        assert_eq!(decode(&encode_stored(&windowed)), Some(windowed.clone()));
        assert_eq!(decode(&encode(&windowed)), Some(state()));
        assert!(encode(&windowed).len() < encode_stored(&windowed).len());
        // Smaller than the JSON the database held before.
        assert!(encode_stored(&windowed).len() * 2 < serde_json::to_vec(&windowed).unwrap().len());
        let now = windowed.ref_time + 86_400_000_000;
        assert_eq!(
            decode_standing(&encode_stored(&windowed), now),
            Some(windowed.standing(now))
        );
    }

    #[test]
    fn a_read_of_the_totals_gives_the_standing_of_the_whole_state() {
        let now = state().ref_time + 10 * 86_400_000_000;
        let standing = decode_standing(&encode(&state()), now).unwrap();
        // Bit for bit: the same additions in the same order.
        assert_eq!(standing, state().standing(now));
        assert!(standing.engagement > 0.0 && standing.engagement < 21.25);
        assert_eq!(standing.fit, 12.5);
        let json = serde_json::to_vec(&state()).unwrap();
        assert_eq!(decode_standing(&json, now), Some(state().standing(now)));
        assert_eq!(decode_standing(&[PROTOBUF, 0xff, 0xff], now), None);
    }

    #[test]
    fn states_cached_as_json_are_still_read_and_garbage_is_a_miss() {
        let json = serde_json::to_vec(&state()).unwrap();
        assert_eq!(decode(&json), Some(state()));
        assert_eq!(decode(b""), None);
        assert_eq!(decode(&[PROTOBUF, 0xff, 0xff]), None);
        assert_eq!(decode(b"not a state"), None);
    }
}
