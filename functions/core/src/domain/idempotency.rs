//! Idempotency keys of POSTs: a client that retries a POST after a timeout sends the same
//! `Idempotency-Key` and gets the same request, not a second one.

use std::fmt::Write;

use sha2::{Digest, Sha256};

use super::{Invalid, Report, Subject};

/// How long a key names its request.
pub const IDEMPOTENCY_WINDOW_SECS: i64 = 24 * 3600;

/// An `Idempotency-Key` header value: 1 to 255 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Parses a header value.
    ///
    /// # Errors
    /// When it is empty, longer than 255 characters or not printable ASCII.
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        if text.is_empty() || text.len() > 255 || !text.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            return Err(Invalid::new("Idempotency-Key must be 1 to 255 printable ASCII characters"));
        }
        Ok(Self(text.to_owned()))
    }

    /// The key as stored: its SHA-256, in hex (a key may be anything a client chose).
    #[must_use]
    pub fn hash(&self) -> String {
        hex(&Sha256::digest(self.0.as_bytes()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut text, b| {
        let _ = write!(text, "{b:02x}");
        text
    })
}

/// What a POST asked for, to tell a replay from another call under the same key: the subject's
/// kind, and the subject and the report only as hashes (they may be personal data, and the
/// store keeps this for a day).
#[must_use]
pub fn fingerprint(subject: &Subject, report: Option<&Report>) -> String {
    // Hashes only: an idempotency key outlives neither its day nor an erasure in clear text.
    let report = report.map_or_else(String::new, |r| hex(&Sha256::digest(r.to_string().as_bytes())));
    let subject_hash = hex(&Sha256::digest(subject.redacted().value().as_bytes()));
    format!("{}:{subject_hash}|{report}", subject.kind().as_str())
}

/// Which part of a fingerprint differs from another: `subject` or `report`.
#[must_use]
pub fn conflict(stored: &str, asked: &str) -> &'static str {
    let subject = |f: &str| f.split('|').next().map(str::to_owned);
    if subject(stored) == subject(asked) { "report" } else { "subject" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_one_to_255_printable_ascii_characters() {
        assert!(IdempotencyKey::parse("a").is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
        assert!(IdempotencyKey::parse("retry 1: order #42 ~").is_ok());
        for bad in [String::new(), "k".repeat(256), "tab\there".into(), "é".into(), "nl\n".into()] {
            assert!(IdempotencyKey::parse(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_conflict_names_what_differs() {
        let profile = Subject::from_parts("profile", "42").unwrap_or_else(|e| panic!("{e}"));
        let other = Subject::from_parts("profile", "43").unwrap_or_else(|e| panic!("{e}"));
        let report = Report::parse("dpo@example.com", super::super::WebPolicy::PublicOnly).ok();
        let asked = fingerprint(&profile, report.as_ref());
        assert!(!asked.contains("dpo@example.com"), "the report is kept only as a hash");
        let address = Subject::from_parts("email", "jane@example.com").unwrap_or_else(|e| panic!("{e}"));
        assert!(!fingerprint(&address, None).contains("jane"), "an address subject is kept only as a hash");
        assert_eq!(conflict(&asked, &fingerprint(&profile, None)), "report");
        assert_eq!(conflict(&asked, &fingerprint(&other, report.as_ref())), "subject");
    }
}
