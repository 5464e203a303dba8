//! A JSON string written piece by piece, for MIME bodies that are streamed into an export rather
//! than held whole. The escaping is serde_json's (written a word at a time by
//! [`super::escape`], which the tests hold to serde_json's output), and escaping is the same
//! character by character wherever the string is cut, so the pieces together are byte for byte
//! what `serde_json` writes for the whole string: exports stay identical however a store chunks
//! a body. Chunks may end inside a UTF-8 character; the few bytes of such a character wait for
//! the next chunk.

use super::escape::json_into;

/// The body was not UTF-8 text (stores keep MIME as text, so this is a damaged store).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a stored MIME body is not UTF-8 text")]
pub struct NotUtf8;

/// The contents of one JSON string being written. Write the opening quote, feed every chunk
/// to [`JsonString::push`], call [`JsonString::finish`], write the closing quote.
#[derive(Debug, Default)]
pub struct JsonString {
    /// The first bytes of a character the last chunk cut short.
    partial: [u8; 4],
    held: usize,
}

impl JsonString {
    /// Appends the escaped text of a whole `str` (no character is pending before it).
    pub fn push_str(&mut self, out: &mut Vec<u8>, text: &str) {
        debug_assert_eq!(self.held, 0, "a str after a cut character");
        json_into(out, text);
    }

    /// Appends the escaped text of the next chunk of bytes.
    ///
    /// # Errors
    /// When the bytes so far are not the start of UTF-8 text.
    pub fn push(&mut self, out: &mut Vec<u8>, mut chunk: &[u8]) -> Result<(), NotUtf8> {
        if self.held > 0 {
            let width = utf8_width(self.partial[0]);
            let take = (width - self.held).min(chunk.len());
            self.partial[self.held..self.held + take].copy_from_slice(&chunk[..take]);
            self.held += take;
            chunk = &chunk[take..];
            if self.held < width {
                return Ok(());
            }
            self.held = 0;
            json_into(out, std::str::from_utf8(&self.partial[..width]).map_err(|_| NotUtf8)?);
        }
        match std::str::from_utf8(chunk) {
            Ok(text) => self.push_str(out, text),
            Err(error) => {
                let (valid, rest) = chunk.split_at(error.valid_up_to());
                self.push_str(out, std::str::from_utf8(valid).map_err(|_| NotUtf8)?);
                // An error with a length is a bad sequence; without one, the chunk ends inside
                // a character (at most three of its bytes).
                if error.error_len().is_some() {
                    return Err(NotUtf8);
                }
                self.partial[..rest.len()].copy_from_slice(rest);
                self.held = rest.len();
            }
        }
        Ok(())
    }

    /// Ends the string.
    ///
    /// # Errors
    /// When the last chunk ended inside a character.
    pub fn finish(self) -> Result<(), NotUtf8> {
        if self.held == 0 { Ok(()) } else { Err(NotUtf8) }
    }
}

/// The length of the UTF-8 sequence a lead byte starts (a byte `from_utf8` left pending).
fn utf8_width(lead: u8) -> usize {
    match lead {
        0xF0.. => 4,
        0xE0.. => 3,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    /// The string written through [`JsonString`] from `bytes` cut at `cuts`.
    fn streamed(bytes: &[u8], cuts: &[usize]) -> Result<String, NotUtf8> {
        let mut out = vec![b'"'];
        let mut string = JsonString::default();
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let mut at = 0;
        for cut in cuts.into_iter().chain([bytes.len()]) {
            string.push(&mut out, &bytes[at..cut])?;
            at = cut;
        }
        string.finish()?;
        out.push(b'"');
        Ok(String::from_utf8(out).unwrap())
    }

    /// Text rich in what JSON escapes and in characters of every UTF-8 width.
    fn awkward_text() -> impl Strategy<Value = String> {
        let pieces = prop_oneof![
            any::<char>().prop_map(String::from),
            Just("\"".to_owned()),
            Just("\\".to_owned()),
            Just("\r\n".to_owned()),
            (0u8..0x20).prop_map(|b| char::from(b).to_string()),
            Just("\u{7f}é€𝄞".to_owned()),
            "[a-z =]{0,12}",
        ];
        proptest::collection::vec(pieces, 0..64).prop_map(|p| p.concat())
    }

    proptest! {
        #[test]
        fn any_text_cut_anywhere_is_escaped_exactly_as_serde_json_escapes_it_whole(
            text in awkward_text(),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            let whole = serde_json::to_string(&text).unwrap();
            prop_assert_eq!(streamed(text.as_bytes(), &cuts), Ok(whole));
        }

        #[test]
        fn any_text_fed_a_byte_at_a_time_is_escaped_as_serde_json_escapes_it(text in awkward_text()) {
            let cuts: Vec<usize> = (0..=text.len()).collect();
            prop_assert_eq!(streamed(text.as_bytes(), &cuts), Ok(serde_json::to_string(&text).unwrap()));
        }

        #[test]
        fn bytes_that_are_not_utf8_are_refused_wherever_they_are_cut(
            text in awkward_text(),
            bad in prop_oneof![Just(vec![0xFFu8]), Just(vec![0xC0, 0x80]), Just(vec![0xED, 0xA0, 0x80]), Just(vec![0xE2, 0x82])],
            at in any::<usize>(),
            cuts in proptest::collection::vec(any::<usize>(), 0..6),
        ) {
            // Damage at a character boundary: a lone or overlong byte, a surrogate, or a
            // character cut short (at the end, or before more text).
            let boundaries: Vec<usize> = (0..=text.len()).filter(|i| text.is_char_boundary(*i)).collect();
            let at = boundaries[at % boundaries.len()];
            let mut bytes = text.as_bytes()[..at].to_vec();
            bytes.extend_from_slice(&bad);
            bytes.extend_from_slice(&text.as_bytes()[at..]);
            prop_assume!(std::str::from_utf8(&bytes).is_err());
            prop_assert_eq!(streamed(&bytes, &cuts), Err(NotUtf8));
        }
    }

    #[test]
    fn a_four_byte_character_cut_into_single_bytes_comes_out_whole() {
        assert_eq!(streamed("a𝄞b".as_bytes(), &[1, 2, 3, 4]), Ok("\"a𝄞b\"".to_owned()));
    }
}
