//! Secrets: access tokens (stored only as SHA-256 hashes), webhook signing secrets, and the
//! signed tokens of download links.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::{Invalid, RequestId, Timestamp};

type HmacSha256 = Hmac<Sha256>;

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An access token as presented by a client. Generated ones are 256 random bits in hex; the
/// parser accepts any plausible token shape so that a wrong token gets the same answer as an
/// unknown one. Never logged: its `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    /// A new random token (256 bits).
    #[must_use]
    pub fn generate() -> Self {
        Self(hex(&random_bytes::<32>()))
    }

    /// Parses a presented token.
    ///
    /// # Errors
    /// When the text cannot be a token (wrong length or characters).
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        let ok =
            (8..=512).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
        if ok { Ok(Self(text.to_owned())) } else { Err(Invalid::new("Invalid access token")) }
    }

    /// The token text, to show once to its owner.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The SHA-256 hash under which the token is stored.
    #[must_use]
    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.0.as_bytes()).into())
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(..)")
    }
}

/// The stored form of an access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// Lower-case hex, as stored.
    #[must_use]
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }
}

/// An account's Standard Webhooks signing secret, `whsec_` followed by base64 of the key.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret {
    text: String,
    key: Vec<u8>,
}

impl WebhookSecret {
    /// A new random secret (256-bit key).
    #[must_use]
    pub fn generate() -> Self {
        let key = random_bytes::<32>().to_vec();
        Self { text: format!("whsec_{}", STANDARD.encode(&key)), key }
    }

    /// Parses a stored secret.
    ///
    /// # Errors
    /// When it lacks the `whsec_` prefix or its key is not base64 of 24 to 64 bytes.
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        let bad = || Invalid::new("a webhook secret must be whsec_ followed by a base64 key");
        let encoded = text.strip_prefix("whsec_").ok_or_else(bad)?;
        let key = STANDARD.decode(encoded).map_err(|_| bad())?;
        if !(24..=64).contains(&key.len()) {
            return Err(bad());
        }
        Ok(Self { text: text.to_owned(), key })
    }

    /// The secret text, to show to its owner.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// A MAC over `"{id}.{timestamp}."`, ready to take the body in pieces; finish it with
    /// [`WebhookSecret::signature`].
    #[must_use]
    pub fn signer(&self, id: &str, timestamp: i64) -> HmacSha256 {
        // A key of any length is valid for HMAC.
        let mut mac = HmacSha256::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!());
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac
    }

    /// The `webhook-signature` header value for a finished MAC.
    #[must_use]
    pub fn signature(mac: HmacSha256) -> String {
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

/// The key that signs download links. At least 32 bytes.
#[derive(Clone)]
pub struct LinkSecret(Vec<u8>);

impl LinkSecret {
    /// A new random key.
    #[must_use]
    pub fn generate() -> Self {
        Self(hex(&random_bytes::<32>()).into_bytes())
    }

    /// Takes a configured key.
    ///
    /// # Errors
    /// When it is shorter than 32 bytes.
    pub fn new(text: &str) -> Result<Self, Invalid> {
        if text.len() < 32 {
            return Err(Invalid::new("the link secret must be at least 32 characters"));
        }
        Ok(Self(text.as_bytes().to_vec()))
    }

    /// The key as text, to persist it.
    #[must_use]
    pub fn expose(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }

    fn mac(&self, id: RequestId, expires: Timestamp) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!());
        mac.update(format!("download.{id}.{}", expires.unix()).as_bytes());
        mac
    }
}

impl fmt::Debug for LinkSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkSecret(..)")
    }
}

/// The `token` of a download link: `<expiry in unix seconds>.<base64url HMAC-SHA256 of the
/// request id and expiry>`. It proves that this service minted the link for this request,
/// and it dies at the expiry it carries (the expiry of the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadToken {
    expires: Timestamp,
    text: String,
}

impl DownloadToken {
    /// Mints the token for a request's download link.
    #[must_use]
    pub fn sign(secret: &LinkSecret, id: RequestId, expires: Timestamp) -> Self {
        let signature = URL_SAFE_NO_PAD.encode(secret.mac(id, expires).finalize().into_bytes());
        Self { expires, text: format!("{}.{signature}", expires.unix()) }
    }

