//! A data request and its lifecycle.

use std::fmt;
use std::str::FromStr;

use super::{AccountId, EmailAddress, Invalid, ProfileId, Report, RequestId, SubprofileId, Timestamp};

/// Whose data is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A profile, its subprofiles, and all their messages and events.
    Profile(ProfileId),
    /// A subprofile and its own messages and events.
    Subprofile(SubprofileId),
    /// Every message and event for an address (case-insensitive); no profile records.
    Email(EmailAddress),
}

/// The three kinds of subject, as named in `info.type` of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectKind {
    /// `profile`
    Profile,
    /// `subprofile`
    Subprofile,
    /// `email`
    Email,
}

impl SubjectKind {
    /// Every kind.
    pub const ALL: [SubjectKind; 3] = [Self::Profile, Self::Subprofile, Self::Email];

    /// Copernica's sections of an export of this kind of subject, in export order: a profile's
    /// has them all, a subprofile's no `profile`, an e-mail address's neither `profile` nor
    /// `subprofiles`. A mapping's sources may add sections of their own after them.
    #[must_use]
    pub fn standard_sections(self) -> &'static [&'static str] {
        const ALL: [&str; 10] = [
            "profile",
            "subprofiles",
            "destinations",
            "impressions",
            "clicks",
            "deliveries",
            "errors",
            "abuses",
            "unsubscribes",
            "surveys",
        ];
        match self {
            Self::Profile => &ALL,
            Self::Subprofile => &ALL[1..],
            Self::Email => &ALL[2..],
        }
    }

    /// The name used in exports, storage and the API.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Profile => "profile",
            Self::Subprofile => "subprofile",
            Self::Email => "email",
        }
    }
}

impl Subject {
    /// The kind of subject.
    #[must_use]
    pub fn kind(&self) -> SubjectKind {
        match self {
            Self::Profile(_) => SubjectKind::Profile,
            Self::Subprofile(_) => SubjectKind::Subprofile,
            Self::Email(_) => SubjectKind::Email,
        }
    }

    /// The subject's id or address as text, as stored.
    #[must_use]
    pub fn value(&self) -> String {
        match self {
            Self::Profile(id) => id.to_string(),
            Self::Subprofile(id) => id.to_string(),
            Self::Email(address) => address.as_str().to_owned(),
        }
    }

    /// Rebuilds a subject from its stored kind and value.
    ///
    /// # Errors
    /// When the stored text is not a valid subject.
    pub fn from_parts(kind: &str, value: &str) -> Result<Self, Invalid> {
        match kind {
            "profile" => ProfileId::parse(value).map(Self::Profile),
            "subprofile" => SubprofileId::parse(value).map(Self::Subprofile),
            "email" => EmailAddress::parse(value).map(Self::Email),
            _ => Err(Invalid::new("unknown subject kind")),
        }
    }

    /// The subject as a request keeps it once its export is gone: an address is replaced by
    /// its erased stand-in ([`EmailAddress::erased`]); ids name no one by themselves.
    #[must_use]
    pub fn redacted(&self) -> Self {
        match self {
            Self::Email(address) => Self::Email(address.erased()),
            other => other.clone(),
        }
    }

    /// `info.id` of the export: the number, or the address.
    #[must_use]
    pub fn info_id(&self) -> serde_json::Value {
        match self {
            Self::Profile(id) => id.get().into(),
            Self::Subprofile(id) => id.get().into(),
            Self::Email(address) => address.as_str().into(),
        }
    }
}

/// Where a request is in its life. Every change is a conditional write on the state before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Stored and queued; nothing built yet.
    Accepted,
    /// The export is being written.
    Building,
    /// The export is complete and can be fetched; delivery may be under way.
    Built,
    /// The export was delivered to the report address.
    Delivered,
    /// The export could not be built; `reason` says why.
    Failed,
    /// The export's time ran out and its file was deleted.
    Expired,
    /// The account cancelled the request: nothing more is built or delivered, and its files
    /// are deleted.
    Cancelled,
}

impl State {
    /// Every state, for stores that list them.
    pub const ALL: [State; 7] =
        [Self::Accepted, Self::Building, Self::Built, Self::Delivered, Self::Failed, Self::Expired, Self::Cancelled];

