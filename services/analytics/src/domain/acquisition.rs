//! CAC and ROMI per channel or campaign. Attribution is first touch: a customer belongs to
//! the source (channel) and campaign it was acquired through. CAC = spend / customers
//! acquired (first order in the range); ROMI = (attributed revenue - spend) / spend, where
//! attributed revenue is the range's order revenue of the key's customers. Spend records
//! that straddle the range count in proportion to their overlap.

use std::collections::BTreeMap;

use super::Micros;
use super::money::divide;
use crate::store::Customer;

/// One key's numbers.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AcquisitionRow {
    /// Channel or campaign ("" when unknown).
    pub key: String,
    /// Spend in the range, micros.
    pub spend_micros: i64,
    /// Customers whose first order is in the range.
    pub customers_acquired: i64,
    /// spend / customers, micros, when any customer was acquired.
    pub cac_micros: Option<i64>,
    /// Revenue in the range of the key's customers, micros.
    pub revenue_micros: i64,
    /// (revenue - spend) / spend, when there was spend.
    pub romi: Option<f64>,
}

/// The part of a spend record inside [start, end), exact to the micro (half-up).
pub fn prorated(amount: i64, period: (Micros, Micros), range: (Micros, Micros)) -> i64 {
    let length = period.1 - period.0;
    if length <= 0 {
        return if period.0 >= range.0 && period.0 < range.1 {
            amount
        } else {
            0
        };
    }
    let overlap = (period.1.min(range.1) - period.0.max(range.0)).max(0);
    divide(i128::from(amount) * i128::from(overlap), i128::from(length)).unwrap_or_default() as i64
}

/// The report: `spend` as (key, period start, period end, micros); `customers` with
/// their first-touch key; range in whole days [start_day, end_day).
pub fn acquisition(
    spend: &[(String, Micros, Micros, i64)],
    customers: &[(&Customer, String)],
    range: (Micros, Micros),
) -> (Vec<AcquisitionRow>, AcquisitionRow) {
    let day = |m: Micros| m.div_euclid(super::DAY);
    let (first_day, end_day) = (day(range.0), day(range.1 + super::DAY - 1));
    let mut rows: BTreeMap<String, AcquisitionRow> = BTreeMap::new();
    for (key, start, end, amount) in spend {
        let r = rows.entry(key.clone()).or_insert_with(|| AcquisitionRow {
            key: key.clone(),
            ..AcquisitionRow::default()
        });
        r.spend_micros += prorated(*amount, (*start, *end), range);
    }
    for (customer, key) in customers {
        let acquired = customer
            .order_days
            .first()
            .is_some_and(|d| *d >= first_day && *d < end_day);
        let revenue: i64 = customer
            .daily_micros
            .iter()
            .filter(|(d, _)| *d >= first_day && *d < end_day)
            .map(|(_, m)| m)
            .sum();
        if !acquired && revenue == 0 {
            continue;
        }
        let r = rows.entry(key.clone()).or_insert_with(|| AcquisitionRow {
            key: key.clone(),
            ..AcquisitionRow::default()
        });
        r.customers_acquired += i64::from(acquired);
        r.revenue_micros += revenue;
    }
    let finish = |r: &mut AcquisitionRow| {
        r.cac_micros = (r.customers_acquired > 0).then(|| {
            divide(i128::from(r.spend_micros), i128::from(r.customers_acquired)).unwrap_or_default()
                as i64
        });
        r.romi = (r.spend_micros > 0)
            .then(|| (r.revenue_micros - r.spend_micros) as f64 / r.spend_micros as f64);
    };
    let mut total = AcquisitionRow::default();
    let mut out: Vec<AcquisitionRow> = rows.into_values().collect();
    for r in &mut out {
        finish(r);
        total.spend_micros += r.spend_micros;
        total.customers_acquired += r.customers_acquired;
        total.revenue_micros += r.revenue_micros;
    }
    finish(&mut total);
    (out, total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::DAY;

    fn customer(id: &str, days: &[(i64, i64)]) -> Customer {
        Customer {
            contact_id: id.into(),
            source: String::new(),
            campaign: String::new(),
            order_days: days.iter().map(|(d, _)| *d).collect(),
            revenue_micros: days.iter().map(|(_, m)| m).sum(),
            daily_micros: days.to_vec(),
        }
    }

    #[test]
    fn spend_is_prorated_exactly() {
        // 100.00 over 3 days, range covers 1 day: 33.333333 -> 33.333333 (micros, half-up).
        assert_eq!(prorated(100_000_000, (0, 3 * DAY), (0, DAY)), 33_333_333);
        assert_eq!(
            prorated(100_000_000, (0, 3 * DAY), (0, 2 * DAY)),
            66_666_667
        );
        assert_eq!(prorated(100_000_000, (5 * DAY, 6 * DAY), (0, DAY)), 0);
    }

    #[test]
    fn cac_and_romi_by_first_touch() {
        // Range: days 10..20. ads spent 300.00 fully inside; email 50.00 half inside.
        let range = (10 * DAY, 20 * DAY);
        let spend = vec![
            ("ads".to_owned(), 10 * DAY, 20 * DAY, 300_000_000),
            ("email".to_owned(), 15 * DAY, 25 * DAY, 50_000_000),
        ];
        let a = customer("a", &[(12, 100_000_000), (15, 50_000_000)]); // ads, acquired
        let b = customer("b", &[(5, 20_000_000), (14, 30_000_000)]); // ads, acquired before: revenue only
        let c = customer("c", &[(19, 80_000_000)]); // email, acquired
        let d = customer("d", &[(25, 10_000_000)]); // ads, after the range
        let customers = vec![
            (&a, "ads".to_owned()),
            (&b, "ads".to_owned()),
            (&c, "email".to_owned()),
            (&d, "ads".to_owned()),
        ];
        let (rows, total) = acquisition(&spend, &customers, range);
        let ads = &rows[0];
        assert_eq!(
            (ads.spend_micros, ads.customers_acquired, ads.revenue_micros),
            (300_000_000, 1, 180_000_000)
        );
        assert_eq!(ads.cac_micros, Some(300_000_000));
        assert!((ads.romi.unwrap() - (-0.4)).abs() < 1e-12);
        let email = &rows[1];
        assert_eq!(
            (
                email.spend_micros,
                email.customers_acquired,
                email.revenue_micros
            ),
            (25_000_000, 1, 80_000_000)
        );
        assert!((email.romi.unwrap() - 2.2).abs() < 1e-12);
        assert_eq!(
            (total.spend_micros, total.customers_acquired),
            (325_000_000, 2)
        );
        assert_eq!(total.cac_micros, Some(162_500_000));
    }
}
