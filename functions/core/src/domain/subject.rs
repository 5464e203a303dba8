//! The platform's data about a subject, in the import format of the design (one JSON record a
//! line) and as read back for an export.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{AccountId, EmailAddress, ProfileId, SubprofileId, Timestamp};

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

/// A sent e-mail (a Copernica "destination"), with its complete MIME text. As a line of the
/// import format its body is the text itself (`Message`, that is `Message<String>`); as a store
/// reads it back for an export the body is a [`Mime`], which a large body leaves where it is
/// stored until the export streams it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message<M = String> {
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
    pub mime: M,
}

impl<M> Message<M> {
    /// The same message with another form of its body.
    #[must_use]
    pub fn with_mime<N>(self, mime: N) -> Message<N> {
        Message {
            account: self.account,
            id: self.id,
            profile: self.profile,
            subprofile: self.subprofile,
            email: self.email,
            mailing: self.mailing,
            subject: self.subject,
            sent: self.sent,
            mime,
        }
    }
}

/// The MIME body of a message as a store hands it to an export: the text itself when it is
/// small enough to travel with its page, otherwise where the store keeps it, for the export to
/// read as a stream ([`crate::ports::SubjectData::mime`]) when it reaches the message. A page
/// of messages thus costs memory by its count, never by the size of its mails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mime {
    /// The complete text.
    Text(String),
    /// A body left in the store.
    Stored(MimeRef),
}

/// Where a store keeps a MIME body: opaque to all but the store that read the page (as a
/// page's cursor is). Its text is a key, never any part of the body.
#[derive(Clone, PartialEq, Eq)]
pub struct MimeRef(String);

impl MimeRef {
    /// A store's reference.
    #[must_use]
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key, for the store that made it.
    #[must_use]
    pub fn key(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for MimeRef {
    // A key may hold a message id; logs get neither.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MimeRef(..)")
    }
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
    /// The platform's id of the event, unique within the account; a later event with the same
    /// id replaces it. Without one the event is identified by its content (see [`Event::key`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
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

impl Event {
    /// The event's identity within its account: `id:<id>` when it carries an id, otherwise
    /// `h:<hash>` of everything it says (type, message, profile, subprofile, address, time and
    /// details). Loading an event whose key is already stored replaces that one, so a replayed
    /// line is stored once. Events of one time are exported in the order of their keys, on
    /// every store.
    #[must_use]
    pub fn key(&self) -> String {
        if let Some(id) = &self.id {
            return format!("id:{id}");
        }
        // `Map` keeps its members sorted, so equal details always serialise the same way.
        let content = serde_json::json!([
            self.kind.as_str(),
            self.message,
            self.profile.map(ProfileId::get),
            self.subprofile.map(SubprofileId::get),
            self.email,
            self.time.unix(),
            self.data,
        ]);
        let digest = Sha256::digest(content.to_string().as_bytes());
        let mut key = String::with_capacity(2 + 40);
        key.push_str("h:");
        for byte in &digest[..20] {
            key.push_str(&format!("{byte:02x}"));
        }
        key
    }
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

impl Record {
    /// The profile, subprofile and address a message or event names (profiles and
    /// subprofiles name none).
    #[must_use]
    pub fn owner(&self) -> Option<Owner<'_>> {
        match self {
            Self::Profile(_) | Self::Subprofile(_) => None,
            Self::Message(m) => Some(Owner { profile: m.profile, subprofile: m.subprofile, email: Some(&m.email) }),
            Self::Event(e) => Some(Owner { profile: e.profile, subprofile: e.subprofile, email: e.email.as_deref() }),
        }
    }
}

/// Whom a message or event belongs to. The rule every store holds: a record that names a
/// subprofile belongs to that subprofile, and through it to whichever profile the subprofile
/// belongs to *now*, whatever profile the line named; a record without a subprofile belongs to
/// the profile it names. Both also belong to the address they name (for e-mail exports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner<'a> {
    /// The profile the line named.
    pub profile: Option<ProfileId>,
    /// The subprofile the line named.
    pub subprofile: Option<SubprofileId>,
    /// The address the line named.
    pub email: Option<&'a str>,
}

impl Owner<'_> {
    /// The profile that owns the record directly (not through a subprofile).
    #[must_use]
    pub fn direct_profile(&self) -> Option<ProfileId> {
        if self.subprofile.is_some() { None } else { self.profile }
    }
}

/// An erasure (GDPR Art. 17): a profile with its subprofiles and every message and event of
/// them; a subprofile with its messages and events; or every message and event sent to an
/// address, with every profile and subprofile whose address it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Erasure {
    /// `{"kind":"erase","account":A,"profile":P}`
    Profile(AccountId, ProfileId),
    /// `{"kind":"erase","account":A,"subprofile":S}`
    Subprofile(AccountId, SubprofileId),
    /// `{"kind":"erase","account":A,"email":"…"}`
    Email(AccountId, EmailAddress),
}

impl Erasure {
    /// The account whose data is erased.
    #[must_use]
    pub fn account(&self) -> AccountId {
        match self {
            Self::Profile(a, _) | Self::Subprofile(a, _) | Self::Email(a, _) => *a,
        }
    }
}

/// One line of ingestion: a record to load, an erasure, or a record that is read and skipped
/// (an SES event of a kind that is not kept, or of a mail sent without an `account` tag).
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// Load (replace by id or key).
    Record(Record),
    /// Erase.
    Erase(Erasure),
    /// Read, valid, and not kept.
    Skip,
}

impl Line {
    /// The account the line loads or erases data of; none for a line that is skipped.
    #[must_use]
    pub fn account(&self) -> Option<AccountId> {
        match self {
            Self::Record(record) => Some(record.account()),
            Self::Erase(erasure) => Some(erasure.account()),
            Self::Skip => None,
        }
    }
}
