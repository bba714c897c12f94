//! clm-runtime: what every clm gRPC server shares: one tower stack, health, reflection,
//! gRPC-Web, graceful shutdown, and the suite-wide error type with its single mapping to
//! `tonic::Status`.
#![forbid(unsafe_code)]

pub mod admission;
pub mod auth;
mod catch_panic;
mod error;
pub mod metrics;
pub mod page_token;
mod security;
mod server;
mod shutdown;
mod tenant;
mod tls;

pub use catch_panic::CatchPanic;
pub use error::{Error, ErrorCode, FieldViolation, mask_paths};
pub use metrics::Metrics;
pub use security::{Security, SecurityError};
pub use server::{Admin, Bound, DEFAULT_MAX_MESSAGE_BYTES, ServeOptions, bind, serve};
pub use shutdown::{Shutdown, wait_for_signal};
pub use tenant::{
    DEFAULT_TENANT, TENANT_METADATA_KEY, id_problem, require_id, tenant, tenant_of, validate_tenant,
};
pub use tls::{TlsError, TlsFiles};
