//! Copernica's signing profile for web delivery: HTTP Signatures as
//! draft-cavage-http-signatures-11 builds them (`rsa-sha256`, RSASSA-PKCS1-v1_5 with SHA-256)
//! over the request target, host, date, length, type, account and digest of a POST, with an
//! RSA key whose public half the operator publishes as a DKIM-style TXT record at the key's id.
//!
//! Signing uses `ring` (constant-time RSA); `ring` cannot make RSA keys, so a new key is made by
//! `aws-lc-rs` (AWS-LC, also constant-time), serialised as PKCS#8 and from then on only read by
//! `ring`. The `rsa` crate, with its open timing advisory (RUSTSEC-2023-0071), is not used.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use url::Url;

use super::{AccountId, Invalid, Timestamp};

/// How an account's web deliveries are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SigningProfile {
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature` (HMAC-SHA256
    /// with the account's `whsec_` secret). The default.
    #[default]
    StandardWebhooks,
    /// Copernica's: `Date`, `Digest`, `X-Copernica-ID`, `X-Nonce` and an RSA `Signature`
    /// (draft-cavage) by the service's signing key.
    Copernica,
}

impl SigningProfile {
    /// Parses `standard-webhooks` or `copernica`.
    ///
    /// # Errors
    /// For any other text.
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        match text {
            "standard-webhooks" => Ok(Self::StandardWebhooks),
            "copernica" => Ok(Self::Copernica),
            _ => Err(Invalid::new("a signing profile is standard-webhooks or copernica")),
        }
    }

    /// The profile's name, as the command takes and the stores keep it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StandardWebhooks => "standard-webhooks",
            Self::Copernica => "copernica",
        }
    }
}

impl fmt::Display for SigningProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The id of a signing key: the DNS name whose TXT record holds its public key (as a receiver
/// that follows Copernica's verifier looks it up), e.g. `dr1._domainkey.example.com`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    /// Parses a DNS name: labels of letters, digits, `-` and `_` (1 to 63 characters),
    /// separated by dots, 253 characters at most.
    ///
    /// # Errors
    /// When the text is not such a name.
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        let label_ok = |label: &str| {
            (1..=63).contains(&label.len())
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if text.len() <= 253 && text.split('.').all(label_ok) {
            Ok(Self(text.to_owned()))
        } else {
            Err(Invalid::new("a key id is a DNS name: labels of letters, digits, - and _ separated by dots"))
        }
    }

    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a signing key could not be made, read or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key material is not an RSA private key `ring` accepts (PKCS#8, 2048 to 8192 bits).
    #[error("the signing key {0} is not an RSA private key in PKCS#8")]
    Rejected(KeyId),
    /// Making or using the key failed.
    #[error("the signing key {0} could not be made or used")]
    Failed(KeyId),
}

/// An RSA signing key with its id and the time it was made. Its `Debug` shows neither key.
pub struct SigningKey {
    id: KeyId,
    created: Timestamp,
    pkcs8: Vec<u8>,
    pair: ring::signature::RsaKeyPair,
}

impl SigningKey {
    /// A new 2048-bit key (made by AWS-LC; see the module comment).
    ///
    /// # Errors
    /// When the key cannot be made.
    pub fn generate(id: KeyId, created: Timestamp) -> Result<Self, KeyError> {
        use aws_lc_rs::encoding::AsDer;
        let made = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .and_then(|pair| pair.as_der())
            .map_err(|_| KeyError::Failed(id.clone()))?;
        Self::from_pkcs8(id, created, made.as_ref().to_vec())
    }

    /// A key from its PKCS#8 (DER) form.
    ///
    /// # Errors
    /// When `ring` does not accept it as an RSA private key.
    pub fn from_pkcs8(id: KeyId, created: Timestamp, pkcs8: Vec<u8>) -> Result<Self, KeyError> {
        let pair = ring::signature::RsaKeyPair::from_pkcs8(&pkcs8).map_err(|_| KeyError::Rejected(id.clone()))?;
        Ok(Self { id, created, pkcs8, pair })
    }

    /// The key's id.
    #[must_use]
    pub fn id(&self) -> &KeyId {
        &self.id
    }

    /// When the key was made.
    #[must_use]
    pub fn created(&self) -> Timestamp {
        self.created
    }

    /// The TXT record to publish at the key's id: `v=DKIM1; k=rsa; p=<base64 of the public key's
    /// SubjectPublicKeyInfo DER>`.
    ///
    /// # Errors
    /// When the public key cannot be encoded.
    pub fn txt(&self) -> Result<String, KeyError> {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::signature::KeyPair;
        let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(&self.pkcs8).map_err(|_| KeyError::Rejected(self.id.clone()))?;
        let spki = pair.public_key().as_der().map_err(|_| KeyError::Failed(self.id.clone()))?;
        Ok(format!("v=DKIM1; k=rsa; p={}", STANDARD.encode(spki.as_ref())))
    }

    /// RSASSA-PKCS1-v1_5 with SHA-256 of `message`, by `ring`.
    ///
    /// # Errors
    /// When `ring` fails to sign.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut signature = vec![0u8; self.pair.public().modulus_len()];
        self.pair
            .sign(&ring::signature::RSA_PKCS1_SHA256, &ring::rand::SystemRandom::new(), message, &mut signature)
            .map_err(|_| KeyError::Failed(self.id.clone()))?;
        Ok(signature)
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey").field("id", &self.id).field("created", &self.created).finish_non_exhaustive()
    }
}

