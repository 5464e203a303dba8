//! Escaping text for the export's two files, sixteen bytes at a time.
//!
//! A build escapes every byte of every message twice: once as a JSON string, once as HTML text.
//! A loop that looks at each byte on its own was among the largest costs of a build, so these
//! look at two machine words at once (the "SWAR" bit tricks: a byte that needs escaping sets
//! the high bit of its place in a mask), copy each run of plain bytes, and escape each marked
//! byte. Short runs and entities are copied as fixed-size blocks and cut back, not by a call
//! to copy a few bytes. The output is byte for byte what the byte-at-a-time loops wrote:
//! for JSON, what serde_json writes between a string's quotes (the tests compare the two).

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `word` below `n` (at most 0x7f), set. Every such byte is
/// marked; a byte above one may be marked falsely (a borrow), so a mark is checked against its
/// byte.
#[inline]
const fn below(word: u64, n: u8) -> u64 {
    word.wrapping_sub(ONES * n as u64) & !word & HIGHS
}

/// The high bit of each byte of `word` equal to `byte`, set (and perhaps of a byte above one).
#[inline]
const fn equal(word: u64, byte: u8) -> u64 {
    below(word ^ (ONES * byte as u64), 1)
}

/// One way of escaping text.
trait Escaping {
    /// A mask with the high bit set of every byte of `word` that needs escaping, and perhaps
    /// of others; zero when none does.
    fn marks(word: u64) -> u64;
    /// Whether one byte needs escaping.
    fn needs(byte: u8) -> bool;
    /// Appends the escaped form of a byte that needs it.
    fn write(out: &mut Vec<u8>, byte: u8);
}

/// Appends `bytes` to `out`, escaped the way `E` escapes.
///
/// Sixteen bytes (two words) are looked at together, so that a run of plain text costs one test
/// per sixteen bytes; in a block with marks, each mark is checked against its byte (a false one
/// is passed over), so a block dense in specials is read once, not once per special.
#[inline]
fn escape<E: Escaping>(out: &mut Vec<u8>, bytes: &[u8]) {
    // Room for the text and a few entities: most texts need no more.
    out.reserve(bytes.len() + bytes.len() / 8);
    let mut run = 0;
    let mut at = 0;
    let mut special = |out: &mut Vec<u8>, place: usize| {
        let byte = bytes[place];
        if E::needs(byte) {
            copy_run(out, bytes, run, place);
            E::write(out, byte);
            run = place + 1;
        }
    };
    while let Some(block) = bytes.get(at..at + 16) {
        let word = |i: usize| u64::from_le_bytes(<[u8; 8]>::try_from(&block[i..i + 8]).unwrap_or_default());
        let (low, high) = (E::marks(word(0)), E::marks(word(8)));
        if low | high != 0 {
            for (base, mut marks) in [(at, low), (at + 8, high)] {
                while marks != 0 {
                    special(out, base + (marks.trailing_zeros() / 8) as usize);
                    marks &= marks - 1;
                }
            }
        }
        at += 16;
    }
    for place in at..bytes.len() {
        special(out, place);
    }
    out.extend_from_slice(&bytes[run..]);
}

/// Appends `bytes[from..to]`. A short run is copied as sixteen bytes at once and the extra
/// ones cut off again, which costs less than a call to copy a few bytes.
#[inline]
fn copy_run(out: &mut Vec<u8>, bytes: &[u8], from: usize, to: usize) {
    if to - from <= 16
        && let Some(window) = bytes[from..].first_chunk::<16>()
    {
        let len = out.len() + (to - from);
        out.extend_from_slice(window);
        out.truncate(len);
    } else {
        out.extend_from_slice(&bytes[from..to]);
    }
}

/// Appends the first `len` bytes of `padded`, written whole and cut off (see [`copy_run`]).
#[inline]
fn put<const N: usize>(out: &mut Vec<u8>, padded: &[u8; N], len: usize) {
    let end = out.len() + len;
    out.extend_from_slice(padded);
    out.truncate(end);
}

/// The contents of a JSON string, as serde_json escapes them: `"`, `\` and the control
/// characters below U+0020; everything else as it is.
struct Json;

