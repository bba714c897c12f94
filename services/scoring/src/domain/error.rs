//! The scoring service's errors, mapped exhaustively onto the suite-wide error.

use clm_runtime::{Error, ErrorCode, FieldViolation};

/// Everything that can go wrong in the scoring service.
#[derive(Debug, thiserror::Error)]
pub enum ScoringError {
    /// The request is invalid; nothing was stored.
    #[error("invalid request")]
    Invalid(Vec<FieldViolation>),
    /// No such model in the tenant.
    #[error("scoring model {0} not found")]
    ModelNotFound(String),
    /// Another model of the tenant has the name.
    #[error("a scoring model named {name:?} exists already: {existing_id}")]
    NameTaken {
        /// The name.
        name: String,
        /// The model that has it.
        existing_id: String,
    },
    /// The etag sent no longer matches.
    #[error("etag mismatch: the model changed since it was read")]
    StaleEtag,
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
}

impl ScoringError {
    /// An invalid-argument error for one field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldViolation::new(field, description)])
    }
}

impl From<ScoringError> for Error {
    fn from(error: ScoringError) -> Self {
        let message = error.to_string();
        match error {
            ScoringError::Invalid(violations) => Error::invalid(violations),
            ScoringError::ModelNotFound(id) => Error::new(ErrorCode::NotFound, message)
                .with_resource("clm.scoring.v1.ScoringModel", id),
            ScoringError::NameTaken { existing_id, .. } => {
                Error::new(ErrorCode::AlreadyExists, message)
                    .with_resource("clm.scoring.v1.ScoringModel", existing_id)
            }
            ScoringError::StaleEtag => Error::new(ErrorCode::Aborted, message),
            ScoringError::Database(db) => {
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
