//! Records as the export writes them: the JSON shape of each record, and how each appears in
//! the HTML report.

use serde::Serialize;
use serde_json::{Map, Value};

use super::html::HtmlReport;
use crate::domain::{Event, Message, Profile, Subprofile, Timestamp};
use crate::ports::SourceRow;

#[derive(Serialize)]
pub(super) struct ProfileOut<'a> {
    #[serde(rename = "ID")]
    id: String,
    fields: &'a Map<String, Value>,
    interests: &'a [String],
    database: String,
    email: &'a Option<String>,
    created: Timestamp,
    modified: Timestamp,
}

#[derive(Serialize)]
pub(super) struct SubprofileOut<'a> {
    #[serde(rename = "ID")]
    id: String,
    profile: String,
    collection: String,
    email: &'a Option<String>,
    fields: &'a Map<String, Value>,
    created: Timestamp,
    modified: Timestamp,
}

/// A destination without its body, which follows as the last member, `mime`, written as it
/// streams in.
#[derive(Serialize)]
pub(super) struct DestinationHead<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    mailing: &'a str,
    subject: &'a str,
    timestampsent: Timestamp,
    profile: Option<String>,
    subprofile: Option<String>,
    email: &'a str,
}

#[derive(Serialize)]
pub(super) struct EventOut<'a> {
    destination: &'a Option<String>,
    timestamp: Timestamp,
    profile: Option<String>,
    subprofile: Option<String>,
    email: &'a Option<String>,
    data: &'a Map<String, Value>,
}

pub(super) fn profile_out(p: &Profile) -> ProfileOut<'_> {
    ProfileOut {
        id: p.id.to_string(),
        fields: &p.fields,
        interests: &p.interests,
        database: p.database.to_string(),
        email: &p.email,
        created: p.created,
        modified: p.modified,
    }
}

pub(super) fn subprofile_out(s: &Subprofile) -> SubprofileOut<'_> {
    SubprofileOut {
        id: s.id.to_string(),
        profile: s.profile.to_string(),
        collection: s.collection.to_string(),
        email: &s.email,
        fields: &s.fields,
        created: s.created,
        modified: s.modified,
    }
}

pub(super) fn destination_head<M>(m: &Message<M>) -> DestinationHead<'_> {
    DestinationHead {
        id: &m.id,
        mailing: &m.mailing,
        subject: &m.subject,
        timestampsent: m.sent,
        profile: m.profile.map(|p| p.to_string()),
        subprofile: m.subprofile.map(|s| s.to_string()),
        email: &m.email,
    }
}

pub(super) fn event_out(e: &Event) -> EventOut<'_> {
    EventOut {
        destination: &e.message,
        timestamp: e.time,
        profile: e.profile.map(|p| p.to_string()),
        subprofile: e.subprofile.map(|s| s.to_string()),
        email: &e.email,
        data: &e.data,
    }
}

/// How a record appears in the HTML report.
pub(super) trait Render {
    fn render(&self, report: &mut HtmlReport);
}

impl Render for Profile {
    fn render(&self, report: &mut HtmlReport) {
        report.profile(self);
    }
}

impl Render for Subprofile {
    fn render(&self, report: &mut HtmlReport) {
        report.subprofile(self);
    }
}

impl Render for Event {
    fn render(&self, report: &mut HtmlReport) {
        report.event(self);
    }
}

impl Render for SourceRow {
    fn render(&self, report: &mut HtmlReport) {
        report.source_row(self);
    }
}