    /// Checks a presented token for a request at a time.
    ///
    /// # Errors
    /// When it is malformed, was not signed with this secret for this request, or has expired.
    pub fn verify(secret: &LinkSecret, id: RequestId, text: &str, now: Timestamp) -> Result<Self, Invalid> {
        let bad = || Invalid::new("Invalid or expired download token");
        let (expires, signature) = text.split_once('.').ok_or_else(bad)?;
        if expires.is_empty() || expires.len() > 12 || !expires.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let expires = Timestamp::from_unix(expires.parse().map_err(|_| bad())?);
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| bad())?;
        secret.mac(id, expires).verify_slice(&signature).map_err(|_| bad())?;
        if expires <= now {
            return Err(bad());
        }
        Ok(Self { expires, text: text.to_owned() })
    }

    /// When the link stops working.
    #[must_use]
    pub fn expires(&self) -> Timestamp {
        self.expires
    }

    /// The token text for the link's query string (URL-safe as it is).
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> RequestId {
        RequestId::try_from(n).unwrap_or_else(|_| unreachable!())
    }

    #[test]
    fn generated_access_tokens_are_256_bit_hex_and_hash_deterministically() {
        let token = AccessToken::generate();
        assert_eq!(token.expose().len(), 64);
        assert_ne!(token, AccessToken::generate());
        let parsed = AccessToken::parse(token.expose());
        assert_eq!(parsed.map(|t| t.hash()), Ok(token.hash()));
        assert_eq!(AccessToken::parse("abc123xyz").map(|t| t.hash().to_hex()).ok().map(|h| h.len()), Some(64));
        assert_eq!(format!("{token:?}"), "AccessToken(..)");
    }

    #[test]
    fn implausible_access_tokens_are_refused() {
        let long = "a".repeat(513);
        for bad in ["", "short", "has space in it", "tok\r\nen-value", "tök€n-value", "a/b/c/d/e", long.as_str()] {
            assert!(AccessToken::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn webhook_secrets_round_trip_and_sign_like_standard_webhooks() {
        let secret = WebhookSecret::generate();
        assert!(secret.expose().starts_with("whsec_"));
        assert_eq!(WebhookSecret::parse(secret.expose()).as_ref(), Ok(&secret));
        // The example from the Standard Webhooks specification.
        let spec = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let Ok(spec) = spec else { panic!("spec secret must parse") };
        let mut mac = spec.signer("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330);
        mac.update(br#"{"test": 2432232314}"#);
        assert_eq!(WebhookSecret::signature(mac), "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        for bad in ["", "whsec_", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_!!!!"] {
            assert!(WebhookSecret::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn download_tokens_verify_only_for_their_request_secret_and_lifetime() {
        let secret = LinkSecret::generate();
        let expires = Timestamp::from_unix(2_000_000_000);
        let before = Timestamp::from_unix(1_999_999_999);
        let token = DownloadToken::sign(&secret, id(77), expires);
        assert_eq!(DownloadToken::verify(&secret, id(77), token.as_str(), before).map(|t| t.expires()), Ok(expires));
        // Wrong request, wrong secret, expired, tampered expiry or signature, junk.
        assert!(DownloadToken::verify(&secret, id(78), token.as_str(), before).is_err());
        assert!(DownloadToken::verify(&LinkSecret::generate(), id(77), token.as_str(), before).is_err());
        assert!(DownloadToken::verify(&secret, id(77), token.as_str(), expires).is_err());
        let (_, signature) = token.as_str().split_once('.').unwrap_or_default();
        let later = format!("2000000999.{signature}");
        assert!(DownloadToken::verify(&secret, id(77), &later, before).is_err());
        let mut flipped = token.as_str().to_owned();
        let last = if flipped.ends_with('A') { "B" } else { "A" };
        flipped.replace_range(flipped.len() - 1.., last);
        assert!(DownloadToken::verify(&secret, id(77), &flipped, before).is_err());
        for junk in ["", ".", "123", "abc.def", "2000000000.", "-1.AAAA", "99999999999999.AAAA"] {
            assert!(DownloadToken::verify(&secret, id(77), junk, before).is_err(), "{junk:?}");
        }
        assert!(LinkSecret::new("too short").is_err());
    }
}
