//! The stable reason strings shared by the Ready condition, Events and metric labels.

use std::fmt;

/// Why an object is in the state it is. The strings are part of the API: users match on them
/// in `kubectl wait`, alerts and dashboards, so they never change once published.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// S3 already matched the spec; nothing was written.
    InSync,
    /// This pass wrote PutBucketCors or DeleteBucketCors.
    Applied,
    /// ObserveOnly and the bucket differs from the spec.
    Drifted,
    /// The spec breaks an S3 constraint; no S3 call was made.
    InvalidSpec,
    /// Another BucketCors owns the same endpoint and bucket.
    Conflict,
    /// The referenced Secret or one of its keys is missing.
    CredentialsNotFound,
    /// The bucket does not exist.
    BucketNotFound,
    /// The store answered 403 (this includes an ExpectedBucketOwner mismatch).
    AccessDenied,
    /// The store does not implement the bucket CORS operations (501).
    Unsupported,
    /// The store refused the request as malformed (400); its message is kept verbatim.
    Rejected,
    /// The store is unreachable or failing (5xx, SlowDown, timeouts); retried with backoff.
    Unavailable,
    /// The store accepted the object's write but the bucket reads back what it held before:
    /// the store does not keep the rules as written (it drops IDs, say), or something else
    /// writes its own back. Not written again until the spec or the bucket changes.
    NotPersisted,
    /// No ClusterBucketStore grants this namespace the bucket (or the store it names does not
    /// exist), and the operator lends no identity of its own; no S3 call was made.
    NotPermitted,
    /// The object names its own endpoint and the operator's endpoint policy refuses it (plain
    /// http, or an address inside the cluster or the machine); no request was sent there.
    EndpointNotAllowed,
    /// The spec's rules break one of its own `expectations`; nothing was written.
    ExpectationFailed,
}

impl Reason {
    pub const ALL: [Reason; 15] = [
        Reason::InSync,
        Reason::Applied,
        Reason::Drifted,
        Reason::InvalidSpec,
        Reason::Conflict,
        Reason::CredentialsNotFound,
        Reason::BucketNotFound,
        Reason::AccessDenied,
        Reason::Unsupported,
        Reason::Rejected,
        Reason::Unavailable,
        Reason::NotPersisted,
        Reason::NotPermitted,
        Reason::EndpointNotAllowed,
        Reason::ExpectationFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InSync => "InSync",
            Reason::Applied => "Applied",
            Reason::Drifted => "Drifted",
            Reason::InvalidSpec => "InvalidSpec",
            Reason::Conflict => "Conflict",
            Reason::CredentialsNotFound => "CredentialsNotFound",
            Reason::BucketNotFound => "BucketNotFound",
            Reason::AccessDenied => "AccessDenied",
            Reason::Unsupported => "Unsupported",
            Reason::Rejected => "Rejected",
            Reason::Unavailable => "Unavailable",
            Reason::NotPersisted => "NotPersisted",
            Reason::NotPermitted => "NotPermitted",
            Reason::EndpointNotAllowed => "EndpointNotAllowed",
            Reason::ExpectationFailed => "ExpectationFailed",
        }
    }

    /// Whether the object is Ready when this is its latest outcome.
    pub fn is_ready(self) -> bool {
        matches!(self, Reason::InSync | Reason::Applied)
    }

    /// Whether the cause may go away by itself (store back up, bucket or Secret created), so
    /// the object is retried with backoff rather than at the resync interval. A Conflict is
    /// not: the waiting object is woken as soon as the holder lets the bucket go.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Reason::Unavailable
                | Reason::BucketNotFound
                | Reason::CredentialsNotFound
                | Reason::AccessDenied
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_strings_are_their_variant_names() {
        for reason in Reason::ALL {
            assert_eq!(reason.as_str(), format!("{reason:?}"));
        }
    }

    #[test]
    fn only_in_sync_and_applied_are_ready() {
        let ready: Vec<_> = Reason::ALL.into_iter().filter(|r| r.is_ready()).collect();
        assert_eq!(ready, [Reason::InSync, Reason::Applied]);
    }
}