/// A stored key: its id, when it was made, and base64 of its PKCS#8 form.
#[derive(Serialize, Deserialize)]
struct StoredKey {
    key_id: String,
    created: Timestamp,
    pkcs8: String,
}

#[derive(Serialize, Deserialize, Default)]
struct StoredKeyring {
    keys: Vec<StoredKey>,
}

/// The signing keys the service has made, as one document (`{"keys": [{"key_id", "created",
/// "pkcs8"}]}`): the content of the key file locally and of the secret on AWS.
#[derive(Debug, Default)]
pub struct Keyring {
    keys: Vec<SigningKey>,
}

impl Keyring {
    /// Reads the document; empty text is an empty keyring.
    ///
    /// # Errors
    /// When it is not such a document or a key in it is not a usable RSA key; the text never
    /// quotes key material.
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let stored: StoredKeyring = serde_json::from_str(text)
            .map_err(|_| Invalid::new("the signing keys are not a JSON document of keys (key_id, created, pkcs8)"))?;
        let mut keys = Vec::with_capacity(stored.keys.len());
        for key in stored.keys {
            let id = KeyId::parse(&key.key_id)?;
            let der =
                STANDARD.decode(key.pkcs8.trim()).map_err(|_| Invalid::new(format!("the key {id} is not base64")))?;
            keys.push(SigningKey::from_pkcs8(id, key.created, der).map_err(|e| Invalid::new(e.to_string()))?);
        }
        Ok(Self { keys })
    }

    /// The document, to store.
    #[must_use]
    pub fn to_json(&self) -> String {
        let keys = self
            .keys
            .iter()
            .map(|k| StoredKey { key_id: k.id.0.clone(), created: k.created, pkcs8: STANDARD.encode(&k.pkcs8) })
            .collect();
        serde_json::to_string_pretty(&StoredKeyring { keys }).unwrap_or_default()
    }

    /// Adds a key; `false` (and nothing added) when a key with its id is there already.
    pub fn add(&mut self, key: SigningKey) -> bool {
        if self.get(key.id()).is_some() {
            return false;
        }
        self.keys.push(key);
        true
    }

    /// Removes the key with this id; `false` when there is none.
    pub fn remove(&mut self, id: &KeyId) -> bool {
        let before = self.keys.len();
        self.keys.retain(|k| k.id() != id);
        self.keys.len() != before
    }

    /// The key with this id.
    #[must_use]
    pub fn get(&self, id: &KeyId) -> Option<&SigningKey> {
        self.keys.iter().find(|k| k.id() == id)
    }

    /// The ids of the keys held, in the order they were added.
    #[must_use]
    pub fn ids(&self) -> Vec<&KeyId> {
        self.keys.iter().map(SigningKey::id).collect()
    }

    /// Takes out the key that signs among the `configured` ones: the newest (by the time it was
    /// made; the later configured one on a tie). `Ok(None)` when none is configured.
    ///
    /// # Errors
    /// The first configured id the keyring does not hold.
    pub fn into_signer(mut self, configured: &[KeyId]) -> Result<Option<SigningKey>, KeyId> {
        if let Some(missing) = configured.iter().find(|id| self.get(id).is_none()) {
            return Err(missing.clone());
        }
        let newest = configured
            .iter()
            .enumerate()
            .filter_map(|(order, id)| self.get(id).map(|k| (k.created, order, id.clone())))
            .max()
            .map(|(_, _, id)| id);
        Ok(newest.and_then(|id| {
            let at = self.keys.iter().position(|k| *k.id() == id)?;
            Some(self.keys.swap_remove(at))
        }))
    }
}

/// The headers a signed POST carries, in the order draft-cavage signs them.
pub const SIGNED_HEADERS: &str = "(request-target) host date content-length content-type x-copernica-id digest";

