//! RFM: recency (days from the last order to `as_of`), frequency (orders, an order being
//! one contact-day of purchases) and monetary (net spend). Each is scored 1-5 against its
//! quintile cut points (the 0.2/0.4/0.6/0.8 quantiles, linearly interpolated): score = 1 +
//! the number of cut points the value exceeds, reversed for recency, so equal values always
//! share a score. Named segments come from the R and F scores through a pattern map a
//! tenant can replace.

use clm_runtime::FieldViolation;

/// One customer's values and scores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RfmRow {
    /// The contact.
    pub contact_id: String,
    /// Days since the last order.
    pub recency_days: i64,
    /// Orders.
    pub frequency: i64,
    /// Net spend in micros.
    pub monetary_micros: i64,
    /// 1-5, 5 most recent.
    pub r: i32,
    /// 1-5.
    pub f: i32,
    /// 1-5.
    pub m: i32,
    /// The named segment.
    pub segment: String,
}

/// The default score-to-segment map, first match wins; keys are R then F, each a digit or
/// a class like `[1-2]`.
pub const DEFAULT_MAP: &[(&str, &str)] = &[
    ("5[4-5]", "champions"),
    ("[3-4][4-5]", "loyal"),
    ("[4-5][2-3]", "potential_loyalists"),
    ("51", "new"),
    ("41", "promising"),
    ("33", "need_attention"),
    ("3[1-2]", "about_to_sleep"),
    ("[1-2][3-4]", "at_risk"),
    ("[1-2]5", "cant_lose"),
    ("11", "lost"),
    ("[1-2][1-2]", "hibernating"),
];

/// The quantile `q` of sorted `values`, linearly interpolated between order statistics.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    let position = (sorted.len() - 1) as f64 * q;
    let below = position.floor() as usize;
    let above = position.ceil() as usize;
    sorted[below] + (sorted[above] - sorted[below]) * (position - below as f64)
}

fn cut_points(values: &[f64]) -> [f64; 4] {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    [0.2, 0.4, 0.6, 0.8].map(|q| quantile(&sorted, q))
}

fn score(value: f64, cuts: &[f64; 4]) -> i32 {
    1 + cuts.iter().filter(|c| value > **c).count() as i32
}

/// One pattern element: a digit or a class `[a-b]`.
fn parse_pattern(pattern: &str) -> Option<Vec<(u8, u8)>> {
    let bytes = pattern.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'1'..=b'5' => {
                out.push((bytes[i], bytes[i]));
                i += 1;
            }
            b'[' if i + 4 < bytes.len()
                && bytes.get(i + 2) == Some(&b'-')
                && bytes.get(i + 4) == Some(&b']') =>
            {
                let (lo, hi) = (bytes[i + 1], bytes[i + 3]);
                if !(b'1'..=b'5').contains(&lo) || !(b'1'..=b'5').contains(&hi) || lo > hi {
                    return None;
                }
                out.push((lo, hi));
                i += 5;
            }
            _ => return None,
        }
    }
    (out.len() == 2).then_some(out)
}

/// A compiled score-to-segment map.
#[derive(Debug, Clone)]
pub struct SegmentMap(Vec<(Vec<(u8, u8)>, String)>);

impl SegmentMap {
    /// The default map.
    pub fn standard() -> Self {
        Self(
            DEFAULT_MAP
                .iter()
                .map(|(p, s)| {
                    (
                        parse_pattern(p).expect("the default patterns parse"),
                        (*s).to_owned(),
                    )
                })
                .collect(),
        )
    }

    /// A tenant's map, checked; keys are sorted so the first match is deterministic.
    pub fn custom(entries: &[(String, String)]) -> Result<Self, Vec<FieldViolation>> {
        let mut violations = Vec::new();
        let mut map = Vec::new();
        for (key, segment) in entries {
            match parse_pattern(key) {
                Some(p) if !segment.is_empty() => map.push((p, segment.clone())),
                Some(_) => violations.push(FieldViolation::new(
                    format!("segment_map[{key:?}]"),
                    "needs a segment name",
                )),
                None => violations.push(FieldViolation::new(
                    format!("segment_map[{key:?}]"),
                    "keys are two elements, R then F, each a digit 1-5 or a class such as [1-2]",
                )),
            }
        }
        if violations.is_empty() {
            Ok(Self(map))
        } else {
            Err(violations)
        }
    }

