//! Calendar periods in UTC: days, ISO weeks (Monday first), months, quarters, years, as
//! consecutive integer indexes so "the previous period" is index - 1.

use chrono::{Datelike, NaiveDate};

use super::{DAY, Micros};

/// A period length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// One day.
    Day,
    /// One ISO week.
    Week,
    /// One month.
    Month,
    /// One quarter.
    Quarter,
    /// One year.
    Year,
}

fn date_of(day: i64) -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("a date") + chrono::Days::new(day.max(0) as u64)
}

impl Period {
    /// The index of the period holding `day` (days since 1970-01-01).
    pub fn index(self, day: i64) -> i64 {
        let date = date_of(day);
        let months = i64::from(date.year()) * 12 + i64::from(date.month0());
        match self {
            Self::Day => day,
            // 1970-01-01 was a Thursday: shift so weeks start on Monday.
            Self::Week => (day + 3).div_euclid(7),
            Self::Month => months,
            Self::Quarter => months.div_euclid(3),
            Self::Year => i64::from(date.year()),
        }
    }

    /// The first instant of period `index`.
    pub fn start(self, index: i64) -> Micros {
        let from_months = |months: i64| {
            let (year, month0) = (months.div_euclid(12), months.rem_euclid(12));
            NaiveDate::from_ymd_opt(year as i32, month0 as u32 + 1, 1)
                .map_or(0, |d| (d - date_of(0)).num_days() * DAY)
        };
        match self {
            Self::Day => index * DAY,
            Self::Week => (index * 7 - 3) * DAY,
            Self::Month => from_months(index),
            Self::Quarter => from_months(index * 3),
            Self::Year => from_months(index * 12),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> i64 {
        (NaiveDate::from_ymd_opt(y, m, d).unwrap() - date_of(0)).num_days()
    }

    #[test]
    fn periods_start_where_the_calendar_says() {
        // 2026-01-01 is a Thursday; its ISO week starts Monday 2025-12-29.
        let thursday = day(2026, 1, 1);
        assert_eq!(
            Period::Week.start(Period::Week.index(thursday)),
            day(2025, 12, 29) * DAY
        );
        assert_eq!(
            Period::Week.index(day(2026, 1, 4)),
            Period::Week.index(thursday),
            "Sunday is the same week"
        );
        assert_eq!(
            Period::Week.index(day(2026, 1, 5)),
            Period::Week.index(thursday) + 1
        );
        assert_eq!(
            Period::Month.start(Period::Month.index(day(2026, 3, 31))),
            day(2026, 3, 1) * DAY
        );
        assert_eq!(
            Period::Month.index(day(2026, 1, 15)) - Period::Month.index(day(2025, 12, 15)),
            1
        );
        assert_eq!(
            Period::Quarter.start(Period::Quarter.index(day(2026, 5, 20))),
            day(2026, 4, 1) * DAY
        );
    }
}
