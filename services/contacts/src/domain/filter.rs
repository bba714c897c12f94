//! ListContacts filters: the suite's expression language (clm-filter) over the contact's
//! columns, `created_at`/`updated_at` and `attributes.KEY`.

pub use clm_filter::{FilterError, Op};

use super::contact::attribute_key_problem;
use super::time::{self, Micros};

/// A column of the contact a filter may compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextColumn {
    /// id
    Id,
    /// email
    Email,
    /// first_name
    FirstName,
    /// last_name
    LastName,
    /// phone
    Phone,
    /// company
    Company,
    /// job_title
    JobTitle,
    /// country
    Country,
    /// city
    City,
    /// source
    Source,
    /// campaign
    Campaign,
}

/// An instant column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeColumn {
    /// created_at
    CreatedAt,
    /// updated_at
    UpdatedAt,
}

/// One typed comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// A text column compared with a string.
    Text(TextColumn, Op, String),
    /// An instant column compared with an instant.
    Time(TimeColumn, Op, Micros),
    /// A custom attribute compared with a string (a missing attribute never matches).
    Attribute(String, Op, String),
}

/// A parsed, typed filter.
pub type Filter = clm_filter::Mapped<Condition>;

/// Parses `text`; an empty or blank filter is `None` (everything matches).
pub fn parse(text: &str) -> Result<Option<Filter>, FilterError> {
    clm_filter::parse(text)?
        .map(|e| e.try_map(&condition))
        .transpose()
}

fn condition(c: &clm_filter::Comparison) -> Result<Condition, FilterError> {
    let field = c.field.as_str();
    if let Some(column) = text_column(field) {
        return Ok(Condition::Text(column, c.op, c.value.clone()));
    }
    let time_column = match field {
        "created_at" => Some(TimeColumn::CreatedAt),
        "updated_at" => Some(TimeColumn::UpdatedAt),
        _ => None,
    };
    if let Some(column) = time_column {
        if c.op == Op::Contains {
            return Err(FilterError::at(
                c.field_at,
                format!("{field} cannot be compared with ~"),
            ));
        }
        let instant = time::parse(&c.value).ok_or_else(|| {
            FilterError::at(
                c.value_at,
                format!(
                    "{:?} is not a date (YYYY-MM-DD) or an RFC 3339 time",
                    c.value
                ),
            )
        })?;
        return Ok(Condition::Time(column, c.op, instant));
    }
    if let Some(key) = field.strip_prefix("attributes.") {
        if let Some(problem) = attribute_key_problem(key) {
            return Err(FilterError::at(
                c.field_at + "attributes.".len(),
                format!("attribute {problem}"),
            ));
        }
        return Ok(Condition::Attribute(key.to_owned(), c.op, c.value.clone()));
    }
    Err(FilterError::at(
        c.field_at,
        format!("unknown field {field:?}"),
    ))
}

fn text_column(name: &str) -> Option<TextColumn> {
    Some(match name {
        "id" => TextColumn::Id,
        "email" => TextColumn::Email,
        "first_name" => TextColumn::FirstName,
        "last_name" => TextColumn::LastName,
        "phone" => TextColumn::Phone,
        "company" => TextColumn::Company,
        "job_title" => TextColumn::JobTitle,
        "country" => TextColumn::Country,
        "city" => TextColumn::City,
        "source" => TextColumn::Source,
        "campaign" => TextColumn::Campaign,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use clm_filter::Mapped;

    use super::*;

    fn text(c: TextColumn, op: Op, v: &str) -> Box<Filter> {
        Box::new(Mapped::Leaf(Condition::Text(c, op, v.into())))
    }

    #[test]
    fn parses_the_documented_example() {
        let f = parse(r#"country = "DE" AND job_title ~ "cto" AND created_at >= "2026-01-01""#)
            .unwrap()
            .unwrap();
        let expected = Mapped::And(
            Box::new(Mapped::And(
                text(TextColumn::Country, Op::Eq, "DE"),
                text(TextColumn::JobTitle, Op::Contains, "cto"),
            )),
            Box::new(Mapped::Leaf(Condition::Time(
                TimeColumn::CreatedAt,
                Op::Ge,
                time::parse("2026-01-01").unwrap(),
            ))),
        );
        assert_eq!(f, expected);
    }

    #[test]
    fn unknown_fields_and_bad_values_name_the_position() {
        assert_eq!(parse(r#"colour = "red""#).unwrap_err().position, 1);
        assert_eq!(
            parse(r#"created_at > "yesterday""#).unwrap_err().position,
            14
        );
        assert_eq!(parse(r#"created_at ~ "2026""#).unwrap_err().position, 1);
        assert_eq!(
            parse(r#"attributes.Plan = "pro""#).unwrap_err().position,
            12
        );
    }

    #[test]
    fn attributes_are_addressed_by_key() {
        let f = parse(r#"attributes.plan = "pro""#).unwrap().unwrap();
        assert_eq!(
            f,
            Mapped::Leaf(Condition::Attribute("plan".into(), Op::Eq, "pro".into()))
        );
    }
}
