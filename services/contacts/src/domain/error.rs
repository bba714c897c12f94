//! The contacts service's errors, mapped exhaustively onto the suite-wide error.

use clm_runtime::{Error, ErrorCode, FieldViolation};

/// Everything that can go wrong in the contacts service.
#[derive(Debug, thiserror::Error)]
pub enum ContactsError {
    /// The request is invalid; nothing was stored.
    #[error("invalid request")]
    Invalid(Vec<FieldViolation>),
    /// No such contact in the tenant.
    #[error("contact {0} not found")]
    ContactNotFound(String),
    /// The contact was erased (or merged away); its id is never reused.
    #[error("contact {id} was erased")]
    ContactErased {
        /// The erased id.
        id: String,
        /// The survivor, when it was merged away.
        merged_into: Option<String>,
    },
    /// Another contact of the tenant has the email.
    #[error("a contact with this email exists already: {existing_id}")]
    EmailTaken {
        /// The contact that has it.
        existing_id: String,
    },
    /// The etag sent no longer matches: someone else changed the contact.
    #[error("etag mismatch: the contact changed since it was read")]
    StaleEtag,
    /// A merge of a contact into itself.
    #[error("a contact cannot be merged into itself")]
    SelfMerge,
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
}

impl ContactsError {
    /// An invalid-argument error for one field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldViolation::new(field, description)])
    }
}

impl From<ContactsError> for Error {
    fn from(error: ContactsError) -> Self {
        let message = error.to_string();
        match error {
            ContactsError::Invalid(violations) => Error::invalid(violations),
            ContactsError::ContactNotFound(id) => Error::new(ErrorCode::NotFound, message)
                .with_resource("clm.contacts.v1.Contact", id),
            ContactsError::ContactErased { id, merged_into } => {
                let message = match merged_into {
                    Some(survivor) => format!("contact {id} was merged into {survivor}"),
                    None => message,
                };
                Error::new(ErrorCode::NotFound, message)
                    .with_resource("clm.contacts.v1.Contact", id)
            }
            ContactsError::EmailTaken { existing_id } => {
                Error::new(ErrorCode::AlreadyExists, message)
                    .with_resource("clm.contacts.v1.Contact", existing_id)
            }
            ContactsError::StaleEtag => Error::new(ErrorCode::Aborted, message),
            ContactsError::SelfMerge => Error::invalid_field("duplicate_id", message),
            ContactsError::Database(db) => {
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
