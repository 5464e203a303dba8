//! Domain types. Every value here was parsed at the edge: a value that exists is valid, so the
//! rest of the library never checks an id, an address or a token again.

pub mod audit;
pub mod build_message;
mod email;
pub mod idempotency;
mod ids;
pub mod lifecycle;
pub mod ndjson;
mod proxy;
mod report;
mod request;
pub mod ses;
pub mod signing;
mod subject;
mod time;
mod token;
mod web_address;

pub use audit::{AuditEntry, AuditEvent};
pub use email::EmailAddress;
pub use idempotency::IdempotencyKey;
pub use ids::{AccountId, ProfileId, RequestId, SubprofileId};
pub use lifecycle::{RetryPolicy, Transition};
pub use proxy::{Network, TrustedProxies};
pub use report::Report;
pub use request::{DataRequest, Delivery, DeliveryStatus, State, Subject, SubjectKind};
pub use signing::{KeyId, Keyring, SigningKey, SigningProfile};
pub use subject::{Erasure, Event, EventKind, Line, Message, Mime, MimeRef, Owner, Profile, Record, Subprofile};
pub use time::Timestamp;
pub use token::{AccessToken, DownloadToken, LinkSecret, TokenHash, WebhookSecret};
pub use web_address::{WebAddress, WebPolicy, is_public_ip};

/// Why a value from outside was refused. The text is safe to show to the client: it names the
/// rule that was broken, never echoes the value (it may be personal data).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl Invalid {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}
