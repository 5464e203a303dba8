//! The platform's data about a subject, in the import format of the design (one JSON record a
//! line) and as read back for an export.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{AccountId, ProfileId, SubprofileId, Timestamp};

/// A profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Owner.
    pub account: AccountId,
    /// Id, unique within the account.
    pub id: ProfileId,
    /// The database it lives in.
    pub database: u64,
    /// Its e-mail address, if any.
    #[serde(default)]
    pub email: Option<String>,
    /// Field values.
    #[serde(default)]
    pub fields: Map<String, Value>,
    /// Interests.
    #[serde(default)]
    pub interests: Vec<String>,
    /// Created.
    pub created: Timestamp,
    /// Last modified.
    pub modified: Timestamp,
}

/// A subprofile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subprofile {
    /// Owner.
    pub account: AccountId,
    /// Id, unique within the account.
    pub id: SubprofileId,
    /// The profile it belongs to.
    pub profile: ProfileId,
    /// The collection it lives in.
    pub collection: u64,
    /// Its e-mail address, if any.
    #[serde(default)]
    pub email: Option<String>,
    /// Field values.
    #[serde(default)]
    pub fields: Map<String, Value>,
    /// Created.
    pub created: Timestamp,
    /// Last modified.
    pub modified: Timestamp,
}

/// A sent e-mail (a Copernica "destination"), with its complete MIME text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    /// Owner.
    pub account: AccountId,
    /// Id, unique within the account.
    pub id: String,
    /// The profile it was sent to, if any.
    #[serde(default)]
    pub profile: Option<ProfileId>,
    /// The subprofile it was sent to, if any.
    #[serde(default)]
    pub subprofile: Option<SubprofileId>,
    /// The address it was sent to.
    pub email: String,
    /// The mailing it belongs to.
    pub mailing: String,
    /// Its subject line.
    pub subject: String,
    /// When it was sent.
    pub sent: Timestamp,
    /// The complete RFC 5322 message.
    pub mime: String,
}

/// The kinds of event, each with its export section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// An open.
    Impression,
    /// A click.
    Click,
    /// A delivery.
    Delivery,
    /// A bounce.
    Error,
    /// A complaint.
    Abuse,
    /// An unsubscribe.
    Unsubscribe,
    /// A survey answer.
    Survey,
}

impl EventKind {
    /// All kinds, in the order of their export sections.
    pub const ALL: [EventKind; 7] =
        [Self::Impression, Self::Click, Self::Delivery, Self::Error, Self::Abuse, Self::Unsubscribe, Self::Survey];

    /// The import name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Impression => "impression",
            Self::Click => "click",
            Self::Delivery => "delivery",
            Self::Error => "error",
            Self::Abuse => "abuse",
            Self::Unsubscribe => "unsubscribe",
            Self::Survey => "survey",
        }
    }

    /// The Copernica section name.
    #[must_use]
    pub fn section(self) -> &'static str {
        match self {
            Self::Impression => "impressions",
            Self::Click => "clicks",
            Self::Delivery => "deliveries",
            Self::Error => "errors",
            Self::Abuse => "abuses",
            Self::Unsubscribe => "unsubscribes",
            Self::Survey => "surveys",
        }
    }

    /// Parses the import name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// Something that happened to a message or subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Owner.
    pub account: AccountId,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// The message it concerns, if any (surveys have none).
    #[serde(default)]
    pub message: Option<String>,
    /// The profile, if any.
    #[serde(default)]
    pub profile: Option<ProfileId>,
    /// The subprofile, if any.
    #[serde(default)]
    pub subprofile: Option<SubprofileId>,
    /// The address, if any.
    #[serde(default)]
    pub email: Option<String>,
    /// When.
    pub time: Timestamp,
    /// Details (ip, user agent, link, answers, …).
    #[serde(default)]
    pub data: Map<String, Value>,
}

/// One line of the import format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Record {
    /// `{"kind":"profile",…}`
    Profile(Profile),
    /// `{"kind":"subprofile",…}`
    Subprofile(Subprofile),
    /// `{"kind":"message",…}`
    Message(Message),
    /// `{"kind":"event",…}`
    Event(Event),
}

impl Record {
    /// The account the record belongs to.
    #[must_use]
    pub fn account(&self) -> AccountId {
        match self {
            Self::Profile(r) => r.account,
            Self::Subprofile(r) => r.account,
            Self::Message(r) => r.account,
            Self::Event(r) => r.account,
        }
    }
}
