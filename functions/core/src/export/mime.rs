//! A message's text parts as the report shows them, read quickly for the common shapes.
//!
//! The report shows what mail_parser reads in a message. Its full parse looks at every byte of a
//! body one at a time to find the part's end, and checks the text a character at a time: in a
//! build of large text mails that was most of the report's cost. [`read`] reads the shapes that
//! nearly every sent mail has (one text or HTML part, or a multipart whose parts are all text or
//! HTML, in UTF-8 or with no charset) with mail_parser's own header parser and decoders, but finds
//! each part's end with a substring search and checks the text with the standard library's
//! validation. Any other message, or anything unusual in one of these (a part cut short, a
//! charset or a byte that needs converting, a nested part), is left to the full parse: `read`
//! answers `None`, and the two readings never differ. A property test compares them.

use std::borrow::Cow;

use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::parsers::MessageStream;
use mail_parser::{ContentType, Header, HeaderName, HeaderValue, MessageParser};
use memchr::memmem::Finder;

/// A part of a message as the report shows it.
#[derive(Debug, PartialEq)]
pub enum Part<'a> {
    /// A text part, decoded.
    Text(Cow<'a, str>),
    /// An HTML part, decoded (shown as its source).
    Html(Cow<'a, str>),
}

/// A message of a common shape: its headers, and its parts in order.
pub struct Read<'a> {
    /// The message's own headers.
    pub headers: Vec<Header<'a>>,
    /// Its parts, each text or HTML.
    pub parts: Vec<Part<'a>>,
}

/// The delimiter that ends the parts of one multipart: `--` and its boundary.
struct Delimiter<'b> {
    boundary: &'b [u8],
    finder: Finder<'static>,
}

/// `source` read as mail_parser reads it, when it has one of the common shapes; `None` when only
/// the full parse may read it.
#[must_use]
pub fn read<'a>(parser: &MessageParser, source: &'a [u8]) -> Option<Read<'a>> {
    let mut stream = MessageStream::new(source);
    let mut headers = Vec::new();
    if !stream.parse_headers(parser, &mut headers) {
        return None;
    }
    let mut parts = Vec::new();
    match content_type(&headers) {
        Some(kind) if kind.ctype() == "multipart" => {
            // A digest's parts without a type are messages.
            if kind.subtype() == Some("digest") {
                return None;
            }
            let boundary = kind.attribute("boundary")?.as_bytes();
            if boundary.is_empty() || !stream.seek_next_part(boundary) {
                return None;
            }
            stream.skip_crlf();
            let delimiter = Delimiter { boundary, finder: Finder::new(&[b"--", boundary].concat()).into_owned() };
            loop {
                let mut own = Vec::new();
                if !stream.parse_headers(parser, &mut own) {
                    return None;
                }
                parts.push(part(&mut stream, &own, Some(&delimiter))?);
                if stream.is_multipart_end() {
                    break;
                }
            }
        }
        // Without a boundary, the part is the rest of the message (each decoder reads to the
        // end, or fails), so nothing is left over for the full parse to read on into.
        _ => parts.push(part(&mut stream, &headers, None)?),
    }
    Some(Read { headers, parts })
}

/// The value of the header `name`: the last one, as mail_parser takes it.
fn value<'h, 'x>(headers: &'h [Header<'x>], name: &HeaderName<'_>) -> Option<&'h HeaderValue<'x>> {
    headers.iter().rev().find(|header| header.name == *name).map(|header| &header.value)
}

fn content_type<'h, 'x>(headers: &'h [Header<'x>]) -> Option<&'h ContentType<'x>> {
    value(headers, &HeaderName::ContentType).and_then(HeaderValue::as_content_type)
}

/// The part whose body starts where `stream` stands, with its `headers`: in a multipart when
/// `delimiter` is given, else the whole rest of the message.
fn part<'a>(
    stream: &mut MessageStream<'a>,
    headers: &[Header<'a>],
    delimiter: Option<&Delimiter<'_>>,
) -> Option<Part<'a>> {
    let kind = content_type(headers);
    let html = match kind.map(|k| (k.ctype(), k.subtype())) {
        None | Some(("text", Some("plain"))) => false,
        Some(("text", Some("html"))) => true,
        _ => return None,
    };
    // A charset mail_parser knows is converted; the rest is read as UTF-8.
    if kind.and_then(|k| k.attribute("charset")).is_some_and(|c| charset_decoder(c.as_bytes()).is_some()) {
        return None;
    }
    let boundary = delimiter.map_or(&b""[..], |d| d.boundary);
    let bytes = match value(headers, &HeaderName::ContentTransferEncoding) {
        Some(HeaderValue::Text(encoding)) if encoding.eq_ignore_ascii_case("base64") => {
            decoded(stream.decode_base64_mime(boundary))?
        }
        Some(HeaderValue::Text(encoding)) if encoding.eq_ignore_ascii_case("quoted-printable") => {
            decoded(stream.decode_quoted_printable_mime(boundary))?
        }
        _ => Cow::Borrowed(body(stream, delimiter)?),
    };
    let text = match bytes {
        Cow::Borrowed(bytes) => Cow::Borrowed(std::str::from_utf8(bytes).ok()?),
        Cow::Owned(bytes) => Cow::Owned(String::from_utf8(bytes).ok()?),
    };
    Some(if html { Part::Html(text) } else { Part::Text(text) })
}

