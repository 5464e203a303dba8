//! The audit trail of a data request (GDPR Art. 5(2), accountability): an append-only log of
//! what happened, with times. It holds no personal data of the subject and no report address
//! in clear: tokens by a short id, report addresses by a hash, client addresses truncated.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::{Report, Timestamp, TokenHash};

/// One entry of a request's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// When.
    #[schema(value_type = String)]
    pub at: Timestamp,
    /// What.
    #[serde(flatten)]
    pub event: AuditEvent,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AuditEvent {
    /// The request was accepted.
    Received {
        /// The API version of the call (`v1` … `v4`).
        version: String,
        /// Which of the account's tokens, by its short id ([`token_id`]).
        token: String,
        /// The kind of subject (`profile`, `subprofile`, `email`).
        subject: String,
        /// Where the export goes: `email` or `web`, and a hash of the address.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        report: Option<ReportTrace>,
    },
    /// The same call came again under its idempotency key; nothing new was created.
    Repeated {
        /// The API version of the call.
        version: String,
        /// Which token, by its short id ([`token_id`]).
        token: String,
    },
    /// The builder started.
    BuildStarted,
    /// The export was complete.
    Built {
        /// Its size.
        bytes: u64,
        /// The records of each section.
        records: BTreeMap<String, u64>,
    },
    /// The request failed.
    Failed {
        /// Why (the service's own words).
        reason: String,
    },
    /// A delivery attempt and its outcome (`sent`, `failed`, `given_up`).
    Delivery {
        /// Which attempt.
        attempt: u32,
        /// `attachment`, `link` or `web`.
        method: String,
        /// What came of it.
        outcome: String,
    },
    /// The file was fetched.
    Download {
        /// Through which route: `data`, `export` (the GET of the request) or `download` (the
        /// mailed link).
        route: String,
        /// The client's address, truncated to its /24 (IPv4) or /48 (IPv6).
        client: String,
    },
    /// The export expired and its file was deleted.
    Expired,
    /// The account cancelled the request (`DELETE`); a build stops and its files are deleted.
    Cancelled {
        /// The account that cancelled it.
        account: u64,
        /// The API version of the call (`v1` … `v4`).
        version: String,
        /// Which of the account's tokens, by its short id ([`token_id`]).
        token: String,
    },
}

/// A report address, as the log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReportTrace {
    /// `email` or `web`.
    pub method: String,
    /// SHA-256 of the address, in hex: shows it was the same one, never which.
    pub hash: String,
}

impl ReportTrace {
    /// The trace of a report address.
    #[must_use]
    pub fn of(report: &Report) -> Self {
        let method = match report {
            Report::Email(_) => "email",
            Report::Web(_) => "web",
        };
        let digest = Sha256::digest(report.to_string().as_bytes());
        Self { method: method.to_owned(), hash: digest.iter().map(|b| format!("{b:02x}")).collect() }
    }
}

/// A token's short id: the first 12 hex digits of its hash (never the token).
#[must_use]
pub fn token_id(token: &TokenHash) -> String {
    token.to_hex()[..12].to_owned()
}

/// A client address truncated to its network: `/24` for IPv4, `/48` for IPv6.
#[must_use]
pub fn truncated(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => truncated(IpAddr::V4(v4)),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_addresses_keep_only_their_network() {
        let v4: IpAddr = "203.0.113.77".parse().unwrap_or_else(|_| unreachable!());
        let v6: IpAddr = "2001:db8:abcd:12::1".parse().unwrap_or_else(|_| unreachable!());
        let mapped: IpAddr = "::ffff:198.51.100.9".parse().unwrap_or_else(|_| unreachable!());
        assert_eq!(truncated(v4), "203.0.113.0/24");
        assert_eq!(truncated(v6), "2001:db8:abcd::/48");
        assert_eq!(truncated(mapped), "198.51.100.0/24");
    }

    #[test]
    fn an_entry_reads_as_flat_json_with_its_event_name() {
        let entry = AuditEntry {
            at: Timestamp::from_unix(0),
            event: AuditEvent::Delivery { attempt: 1, method: "web".into(), outcome: "sent".into() },
        };
        let json = serde_json::to_value(&entry).unwrap_or_default();
        assert_eq!(
            json,
            serde_json::json!({"at":"1970-01-01 00:00:00","event":"delivery","attempt":1,"method":"web","outcome":"sent"})
        );
        let back: AuditEntry = serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, entry);
    }
}
