//! Amazon SES event-publishing records as subject data: a platform that sends through SES gets
//! opens, clicks, deliveries, bounces, complaints and unsubscribes recorded from the records SES
//! publishes (to SNS, and from there to the ingest queue), without writing code.
//!
//! The platform tags its sends with `account`, `profile`, `subprofile` (optional) and `message`
//! (its own message id). Records of a kind that is not kept (`Send`, `Reject`, `Rendering
//! Failure`, `DeliveryDelay`, …) and records of mail without an `account` tag (Datarequest's own
//! delivery mails among them) are skipped. A record wrapped in an SNS notification is unwrapped.

use serde_json::{Map, Value};

use super::{AccountId, Event, EventKind, Line, ProfileId, Record, SubprofileId, Timestamp};

/// Whether a JSON object looks like an SES event record or an SNS notification wrapping one.
#[must_use]
pub fn is_ses_record(value: &Value) -> bool {
    (value.get("eventType").is_some() && value.get("mail").is_some())
        || value.get("Type").and_then(Value::as_str) == Some("Notification")
}

/// The kept SES event types: their event kind and the member holding the event's own object.
fn kept(event_type: &str) -> Option<(EventKind, &'static str)> {
    Some(match event_type {
        "Delivery" => (EventKind::Delivery, "delivery"),
        "Bounce" => (EventKind::Error, "bounce"),
        "Complaint" => (EventKind::Abuse, "complaint"),
        "Open" => (EventKind::Impression, "open"),
        "Click" => (EventKind::Click, "click"),
        "Subscription" => (EventKind::Unsubscribe, "subscription"),
        _ => return None,
    })
}

/// The first value of a message tag (SES gives each tag as a list of strings; a bare string is
/// taken too); `None` when the record has no such tag.
///
/// # Errors
/// When the tag is there with a value of another JSON type (`[1]`, `7`, `[]`, `null`, …): it
/// is refused the same way as a string that is not what the tag must hold.
fn tag<'a>(tags: Option<&'a Map<String, Value>>, name: &str) -> Result<Option<&'a str>, String> {
    let Some(value) = tags.and_then(|tags| tags.get(name)) else { return Ok(None) };
    match value {
        Value::Array(values) => match values.first() {
            Some(Value::String(value)) => Ok(Some(value)),
            _ => Err(format!("the {name} tag is not a list of strings")),
        },
        Value::String(value) => Ok(Some(value)),
        _ => Err(format!("the {name} tag is not a list of strings")),
    }
}

