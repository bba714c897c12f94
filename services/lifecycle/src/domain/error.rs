//! The lifecycle service's errors, mapped exhaustively onto the suite-wide error.

use clm_runtime::{Error, ErrorCode, FieldViolation};

/// Everything that can go wrong in the lifecycle service.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// The request is invalid; nothing was stored.
    #[error("invalid request")]
    Invalid(Vec<FieldViolation>),
    /// No such resource in the tenant.
    #[error("{kind} {id} not found")]
    NotFound {
        /// The resource type.
        kind: &'static str,
        /// Its id.
        id: String,
    },
    /// A name is taken.
    #[error("{kind} named {name:?} exists already")]
    NameTaken {
        /// The resource type.
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// The etag sent no longer matches.
    #[error("etag mismatch: the model changed since it was read")]
    StaleEtag,
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
}

impl LifecycleError {
    /// An invalid-argument error for one field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldViolation::new(field, description)])
    }
}

impl From<LifecycleError> for Error {
    fn from(error: LifecycleError) -> Self {
        let message = error.to_string();
        match error {
            LifecycleError::Invalid(violations) => Error::invalid(violations),
            LifecycleError::NotFound { kind, id } => {
                Error::new(ErrorCode::NotFound, message).with_resource(kind, id)
            }
            LifecycleError::NameTaken { kind, name } => {
                Error::new(ErrorCode::AlreadyExists, message).with_resource(kind, name)
            }
            LifecycleError::StaleEtag => Error::new(ErrorCode::Aborted, message),
            LifecycleError::Database(db) => {
                let code = match db {
                    sea_orm::DbErr::ConnectionAcquire(_) | sea_orm::DbErr::Conn(_) => {
                        ErrorCode::Unavailable
                    }
                    _ => ErrorCode::Internal,
                };
                Error::new(code, format!("database: {db}"))
            }
        }
    }
}
