//! Opaque, tamper-evident page tokens: the cursor of the last row served, bound to the
//! query it belongs to and signed with HMAC-SHA256.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Where the next page starts: after the row with this sort value and id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The last row's sort value: an instant or a string.
    pub key: CursorKey,
    /// The last row's id (breaks ties).
    pub id: String,
}

/// A cursor's sort value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CursorKey {
    /// An instant in micros.
    Int(i64),
    /// A text value.
    Text(String),
}

#[derive(Serialize, Deserialize)]
struct Payload {
    /// A digest of the tenant and the query the token was issued for.
    q: String,
    c: Cursor,
}

/// Signs and checks page tokens with one secret.
#[derive(Clone)]
pub struct PageTokens {
    key: Vec<u8>,
}

impl std::fmt::Debug for PageTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageTokens(..)")
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Not a token this server issued, or altered.
    Tampered,
    /// Issued for another tenant or another query.
    Foreign,
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Tampered => "is not a valid page token",
            Self::Foreign => {
                "belongs to another query; send the same filter and order as the first page"
            }
        })
    }
}

impl PageTokens {
    /// Tokens signed with `secret`.
    pub fn new(secret: &[u8]) -> Self {
        Self {
            key: secret.to_vec(),
        }
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.key).expect("HMAC accepts keys of any length")
    }

    /// A digest naming a query: the tenant and every part of the request that shapes the
    /// result set and its order.
    pub fn scope(tenant: &str, parts: &[&str]) -> String {
        let mut hash = Sha256::new();
        hash.update(tenant.as_bytes());
        for part in parts {
            hash.update([0u8]);
            hash.update(part.as_bytes());
        }
        URL_SAFE_NO_PAD.encode(&hash.finalize()[..16])
    }

    /// The token for the page after `cursor` of the query `scope`.
    pub fn issue(&self, scope: &str, cursor: Cursor) -> String {
        let payload = serde_json::to_vec(&Payload {
            q: scope.to_owned(),
            c: cursor,
        })
        .expect("a payload always serialises");
        let mut mac = self.mac();
        mac.update(&payload);
        let tag = mac.finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// The cursor in `token`, if this server signed it for the query `scope`.
    pub fn open(&self, scope: &str, token: &str) -> Result<Cursor, TokenError> {
        let (payload, tag) = token.split_once('.').ok_or(TokenError::Tampered)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Tampered)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| TokenError::Tampered)?;
        let mut mac = self.mac();
        mac.update(&payload);
        mac.verify_slice(&tag).map_err(|_| TokenError::Tampered)?;
        let payload: Payload =
            serde_json::from_slice(&payload).map_err(|_| TokenError::Tampered)?;
        if payload.q != scope {
            return Err(TokenError::Foreign);
        }
        Ok(payload.c)
    }
}

/// Page size when a request gives none.
pub const DEFAULT_PAGE_SIZE: u64 = 100;
/// Largest page a request may ask for.
pub const MAX_PAGE_SIZE: u64 = 1000;

/// The page size a request asks for: 0 means the default, 1 to 1,000 are taken as given.
pub fn page_size(requested: i32) -> Result<u64, crate::Error> {
    match u64::try_from(requested) {
        Ok(0) => Ok(DEFAULT_PAGE_SIZE),
        Ok(n) if n <= MAX_PAGE_SIZE => Ok(n),
        _ => Err(crate::Error::invalid_field(
            "page_size",
            "must be between 1 and 1000 (0 for the default of 100)",
        )),
    }
}

impl PageTokens {
    /// Tokens signed with the configured secret, or with a random one (then tokens do not
    /// survive a restart or cross replicas, which is said in the log).
    pub fn from_config(secret: Option<&str>) -> Self {
        match secret {
            Some(secret) => Self::new(secret.as_bytes()),
            None => {
                tracing::warn!(
                    "no page-token secret configured: page tokens will not survive a restart"
                );
                Self::new(&rand::random::<[u8; 32]>())
            }
        }
    }

    /// The cursor a request's `page_token` resumes from: `None` for the first page, and
    /// INVALID_ARGUMENT on `page_token` for an altered or foreign token.
    pub fn resume(&self, scope: &str, token: &str) -> Result<Option<Cursor>, crate::Error> {
        if token.is_empty() {
            return Ok(None);
        }
        self.open(scope, token)
            .map(Some)
            .map_err(|e| crate::Error::invalid_field("page_token", e.to_string()))
    }

