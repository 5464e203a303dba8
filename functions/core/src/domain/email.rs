//! E-mail addresses, as subjects of a request and as report destinations.

use std::fmt;

use super::Invalid;

/// A syntactically valid e-mail address `local@domain` in plain ASCII. It can be put in a mail
/// header as it is: control characters, spaces, quotes, angle brackets and commas are all
/// refused, so header injection is impossible by construction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);

const ATEXT_SPECIALS: &str = "!#$%&'*+/=?^_`{|}~-";

impl EmailAddress {
    /// Parses an address. Surrounding whitespace is not trimmed: it is an error, like any
    /// other character an address cannot hold.
    ///
    /// # Errors
    /// When the text is not a plain `local@domain` address.
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        let bad = |why: &str| Invalid::new(format!("invalid e-mail address: {why}"));
        if text.is_empty() {
            return Err(bad("it is empty"));
        }
        if text.len() > 254 {
            return Err(bad("it is longer than 254 characters"));
        }
        if !text.is_ascii() || text.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(bad("it holds a space, a control or a non-ASCII character"));
        }
        let (local, domain) = text.rsplit_once('@').ok_or_else(|| bad("it has no @"))?;
        if local.is_empty() || local.len() > 64 {
            return Err(bad("the part before @ must be 1 to 64 characters"));
        }
        let local_ok = local.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || ATEXT_SPECIALS.contains(c));
        if !local_ok || local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(bad("the part before @ holds a character or dot that is not allowed"));
        }
        let labels: Vec<&str> = domain.split('.').collect();
        if labels.len() < 2 {
            return Err(bad("the domain must have at least two labels"));
        }
        for label in &labels {
            let ok = !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-');
            if !ok {
                return Err(bad("the domain is not a valid host name"));
            }
        }
        if labels.last().is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit())) {
            return Err(bad("the domain is not a valid host name"));
        }
        Ok(Self(text.to_owned()))
    }

    /// The address as given.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form used to match addresses case-insensitively.
    #[must_use]
    pub fn normalized(&self) -> String {
        self.0.to_ascii_lowercase()
    }

    /// The address's erased stand-in, `<SHA-256 of the lower-cased address, hex>@erased.invalid`:
    /// what a request keeps once its export is gone. It still tells whether two requests named
    /// the same address, never which (`.invalid` is reserved: no mail can go there). An erased
    /// address stays as it is.
    #[must_use]
    pub fn erased(&self) -> Self {
        if self.is_erased() {
            return self.clone();
        }
        use sha2::Digest;
        let digest = sha2::Sha256::digest(self.normalized().as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        Self(format!("{hex}@{ERASED_DOMAIN}"))
    }

    /// Whether this is an erased stand-in ([`EmailAddress::erased`]).
    #[must_use]
    pub fn is_erased(&self) -> bool {
        self.0.ends_with(ERASED_DOMAIN) && self.0.len() == 64 + 1 + ERASED_DOMAIN.len()
    }
}

/// The domain of erased addresses.
const ERASED_DOMAIN: &str = "erased.invalid";

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_erased_address_holds_only_its_hash_and_erasing_it_again_changes_nothing() {
        let address = EmailAddress::parse("Jane.Doe@Example.com").unwrap_or_else(|e| panic!("{e}"));
        let erased = address.erased();
        assert!(erased.is_erased() && !address.is_erased());
        assert!(!erased.as_str().to_ascii_lowercase().contains("jane"), "{erased}");
        assert_eq!(EmailAddress::parse(erased.as_str()).as_ref(), Ok(&erased), "it parses back");
        assert_eq!(erased.erased(), erased);
        let same = EmailAddress::parse("jane.doe@example.com").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(same.erased(), erased, "the same address, case aside, has the same stand-in");
    }

    use super::*;

    #[test]
    fn ordinary_addresses_parse_and_normalize_to_lower_case() {
        for good in [
            "jane.doe@example.com",
            "Jane.Doe+news@Example.COM",
            "o'brien@mail.example.ie",
            "a/b=c@sub-domain.example.org",
            "x@a.io",
        ] {
            assert!(EmailAddress::parse(good).is_ok(), "{good} should parse");
        }
        let address = EmailAddress::parse("Jane@Example.com").map(|a| a.normalized());
        assert_eq!(address.as_deref(), Ok("jane@example.com"));
    }

    #[test]
    fn header_injection_attempts_are_refused() {
        for bad in [
            "jane@example.com\r\nBcc: all@evil.example",
            "jane@example.com\nSubject: hi",
            "jane@example.com\r",
            "jane@exam\0ple.com",
            "jane@example.com, other@example.com",
            "Jane <jane@example.com>",
            "\"jane\"@example.com",
            "jane@example.com;x@y.example",
            " jane@example.com",
            "jane@example.com\t",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn malformed_addresses_are_refused() {
        let long_local = format!("{}@example.com", "a".repeat(65));
        let long_total = format!("a@{}.com", "b".repeat(260));
        for bad in [
            "",
            "plain",
            "@example.com",
            "jane@",
            "jane@localhost",
            "jane@@example.com",
            ".jane@example.com",
            "jane.@example.com",
            "ja..ne@example.com",
            "jane@-example.com",
            "jane@example-.com",
            "jane@example..com",
            "jane@1.2.3.4",
            "jané@example.com",
            "jane@exa_mple.com",
            long_local.as_str(),
            long_total.as_str(),
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
