//! A contact, how its input is normalised and validated, and how a field mask applies.

use std::collections::BTreeMap;

use clm_runtime::FieldViolation;

use super::ContactsError;
use super::time::Micros;

/// Longest accepted free-text field.
const MAX_TEXT: usize = 256;
/// Most attributes a contact may carry.
pub const MAX_ATTRIBUTES: usize = 64;
/// Longest attribute value.
pub const MAX_ATTRIBUTE_VALUE: usize = 1024;

/// Marketing consent per channel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Consent {
    /// Agreed to email.
    pub email_opt_in: bool,
    /// When `email_opt_in` last changed.
    pub email_updated_at: Option<Micros>,
    /// Agreed to SMS.
    pub sms_opt_in: bool,
    /// When `sms_opt_in` last changed.
    pub sms_updated_at: Option<Micros>,
}

/// The fields a caller sets on a contact.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContactFields {
    /// Unique per tenant; trimmed and lower-cased.
    pub email: String,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// Phone number.
    pub phone: String,
    /// Company.
    pub company: String,
    /// Job title.
    pub job_title: String,
    /// ISO 3166-1 alpha-2, upper case.
    pub country: String,
    /// City.
    pub city: String,
    /// Acquisition source.
    pub source: String,
    /// Acquisition campaign.
    pub campaign: String,
    /// Anything else.
    pub attributes: BTreeMap<String, String>,
    /// Consent.
    pub consent: Consent,
}

/// A stored contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// UUIDv7.
    pub id: String,
    /// What the caller set.
    pub fields: ContactFields,
    /// Creation instant.
    pub created_at: Micros,
    /// Last change.
    pub updated_at: Micros,
    /// Increases with every change; the etag is derived from it.
    pub version: i64,
}

impl Contact {
    /// The opaque etag of this version.
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.version)
    }
}

/// The mutable paths of UpdateContact's field mask.
const MASKABLE: &[&str] = &[
    "email",
    "first_name",
    "last_name",
    "phone",
    "company",
    "job_title",
    "country",
    "city",
    "source",
    "campaign",
    "attributes",
    "consent",
    "consent.email_opt_in",
    "consent.sms_opt_in",
];

/// A validated field mask with the values to apply.
#[derive(Debug, Clone)]
pub struct ContactUpdate {
    paths: Vec<String>,
    values: ContactFields,
}

impl ContactUpdate {
    /// Checks `paths` (an empty mask means every maskable field) and the values they name.
    pub fn new(paths: Vec<String>, values: ContactFields) -> Result<Self, ContactsError> {
        let paths = if paths.is_empty() {
            MASKABLE
                .iter()
                .filter(|p| !p.contains('.'))
                .map(|p| (*p).to_owned())
                .collect()
        } else {
            paths
        };
        let mut violations = Vec::new();
        for path in &paths {
            let known = MASKABLE.contains(&path.as_str())
                || path
                    .strip_prefix("attributes.")
                    .is_some_and(|key| attribute_key_problem(key).is_none());
            if !known {
                violations.push(FieldViolation::new(
                    "update_mask",
                    format!("unknown or immutable field path {path:?}"),
                ));
            }
        }
        if !violations.is_empty() {
            return Err(ContactsError::Invalid(violations));
        }
        Ok(Self { paths, values })
    }

