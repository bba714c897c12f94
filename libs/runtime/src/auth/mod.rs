//! Bearer JWT authentication: verifying callers' tokens, the scope each RPC needs, and the
//! service tokens the suite's own relays present.
//!
//! Auth is on when a key is configured: an HS256 shared secret, or an RS256 public key (PEM
//! or JWKS). Tokens carry `tenant_id` and their scopes (`scope`, space-separated, or a
//! `scopes` array); `exp`, `nbf`, `iss` and `aud` are checked with a small leeway.

mod issue;
mod layer;
mod scopes;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Validation};

pub use issue::{Credentials, IssueOptions, TokenIssuer};
pub use layer::{Authenticate, RequireAuth};
pub use scopes::{ALL_SCOPES, Access, INTERNAL, access, public_scopes};

/// Seconds of clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 30;
/// The default `iss` and `aud` of the suite's tokens.
pub const DEFAULT_ISSUER: &str = "clm";
/// The default audience.
pub const DEFAULT_AUDIENCE: &str = "clm";

/// Where the keys come from, as configured (`CLM_JWT_*`).
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    /// HS256 shared secret.
    pub secret: Option<String>,
    /// RS256 public key: a PEM file, or a JWKS (JSON) file.
    pub public_key_file: Option<PathBuf>,
    /// RS256 private key (PEM), needed to issue tokens when the public key is RS256.
    pub private_key_file: Option<PathBuf>,
    /// Expected `iss`.
    pub issuer: String,
    /// Expected `aud`.
    pub audience: String,
}

impl AuthSettings {
    /// True when a verification key is configured, which turns auth on.
    pub fn enabled(&self) -> bool {
        self.secret.is_some() || self.public_key_file.is_some()
    }
}

/// Why auth could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A key file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A key is not usable.
    #[error("{0}")]
    Key(String),
}

/// Verification keys: one key, or a JWKS with keys chosen by `kid`.
#[derive(Clone)]
enum Keys {
    One(Box<DecodingKey>),
    Set(Arc<jsonwebtoken::jwk::JwkSet>),
}

/// Checks bearer tokens.
#[derive(Clone)]
pub struct Verifier {
    keys: Keys,
    validation: Validation,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

/// What a verified token says about its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The tenant every call acts for.
    pub tenant: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
}