    /// The stored name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Building => "building",
            Self::Built => "built",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
        }
    }

    /// The Copernica `status`: `pending`, `available` or `not available`.
    #[must_use]
    pub fn copernica_status(self) -> &'static str {
        match self {
            Self::Accepted | Self::Building => "pending",
            Self::Built | Self::Delivered => "available",
            Self::Failed | Self::Expired | Self::Cancelled => "not available",
        }
    }

    /// Whether the export file exists in this state.
    #[must_use]
    pub fn has_file(self) -> bool {
        matches!(self, Self::Built | Self::Delivered)
    }
}

impl FromStr for State {
    type Err = Invalid;
    fn from_str(text: &str) -> Result<Self, Invalid> {
        Self::ALL.into_iter().find(|state| state.as_str() == text).ok_or_else(|| Invalid::new("unknown request state"))
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How delivery to the report address went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeliveryStatus {
    /// Nothing to deliver (no `report`).
    #[default]
    None,
    /// Waiting for the export, or for the next attempt.
    Pending,
    /// A worker holds the claim and is sending.
    Sending,
    /// Delivered.
    Sent,
    /// Gave up after the last attempt; the export can still be fetched.
    Failed,
}

impl DeliveryStatus {
    /// Every status.
    pub const ALL: [DeliveryStatus; 5] = [Self::None, Self::Pending, Self::Sending, Self::Sent, Self::Failed];

    /// The stored and shown name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Pending => "pending",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Failed => "failed",
        }
    }
}

impl FromStr for DeliveryStatus {
    type Err = Invalid;
    fn from_str(text: &str) -> Result<Self, Invalid> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
            .ok_or_else(|| Invalid::new("unknown delivery status"))
    }
}

/// Delivery bookkeeping of a request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Delivery {
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: u32,
    /// How it was (or is being) delivered: `attachment`, `link` or `web`.
    pub method: Option<String>,
    /// The last failure, in words safe to show the account (no personal data).
    pub error: Option<String>,
    /// While `Sending`: until when the claim of the worker that sends holds.
    pub claimed_until: Option<Timestamp>,
}

/// A data request as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataRequest {
    /// Its id.
    pub id: RequestId,
    /// The account that asked; the only one that can see it.
    pub account: AccountId,
    /// Whose data.
    pub subject: Subject,
    /// Where to deliver the export, if anywhere.
    pub report: Option<Report>,
    /// Lifecycle state.
    pub state: State,
    /// Why it failed or expired.
    pub reason: Option<String>,
    /// Bytes of the export written so far.
    pub available: u64,
    /// When it was accepted.
    pub created: Timestamp,
    /// When the export was complete.
    pub completed: Option<Timestamp>,
    /// When the export expires.
    pub expires: Option<Timestamp>,
    /// Until when the builder that started or last renewed the build holds it.
    pub lease_until: Option<Timestamp>,
    /// Where an unfinished build stands, as the export writer recorded it (opaque here): a
    /// builder that takes the build over continues from it instead of from the first byte.
    pub checkpoint: Option<String>,
    /// Delivery bookkeeping.
    pub delivery: Delivery,
    /// Once built: each section of the export and its record count, in export order.
    pub records: Vec<(String, u64)>,
}

impl DataRequest {
    /// A newly accepted request.
    #[must_use]
    pub fn accepted(
        id: RequestId,
        account: AccountId,
        subject: Subject,
        report: Option<Report>,
        now: Timestamp,
    ) -> Self {
        let delivery = Delivery {
            status: if report.is_some() { DeliveryStatus::Pending } else { DeliveryStatus::None },
            ..Delivery::default()
        };
        Self {
            id,
            account,
            subject,
            report,
            state: State::Accepted,
            reason: None,
            available: 0,
            created: now,
            completed: None,
            expires: None,
            lease_until: None,
            checkpoint: None,
            delivery,
            records: Vec::new(),
        }
    }

    /// Whether the export was built and every section of it is empty: nothing is held about
    /// the subject.
    #[must_use]
    pub fn holds_nothing(&self) -> bool {
        !self.records.is_empty() && self.records.iter().all(|(_, count)| *count == 0)
    }

    /// The state as the clients see it at `now`: a request whose expiry has passed is expired
    /// even before the sweeper got to it.
    #[must_use]
    pub fn effective_state(&self, now: Timestamp) -> State {
        match self.expires {
            Some(expires) if self.state.has_file() && expires <= now => State::Expired,
            _ => self.state,
        }
    }
}