/// A decoder's answer, unless it did not find the part's end.
fn decoded((end, bytes): (usize, Cow<'_, [u8]>)) -> Option<Cow<'_, [u8]>> {
    (end != usize::MAX).then_some(bytes)
}

/// The body that starts where `stream` stands, as mail_parser's `mime_part` finds it, with the
/// stream moved past its delimiter (or to the end); `None` when the delimiter never comes.
///
/// The body ends at the first `--` and boundary, wherever it stands. When a line break comes
/// just before it (or it starts the body), that line break is not part of the body either.
fn body<'a>(stream: &mut MessageStream<'a>, delimiter: Option<&Delimiter<'_>>) -> Option<&'a [u8]> {
    let start = stream.offset();
    let data = stream.bytes(0..start + stream.remaining());
    let Some(delimiter) = delimiter else {
        stream.seek_end();
        return data.get(start..);
    };
    let at = start + delimiter.finder.find(data.get(start..)?)?;
    let end = match at.checked_sub(1).map(|before| (before, data[before])) {
        Some((newline, b'\n')) if newline > start => {
            if data[newline - 1] == b'\r' {
                newline - 1
            } else {
                newline
            }
        }
        Some((_, b'\n')) => start,
        _ if at == start => start,
        _ => at,
    };
    stream.skip_bytes(at + 2 + delimiter.boundary.len() - start);
    data.get(start..end)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used, clippy::unwrap_used)]

    use super::*;
    use proptest::strategy::Strategy;

    fn parts(source: &str) -> Vec<Part<'_>> {
        read(&MessageParser::default(), source.as_bytes()).expect("a common shape").parts
    }

    #[test]
    fn a_multipart_alternative_reads_as_its_two_parts() {
        let source = "Subject: x\r\nContent-Type: multipart/alternative; boundary=\"b\"\r\n\r\n--b\r\n\
                      Content-Type: text/plain; charset=utf-8\r\n\r\nHello\r\nthere\r\n--b\r\n\
                      Content-Type: text/html\r\n\r\n<p>Hello</p>\r\n--b--\r\n";
        assert_eq!(parts(source), [Part::Text("Hello\r\nthere".into()), Part::Html("<p>Hello</p>".into())]);
    }

    #[test]
    fn a_single_part_reads_to_the_end_and_quoted_printable_is_decoded() {
        assert_eq!(parts("Subject: x\r\n\r\nall of it\r\n"), [Part::Text("all of it\r\n".into())]);
        let source = "Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9";
        assert_eq!(parts(source), [Part::Text("café".into())]);
    }

    #[test]
    fn unusual_messages_are_left_to_the_full_parse() {
        let parser = MessageParser::default();
        for source in [
            // A charset that needs converting.
            "Content-Type: text/plain; charset=iso-8859-1\r\n\r\ncaf\u{e9}",
            // An attachment.
            "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: application/pdf\r\n\r\nx\r\n--b--",
            // A nested multipart.
            "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: multipart/alternative; boundary=c\r\n\r\n--c--\r\n--b--",
            // A part the delimiter never ends.
            "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nno end",
        ] {
            assert!(read(&parser, source.as_bytes()).is_none(), "{source}");
        }
        assert!(read(&parser, b"Subject: x\r\n\r\nnot UTF-8: \xff").is_none());
    }

    /// What the full parse shows of `source`: its headers, and its parts, or `None` when it
    /// holds anything but text and HTML parts (which [`read`] must then leave to it).
    fn shown_by_full_parse(source: &[u8]) -> Option<(Vec<Header<'_>>, Vec<Part<'_>>)> {
        let message = MessageParser::default().parse(source)?;
        let headers = message.parts.first()?.headers.clone();
        let mut parts = Vec::new();
        for part in message.parts {
            match part.body {
                mail_parser::PartType::Text(text) => parts.push(Part::Text(text)),
                mail_parser::PartType::Html(html) => parts.push(Part::Html(html)),
                mail_parser::PartType::Multipart(_) => {}
                _ => return None,
            }
        }
        Some((headers, parts))
    }

    /// Pieces of a body: plain text, line breaks of both kinds, non-ASCII and invalid UTF-8,
    /// and the pieces of delimiters, so that bodies often hold a boundary or nearly one.
    fn piece() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        proptest::sample::select(vec![
            &b"text"[..],
            b" ",
            b"\r\n",
            b"\n",
            b"\r",
            b"-",
            b"--",
            b"b",
            b"--b",
            b"--b--",
            b"\r\n--b\r\n",
            b"\n--b",
            b"--bc",
            b"=",
            b"=C3=A9",
            b"=\r\n",
            b"caf\xc3\xa9",
            b"\xff",
            b"<p>&amp;</p>",
            b"\t",
            b"Zm9v",
        ])
        .prop_map(<[u8]>::to_vec)
    }

    fn body() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        proptest::collection::vec(piece(), 0..12).prop_map(|pieces| pieces.concat())
    }

    /// A part's headers: a type (or none), and an encoding (or none).
    fn part_headers() -> impl proptest::strategy::Strategy<Value = String> {
        let kinds = proptest::sample::select(vec![
            "",
            "Content-Type: text/plain\r\n",
            "Content-Type: text/plain; charset=utf-8\r\n",
            "Content-Type: text/plain; charset=\"UTF-8\"\r\n",
            "Content-Type: TEXT/HTML; charset=us-ascii\r\n",
            "Content-Type: text/html\r\n",
            "Content-Type: text/plain; charset=iso-8859-1\r\n",
            "Content-Type: text/plain; charset=x-unknown\r\n",
            "Content-Type: text/calendar\r\n",
            "Content-Type: application/pdf; name=a.pdf\r\n",
            "Content-Type: message/rfc822\r\n",
            "Content-Type: multipart/alternative; boundary=c\r\n",
        ]);
        let encodings = proptest::sample::select(vec![
            "",
            "Content-Transfer-Encoding: 8bit\r\n",
            "Content-Transfer-Encoding: Quoted-Printable\r\n",
            "Content-Transfer-Encoding: base64\r\n",
        ]);
        (kinds, encodings).prop_map(|(kind, encoding)| format!("{kind}{encoding}"))
    }

    /// A message: headers, then one part's body, or a multipart with a preamble, parts, a
    /// closing delimiter or none, and an epilogue; lines end in CRLF or LF.
    fn message() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        let kinds = proptest::sample::select(vec!["mixed", "alternative", "related", "digest"]);
        let multipart = (
            kinds,
            body(),
            proptest::collection::vec((part_headers(), body()), 1..4),
            proptest::sample::select(vec!["--b--\r\n", "--b--", "--b-- \r\n", "--b \r\n", ""]),
            body(),
        )
            .prop_map(|(kind, preamble, parts, close, epilogue)| {
                let mut m =
                    format!("Subject: =?utf-8?q?caf=C3=A9?=\r\nContent-Type: multipart/{kind}; boundary=\"b\"\r\n\r\n")
                        .into_bytes();
                m.extend(preamble);
                for (headers, body) in parts {
                    m.extend(format!("\r\n--b\r\n{headers}\r\n").into_bytes());
                    m.extend(body);
                    m.extend(b"\r\n");
                }
                m.extend(close.as_bytes());
                m.extend(epilogue);
                m
            });
        let single = (part_headers(), body()).prop_map(|(headers, body)| {
            let mut m = format!("From: Shop <news@shop.example>\r\n{headers}\r\n").into_bytes();
            m.extend(body);
            m
        });
        (proptest::prop_oneof![multipart, single], proptest::bool::ANY)
            .prop_map(|(m, lf)| if lf { String::from_utf8_lossy(&m).replace("\r\n", "\n").into_bytes() } else { m })
    }

    /// Whatever `read` reads, the full parse reads the same: the same headers, the same parts
    /// with the same text, and nothing else. And `read` does read a good share of them.
    #[test]
    fn read_agrees_with_the_full_parse() {
        let config = proptest::test_runner::Config { cases: 4096, ..Default::default() };
        let mut runner = proptest::test_runner::TestRunner::new(config);
        let read_quickly = std::cell::Cell::new(0u32);
        runner
            .run(&message(), |source| {
                if let Some(quick) = read(&MessageParser::default(), &source) {
                    read_quickly.set(read_quickly.get() + 1);
                    let shown = shown_by_full_parse(&source);
                    proptest::prop_assert!(
                        shown.is_some(),
                        "the full parse shows more of {:?}",
                        String::from_utf8_lossy(&source)
                    );
                    let (headers, parts) = shown.unwrap();
                    proptest::prop_assert_eq!(quick.headers, headers);
                    proptest::prop_assert_eq!(quick.parts, parts, "{:?}", String::from_utf8_lossy(&source));
                }
                Ok(())
            })
            .unwrap();
        assert!(read_quickly.get() >= 4096 / 10, "only {} of the messages read quickly", read_quickly.get());
    }
}
