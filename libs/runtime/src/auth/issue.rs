//! Issuing tokens: for operators (`clm token issue`) and for the suite's own calls between
//! services, which present a short-lived `internal` token for each row's tenant.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header};

use super::{AuthError, AuthSettings, INTERNAL};

/// What a token should say.
#[derive(Debug, Clone)]
pub struct IssueOptions {
    /// `sub`: who the token is for.
    pub subject: String,
    /// `tenant_id`.
    pub tenant: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Lifetime from now.
    pub ttl: Duration,
}

#[derive(serde::Serialize)]
struct IssuedClaims<'a> {
    sub: &'a str,
    tenant_id: &'a str,
    scope: String,
    iss: &'a str,
    aud: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
}

/// Signs tokens with the configured key.
#[derive(Clone)]
pub struct TokenIssuer {
    key: EncodingKey,
    header: Header,
    issuer: String,
    audience: String,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("algorithm", &self.header.alg)
            .finish_non_exhaustive()
    }
}

impl TokenIssuer {
    /// The issuer of `settings` (HS256 secret, or RS256 private key).
    pub fn from_settings(settings: &AuthSettings) -> Result<Self, AuthError> {
        let (key, algorithm) = super::signing_key(settings)?;
        Ok(Self {
            key,
            header: Header::new(algorithm),
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
        })
    }

    /// A signed token.
    pub fn issue(&self, options: &IssueOptions) -> Result<String, AuthError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let claims = IssuedClaims {
            sub: &options.subject,
            tenant_id: &options.tenant,
            scope: options.scopes.join(" "),
            iss: &self.issuer,
            aud: &self.audience,
            iat: now,
            nbf: now,
            exp: now + options.ttl.as_secs(),
        };
        jsonwebtoken::encode(&self.header, &claims, &self.key)
            .map_err(|e| AuthError::Key(format!("cannot sign a token: {e}")))
    }
}

/// How long a service token lives, and how long it is reused.
const SERVICE_TOKEN_TTL: Duration = Duration::from_secs(600);
const SERVICE_TOKEN_REUSE: Duration = Duration::from_secs(300);

/// The credentials a service presents to another: nothing when auth is off, or an
/// `internal` bearer token per tenant, reused for a while (signing RS256 costs ~1 ms).
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    issuer: Option<(TokenIssuer, String)>,
    tokens: Option<moka::sync::Cache<String, tonic::metadata::AsciiMetadataValue>>,
}

impl Credentials {
    /// Credentials for service `subject` (e.g. `clm-contacts`) under `settings`.
    pub fn from_settings(settings: &AuthSettings, subject: &str) -> Result<Self, AuthError> {
        if !settings.enabled() {
            return Ok(Self::default());
        }
        Ok(Self {
            issuer: Some((TokenIssuer::from_settings(settings)?, subject.to_owned())),
            tokens: Some(
                moka::sync::Cache::builder()
                    .max_capacity(10_000)
                    .time_to_live(SERVICE_TOKEN_REUSE)
                    .build(),
            ),
        })
    }

    /// Adds `authorization: Bearer <internal token of tenant>` to `metadata`, when auth is on.
    pub fn authorize(
        &self,
        tenant: &str,
        metadata: &mut tonic::metadata::MetadataMap,
    ) -> Result<(), AuthError> {
        let (Some((issuer, subject)), Some(tokens)) = (&self.issuer, &self.tokens) else {
            return Ok(());
        };
        let value = tokens.try_get_with(tenant.to_owned(), || {
            let token = issuer.issue(&IssueOptions {
                subject: subject.clone(),
                tenant: tenant.to_owned(),
                scopes: vec![INTERNAL.to_owned()],
                ttl: SERVICE_TOKEN_TTL,
            })?;
            format!("Bearer {token}")
                .parse()
                .map_err(|_| AuthError::Key("a token is not valid metadata".into()))
        });
        let value = value.map_err(|e| AuthError::Key(e.to_string()))?;
        metadata.insert("authorization", value);
        Ok(())
    }
}