impl Caller {
    /// True when the token grants `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

#[derive(serde::Deserialize)]
struct TokenClaims {
    tenant_id: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    scopes: Vec<String>,
}

/// Why a token was refused; the message is safe to return (no token material).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

impl Verifier {
    /// The verifier of `settings`, or `None` when auth is off.
    pub fn from_settings(settings: &AuthSettings) -> Result<Option<Self>, AuthError> {
        let (keys, algorithm) = if let Some(secret) = &settings.secret {
            if secret.len() < 32 {
                return Err(AuthError::Key(
                    "CLM_JWT_SECRET must be at least 32 bytes".into(),
                ));
            }
            let key = DecodingKey::from_secret(secret.as_bytes());
            (Keys::One(Box::new(key)), Algorithm::HS256)
        } else if let Some(path) = &settings.public_key_file {
            (read_public_keys(path)?, Algorithm::RS256)
        } else {
            return Ok(None);
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        Ok(Some(Self { keys, validation }))
    }

    /// Checks `token` and returns its caller.
    pub fn verify(&self, token: &str) -> Result<Caller, Refused> {
        let refused = |e: jsonwebtoken::errors::Error| Refused(describe(&e));
        // A single key is used in place (it is checked on every request); a JWKS key is
        // built for the token's `kid`.
        let from_set;
        let key: &DecodingKey = match &self.keys {
            Keys::One(key) => key,
            Keys::Set(set) => {
                let header = jsonwebtoken::decode_header(token).map_err(refused)?;
                let jwk = match header.kid.as_deref() {
                    Some(kid) => set.find(kid),
                    None if set.keys.len() == 1 => set.keys.first(),
                    None => None,
                }
                .ok_or_else(|| Refused("the token's key id is not a known key".into()))?;
                from_set = DecodingKey::from_jwk(jwk).map_err(refused)?;
                &from_set
            }
        };
        let data =
            jsonwebtoken::decode::<TokenClaims>(token, key, &self.validation).map_err(refused)?;
        let claims = data.claims;
        if crate::tenant::validate_tenant(&claims.tenant_id).is_err() {
            return Err(Refused(
                "the token's tenant_id is not a valid tenant".into(),
            ));
        }
        let mut scopes: Vec<String> = claims.scope.split_whitespace().map(str::to_owned).collect();
        scopes.extend(claims.scopes);
        Ok(Caller {
            tenant: claims.tenant_id,
            scopes,
        })
    }
}

/// A short, caller-safe reason for a refused token.
fn describe(error: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::ExpiredSignature => "the token has expired".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet".into(),
        ErrorKind::InvalidSignature => "the token's signature does not verify".into(),
        ErrorKind::InvalidIssuer => "the token's issuer is not accepted".into(),
        ErrorKind::InvalidAudience => "the token's audience is not accepted".into(),
        ErrorKind::InvalidAlgorithm => "the token's algorithm is not accepted".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("the token has no {claim} claim"),
        _ => "the token is malformed".into(),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, AuthError> {
    std::fs::read(path).map_err(|source| AuthError::Read {
        path: path.to_owned(),
        source,
    })
}

/// An RS256 public key from a PEM file, or a JWKS from a JSON file.
fn read_public_keys(path: &Path) -> Result<Keys, AuthError> {
    let bytes = read(path)?;
    let key_error = |e: &dyn std::fmt::Display| AuthError::Key(format!("{}: {e}", path.display()));
    if bytes.trim_ascii_start().starts_with(b"{") {
        let set: jsonwebtoken::jwk::JwkSet =
            serde_json::from_slice(&bytes).map_err(|e| key_error(&e))?;
        if set.keys.is_empty() {
            return Err(key_error(&"the JWKS holds no key"));
        }
        Ok(Keys::Set(Arc::new(set)))
    } else {
        let key = DecodingKey::from_rsa_pem(&bytes).map_err(|e| key_error(&e))?;
        Ok(Keys::One(Box::new(key)))
    }
}

/// The key that signs tokens under `settings`: the HS256 secret, or the RS256 private key.
fn signing_key(settings: &AuthSettings) -> Result<(EncodingKey, Algorithm), AuthError> {
    if let Some(secret) = &settings.secret {
        return Ok((
            EncodingKey::from_secret(secret.as_bytes()),
            Algorithm::HS256,
        ));
    }
    let Some(path) = &settings.private_key_file else {
        return Err(AuthError::Key(
            "issuing tokens needs CLM_JWT_SECRET or CLM_JWT_PRIVATE_KEY_FILE".into(),
        ));
    };
    let key = EncodingKey::from_rsa_pem(&read(path)?)
        .map_err(|e| AuthError::Key(format!("{}: {e}", path.display())))?;
    Ok((key, Algorithm::RS256))
}

#[cfg(test)]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use jsonwebtoken::{EncodingKey, Header};

    use super::*;

    const SECRET: &str = "a-test-secret-of-at-least-32-bytes!";

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../testkit/fixtures")
            .join(name)
    }

    fn hs256() -> AuthSettings {
        AuthSettings {
            secret: Some(SECRET.into()),
            issuer: DEFAULT_ISSUER.into(),
            audience: DEFAULT_AUDIENCE.into(),
            ..AuthSettings::default()
        }
    }

    fn now() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    /// A token with `claims` merged over valid defaults.
    fn token(header: Header, key: &EncodingKey, claims: serde_json::Value) -> String {
        let mut all = serde_json::json!({
            "sub": "test", "tenant_id": "acme", "scope": "contacts:read",
            "iss": "clm", "aud": "clm", "nbf": now() - 5, "exp": now() + 600,
        });
        for (k, v) in claims.as_object().unwrap() {
            if v.is_null() {
                all.as_object_mut().unwrap().remove(k);
            } else {
                all[k] = v.clone();
            }
        }
        jsonwebtoken::encode(&header, &all, key).unwrap()
    }

    fn hs(claims: serde_json::Value) -> String {
        token(
            Header::default(),
            &EncodingKey::from_secret(SECRET.as_bytes()),
            claims,
        )
    }

    #[test]
    fn a_valid_token_names_its_tenant_and_scopes() {
        let verifier = Verifier::from_settings(&hs256()).unwrap().unwrap();
        let caller = verifier
            .verify(&hs(serde_json::json!({"scope": "contacts:read contacts:write", "scopes": ["internal"]})))
            .unwrap();
        assert_eq!(caller.tenant, "acme");
        assert!(caller.has_scope("contacts:write") && caller.has_scope("internal"));
        assert!(!caller.has_scope("scoring:read"));
        // Within the leeway, a just-expired token still passes.
        assert!(
            verifier
                .verify(&hs(serde_json::json!({"exp": now() - 10})))
                .is_ok()
        );
    }

