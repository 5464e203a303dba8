//! Numeric identifiers: accounts, profiles, subprofiles and data requests.

use std::fmt;

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::Invalid;

/// Parses a positive decimal integer written canonically: ASCII digits only, no sign, no
/// leading zero, at most `max`.
fn parse_positive(text: &str, what: &str, max: u64) -> Result<u64, Invalid> {
    let bad = || Invalid::new(format!("{what} must be a decimal integer greater than 0"));
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    if text.starts_with('0') {
        return Err(bad());
    }
    let value: u64 = text.parse().map_err(|_| bad())?;
    if value > max {
        return Err(Invalid::new(format!("{what} is too large")));
    }
    Ok(value)
}

macro_rules! positive_id {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "u64", into = "u64")]
        pub struct $name(u64);

        impl $name {
            /// Parses the decimal text of a path segment or a stored value.
            ///
            /// # Errors
            /// When the text is not a canonical decimal integer in range.
            pub fn parse(text: &str) -> Result<Self, Invalid> {
                parse_positive(text, $what, $max).map(Self)
            }

            /// The number itself.
            #[must_use]
            pub fn get(self) -> u64 {
                self.0
            }
        }

        impl TryFrom<u64> for $name {
            type Error = Invalid;
            fn try_from(value: u64) -> Result<Self, Invalid> {
                if value == 0 || value > $max {
                    return Err(Invalid::new(concat!($what, " is out of range")));
                }
                Ok(Self(value))
            }
        }

        impl From<$name> for u64 {
            fn from(id: $name) -> u64 {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

// SQLite and DynamoDB both hold these as signed 64-bit numbers.
const STORED_MAX: u64 = i64::MAX as u64;
/// Request ids stay exact in JavaScript clients.
const REQUEST_MAX: u64 = (1 << 53) - 1;
/// Generated request ids have 16 digits, so they all look alike.
const REQUEST_MIN_GENERATED: u64 = 1_000_000_000_000_000;

positive_id!(
    /// An account: one customer of the platform. Every lookup is scoped to one.
    AccountId, "account id", STORED_MAX
);
positive_id!(
    /// A profile id, unique within its account.
    ProfileId, "profile id", STORED_MAX
);
positive_id!(
    /// A subprofile id, unique within its account.
    SubprofileId, "subprofile id", STORED_MAX
);
positive_id!(
    /// A data request id: random, non-sequential, decimal, below 2^53.
    RequestId, "request id", REQUEST_MAX
);

impl RequestId {
    /// A fresh random id of 16 digits (about 2^52.9 possibilities, so guessing is hopeless and
    /// collisions are caught by the store's conditional insert).
    #[must_use]
    pub fn random() -> Self {
        Self(rand::rng().random_range(REQUEST_MIN_GENERATED..=REQUEST_MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_positive_numbers_parse() {
        assert_eq!(ProfileId::parse("42").map(ProfileId::get), Ok(42));
        assert_eq!(SubprofileId::parse("9223372036854775807").map(SubprofileId::get), Ok(i64::MAX as u64));
        assert_eq!(RequestId::parse("9007199254740991").map(RequestId::get), Ok((1 << 53) - 1));
    }

    #[test]
    fn anything_but_canonical_digits_is_refused() {
        for bad in [
            "",
            "0",
            "007",
            "-1",
            "+1",
            "1.0",
            "1e3",
            " 1",
            "1 ",
            "abc",
            "١٢",
            "4２",
            "99999999999999999999999",
            "9223372036854775808",
            "0x10",
        ] {
            assert!(ProfileId::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(RequestId::parse("9007199254740992").is_err(), "2^53 is out of range");
    }

    #[test]
    fn random_request_ids_are_16_digits_below_2_pow_53_and_differ() {
        let a = RequestId::random();
        let b = RequestId::random();
        assert_ne!(a, b);
        for id in [a, b] {
            assert_eq!(id.to_string().len(), 16);
            assert!(id.get() < 1 << 53);
            assert_eq!(RequestId::parse(&id.to_string()), Ok(id));
        }
    }
}
