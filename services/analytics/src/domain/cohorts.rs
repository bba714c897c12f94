//! Cohort retention. A cohort is the customers whose first order (or creation) falls in one
//! period; period k is the k-th period after it. Retained "on" k: ordered in period k;
//! "on or after" k: ordered in period k or any later one up to `as_of`. Shares are
//! relative to the cohort's size (period zero) or to the previous period's retained
//! count; the mean row weighs each cohort by its size over the cohorts that reached k.

use std::collections::BTreeMap;

use super::periods::Period;

/// One cohort's row.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CohortRow {
    /// The cohort's period index.
    pub cohort: i64,
    /// Members.
    pub size: i64,
    /// Retained per period k.
    pub retained: Vec<i64>,
    /// Shares per period k.
    pub shares: Vec<f64>,
    /// Revenue per period k, micros.
    pub revenue: Vec<i64>,
}

/// One member: its cohort period and its days with revenue as (day, micros, whether the
/// day holds an order rather than only refunds).
pub type Member = (i64, Vec<(i64, i64, bool)>);

/// The cohorts starting in `[first, last]` and the weighted mean row; `last_period` is
/// the period of `as_of` (no cohort reports past it).
pub fn cohorts(
    members: &[Member],
    period: Period,
    first: i64,
    last: i64,
    last_period: i64,
    on_or_after: bool,
    relative_to_previous: bool,
) -> (Vec<CohortRow>, CohortRow) {
    let mut groups: BTreeMap<i64, Vec<&Member>> = BTreeMap::new();
    for m in members.iter().filter(|m| m.0 >= first && m.0 <= last) {
        groups.entry(m.0).or_default().push(m);
    }
    let share = |num: i64, den: i64| {
        if den == 0 {
            0.0
        } else {
            num as f64 / den as f64
        }
    };
    let mut rows = Vec::new();
    for (cohort, group) in groups {
        let periods = (last_period - cohort + 1).max(0) as usize;
        let mut retained = vec![0i64; periods];
        let mut revenue = vec![0i64; periods];
        for (_, orders) in &group {
            let mut active = vec![false; periods];
            for (day, micros, order) in orders {
                let k = period.index(*day) - cohort;
                if k >= 0 && (k as usize) < periods {
                    active[k as usize] |= *order;
                    revenue[k as usize] += micros;
                }
            }
            if on_or_after {
                for k in (0..periods.saturating_sub(1)).rev() {
                    active[k] |= active[k + 1];
                }
            }
            for (k, a) in active.iter().enumerate() {
                retained[k] += i64::from(*a);
            }
        }
        let size = group.len() as i64;
        let shares = (0..periods)
            .map(|k| {
                let base = if relative_to_previous && k > 0 {
                    retained[k - 1]
                } else {
                    size
                };
                share(retained[k], base)
            })
            .collect();
        rows.push(CohortRow {
            cohort,
            size,
            retained,
            shares,
            revenue,
        });
    }
    let width = rows.iter().map(|r| r.retained.len()).max().unwrap_or(0);
    let mut mean = CohortRow {
        cohort: 0,
        size: rows.iter().map(|r| r.size).sum(),
        ..CohortRow::default()
    };
    for k in 0..width {
        let reached: Vec<&CohortRow> = rows.iter().filter(|r| r.retained.len() > k).collect();
        let retained: i64 = reached.iter().map(|r| r.retained[k]).sum();
        let base: i64 = reached
            .iter()
            .map(|r| {
                if relative_to_previous && k > 0 {
                    r.retained[k - 1]
                } else {
                    r.size
                }
            })
            .sum();
        mean.retained.push(retained);
        mean.revenue
            .push(reached.iter().map(|r| r.revenue[k]).sum());
        mean.shares.push(share(retained, base));
    }
    (rows, mean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_and_on_or_after_with_a_weighted_mean() {
        // Day periods. Cohort 0: a (orders 0, 2), b (0). Cohort 1: c (1, 2). as_of period 2.
        let members: Vec<Member> = vec![
            (0, vec![(0, 10, true), (2, 5, true)]),
            (0, vec![(0, 20, true), (1, -4, false)]), // a refund is revenue, not activity
            (1, vec![(1, 7, true), (2, 3, true)]),
        ];
        let (rows, mean) = cohorts(&members, Period::Day, 0, 1, 2, false, false);
        assert_eq!(rows[0].retained, [2, 0, 1]);
        assert_eq!(rows[0].revenue, [30, -4, 5]);
        assert_eq!(rows[1].retained, [1, 1]);
        assert_eq!(rows[0].shares, [1.0, 0.0, 0.5]);
        // Mean: k0 3/3; k1 (0 + 1)/(2 + 1); k2 1/2 (only cohort 0 reached it).
        assert_eq!(mean.retained, [3, 1, 1]);
        assert!((mean.shares[1] - 1.0 / 3.0).abs() < 1e-12);
        assert!((mean.shares[2] - 0.5).abs() < 1e-12);
        let (after, _) = cohorts(&members, Period::Day, 0, 1, 2, true, false);
        assert_eq!(
            after[0].retained,
            [2, 1, 1],
            "a ordered later, so a counts at k1"
        );
        let (previous, _) = cohorts(&members, Period::Day, 0, 1, 2, false, true);
        assert_eq!(
            previous[0].shares,
            [1.0, 0.0, 0.0],
            "k2 relative to k1's zero"
        );
    }
}
