//! Stage metrics over the transition log: contacts per stage at `as_of`, entries and exits
//! in the range, the median time in stage of stays that ended in the range, and the
//! transition matrix of the range.

use std::collections::BTreeMap;

use super::{Micros, median};
use crate::store::Stay;

/// One stage's row.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StageRow {
    /// The stage.
    pub stage: String,
    /// Contacts in it at `as_of`.
    pub contacts: i64,
    /// Entries in the range.
    pub entries: i64,
    /// Exits in the range.
    pub exits: i64,
    /// Median micros in the stage of the stays that ended in the range.
    pub median_time: Option<Micros>,
}

/// The report: rows per stage (by name) and the (from, to) -> count matrix.
pub fn stage_metrics(
    stays: &[Stay],
    range: (Micros, Micros),
    as_of: Micros,
) -> (Vec<StageRow>, BTreeMap<(String, String), i64>) {
    let inside = |t: Micros| t >= range.0 && t < range.1;
    let mut rows: BTreeMap<String, StageRow> = BTreeMap::new();
    let mut durations: BTreeMap<String, Vec<Micros>> = BTreeMap::new();
    let mut matrix: BTreeMap<(String, String), i64> = BTreeMap::new();
    for stay in stays {
        let row = rows.entry(stay.stage.clone()).or_insert_with(|| StageRow {
            stage: stay.stage.clone(),
            ..StageRow::default()
        });
        let current = stay.entered_at <= as_of && stay.exited_at.is_none_or(|e| e > as_of);
        row.contacts += i64::from(current);
        if inside(stay.entered_at) {
            row.entries += 1;
            if !stay.from_stage.is_empty() {
                *matrix
                    .entry((stay.from_stage.clone(), stay.stage.clone()))
                    .or_default() += 1;
            }
        }
        if let Some(exited) = stay.exited_at
            && inside(exited)
        {
            row.exits += 1;
            durations
                .entry(stay.stage.clone())
                .or_default()
                .push(exited - stay.entered_at);
        }
    }
    for (stage, mut values) in durations {
        if let Some(row) = rows.get_mut(&stage) {
            row.median_time = median(&mut values);
        }
    }
    (rows.into_values().collect(), matrix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::DAY;

    fn stay(contact: &str, stage: &str, from: &str, entered: i64, exited: Option<i64>) -> Stay {
        Stay {
            contact_id: contact.into(),
            stage: stage.into(),
            from_stage: from.into(),
            entered_at: entered * DAY,
            exited_at: exited.map(|d| d * DAY),
            event_id: format!("{contact}{entered}"),
        }
    }

    #[test]
    fn counts_medians_and_the_matrix() {
        let stays = vec![
            stay("a", "awareness", "", 0, Some(4)),
            stay("a", "consideration", "awareness", 4, None),
            stay("b", "awareness", "", 1, Some(3)),
            stay("b", "consideration", "awareness", 3, Some(9)),
            stay("b", "conversion", "consideration", 9, None),
            stay("c", "awareness", "", 2, None),
        ];
        let (rows, matrix) = stage_metrics(&stays, (0, 10 * DAY), 10 * DAY);
        let by: BTreeMap<&str, &StageRow> = rows.iter().map(|r| (r.stage.as_str(), r)).collect();
        assert_eq!(
            (
                by["awareness"].contacts,
                by["awareness"].entries,
                by["awareness"].exits
            ),
            (1, 3, 2)
        );
        // Stays of 4 and 2 days ended: median 3 days.
        assert_eq!(by["awareness"].median_time, Some(3 * DAY));
        assert_eq!(by["consideration"].median_time, Some(6 * DAY));
        assert_eq!(by["conversion"].contacts, 1);
        assert_eq!(
            matrix[&("awareness".to_owned(), "consideration".to_owned())],
            2
        );
        assert_eq!(
            matrix[&("consideration".to_owned(), "conversion".to_owned())],
            1
        );
    }
}
