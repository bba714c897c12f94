//! Net Promoter Score: each contact's latest answer counts once; 9-10 promote, 7-8 are
//! passive, 0-6 detract; NPS = (promoters - detractors) / answers x 100.

use std::collections::BTreeMap;

/// NPS over a group of answers.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Nps {
    /// Answers counted.
    pub responses: i64,
    /// 9-10.
    pub promoters: i64,
    /// 7-8.
    pub passives: i64,
    /// 0-6.
    pub detractors: i64,
    /// The score, -100 to 100 (0 without answers).
    pub nps: f64,
}

/// The NPS of `answers` (contact, when, score), taking each contact's latest answer.
pub fn nps(answers: &[(String, i64, i32)]) -> Nps {
    let mut latest: BTreeMap<&str, (i64, i32)> = BTreeMap::new();
    for (contact, at, score) in answers {
        let entry = latest.entry(contact).or_insert((*at, *score));
        if *at >= entry.0 {
            *entry = (*at, *score);
        }
    }
    let mut result = Nps::default();
    for (_, score) in latest.values() {
        result.responses += 1;
        match score {
            9..=10 => result.promoters += 1,
            7..=8 => result.passives += 1,
            _ => result.detractors += 1,
        }
    }
    if result.responses > 0 {
        result.nps =
            (result.promoters - result.detractors) as f64 * 100.0 / result.responses as f64;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_answer_per_contact_counts() {
        let answers = vec![
            ("a".to_owned(), 1, 3),  // replaced by a's later 10
            ("a".to_owned(), 5, 10), // promoter
            ("b".to_owned(), 2, 9),  // promoter
            ("c".to_owned(), 2, 7),  // passive
            ("d".to_owned(), 2, 6),  // detractor
        ];
        let n = nps(&answers);
        assert_eq!(
            (n.responses, n.promoters, n.passives, n.detractors),
            (4, 2, 1, 1)
        );
        assert!((n.nps - 25.0).abs() < 1e-9);
        assert_eq!(nps(&[]), Nps::default());
    }
}