/// What a Copernica-profile POST is made of, before it is signed.
#[derive(Debug, Clone)]
pub struct CopernicaPost<'a> {
    /// The web address POSTed to.
    pub url: &'a Url,
    /// When it is sent (the `Date` header).
    pub date: Timestamp,
    /// The body's length in bytes.
    pub content_length: u64,
    /// The body's media type.
    pub content_type: &'a str,
    /// The prefix of the account id in `X-Copernica-ID` (Copernica's is `account_`).
    pub id_prefix: &'a str,
    /// The account delivered for.
    pub account: AccountId,
    /// SHA-256 of the body.
    pub sha256: [u8; 32],
    /// A value used once (`X-Nonce`).
    pub nonce: &'a str,
}

/// `Host` as HTTP/1.1 sends it for `url`: the host, with the port when it is not the scheme's
/// default (an IPv6 address in brackets).
#[must_use]
pub fn host_header(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// An IMF-fixdate (RFC 9110), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
#[must_use]
pub fn http_date(time: Timestamp) -> String {
    chrono::DateTime::from_timestamp(time.unix(), 0)
        .map(|t| t.format("%a, %d %b %Y %H:%M:%S GMT").to_string())
        .unwrap_or_default()
}

/// The signing string of draft-cavage-http-signatures-11 (section 2.3): for each header in
/// order, its lower-cased name, `: ` and its value, the lines joined by `\n` (no newline at the
/// end); `(request-target)` is the lower-cased method, a space and the path with its query.
#[must_use]
pub fn signing_string(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(name, value)| format!("{}: {}", name.to_ascii_lowercase(), value.trim()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Signs a POST as Copernica signs its web calls: the headers to send beside the body, in the
/// order `Host`, `Date`, `Digest`, `X-Copernica-ID`, `X-Nonce`, `Signature`. `Content-Length`
/// and `Content-Type` are signed with the post's values and sent by the delivery itself.
///
/// # Errors
/// When the key fails to sign.
pub fn sign_copernica(key: &SigningKey, post: &CopernicaPost<'_>) -> Result<Vec<(&'static str, String)>, KeyError> {
    let target = match post.url.query() {
        Some(query) => format!("post {}?{query}", post.url.path()),
        None => format!("post {}", post.url.path()),
    };
    let host = host_header(post.url);
    let date = http_date(post.date);
    let length = post.content_length.to_string();
    let id = format!("{}{}", post.id_prefix, post.account);
    let digest = format!("SHA-256={}", STANDARD.encode(post.sha256));
    let text = signing_string(&[
        ("(request-target)", &target),
        ("host", &host),
        ("date", &date),
        ("content-length", &length),
        ("content-type", post.content_type),
        ("x-copernica-id", &id),
        ("digest", &digest),
    ]);
    let signature = STANDARD.encode(key.sign(text.as_bytes())?);
    let header = format!(
        "keyId=\"{}\",algorithm=\"rsa-sha256\",headers=\"{SIGNED_HEADERS}\",signature=\"{signature}\"",
        key.id()
    );
    Ok(vec![
        ("host", host),
        ("date", date),
        ("digest", digest),
        ("x-copernica-id", id),
        ("x-nonce", post.nonce.to_owned()),
        ("signature", header),
    ])
}

#[cfg(test)]
mod tests {
    use ring::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
    use sha2::Digest;

    use super::*;

    fn key_id(text: &str) -> KeyId {
        KeyId::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_signing_string_is_draft_cavage_s_lower_cased_name_value_lines_without_a_final_newline() {
        // The example of draft-cavage-http-signatures-11, section 2.3.
        let text = signing_string(&[
            ("(request-target)", "get /foo"),
            ("Host", "example.org"),
            ("Date", "Tue, 07 Jun 2014 20:51:35 GMT"),
            ("X-Example", "Example header with some whitespace. "),
            ("Cache-Control", "max-age=60"),
        ]);
        assert_eq!(
            text,
            "(request-target): get /foo\nhost: example.org\ndate: Tue, 07 Jun 2014 20:51:35 GMT\n\
             x-example: Example header with some whitespace.\ncache-control: max-age=60"
        );
    }

    #[test]
    fn host_carries_a_port_only_when_it_is_not_the_scheme_s_default() {
        assert_eq!(host_header(&url("https://hooks.example.com/gdpr")), "hooks.example.com");
        assert_eq!(host_header(&url("https://hooks.example.com:443/gdpr")), "hooks.example.com");
        assert_eq!(host_header(&url("https://hooks.example.com:8443/gdpr")), "hooks.example.com:8443");
        assert_eq!(host_header(&url("http://127.0.0.1:8080/hook")), "127.0.0.1:8080");
        assert_eq!(host_header(&url("http://[::1]:9/hook")), "[::1]:9");
    }

    #[test]
    fn the_date_is_an_imf_fixdate() {
        assert_eq!(http_date(Timestamp::from_unix(784_111_777)), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(Timestamp::from_unix(1_764_320_000)), "Fri, 28 Nov 2025 08:53:20 GMT");
    }

    #[test]
    fn a_copernica_post_is_signed_over_the_fixed_signing_string_and_verifies_with_the_public_key() {
        let key = SigningKey::generate(key_id("dr1._domainkey.example.com"), Timestamp::from_unix(0))
            .unwrap_or_else(|e| panic!("{e}"));
        let sha256: [u8; 32] = sha2::Sha256::digest(br#"{"a":1}"#).into();
        let post = CopernicaPost {
            url: &url("https://hooks.example.com:8443/gdpr/in?x=1&y=2"),
            date: Timestamp::from_unix(1_764_320_000),
            content_length: 7,
            content_type: "application/json",
            id_prefix: "account_",
            account: AccountId::try_from(42u64).unwrap_or_else(|e| panic!("{e}")),
            sha256,
            nonce: "n0nce",
        };
        let headers = sign_copernica(&key, &post).unwrap_or_else(|e| panic!("{e}"));
        let get = |name: &str| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str()).unwrap_or_default();
        let expected = "(request-target): post /gdpr/in?x=1&y=2\n\
                        host: hooks.example.com:8443\n\
                        date: Fri, 28 Nov 2025 08:53:20 GMT\n\
                        content-length: 7\n\
                        content-type: application/json\n\
                        x-copernica-id: account_42\n\
                        digest: SHA-256=AVq9f1zFei3ZS3WQ8ErYCEJzkF7jPsXOvq5iJ2qX+GI=";
        assert_eq!(get("digest"), "SHA-256=AVq9f1zFei3ZS3WQ8ErYCEJzkF7jPsXOvq5iJ2qX+GI=");
        assert_eq!(get("x-copernica-id"), "account_42");
        assert_eq!(get("x-nonce"), "n0nce");
        let signature = get("signature");
        let prefix = "keyId=\"dr1._domainkey.example.com\",algorithm=\"rsa-sha256\",headers=\"(request-target) host \
                      date content-length content-type x-copernica-id digest\",signature=\"";
        assert!(signature.starts_with(prefix), "{signature}");
        let encoded = signature.trim_start_matches(prefix).trim_end_matches('"');
        let bytes = STANDARD.decode(encoded).unwrap_or_else(|e| panic!("{e}"));
        let public = UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, key.pair.public().as_ref());
        assert!(public.verify(expected.as_bytes(), &bytes).is_ok(), "the signature covers exactly the string");
        assert!(public.verify(expected.replace("account_42", "account_43").as_bytes(), &bytes).is_err());
    }

    #[test]
    fn a_keyring_round_trips_and_the_newest_configured_key_signs() {
        let (old, new) = (key_id("old.example.com"), key_id("new.example.com"));
        let mut ring = Keyring::default();
        let make = |id: &KeyId, at: i64| {
            SigningKey::generate(id.clone(), Timestamp::from_unix(at)).unwrap_or_else(|e| panic!("{e}"))
        };
        assert!(ring.add(make(&old, 100)));
        assert!(ring.add(make(&new, 200)));
        assert!(!ring.add(make(&new, 300)), "an id is taken once");
        let txt = ring.get(&new).map(|k| k.txt().unwrap_or_default()).unwrap_or_default();
        assert!(txt.starts_with("v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"), "{txt}");

        let json = ring.to_json();
        let parse = || Keyring::parse(&json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parse().ids(), vec![&old, &new]);
        let signer = |configured: &[KeyId]| parse().into_signer(configured).map(|k| k.map(|k| k.id().clone()));
        assert_eq!(signer(&[old.clone(), new.clone()]), Ok(Some(new.clone())), "the newer signs");
        assert_eq!(signer(&[new.clone(), old.clone()]), Ok(Some(new.clone())), "whatever the order");
        assert_eq!(signer(std::slice::from_ref(&old)), Ok(Some(old.clone())));
        assert_eq!(signer(&[]), Ok(None));
        assert_eq!(signer(&[key_id("gone.example.com")]), Err(key_id("gone.example.com")));
        assert!(!format!("{:?}", parse()).contains("MII"), "no key material in Debug");
    }

    #[test]
    fn key_ids_are_dns_names_and_profiles_have_two_names() {
        for good in ["dr1._domainkey.example.com", "a", "x-y_z.example"] {
            assert!(KeyId::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "a..b", "a b", "a\"b", "a,b", ".a", &"a".repeat(64)] {
            assert!(KeyId::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(SigningProfile::parse("copernica"), Ok(SigningProfile::Copernica));
        assert_eq!(SigningProfile::parse("standard-webhooks"), Ok(SigningProfile::StandardWebhooks));
        assert!(SigningProfile::parse("Copernica").is_err());
    }
}