    /// Trims a page fetched with one extra row to `limit`, and returns the token of the
    /// next page (empty when the extra row was not there: this is the last page).
    pub fn next_page<T>(
        &self,
        items: &mut Vec<T>,
        limit: u64,
        scope: &str,
        cursor_after: impl Fn(&T) -> Cursor,
    ) -> String {
        if items.len() as u64 <= limit {
            return String::new();
        }
        items.truncate(limit as usize);
        items
            .last()
            .map(|last| self.issue(scope, cursor_after(last)))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor() -> Cursor {
        Cursor {
            key: CursorKey::Int(42),
            id: "0190".into(),
        }
    }

    #[test]
    fn round_trips() {
        let tokens = PageTokens::new(b"secret");
        let scope = PageTokens::scope("t1", &["country = \"DE\"", "created_at"]);
        let token = tokens.issue(&scope, cursor());
        assert_eq!(tokens.open(&scope, &token), Ok(cursor()));
    }

    #[test]
    fn refuses_altered_tokens_and_other_keys() {
        let tokens = PageTokens::new(b"secret");
        let token = tokens.issue("s", cursor());
        let mut altered = token.clone().into_bytes();
        altered[3] ^= 1;
        let altered = String::from_utf8(altered).unwrap();
        assert_eq!(tokens.open("s", &altered), Err(TokenError::Tampered));
        assert_eq!(
            PageTokens::new(b"other").open("s", &token),
            Err(TokenError::Tampered)
        );
        assert_eq!(tokens.open("s", "garbage"), Err(TokenError::Tampered));
    }

    #[test]
    fn refuses_tokens_of_another_query_or_tenant() {
        let tokens = PageTokens::new(b"secret");
        let token = tokens.issue(&PageTokens::scope("t1", &["a"]), cursor());
        assert_eq!(
            tokens.open(&PageTokens::scope("t2", &["a"]), &token),
            Err(TokenError::Foreign)
        );
        assert_eq!(
            tokens.open(&PageTokens::scope("t1", &["b"]), &token),
            Err(TokenError::Foreign)
        );
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn cursor() -> impl Strategy<Value = Cursor> {
        let key = prop_oneof![
            any::<i64>().prop_map(CursorKey::Int),
            any::<String>().prop_map(CursorKey::Text),
        ];
        (key, any::<String>()).prop_map(|(key, id)| Cursor { key, id })
    }

    proptest! {
        #[test]
        fn issued_tokens_open_to_their_cursor(
            secret in proptest::collection::vec(any::<u8>(), 1..64),
            scope in any::<String>(),
            cursor in cursor(),
        ) {
            let tokens = PageTokens::new(&secret);
            let token = tokens.issue(&scope, cursor.clone());
            prop_assert_eq!(tokens.open(&scope, &token), Ok(cursor));
            prop_assert!(token.is_ascii(), "tokens are URL-safe text");
        }

        #[test]
        fn any_change_to_a_token_is_refused(
            cursor in cursor(),
            at in any::<prop::sample::Index>(),
            replacement in any::<char>(),
        ) {
            let tokens = PageTokens::new(b"secret");
            let token = tokens.issue("scope", cursor);
            let mut chars: Vec<char> = token.chars().collect();
            let at = at.index(chars.len());
            prop_assume!(chars[at] != replacement);
            chars[at] = replacement;
            let altered: String = chars.into_iter().collect();
            prop_assert!(tokens.open("scope", &altered).is_err());
        }

        #[test]
        fn any_text_is_refused_without_panicking(text in any::<String>()) {
            let tokens = PageTokens::new(b"secret");
            prop_assert_eq!(tokens.open("scope", &text), Err(TokenError::Tampered));
        }

        #[test]
        fn page_sizes_are_bounded(requested in any::<i32>()) {
            match page_size(requested) {
                Ok(size) => prop_assert!((1..=MAX_PAGE_SIZE).contains(&size)),
                Err(_) => prop_assert!(requested < 0 || i64::from(requested) > MAX_PAGE_SIZE as i64),
            }
        }
    }
}
