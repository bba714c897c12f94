//! Which scope each RPC needs: the one table every server consults.

/// What a request must carry to reach a gRPC path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Nothing: the standard health service, so probes work without credentials.
    Public,
    /// A valid token, whatever its scopes (server reflection).
    Authenticated,
    /// A valid token with this scope.
    Scope(&'static str),
}

/// Scope of the suite's own calls between services (`Apply*`, `Ingest*`).
pub const INTERNAL: &str = "internal";

/// Every scope a token may carry.
pub const ALL_SCOPES: [&str; 9] = [
    "contacts:read",
    "contacts:write",
    "scoring:read",
    "scoring:admin",
    "lifecycle:read",
    "lifecycle:write",
    "analytics:read",
    "analytics:write",
    INTERNAL,
];

/// Every scope but `internal`: what a person's or a platform's token may be granted.
pub fn public_scopes() -> Vec<String> {
    ALL_SCOPES
        .iter()
        .filter(|s| **s != INTERNAL)
        .map(|s| (*s).to_owned())
        .collect()
}

/// The access rule of gRPC `path` (`/package.Service/Method`); `None` for a path no rule
/// names, which is refused.
pub fn access(path: &str) -> Option<Access> {
    let (service, method) = path.trim_start_matches('/').split_once('/')?;
    if service == "grpc.health.v1.Health" {
        return Some(Access::Public);
    }
    if service.starts_with("grpc.reflection.") {
        return Some(Access::Authenticated);
    }
    let scope = match (service, method) {
        ("clm.contacts.v1.ContactsService", "GetContact" | "ListContacts" | "ListInteractions") => {
            "contacts:read"
        }
        (
            "clm.contacts.v1.ContactsService",
            "CreateContact" | "UpdateContact" | "DeleteContact" | "MergeContacts"
            | "ImportContacts" | "RecordInteraction" | "RecordInteractions",
        ) => "contacts:write",
        (
            "clm.scoring.v1.ScoringService",
            "GetScoringModel"
            | "ListScoringModels"
            | "GetScore"
            | "BatchGetScores"
            | "ExplainScore"
            | "ListScoreHistory"
            | "SimulateScoringModel",
        ) => "scoring:read",
        (
            "clm.scoring.v1.ScoringService",
            "CreateScoringModel" | "UpdateScoringModel" | "RescoreAll",
        ) => "scoring:admin",
        ("clm.scoring.v1.ScoringService", "ApplyInteractions") => INTERNAL,
        (
            "clm.lifecycle.v1.LifecycleService",
            "GetStageModel"
            | "GetContactStage"
            | "ListStageHistory"
            | "ListSegments"
            | "ListSegmentMembers"
            | "WatchLifecycleEvents",
        ) => "lifecycle:read",
        (
            "clm.lifecycle.v1.LifecycleService",
            "CreateStageModel" | "UpdateStageModel" | "TransitionContact" | "CreateSegment",
        ) => "lifecycle:write",
        ("clm.lifecycle.v1.LifecycleService", "ApplySignals") => INTERNAL,
        (
            "clm.analytics.v1.AnalyticsService",
            "GetFunnel"
            | "GetStageMetrics"
            | "GetCohortRetention"
            | "GetActivityLifecycle"
            | "GetCustomerValue"
            | "GetAcquisitionCost"
            | "GetRfmSegments"
            | "GetNps",
        ) => "analytics:read",
        ("clm.analytics.v1.AnalyticsService", "RecordSpend") => "analytics:write",
        ("clm.analytics.v1.AnalyticsService", "IngestInteractions" | "IngestTransitions") => {
            INTERNAL
        }
        _ => return None,
    };
    Some(Access::Scope(scope))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every method of every clm service in the published descriptor set.
    fn published_methods() -> Vec<String> {
        crate::admission::published_methods()
            .iter()
            .map(|(path, _)| path.clone())
            .filter(|path| path.starts_with("/clm."))
            .collect()
    }

    #[test]
    fn every_published_rpc_has_a_scope_of_its_own_service() {
        let methods = published_methods();
        assert!(methods.len() > 40, "{methods:?}");
        for path in methods {
            let Some(Access::Scope(scope)) = access(&path) else {
                panic!("{path} has no scope");
            };
            assert!(ALL_SCOPES.contains(&scope));
            let internal = ["/Apply", "/Ingest"].iter().any(|p| path.contains(p));
            if internal {
                assert_eq!(scope, INTERNAL, "{path}");
            } else {
                let service = scope.split(':').next().unwrap();
                assert!(
                    path.starts_with(&format!("/clm.{service}.v1.")),
                    "{path}: {scope}"
                );
            }
        }
    }

    #[test]
    fn unknown_paths_have_no_rule_and_health_is_public() {
        assert_eq!(access("/clm.contacts.v1.ContactsService/DropAll"), None);
        assert_eq!(access("/nothing"), None);
        assert_eq!(access("/grpc.health.v1.Health/Check"), Some(Access::Public));
        assert_eq!(
            access("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            Some(Access::Authenticated)
        );
    }
}
