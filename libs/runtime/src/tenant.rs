//! Which tenant a request acts for.

use crate::Error;

/// The metadata key that names the tenant while the suite runs without auth.
pub const TENANT_METADATA_KEY: &str = "x-tenant-id";
/// The tenant of a request that names none.
pub const DEFAULT_TENANT: &str = "default";

/// The request's tenant: `x-tenant-id` (1 to 64 characters of `[A-Za-z0-9_-]`), or
/// `default` when absent.
pub fn tenant_of(metadata: &tonic::metadata::MetadataMap) -> Result<String, Error> {
    let Some(value) = metadata.get(TENANT_METADATA_KEY) else {
        return Ok(DEFAULT_TENANT.to_owned());
    };
    let tenant = value.to_str().unwrap_or_default();
    validate_tenant(tenant)?;
    Ok(tenant.to_owned())
}

/// Checks a tenant id: 1 to 64 characters of `[A-Za-z0-9_-]`.
pub fn validate_tenant(tenant: &str) -> Result<(), Error> {
    let valid = (1..=64).contains(&tenant.len())
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(Error::invalid_field(
            TENANT_METADATA_KEY,
            "must be 1 to 64 characters of letters, digits, '-' and '_'",
        ))
    }
}

/// The tenant of a gRPC request, as [`tenant_of`] reads it from the metadata.
pub fn tenant<T>(request: &tonic::Request<T>) -> Result<String, tonic::Status> {
    tenant_of(request.metadata()).map_err(tonic::Status::from)
}

/// Checks a resource id given in field `field`: required, at most 64 characters.
pub fn require_id(id: &str, field: &str) -> Result<(), Error> {
    match id_problem(id) {
        Some(problem) => Err(Error::invalid_field(field, problem)),
        None => Ok(()),
    }
}

/// What is wrong with a resource id, if anything: the check of [`require_id`] without a
/// field name, for lists whose field is named only for the id that fails.
pub fn id_problem(id: &str) -> Option<&'static str> {
    if id.is_empty() {
        Some("is required")
    } else if id.len() > 64 {
        Some("is not a valid id (at most 64 characters)")
    } else {
        None
    }
}
