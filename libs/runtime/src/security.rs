//! A service's security set-up in one value: how its server admits callers, and how its own
//! clients (the outbox relays) present themselves to other services.

use std::time::Duration;

use tonic::transport::Endpoint;

use crate::auth::{AuthError, AuthSettings, Credentials, Verifier};
use crate::tls::{TlsError, TlsFiles};

/// Authentication and TLS of one service.
#[derive(Clone, Debug, Default)]
pub struct Security {
    /// Verifies callers' tokens; `None` when auth is off.
    pub verifier: Option<Verifier>,
    /// What this service presents to the services it calls.
    pub credentials: Credentials,
    /// TLS for its server and its clients; `None` for plaintext.
    pub tls: Option<TlsFiles>,
}

/// Security could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// Keys or tokens.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// Certificates.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// An address or TLS configuration tonic refused.
    #[error("{0}")]
    Transport(String),
}

impl Security {
    /// The set-up of service `subject` (e.g. `clm-contacts`) from its settings.
    pub fn from_settings(
        auth: &AuthSettings,
        tls: Option<TlsFiles>,
        subject: &str,
    ) -> Result<Self, SecurityError> {
        Ok(Self {
            verifier: Verifier::from_settings(auth)?,
            credentials: Credentials::from_settings(auth, subject)?,
            tls,
        })
    }

    /// True when callers must present a token.
    pub fn auth_enabled(&self) -> bool {
        self.verifier.is_some()
    }

    /// An endpoint for a peer at `addr` (`host:port` or a URL): `https` with this
    /// service's client certificate when TLS is on.
    pub fn endpoint(&self, addr: &str) -> Result<Endpoint, SecurityError> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let url = if addr.contains("://") {
            addr.to_owned()
        } else {
            format!("{scheme}://{addr}")
        };
        let transport = |e: tonic::transport::Error| SecurityError::Transport(e.to_string());
        let mut endpoint = Endpoint::from_shared(url)
            .map_err(transport)?
            .connect_timeout(Duration::from_secs(2));
        if let Some(tls) = &self.tls {
            endpoint = endpoint
                .tls_config(tls.client_config()?)
                .map_err(transport)?;
        }
        Ok(endpoint)
    }
}
