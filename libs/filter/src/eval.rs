//! Comparing values in memory, the way the SQL translation compares them in the database.

use crate::Op;

/// Whether `actual OP expected` holds. `~` is a case-insensitive substring test; the
/// ordering operators compare numerically when both sides are numbers, and as text
/// otherwise (so ISO dates order correctly).
pub fn compare_text(actual: &str, op: Op, expected: &str) -> bool {
    let ordering = match (actual.trim().parse::<f64>(), expected.trim().parse::<f64>()) {
        (Ok(a), Ok(b)) => a.partial_cmp(&b),
        _ => Some(actual.cmp(expected)),
    };
    match op {
        Op::Eq => actual == expected,
        Op::Ne => actual != expected,
        Op::Contains => actual.to_lowercase().contains(&expected.to_lowercase()),
        Op::Lt => ordering.is_some_and(std::cmp::Ordering::is_lt),
        Op::Le => ordering.is_some_and(std::cmp::Ordering::is_le),
        Op::Gt => ordering.is_some_and(std::cmp::Ordering::is_gt),
        Op::Ge => ordering.is_some_and(std::cmp::Ordering::is_ge),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_compare_as_numbers_and_text_as_text() {
        assert!(compare_text("10", Op::Gt, "9"));
        assert!(compare_text("2026-03-01", Op::Gt, "2026-02-28"));
        assert!(compare_text(
            "Chief Technology Officer (CTO)",
            Op::Contains,
            "cto"
        ));
        assert!(!compare_text("abc", Op::Eq, "ABC"));
    }
}