impl Escaping for Json {
    #[inline]
    fn marks(word: u64) -> u64 {
        below(word, 0x20) | equal(word, b'"') | equal(word, b'\\')
    }

    #[inline]
    fn needs(byte: u8) -> bool {
        byte < 0x20 || byte == b'"' || byte == b'\\'
    }

    fn write(out: &mut Vec<u8>, byte: u8) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let short = match byte {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x09 => b't',
            0x0A => b'n',
            0x0C => b'f',
            0x0D => b'r',
            _ => {
                out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(byte >> 4)],
                    HEX[usize::from(byte & 0xF)],
                ]);
                return;
            }
        };
        out.extend_from_slice(&[b'\\', short]);
    }
}

/// HTML text: the five specials, safe in text and in quoted attributes alike.
struct Html;

impl Escaping for Html {
    #[inline]
    fn marks(word: u64) -> u64 {
        equal(word, b'&') | equal(word, b'<') | equal(word, b'>') | equal(word, b'"') | equal(word, b'\'')
    }

    #[inline]
    fn needs(byte: u8) -> bool {
        matches!(byte, b'&' | b'<' | b'>' | b'"' | b'\'')
    }

    fn write(out: &mut Vec<u8>, byte: u8) {
        match byte {
            b'&' => put(out, b"&amp;\0\0\0", 5),
            b'<' => put(out, b"&lt;\0\0\0\0", 4),
            b'>' => put(out, b"&gt;\0\0\0\0", 4),
            b'"' => put(out, b"&quot;\0\0", 6),
            _ => put(out, b"&#39;\0\0\0", 5),
        }
    }
}

/// Appends what serde_json writes between the quotes of `text`.
pub fn json_into(out: &mut Vec<u8>, text: &str) {
    escape::<Json>(out, text.as_bytes());
}

/// Appends `text` with the five HTML specials (`&<>"'`) replaced by entities.
pub fn html_into(out: &mut Vec<u8>, text: &str) {
    escape::<Html>(out, text.as_bytes());
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    /// The byte-at-a-time HTML escaping the word-at-a-time one replaces.
    fn html_reference(text: &str) -> String {
        let mut out = String::new();
        for c in text.chars() {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '"' => out.push_str("&quot;"),
                '\'' => out.push_str("&#39;"),
                c => out.push(c),
            }
        }
        out
    }

    /// Text dense in what either escaping replaces, in bytes just beside those (so a false
    /// mark would show), and in characters of every UTF-8 width, at every alignment.
    fn awkward_text() -> impl Strategy<Value = String> {
        let pieces = prop_oneof![
            any::<char>().prop_map(String::from),
            (0u8..0x80).prop_map(|b| char::from(b).to_string()),
            prop::sample::select(vec!["\"", "\\", "&", "<", ">", "'", "\r\n", "\u{7f}", "\u{80}", "é€𝄞", "!#%=?[]"])
                .prop_map(str::to_owned),
            "[a-z ]{0,24}",
        ];
        proptest::collection::vec(pieces, 0..80).prop_map(|p| p.concat())
    }

    proptest! {
        #[test]
        fn json_escaping_is_serde_jsons(text in awkward_text()) {
            let mut out = vec![b'"'];
            json_into(&mut out, &text);
            out.push(b'"');
            prop_assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&text).unwrap());
        }

        #[test]
        fn html_escaping_replaces_the_five_specials_and_nothing_else(text in awkward_text()) {
            let mut out = Vec::new();
            html_into(&mut out, &text);
            prop_assert_eq!(String::from_utf8(out).unwrap(), html_reference(&text));
        }
    }

    #[test]
    fn every_byte_value_at_every_place_in_a_word_is_escaped_as_serde_json_does() {
        for byte in 0u8..0x80 {
            for place in 0..9 {
                let text = format!("{}{}{}", "a".repeat(place), char::from(byte), "b".repeat(9));
                let mut out = vec![b'"'];
                json_into(&mut out, &text);
                out.push(b'"');
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    serde_json::to_string(&text).unwrap(),
                    "{byte:#x} at {place}"
                );
                let mut html = Vec::new();
                html_into(&mut html, &text);
                assert_eq!(String::from_utf8(html).unwrap(), html_reference(&text), "{byte:#x} at {place}");
            }
        }
    }
}
