//! `clm describe`: the suite's gRPC API as its descriptor set says it.

use std::path::Path;

use prost::Message;
use prost_types::FileDescriptorSet;

use crate::run::BoxError;

/// Writes the encoded descriptor set (every clm proto and the files they import) to
/// `path`, or lists each service's methods when no path is given.
pub(crate) fn describe(path: Option<&Path>) -> Result<(), BoxError> {
    if let Some(path) = path {
        std::fs::write(path, clm_proto::FILE_DESCRIPTOR_SET)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        return Ok(());
    }
    let set = FileDescriptorSet::decode(clm_proto::FILE_DESCRIPTOR_SET)?;
    for line in methods(&set) {
        println!("{line}");
    }
    Ok(())
}

/// `package.Service/Method (request) returns (response)`, with `stream` where it streams.
fn methods(set: &FileDescriptorSet) -> Vec<String> {
    let mut lines = Vec::new();
    for file in &set.file {
        for service in &file.service {
            for method in &service.method {
                let kind = |streaming: Option<bool>| {
                    if streaming == Some(true) {
                        "stream "
                    } else {
                        ""
                    }
                };
                lines.push(format!(
                    "{}.{}/{} ({}{}) returns ({}{})",
                    file.package(),
                    service.name(),
                    method.name(),
                    kind(method.client_streaming),
                    method.input_type().trim_start_matches('.'),
                    kind(method.server_streaming),
                    method.output_type().trim_start_matches('.'),
                ));
            }
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_set_holds_every_service_and_the_files_they_import() {
        let set = FileDescriptorSet::decode(clm_proto::FILE_DESCRIPTOR_SET).unwrap();
        let names: Vec<&str> = set.file.iter().map(|f| f.name()).collect();
        assert!(
            names.contains(&"google/protobuf/timestamp.proto"),
            "{names:?}"
        );
        let methods = methods(&set);
        for expected in [
            "clm.contacts.v1.ContactsService/RecordInteractions (stream clm.contacts.v1.RecordInteractionsRequest) returns (clm.contacts.v1.RecordInteractionsResponse)",
            "clm.scoring.v1.ScoringService/GetScore (clm.scoring.v1.GetScoreRequest) returns (clm.scoring.v1.GetScoreResponse)",
            "clm.lifecycle.v1.LifecycleService/WatchLifecycleEvents (clm.lifecycle.v1.WatchLifecycleEventsRequest) returns (stream clm.lifecycle.v1.WatchLifecycleEventsResponse)",
            "clm.analytics.v1.AnalyticsService/GetFunnel (clm.analytics.v1.GetFunnelRequest) returns (clm.analytics.v1.GetFunnelResponse)",
        ] {
            assert!(methods.iter().any(|m| m == expected), "{expected} missing");
        }
    }
}