/// Maps one SES event record (raw, or inside an SNS notification) to a line of ingestion.
///
/// # Errors
/// The reason the record is malformed: not an SES record, a tag that is not an id, a kept
/// event without its own object or timestamp.
pub fn to_line(value: &Value) -> Result<Line, String> {
    if value.get("Type").and_then(Value::as_str) == Some("Notification") {
        let message = value.get("Message").and_then(Value::as_str).ok_or("an SNS notification without a Message")?;
        let inner: Value =
            serde_json::from_str(message).map_err(|_| "the SNS notification's Message is not JSON".to_owned())?;
        if inner.get("Type").is_some() {
            return Err("an SNS notification inside an SNS notification".into());
        }
        return to_line(&inner);
    }
    let event_type = value.get("eventType").and_then(Value::as_str).ok_or("an SES record needs an eventType")?;
    let mail = value.get("mail").and_then(Value::as_object).ok_or("an SES record needs a mail object")?;
    let tags = mail.get("tags").and_then(Value::as_object);
    // Untagged mail is not the platform's; a kind that is not kept is skipped before its tags
    // are read, whatever they hold.
    let account = tag(tags, "account");
    if matches!(account, Ok(None)) {
        return Ok(Line::Skip);
    }
    let Some((kind, member)) = kept(event_type) else { return Ok(Line::Skip) };
    let account = account
        .ok()
        .flatten()
        .and_then(|a| a.parse::<u64>().ok())
        .and_then(|n| AccountId::try_from(n).ok())
        .ok_or("the account tag is not an account id")?;
    let profile = tag(tags, "profile")
        .map_err(|_| "the profile tag is not a profile id")?
        .map(|p| ProfileId::parse(p).map_err(|_| "the profile tag is not a profile id"))
        .transpose()?;
    let subprofile = tag(tags, "subprofile")
        .map_err(|_| "the subprofile tag is not a subprofile id")?
        .map(|s| SubprofileId::parse(s).map_err(|_| "the subprofile tag is not a subprofile id"))
        .transpose()?;
    let message = tag(tags, "message")?.map(str::to_owned);
    let object = value
        .get(member)
        .and_then(Value::as_object)
        .ok_or_else(|| format!("a {event_type} record needs its {member} object"))?;
    let time = object
        .get("timestamp")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("the {member} object needs a timestamp"))
        .and_then(|t| Timestamp::parse(t).map_err(|e| format!("the {member} timestamp: {e}")))?;
    let email = mail
        .get("destination")
        .and_then(Value::as_array)
        .and_then(|d| d.first())
        .and_then(Value::as_str)
        .filter(|e| !e.is_empty())
        .map(str::to_owned);
    if profile.is_none() && subprofile.is_none() && email.is_none() {
        return Err("an SES record needs a profile tag, a subprofile tag or a destination".into());
    }
    let mut data = Map::new();
    data.insert(member.to_owned(), Value::Object(object.clone()));
    if let Some(id) = mail.get("messageId") {
        data.insert("messageId".to_owned(), id.clone());
    }
    Ok(Line::Record(Record::Event(Event { account, id: None, kind, message, profile, subprofile, email, time, data })))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECORDS: &str = include_str!("../../tests/fixtures/ses/ses-events.ndjson");

    fn lines() -> Vec<Line> {
        RECORDS
            .lines()
            .map(|l| {
                to_line(&serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}"))).unwrap_or_else(|e| panic!("{e}"))
            })
            .collect()
    }

    #[test]
    fn every_kept_type_maps_to_its_section_and_the_rest_is_skipped() {
        let lines = lines();
        let kinds: Vec<Option<EventKind>> = lines
            .iter()
            .map(|l| match l {
                Line::Record(Record::Event(e)) => Some(e.kind),
                _ => None,
            })
            .collect();
        assert_eq!(
            kinds,
            [
                Some(EventKind::Impression),
                Some(EventKind::Click),
                Some(EventKind::Delivery),
                Some(EventKind::Error),
                Some(EventKind::Abuse),
                Some(EventKind::Unsubscribe),
                None,
                None
            ]
        );
        assert!(lines[6..].iter().all(|l| *l == Line::Skip));
    }

    #[test]
    fn an_open_keeps_its_object_the_ses_message_id_tags_and_its_own_time() {
        let Line::Record(Record::Event(open)) = &lines()[0] else { panic!("an open") };
        assert_eq!(open.account.get(), 1);
        assert_eq!(open.profile.map(ProfileId::get), Some(1001));
        assert_eq!(open.subprofile, None);
        assert_eq!(open.message.as_deref(), Some("d-1001-1"));
        assert_eq!(open.email.as_deref(), Some("jane.doe@example.com"));
        assert_eq!(open.time.to_string(), "2026-10-01 08:14:02");
        assert_eq!(open.data["open"]["ipAddress"], "198.51.100.23");
        assert_eq!(open.data["messageId"], "0102019a5c3e7d21-4f1b2c3d-8e9f-4a5b-9c6d-7e8f9a0b1c2d-000000");
    }

    #[test]
    fn an_sns_notification_is_unwrapped_to_the_same_event() {
        let raw: Value = serde_json::from_str(RECORDS.lines().next().unwrap_or_default()).unwrap_or_default();
        let wrapped = serde_json::json!({"Type": "Notification", "MessageId": "x", "Message": raw.to_string()});
        assert!(is_ses_record(&wrapped));
        assert_eq!(to_line(&wrapped), to_line(&raw));
    }

    #[test]
    fn an_account_tag_that_is_no_account_id_is_refused_whatever_its_json_type() {
        let open: Value = serde_json::from_str(RECORDS.lines().next().unwrap_or_default()).unwrap_or_default();
        for bad in [
            serde_json::json!(["abc"]),
            serde_json::json!([1]),
            serde_json::json!(1),
            serde_json::json!([]),
            serde_json::json!([null]),
            serde_json::json!({"a": "1"}),
            serde_json::json!("0"),
        ] {
            let mut record = open.clone();
            record["mail"]["tags"]["account"] = bad.clone();
            let error = to_line(&record).err().unwrap_or_default();
            assert!(error.contains("the account tag is not an account id"), "{bad}: {error:?}");
        }
        for (name, reason) in
            [("profile", "profile id"), ("subprofile", "subprofile id"), ("message", "list of strings")]
        {
            let mut record = open.clone();
            record["mail"]["tags"][name] = serde_json::json!([7]);
            let error = to_line(&record).err().unwrap_or_default();
            assert!(error.contains(reason), "{name}: {error:?}");
        }
        let mut record = open.clone();
        record["mail"]["tags"]["account"] = serde_json::json!("1");
        assert!(matches!(to_line(&record), Ok(Line::Record(_))), "a bare string is read as SES's list of one");
        let mut not_kept = open.clone();
        not_kept["eventType"] = serde_json::json!("Send");
        for tag in [serde_json::json!([1]), serde_json::json!(["abc"])] {
            not_kept["mail"]["tags"]["account"] = tag;
            assert_eq!(to_line(&not_kept), Ok(Line::Skip), "a kind not kept is skipped whatever its tags");
        }
        let mut untagged = open;
        untagged["mail"]["tags"].as_object_mut().map(|tags| tags.remove("account"));
        assert_eq!(to_line(&untagged), Ok(Line::Skip), "mail without an account tag is not the platform's");
    }

    #[test]
    fn malformed_records_are_refused_with_a_reason() {
        let open: Value = serde_json::from_str(RECORDS.lines().next().unwrap_or_default()).unwrap_or_default();
        let mut bad_account = open.clone();
        bad_account["mail"]["tags"]["account"] = serde_json::json!(["abc"]);
        let mut no_object = open.clone();
        no_object.as_object_mut().map(|o| o.remove("open"));
        let mut bad_time = open.clone();
        bad_time["open"]["timestamp"] = serde_json::json!("yesterday");
        let not_json = serde_json::json!({"Type": "Notification", "Message": "{oops"});
        for (bad, reason) in
            [(bad_account, "account tag"), (no_object, "open object"), (bad_time, "timestamp"), (not_json, "not JSON")]
        {
            let error = to_line(&bad).err().unwrap_or_default();
            assert!(error.contains(reason), "{error:?} should name {reason:?}");
        }
    }
}