    /// Applies the update to `current`, stamping consent changes at `now`, and validates
    /// the result.
    pub fn apply(
        &self,
        current: &ContactFields,
        now: Micros,
    ) -> Result<ContactFields, ContactsError> {
        let mut next = current.clone();
        let v = &self.values;
        for path in &self.paths {
            match path.as_str() {
                "email" => next.email.clone_from(&v.email),
                "first_name" => next.first_name.clone_from(&v.first_name),
                "last_name" => next.last_name.clone_from(&v.last_name),
                "phone" => next.phone.clone_from(&v.phone),
                "company" => next.company.clone_from(&v.company),
                "job_title" => next.job_title.clone_from(&v.job_title),
                "country" => next.country.clone_from(&v.country),
                "city" => next.city.clone_from(&v.city),
                "source" => next.source.clone_from(&v.source),
                "campaign" => next.campaign.clone_from(&v.campaign),
                "attributes" => next.attributes.clone_from(&v.attributes),
                "consent" => {
                    next.consent.email_opt_in = v.consent.email_opt_in;
                    next.consent.sms_opt_in = v.consent.sms_opt_in;
                }
                "consent.email_opt_in" => next.consent.email_opt_in = v.consent.email_opt_in,
                "consent.sms_opt_in" => next.consent.sms_opt_in = v.consent.sms_opt_in,
                other => {
                    if let Some(key) = other.strip_prefix("attributes.") {
                        match v.attributes.get(key) {
                            Some(value) => next.attributes.insert(key.to_owned(), value.clone()),
                            None => next.attributes.remove(key),
                        };
                    }
                }
            }
        }
        stamp_consent(&mut next.consent, Some(&current.consent), &v.consent, now);
        normalise(next, "contact")
    }
}

/// Sets a channel's consent time when its flag changed and the caller gave none.
pub fn stamp_consent(next: &mut Consent, before: Option<&Consent>, given: &Consent, now: Micros) {
    // A new contact starts from "no consent".
    let (email_before, sms_before) =
        before.map_or((false, false), |b| (b.email_opt_in, b.sms_opt_in));
    if email_before != next.email_opt_in {
        next.email_updated_at = given.email_updated_at.or(Some(now));
    }
    if sms_before != next.sms_opt_in {
        next.sms_updated_at = given.sms_updated_at.or(Some(now));
    }
}

/// Trims, lower-cases the email, upper-cases the country, and validates every field.
/// `prefix` names the message in field violations (`contact`, `contacts[3]`).
pub fn normalise(mut fields: ContactFields, prefix: &str) -> Result<ContactFields, ContactsError> {
    let mut violations = Vec::new();
    let mut bad = |field: &str, description: String| {
        violations.push(FieldViolation::new(
            format!("{prefix}.{field}"),
            description,
        ));
    };

    fields.email = fields.email.trim().to_lowercase();
    if fields.email.is_empty() {
        bad("email", "is required".to_owned());
    } else if fields.email.len() > 254 || !email_address::EmailAddress::is_valid(&fields.email) {
        bad("email", "is not a valid email address".to_owned());
    }
    for (name, value) in [
        ("first_name", &mut fields.first_name),
        ("last_name", &mut fields.last_name),
        ("company", &mut fields.company),
        ("job_title", &mut fields.job_title),
        ("city", &mut fields.city),
        ("source", &mut fields.source),
        ("campaign", &mut fields.campaign),
        ("phone", &mut fields.phone),
        ("country", &mut fields.country),
    ] {
        *value = value.trim().to_owned();
        if value.chars().count() > MAX_TEXT {
            bad(name, format!("is longer than {MAX_TEXT} characters"));
        } else if value.chars().any(char::is_control) {
            bad(name, "contains control characters".to_owned());
        }
    }
    let phone_ok = fields.phone.is_empty()
        || (fields.phone.len() <= 32
            && fields
                .phone
                .trim_start_matches('+')
                .chars()
                .any(|c| c.is_ascii_digit())
            && fields
                .phone
                .char_indices()
                .all(|(i, c)| c.is_ascii_digit() || " ()-.".contains(c) || (i == 0 && c == '+')));
    if !phone_ok {
        bad(
            "phone",
            "must be digits with an optional leading + (at most 32 characters)".to_owned(),
        );
    }
    fields.country = fields.country.to_ascii_uppercase();
    let country_ok = fields.country.is_empty()
        || (fields.country.len() == 2 && fields.country.bytes().all(|b| b.is_ascii_uppercase()));
    if !country_ok {
        bad(
            "country",
            "must be an ISO 3166-1 alpha-2 code such as \"DE\"".to_owned(),
        );
    }
    if fields.attributes.len() > MAX_ATTRIBUTES {
        bad(
            "attributes",
            format!("has more than {MAX_ATTRIBUTES} entries"),
        );
    }
    for (key, value) in &fields.attributes {
        if let Some(problem) = attribute_key_problem(key) {
            bad(&format!("attributes[{key:?}]"), problem.to_owned());
        } else if value.chars().count() > MAX_ATTRIBUTE_VALUE {
            bad(
                &format!("attributes.{key}"),
                format!("is longer than {MAX_ATTRIBUTE_VALUE} characters"),
            );
        }
    }
    if violations.is_empty() {
        Ok(fields)
    } else {
        Err(ContactsError::Invalid(violations))
    }
}

