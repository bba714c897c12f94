//! clm-proto: the gRPC contracts of every clm service, generated from `proto/clm/`.
#![forbid(unsafe_code)]
#![allow(unreachable_pub, clippy::all, clippy::pedantic)]

/// Shared messages: money, time ranges, change events.
pub mod common {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("clm.common.v1");
    }
}

/// The contacts API.
pub mod contacts {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("clm.contacts.v1");
    }
}

/// The scoring API.
pub mod scoring {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("clm.scoring.v1");
    }
}

/// The lifecycle API.
pub mod lifecycle {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("clm.lifecycle.v1");
    }
}

/// The analytics API.
pub mod analytics {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("clm.analytics.v1");
    }
}

/// The encoded `FileDescriptorSet` of every clm proto, for reflection and gateways.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("clm_descriptor");
