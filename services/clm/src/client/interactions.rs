//! `clm interactions record|list`.

use clm_proto::common::v1::Money;
use clm_proto::contacts::v1 as pb;

use super::{connect_contacts, explain, show_time, table};
use crate::cli::InteractionsCommand;
use crate::run::BoxError;

pub(crate) async fn interactions(command: InteractionsCommand) -> Result<(), BoxError> {
    match command {
        InteractionsCommand::Record {
            client,
            contact,
            kind,
            event_id,
            at,
            value,
            currency,
            campaign,
            channel,
            properties,
        } => {
            let occurred_at = match at {
                Some(text) => parse_time(&text)?,
                None => chrono::Utc::now(),
            };
            let value = match (value, currency) {
                (Some(amount), Some(currency)) => Some(Money {
                    amount_micros: parse_micros(&amount)?,
                    currency: currency.to_uppercase(),
                }),
                _ => None,
            };
            let interaction = pb::Interaction {
                event_id: event_id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
                contact_id: contact,
                r#type: kind,
                occurred_at: Some(prost_types::Timestamp {
                    seconds: occurred_at.timestamp(),
                    nanos: occurred_at.timestamp_subsec_nanos() as i32,
                }),
                value,
                campaign,
                channel,
                properties: properties.into_iter().collect(),
                recorded_at: None,
            };
            let mut api = connect_contacts(&client).await?;
            let reply = api
                .record_interaction(pb::RecordInteractionRequest {
                    interaction: Some(interaction),
                })
                .await
                .map_err(|s| explain(&s))?
                .into_inner();
            let stored = reply.interaction.unwrap_or_default();
            let state = if reply.duplicate {
                "duplicate (already stored)"
            } else {
                "recorded"
            };
            println!("{state}: {}", stored.event_id);
        }
        InteractionsCommand::List {
            client,
            contact,
            types,
            page_size,
        } => {
            let mut api = connect_contacts(&client).await?;
            let page = api
                .list_interactions(pb::ListInteractionsRequest {
                    contact_id: contact,
                    types,
                    page_size,
                    page_token: String::new(),
                })
                .await
                .map_err(|s| explain(&s))?
                .into_inner();
            let mut rows = table::new(&[
                "occurred_at",
                "type",
                "value",
                "channel",
                "campaign",
                "event_id",
            ]);
            let count = page.interactions.len();
            for i in page.interactions {
                rows.add_row(vec![
                    show_time(i.occurred_at.as_ref()),
                    i.r#type,
                    i.value.map(|m| format_money(&m)).unwrap_or_default(),
                    i.channel,
                    i.campaign,
                    i.event_id,
                ]);
            }
            println!("{rows}");
            println!("{count} interactions, newest first");
        }
    }
    Ok(())
}

pub(crate) fn parse_time(text: &str) -> Result<chrono::DateTime<chrono::Utc>, BoxError> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.to_utc());
    }
    let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| format!("{text:?} is neither RFC 3339 nor YYYY-MM-DD"))?;
    Ok(date
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc())
}

/// "49.90" as 49_900_000 micros, exactly (no floating point).
fn parse_micros(text: &str) -> Result<i64, BoxError> {
    let bad = || format!("--value {text:?} is not a decimal amount with at most 6 decimals");
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty()
        || fraction.len() > 6
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return Err(bad().into());
    }
    let whole: i64 = whole.parse().map_err(|_| bad())?;
    let fraction: i64 = format!("{fraction:0<6}").parse().map_err(|_| bad())?;
    whole
        .checked_mul(1_000_000)
        .and_then(|w| w.checked_add(fraction))
        .ok_or_else(|| bad().into())
}

fn format_money(m: &Money) -> String {
    let sign = if m.amount_micros < 0 { "-" } else { "" };
    let abs = m.amount_micros.unsigned_abs();
    format!(
        "{sign}{}.{:02} {}",
        abs / 1_000_000,
        (abs % 1_000_000) / 10_000,
        m.currency
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_parse_exactly() {
        assert_eq!(parse_micros("49.90").unwrap(), 49_900_000);
        assert_eq!(parse_micros("7").unwrap(), 7_000_000);
        assert_eq!(parse_micros("0.000001").unwrap(), 1);
        assert!(parse_micros("-1").is_err());
        assert!(parse_micros("1.2345678").is_err());
        assert!(parse_micros("1e3").is_err());
    }

    #[test]
    fn money_prints_with_cents() {
        let m = Money {
            amount_micros: 49_900_000,
            currency: "EUR".into(),
        };
        assert_eq!(format_money(&m), "49.90 EUR");
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn decimal_amounts_parse_to_their_exact_micros(micros in 0..=i64::MAX / 2) {
            let text = format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000);
            prop_assert_eq!(parse_micros(&text).unwrap(), micros);
            let trimmed = text.trim_end_matches('0').trim_end_matches('.');
            prop_assert_eq!(parse_micros(trimmed).unwrap(), micros);
        }

        #[test]
        fn any_text_is_an_amount_or_refused_without_panicking(text in any::<String>()) {
            if let Ok(micros) = parse_micros(&text) {
                prop_assert!(micros >= 0);
            }
        }

        #[test]
        fn printed_money_shows_the_whole_units_and_cents(micros in any::<i64>()) {
            let printed = format_money(&Money { amount_micros: micros, currency: "EUR".into() });
            let abs = micros.unsigned_abs();
            let expected = format!("{}.{:02} EUR", abs / 1_000_000, (abs % 1_000_000) / 10_000);
            prop_assert_eq!(printed.trim_start_matches('-'), expected);
            prop_assert_eq!(printed.starts_with('-'), micros < 0);
        }

        #[test]
        fn dates_and_instants_parse_to_utc(seconds in 0i64..4_102_444_800) {
            let instant = chrono::DateTime::from_timestamp(seconds, 0).unwrap();
            prop_assert_eq!(parse_time(&instant.to_rfc3339()).unwrap(), instant);
            let day = instant.format("%Y-%m-%d").to_string();
            let midnight = parse_time(&day).unwrap();
            prop_assert_eq!(midnight.date_naive(), instant.date_naive());
        }
    }
}
