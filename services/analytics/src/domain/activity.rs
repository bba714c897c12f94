//! Activity lifecycle per period, over customers' orders: *new* (first order ever in the
//! period), *returning* (ordered in this period and the previous one), *resurrecting*
//! (ordered in this period, not the previous one, but before it) and *dormant* (ordered
//! in the previous period but not in this one).

use std::collections::{BTreeMap, BTreeSet};

use super::periods::Period;

/// One period's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ActivityRow {
    /// The period's index.
    pub period: i64,
    /// First order ever.
    pub new: i64,
    /// Active now and in the previous period.
    pub returning: i64,
    /// Active now, not in the previous period, but earlier.
    pub resurrecting: i64,
    /// Active in the previous period, not now.
    pub dormant: i64,
}

/// Counts for each period index in `[first, last]`, from each customer's order days.
pub fn activity(customers: &[Vec<i64>], period: Period, first: i64, last: i64) -> Vec<ActivityRow> {
    let active: Vec<BTreeSet<i64>> = customers
        .iter()
        .map(|days| days.iter().map(|d| period.index(*d)).collect())
        .collect();
    let mut rows: BTreeMap<i64, ActivityRow> = (first..=last)
        .map(|p| {
            (
                p,
                ActivityRow {
                    period: p,
                    ..ActivityRow::default()
                },
            )
        })
        .collect();
    for periods in &active {
        let Some(&earliest) = periods.first() else {
            continue;
        };
        for (p, row) in &mut rows {
            let now = periods.contains(p);
            let before = periods.contains(&(p - 1));
            match (now, before) {
                (true, _) if *p == earliest => row.new += 1,
                (true, true) => row.returning += 1,
                (true, false) => row.resurrecting += 1,
                (false, true) => row.dormant += 1,
                (false, false) => {}
            }
        }
    }
    rows.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_customer_lands_in_one_bucket_per_period() {
        // Day periods for readability: a orders on 1, 2, 4; b on 2; c on 4.
        let customers = vec![vec![1, 2, 4], vec![2], vec![4]];
        let rows = activity(&customers, Period::Day, 1, 5);
        let counts: Vec<(i64, i64, i64, i64)> = rows
            .iter()
            .map(|r| (r.new, r.returning, r.resurrecting, r.dormant))
            .collect();
        assert_eq!(
            counts,
            [
                (1, 0, 0, 0), // day 1: a new
                (1, 1, 0, 0), // day 2: b new, a returning
                (0, 0, 0, 2), // day 3: a and b dormant (an empty period)
                (1, 0, 1, 0), // day 4: c new, a resurrecting
                (0, 0, 0, 2), // day 5: a and c dormant
            ]
        );
    }
}