/// Why `key` is not a valid attribute or property key, if it is not.
pub fn attribute_key_problem(key: &str) -> Option<&'static str> {
    if key.is_empty() || key.len() > 64 {
        Some("key must be 1 to 64 characters")
    } else if !key
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b))
    {
        Some("key must use only a-z, 0-9, '_', '.' and '-'")
    } else {
        None
    }
}

/// Fills the empty fields of `survivor` from `duplicate` and adds the attributes the
/// survivor lacks (a merge keeps the survivor's values where both have one).
pub fn merge_fields(survivor: &ContactFields, duplicate: &ContactFields) -> ContactFields {
    let mut merged = survivor.clone();
    for (into, from) in [
        (&mut merged.first_name, &duplicate.first_name),
        (&mut merged.last_name, &duplicate.last_name),
        (&mut merged.phone, &duplicate.phone),
        (&mut merged.company, &duplicate.company),
        (&mut merged.job_title, &duplicate.job_title),
        (&mut merged.country, &duplicate.country),
        (&mut merged.city, &duplicate.city),
        (&mut merged.source, &duplicate.source),
        (&mut merged.campaign, &duplicate.campaign),
    ] {
        if into.is_empty() {
            into.clone_from(from);
        }
    }
    for (key, value) in &duplicate.attributes {
        merged
            .attributes
            .entry(key.clone())
            .or_insert_with(|| value.clone());
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(email: &str) -> ContactFields {
        ContactFields {
            email: email.to_owned(),
            ..ContactFields::default()
        }
    }

    #[test]
    fn email_is_trimmed_and_lower_cased() {
        let f = normalise(fields("  Ada@Example.COM "), "contact").unwrap();
        assert_eq!(f.email, "ada@example.com");
    }

    #[test]
    fn invalid_email_names_the_field() {
        let Err(ContactsError::Invalid(v)) = normalise(fields("not-an-email"), "contact") else {
            panic!("accepted an invalid email");
        };
        assert_eq!(v[0].field, "contact.email");
    }

    #[test]
    fn unknown_mask_path_is_refused() {
        assert!(ContactUpdate::new(vec!["id".into()], ContactFields::default()).is_err());
        assert!(
            ContactUpdate::new(vec!["attributes.plan".into()], ContactFields::default()).is_ok()
        );
    }

    #[test]
    fn mask_changes_only_named_fields_and_stamps_consent() {
        let current = ContactFields {
            first_name: "Ada".into(),
            ..fields("ada@example.com")
        };
        let mut values = fields("other@example.com");
        values.city = "Berlin".into();
        values.consent.email_opt_in = true;
        let update =
            ContactUpdate::new(vec!["city".into(), "consent.email_opt_in".into()], values).unwrap();
        let next = update.apply(&current, 42).unwrap();
        assert_eq!(next.email, "ada@example.com");
        assert_eq!(next.first_name, "Ada");
        assert_eq!(next.city, "Berlin");
        assert!(next.consent.email_opt_in);
        assert_eq!(next.consent.email_updated_at, Some(42));
        assert_eq!(next.consent.sms_updated_at, None);
    }
}
