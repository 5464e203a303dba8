//! Timestamps: whole seconds in UTC, written `YYYY-MM-DD hh:mm:ss` as Copernica does.

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDateTime, TimeZone, Timelike, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Invalid;

const FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// A point in time, to the second, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// Seconds since the Unix epoch.
    #[must_use]
    pub fn from_unix(seconds: i64) -> Self {
        Self(seconds)
    }

    /// The current time.
    #[must_use]
    pub fn now() -> Self {
        Self(Utc::now().timestamp())
    }

    /// Seconds since the Unix epoch.
    #[must_use]
    pub fn unix(self) -> i64 {
        self.0
    }

    /// This time plus a number of seconds (saturating).
    #[must_use]
    pub fn plus_seconds(self, seconds: i64) -> Self {
        Self(self.0.saturating_add(seconds))
    }

    /// Parses `YYYY-MM-DD hh:mm:ss` (taken as UTC) or RFC 3339 with any offset.
    ///
    /// # Errors
    /// When the text is neither.
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        if let Some(time) = Self::parse_plain(text) {
            return Ok(time);
        }
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, FORMAT) {
            return Ok(Self(Utc.from_utc_datetime(&naive).timestamp()));
        }
        DateTime::parse_from_rfc3339(text)
            .map(|t| Self(t.timestamp()))
            .map_err(|_| Invalid::new("a timestamp must be YYYY-MM-DD hh:mm:ss (UTC) or RFC 3339"))
    }

    /// `YYYY-MM-DD hh:mm:ss` with every digit in place and a valid date and time, read without
    /// a format string (stores read two for each event); `None` for anything else, which
    /// [`Timestamp::parse`] then leaves to chrono.
    fn parse_plain(text: &str) -> Option<Self> {
        let bytes: &[u8; 19] = text.as_bytes().try_into().ok()?;
        let number = |from: usize, to: usize| {
            bytes[from..to].iter().try_fold(0u32, |n, b| b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0')))
        };
        if bytes[4] != b'-' || bytes[7] != b'-' || bytes[10] != b' ' || bytes[13] != b':' || bytes[16] != b':' {
            return None;
        }
        let date = chrono::NaiveDate::from_ymd_opt(i32::try_from(number(0, 4)?).ok()?, number(5, 7)?, number(8, 10)?)?;
        let time = date.and_hms_opt(number(11, 13)?, number(14, 16)?, number(17, 19)?)?;
        Some(Self(time.and_utc().timestamp()))
    }

    /// The text of this time in the years 0 to 9999, written by [`plain`]; `None` otherwise.
    fn plain_text(self) -> Option<[u8; 19]> {
        DateTime::from_timestamp(self.0, 0).as_ref().and_then(plain)
    }
}

/// `YYYY-MM-DD hh:mm:ss` of a time in the years 0 to 9999, written without a format string: an
/// export writes two timestamps for each of its events, and `strftime` was a measurable part of
/// a build. Other years (and times chrono cannot hold) go through chrono's formatting.
fn plain(t: &DateTime<Utc>) -> Option<[u8; 19]> {
    let year = u32::try_from(t.year()).ok().filter(|y| *y <= 9999)?;
    let mut text = *b"0000-00-00 00:00:00";
    for (at, width, value) in
        [(0, 4, year), (5, 2, t.month()), (8, 2, t.day()), (11, 2, t.hour()), (14, 2, t.minute()), (17, 2, t.second())]
    {
        let mut value = value;
        for place in text[at..at + width].iter_mut().rev() {
            *place = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }
    Some(text)
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(text) = self.plain_text() {
            return f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?);
        }
        match DateTime::from_timestamp(self.0, 0) {
            Some(t) => write!(f, "{}", t.format(FORMAT)),
            None => f.write_str("0000-00-00 00:00:00"),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.plain_text() {
            Some(text) => serializer.serialize_str(std::str::from_utf8(&text).map_err(serde::ser::Error::custom)?),
            None => serializer.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// Reads the text where it lies when the format allows (no copy of it for each event).
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a timestamp")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Timestamp, E> {
                Timestamp::parse(text).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Text)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn timestamps_are_written_as_chronos_format_writes_them(seconds in prop_oneof![
            -100_000_000_000i64..400_000_000_000,
            any::<i64>(),
            Just(253_402_300_799i64),
            Just(253_402_300_800i64),
            Just(-62_167_219_200i64),
            Just(-62_167_219_201i64),
        ]) {
            let time = Timestamp::from_unix(seconds);
            let chrono = DateTime::from_timestamp(seconds, 0)
                .map_or_else(|| "0000-00-00 00:00:00".to_owned(), |t| t.format(FORMAT).to_string());
            prop_assert_eq!(time.to_string(), chrono.clone());
            prop_assert_eq!(serde_json::to_string(&time).unwrap(), serde_json::to_string(&chrono).unwrap());
        }

        #[test]
        fn plain_timestamps_are_read_as_chrono_reads_them(
            text in prop_oneof![
                "[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}",
                "[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01]) ([01][0-9]|2[0-4]):[0-6][0-9]:[0-6][0-9]",
                "[0-9 +-]{4}-[0-9 ]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}",
            ],
        ) {
            let chrono = NaiveDateTime::parse_from_str(&text, FORMAT)
                .map(|naive| Utc.from_utc_datetime(&naive).timestamp())
                .ok()
                .or_else(|| DateTime::parse_from_rfc3339(&text).map(|t| t.timestamp()).ok());
            prop_assert_eq!(Timestamp::parse(&text).ok().map(Timestamp::unix), chrono);
            let json = serde_json::to_string(&text).unwrap();
            prop_assert_eq!(serde_json::from_str::<Timestamp>(&json).ok().map(Timestamp::unix), chrono);
        }
    }

    #[test]
    fn both_accepted_forms_normalize_to_utc_seconds() {
        let plain = Timestamp::parse("2025-10-01 07:00:00");
        let offset = Timestamp::parse("2025-10-01T09:00:00+02:00");
        assert_eq!(plain, offset);
        assert_eq!(plain.map(|t| t.to_string()).as_deref(), Ok("2025-10-01 07:00:00"));
    }

    #[test]
    fn malformed_timestamps_are_refused() {
        for bad in ["", "2025-13-01 00:00:00", "2025-10-01", "yesterday", "2025-10-01 07:00"] {
            assert!(Timestamp::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
