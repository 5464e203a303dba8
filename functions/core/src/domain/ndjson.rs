//! The NDJSON lines of subject data (the design's format, one record or erasure a line) and the
//! Amazon SES event records that may stand in their place, parsed into domain types. A line is
//! checked whole before anything is stored.

use serde::Deserialize;

use super::{AccountId, EmailAddress, Erasure, Line, ProfileId, Record, SubprofileId, ses};

/// The lines of the design's format, told apart by their `kind`.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Tagged {
    Profile(super::Profile),
    Subprofile(super::Subprofile),
    Message(super::Message),
    Event(super::Event),
    Erase(EraseLine),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EraseLine {
    account: AccountId,
    #[serde(default)]
    profile: Option<ProfileId>,
    #[serde(default)]
    subprofile: Option<SubprofileId>,
    #[serde(default)]
    email: Option<String>,
}

impl TryFrom<EraseLine> for Erasure {
    type Error = String;

    fn try_from(line: EraseLine) -> Result<Self, String> {
        match (line.profile, line.subprofile, line.email) {
            (Some(p), None, None) => Ok(Self::Profile(line.account, p)),
            (None, Some(s), None) => Ok(Self::Subprofile(line.account, s)),
            (None, None, Some(e)) => {
                EmailAddress::parse(&e).map(|e| Self::Email(line.account, e)).map_err(|e| format!("email: {e}"))
            }
            _ => Err("an erase line names exactly one of profile, subprofile or email".into()),
        }
    }
}

fn json_error(error: &serde_json::Error) -> String {
    // serde_json appends " at line 1 column N"; the column helps, the line does not.
    error.to_string().replace(" at line 1 column", " at column")
}

/// Parses one line; blank lines are `None`.
///
/// # Errors
/// The reason a line is not valid.
pub fn parse_line(line: &str) -> Result<Option<Line>, String> {
    if line.trim().is_empty() {
        return Ok(None);
    }
    let tagged: Tagged = match serde_json::from_str(line) {
        Ok(tagged) => tagged,
        Err(error) => {
            // Not a line of the design's format: an SES record (raw or in an SNS notification)?
            return match serde_json::from_str::<serde_json::Value>(line) {
                Ok(value) if ses::is_ses_record(&value) => ses::to_line(&value).map(Some),
                _ => Err(json_error(&error)),
            };
        }
    };
    let line = match tagged {
        Tagged::Profile(p) => Line::Record(Record::Profile(p)),
        Tagged::Subprofile(s) => Line::Record(Record::Subprofile(s)),
        Tagged::Message(m) => {
            if m.id.is_empty() || m.email.is_empty() {
                return Err("a message needs a non-empty id and email".into());
            }
            Line::Record(Record::Message(m))
        }
        Tagged::Event(e) => {
            if e.id.as_deref().is_some_and(str::is_empty) {
                return Err("an event id must not be empty".into());
            }
            if e.profile.is_none() && e.subprofile.is_none() && e.email.as_deref().is_none_or(str::is_empty) {
                return Err("an event needs a profile, a subprofile or an email".into());
            }
            Line::Record(Record::Event(e))
        }
        Tagged::Erase(erase) => Line::Erase(erase.try_into()?),
    };
    Ok(Some(line))
}

/// The records of NDJSON text, for tools and tests that load records only.
///
/// # Errors
/// The first line that is not valid or not a record, with its number.
pub fn parse_records(text: &str) -> Result<Vec<Record>, String> {
    let mut records = Vec::new();
    for (number, line) in text.lines().enumerate() {
        match parse_line(line) {
            Ok(None) => {}
            Ok(Some(Line::Record(record))) => records.push(record),
            Ok(Some(_)) => return Err(format!("line {}: not a record", number + 1)),
            Err(reason) => return Err(format!("line {}: {reason}", number + 1)),
        }
    }
    Ok(records)
}
