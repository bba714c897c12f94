//! TLS and mutual TLS (rustls) for every server and for the suite's own clients.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// The PEM files of a TLS set-up.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// This process's certificate chain: served to clients, and presented to servers
    /// that ask for a client certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// When set, the server requires client certificates signed by this CA (mutual TLS).
    pub client_ca: Option<PathBuf>,
    /// The CA the suite's own clients trust for the servers they call (default: the client
    /// CA, as one internal CA usually signs every service's certificate).
    pub server_ca: Option<PathBuf>,
}

/// A TLS file could not be read.
#[derive(Debug, thiserror::Error)]
#[error("TLS: cannot read {path}: {source}")]
pub struct TlsError {
    path: PathBuf,
    source: std::io::Error,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError {
        path: path.to_owned(),
        source,
    })
}

impl TlsFiles {
    fn identity(&self) -> Result<Identity, TlsError> {
        Ok(Identity::from_pem(read(&self.cert)?, read(&self.key)?))
    }

    /// The server side: this certificate, and client certificates required when a client CA
    /// is configured.
    pub fn server_config(&self) -> Result<ServerTlsConfig, TlsError> {
        let mut config = ServerTlsConfig::new().identity(self.identity()?);
        if let Some(ca) = &self.client_ca {
            config = config.client_ca_root(Certificate::from_pem(read(ca)?));
        }
        Ok(config)
    }

    /// The client side of the suite's calls between services: trust the server CA, and
    /// present this certificate.
    pub fn client_config(&self) -> Result<ClientTlsConfig, TlsError> {
        let mut config = ClientTlsConfig::new().identity(self.identity()?);
        if let Some(ca) = self.server_ca.as_ref().or(self.client_ca.as_ref()) {
            config = config.ca_certificate(Certificate::from_pem(read(ca)?));
        }
        Ok(config)
    }
}
