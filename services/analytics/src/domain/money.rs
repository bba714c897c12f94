//! Exact money: integer micros, divided with half-up rounding.

/// `numerator / denominator` rounded half away from zero, or `None` for a zero denominator.
pub fn divide(numerator: i128, denominator: i128) -> Option<i128> {
    if denominator == 0 {
        return None;
    }
    let (n, d) = if denominator < 0 {
        (-numerator, -denominator)
    } else {
        (numerator, denominator)
    };
    let half = d / 2;
    Some(if n >= 0 {
        (n + half) / d
    } else {
        -((-n + half) / d)
    })
}

/// Micros rounded half-up to whole cents, for display.
pub fn to_cents(micros: i64) -> i64 {
    divide(i128::from(micros), 10_000).unwrap_or_default() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_half_away_from_zero() {
        assert_eq!(divide(5, 2), Some(3));
        assert_eq!(divide(-5, 2), Some(-3));
        assert_eq!(divide(4, 3), Some(1));
        assert_eq!(divide(1, 0), None);
        assert_eq!(to_cents(1_005_000), 101);
        assert_eq!(to_cents(1_004_999), 100);
    }
}