    #[test]
    fn bad_tokens_are_refused_with_a_reason() {
        let verifier = Verifier::from_settings(&hs256()).unwrap().unwrap();
        let other = EncodingKey::from_secret(b"another-secret-another-secret-another");
        let cases = [
            (hs(serde_json::json!({"exp": now() - 120})), "expired"),
            (hs(serde_json::json!({"nbf": now() + 120})), "not valid yet"),
            (hs(serde_json::json!({"iss": "someone-else"})), "issuer"),
            (hs(serde_json::json!({"aud": "another-api"})), "audience"),
            (hs(serde_json::json!({"exp": null})), "exp"),
            (
                hs(serde_json::json!({"tenant_id": "no spaces allowed"})),
                "tenant",
            ),
            (hs(serde_json::json!({"tenant_id": null})), "malformed"),
            (
                token(Header::default(), &other, serde_json::json!({})),
                "signature",
            ),
            ("not.a.token".to_owned(), "malformed"),
        ];
        for (token, reason) in cases {
            let refused = verifier.verify(&token).unwrap_err();
            assert!(refused.0.contains(reason), "{reason}: {refused}");
        }
    }

    #[test]
    fn rs256_keys_come_from_pem_or_jwks_and_other_keys_are_refused() {
        let private =
            EncodingKey::from_rsa_pem(&std::fs::read(fixture("rsa-private.pem")).unwrap()).unwrap();
        let stranger =
            EncodingKey::from_rsa_pem(&std::fs::read(fixture("other-private.pem")).unwrap())
                .unwrap();
        let mut with_kid = Header::new(Algorithm::RS256);
        with_kid.kid = Some("clm-test-1".into());
        for file in ["rsa-public.pem", "jwks.json"] {
            let settings = AuthSettings {
                public_key_file: Some(fixture(file)),
                ..hs256()
            };
            let settings = AuthSettings {
                secret: None,
                ..settings
            };
            let verifier = Verifier::from_settings(&settings).unwrap().unwrap();
            let good = token(with_kid.clone(), &private, serde_json::json!({}));
            assert_eq!(verifier.verify(&good).unwrap().tenant, "acme", "{file}");
            let forged = token(with_kid.clone(), &stranger, serde_json::json!({}));
            assert!(verifier.verify(&forged).is_err(), "{file}: another key");
            // Algorithm confusion: an HS256 token keyed with the public key's bytes.
            let public = std::fs::read(fixture("rsa-public.pem")).unwrap();
            let confused = token(
                Header::default(),
                &EncodingKey::from_secret(&public),
                serde_json::json!({}),
            );
            assert!(
                verifier.verify(&confused).is_err(),
                "{file}: HS256 with the public key"
            );
        }
        let mut unknown_kid = Header::new(Algorithm::RS256);
        unknown_kid.kid = Some("rotated-away".into());
        let settings = AuthSettings {
            secret: None,
            public_key_file: Some(fixture("jwks.json")),
            ..hs256()
        };
        let verifier = Verifier::from_settings(&settings).unwrap().unwrap();
        let refused = verifier.verify(&token(unknown_kid, &private, serde_json::json!({})));
        assert!(refused.unwrap_err().0.contains("key id"));
    }

    #[test]
    fn issued_tokens_verify_and_short_secrets_are_refused() {
        let settings = hs256();
        let issuer = TokenIssuer::from_settings(&settings).unwrap();
        let token = issuer
            .issue(&IssueOptions {
                subject: "ops".into(),
                tenant: "acme".into(),
                scopes: vec!["scoring:read".into(), "scoring:admin".into()],
                ttl: std::time::Duration::from_secs(60),
            })
            .unwrap();
        let caller = Verifier::from_settings(&settings)
            .unwrap()
            .unwrap()
            .verify(&token)
            .unwrap();
        assert_eq!(caller.scopes, ["scoring:read", "scoring:admin"]);
        let short = AuthSettings {
            secret: Some("short".into()),
            ..hs256()
        };
        assert!(Verifier::from_settings(&short).is_err());
        assert!(
            Verifier::from_settings(&AuthSettings::default())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn service_credentials_carry_an_internal_token_of_the_rows_tenant() {
        let settings = hs256();
        let credentials = Credentials::from_settings(&settings, "clm-contacts").unwrap();
        let mut metadata = tonic::metadata::MetadataMap::new();
        credentials.authorize("tenant-7", &mut metadata).unwrap();
        let value = metadata.get("authorization").unwrap().to_str().unwrap();
        let token = value.strip_prefix("Bearer ").unwrap();
        let caller = Verifier::from_settings(&settings)
            .unwrap()
            .unwrap()
            .verify(token)
            .unwrap();
        assert_eq!(caller.tenant, "tenant-7");
        assert_eq!(caller.scopes, [INTERNAL]);
        let mut none = tonic::metadata::MetadataMap::new();
        Credentials::default()
            .authorize("tenant-7", &mut none)
            .unwrap();
        assert!(none.is_empty(), "no auth, no header");
    }
}
