//! Where a finished export goes: an e-mail address or a web address.

use std::fmt;

use super::{EmailAddress, Invalid, WebAddress, WebPolicy};

/// The `report` parameter of a request, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// Mail the export (attached, or as a link when too large).
    Email(EmailAddress),
    /// POST the export to this address.
    Web(WebAddress),
}

impl Report {
    /// Parses a `report` value: anything that starts with a scheme is a web address, anything
    /// else must be an e-mail address.
    ///
    /// # Errors
    /// When the value is neither a valid e-mail address nor an acceptable web address.
    pub fn parse(text: &str, policy: WebPolicy) -> Result<Self, Invalid> {
        if text.contains("://") {
            return WebAddress::parse(text, policy).map(Self::Web);
        }
        if text.contains('@') {
            return EmailAddress::parse(text).map(Self::Email);
        }
        Err(Invalid::new("report must be an e-mail address or an https:// web address"))
    }

    /// The kind, as stored and shown: `email` or `web`.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Email(_) => "email",
            Self::Web(_) => "web",
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Email(address) => address.fmt(f),
            Self::Web(address) => address.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_told_apart_by_their_shape() {
        let email = Report::parse("dpo@customer.example", WebPolicy::PublicOnly);
        assert!(matches!(email, Ok(Report::Email(_))));
        let web = Report::parse("https://hooks.customer.example/gdpr", WebPolicy::PublicOnly);
        assert!(matches!(web, Ok(Report::Web(_))));
    }

    #[test]
    fn anything_else_is_refused_with_a_clear_message() {
        for bad in ["", "dpo", "ftp://x.example/", "http://x.example/", "dpo@", "javascript:alert(1)"] {
            let error = Report::parse(bad, WebPolicy::PublicOnly);
            assert!(error.is_err(), "{bad:?} should be refused");
        }
        let message = Report::parse("dpo", WebPolicy::PublicOnly).err().map(|e| e.0);
        assert_eq!(message.as_deref(), Some("report must be an e-mail address or an https:// web address"));
    }
}