    /// The segment of scores (r, f), or "other" when no pattern matches.
    pub fn segment(&self, r: i32, f: i32) -> String {
        let digits = [b'0' + r as u8, b'0' + f as u8];
        self.0
            .iter()
            .find(|(pattern, _)| {
                pattern
                    .iter()
                    .zip(digits)
                    .all(|((lo, hi), d)| (*lo..=*hi).contains(&d))
            })
            .map_or_else(|| "other".to_owned(), |(_, s)| s.clone())
    }
}

/// Scores every customer: (contact, days since last order, orders, net spend).
pub fn rfm(customers: &[(String, i64, i64, i64)], map: &SegmentMap) -> Vec<RfmRow> {
    if customers.is_empty() {
        return Vec::new();
    }
    let recency: Vec<f64> = customers.iter().map(|c| c.1 as f64).collect();
    let frequency: Vec<f64> = customers.iter().map(|c| c.2 as f64).collect();
    let monetary: Vec<f64> = customers.iter().map(|c| c.3 as f64).collect();
    let (rc, fc, mc) = (
        cut_points(&recency),
        cut_points(&frequency),
        cut_points(&monetary),
    );
    customers
        .iter()
        .map(|(contact, days, orders, spend)| {
            let r = 6 - score(*days as f64, &rc);
            let f = score(*orders as f64, &fc);
            let m = score(*spend as f64, &mc);
            RfmRow {
                contact_id: contact.clone(),
                recency_days: *days,
                frequency: *orders,
                monetary_micros: *spend,
                r,
                f,
                m,
                segment: map.segment(r, f),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_linearly() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        // position (6-1) x 0.2 = 1.0 -> 2.0; x 0.5 = 2.5 -> 3.5
        assert!((quantile(&v, 0.2) - 2.0).abs() < 1e-12);
        assert!((quantile(&v, 0.5) - 3.5).abs() < 1e-12);
        assert!((quantile(&[7.0], 0.8) - 7.0).abs() < 1e-12);
    }

    #[test]
    fn scores_follow_the_cut_points_and_ties_share_a_score() {
        // Ten customers: recency 0..9 days, frequency 1..10, spend 10..100.
        let customers: Vec<(String, i64, i64, i64)> = (0..10)
            .map(|i| (format!("c{i}"), i, i + 1, (i + 1) * 10))
            .collect();
        let rows = rfm(&customers, &SegmentMap::standard());
        // Recency cut points: 1.8, 3.6, 5.4, 7.2 -> 0 days exceeds none: R = 5; 9 days: R = 1.
        assert_eq!((rows[0].r, rows[9].r), (5, 1));
        // Frequency 1 exceeds none (F 1); 10 exceeds all four (F 5).
        assert_eq!((rows[0].f, rows[9].f), (1, 5));
        assert_eq!(rows[0].segment, "new"); // R5 F1
        assert_eq!(rows[9].segment, "cant_lose"); // R1 F5
        let ties: Vec<(String, i64, i64, i64)> =
            (0..5).map(|i| (format!("t{i}"), 3, 2, 50)).collect();
        let tied = rfm(&ties, &SegmentMap::standard());
        assert!(
            tied.iter().all(|r| (r.r, r.f, r.m) == (5, 1, 1)),
            "equal values share a score"
        );
    }

    #[test]
    fn custom_maps_are_checked() {
        let ok = SegmentMap::custom(&[("[4-5]5".into(), "vip".into())]).unwrap();
        assert_eq!(ok.segment(4, 5), "vip");
        assert_eq!(ok.segment(1, 1), "other");
        let bad = SegmentMap::custom(&[("6x".into(), "x".into()), ("55".into(), String::new())])
            .unwrap_err();
        assert_eq!(bad.len(), 2);
    }
}
