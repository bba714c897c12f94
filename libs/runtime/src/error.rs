//! The suite-wide error: a small code enum, mapped to `tonic::Code` in exactly one place.

use tonic_types::{ErrorDetails, StatusExt};

/// What went wrong, in the vocabulary of gRPC status codes that clm uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The request is malformed; nothing was changed.
    InvalidArgument,
    /// The resource does not exist (or belongs to another tenant).
    NotFound,
    /// The resource exists already.
    AlreadyExists,
    /// A concurrent change won (stale etag); retry after re-reading.
    Aborted,
    /// The system is not in a state that allows the operation.
    FailedPrecondition,
    /// A limit was reached.
    ResourceExhausted,
    /// No valid credentials.
    Unauthenticated,
    /// Credentials lack the scope needed.
    PermissionDenied,
    /// A dependency is down; retrying later may succeed.
    Unavailable,
    /// A bug or an unexpected failure.
    Internal,
}

impl From<ErrorCode> for tonic::Code {
    fn from(code: ErrorCode) -> Self {
        match code {
            ErrorCode::InvalidArgument => tonic::Code::InvalidArgument,
            ErrorCode::NotFound => tonic::Code::NotFound,
            ErrorCode::AlreadyExists => tonic::Code::AlreadyExists,
            ErrorCode::Aborted => tonic::Code::Aborted,
            ErrorCode::FailedPrecondition => tonic::Code::FailedPrecondition,
            ErrorCode::ResourceExhausted => tonic::Code::ResourceExhausted,
            ErrorCode::Unauthenticated => tonic::Code::Unauthenticated,
            ErrorCode::PermissionDenied => tonic::Code::PermissionDenied,
            ErrorCode::Unavailable => tonic::Code::Unavailable,
            ErrorCode::Internal => tonic::Code::Internal,
        }
    }
}

/// One invalid field of a request, as in `google.rpc.BadRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// The field's path in the request, e.g. `contact.email` or `interactions[3].type`.
    pub field: String,
    /// What is wrong with it.
    pub description: String,
}

impl FieldViolation {
    /// A violation of `field`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// An error on its way to a gRPC caller.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct Error {
    /// The status code.
    pub code: ErrorCode,
    /// A message for people; never contains personal data.
    pub message: String,
    /// Field violations, for `InvalidArgument`.
    pub violations: Vec<FieldViolation>,
    /// The resource concerned, e.g. the existing contact for `AlreadyExists`.
    pub resource: Option<(String, String)>,
}

impl Error {
    /// An error with a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            violations: Vec::new(),
            resource: None,
        }
    }

    /// `InvalidArgument` carrying field violations.
    pub fn invalid(violations: Vec<FieldViolation>) -> Self {
        let message = match violations.as_slice() {
            [one] => format!("invalid {}: {}", one.field, one.description),
            many => format!("{} invalid fields", many.len()),
        };
        Self {
            violations,
            ..Self::new(ErrorCode::InvalidArgument, message)
        }
    }

    /// `InvalidArgument` for a single field.
    pub fn invalid_field(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::invalid(vec![FieldViolation::new(field, description)])
    }

    /// Names the resource the error is about (`ResourceInfo` in the status details).
    #[must_use]
    pub fn with_resource(mut self, kind: impl Into<String>, name: impl Into<String>) -> Self {
        self.resource = Some((kind.into(), name.into()));
        self
    }
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        if error.code == ErrorCode::Internal {
            tracing::error!(error = %error.message, "internal error");
        }
        let mut details = ErrorDetails::new();
        for v in &error.violations {
            details.add_bad_request_violation(v.field.clone(), v.description.clone());
        }
        if let Some((kind, name)) = error.resource {
            details.set_resource_info(kind, name, "", error.message.clone());
        }
        let message = if error.code == ErrorCode::Internal {
            "internal error".to_owned()
        } else {
            error.message
        };
        tonic::Status::with_error_details(error.code.into(), message, details)
    }
}

/// The paths of an update mask, checked against `maskable`: an unknown path is a field
/// violation of `update_mask`, and an empty mask means every maskable field (AIP-134).
pub fn mask_paths(
    mask: Option<prost_types::FieldMask>,
    maskable: &[&str],
) -> Result<Vec<String>, Error> {
    let paths = mask.map(|m| m.paths).unwrap_or_default();
    let unknown: Vec<FieldViolation> = paths
        .iter()
        .filter(|p| !maskable.contains(&p.as_str()))
        .map(|p| FieldViolation::new("update_mask", format!("unknown field path {p:?}")))
        .collect();
    if !unknown.is_empty() {
        return Err(Error::invalid(unknown));
    }
    if paths.is_empty() {
        return Ok(maskable.iter().map(|p| (*p).to_owned()).collect());
    }
    Ok(paths)
}
