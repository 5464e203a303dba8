//! The HTML rendering of an export: one self-contained page a person can read (inline CSS, no
//! script, font, image or any other outside resource), written as a stream beside the JSON from
//! the same records. Everything that comes from the data is HTML-escaped, and sent e-mails are
//! shown as text: headers and text parts decoded, an HTML part as escaped source, never rendered.
//!
//! The counts and the date range of the summary are known only at the end, so the summary is
//! written last, and the page's flex layout (`order`) shows it first.

use std::borrow::Cow;
use std::time::Duration;

use mail_parser::{Address, Header, HeaderValue, MessageParser, MimeHeaders, PartType};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::mime::Part;
use crate::domain::{Event, Message, Profile, RequestId, Subject, SubjectKind, Subprofile, Timestamp};
use crate::ports::{SourceRow, SourceValue};

/// The policy of the page: nothing but its own inline style. Sent as a header by the API and
/// repeated in the page, so it holds where the file is opened from disk or a mail client too.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The part of the policy a `<meta>` element can carry (`frame-ancestors` is header-only).
const META_POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; base-uri 'none'; form-action 'none'";

/// Nested messages shown inside a message before the rest is only named.
const NESTING: usize = 3;

/// The bytes of a message's MIME source the page decodes and shows. A larger message is shown
/// from its first MiB, with a note that the complete message is in the JSON file: the page must
/// stay readable, and the builder's memory bounded, whatever size of mail was sent.
pub const SHOWN_MIME: usize = 1024 * 1024;

const STYLE: &str = "\
:root{color-scheme:light;font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;line-height:1.45;color:#1d2430;background:#f5f6f8}\
body{margin:0}\
.page{display:flex;flex-direction:column;max-width:72rem;margin:0 auto;padding:1.5rem}\
.page>header{order:0}.summary{order:1}.sections{order:2}\
h1{font-size:1.6rem;margin:0 0 .25rem}h2{font-size:1.25rem;margin:0 0 .75rem}h3{font-size:1.05rem;margin:0 0 .5rem}\
h4{font-size:.95rem;margin:1rem 0 .35rem;color:#4a5568}\
section,article{background:#fff;border:1px solid #d9dde3;border-radius:6px;padding:1rem 1.25rem;margin:0 0 1.25rem}\
article{margin:1rem 0;background:#fbfbfc}\
table{border-collapse:collapse;width:100%;font-size:.9rem}\
th,td{border:1px solid #e2e5ea;padding:.3rem .5rem;text-align:left;vertical-align:top;overflow-wrap:anywhere}\
thead th{background:#eef1f5}th{font-weight:600}table.kv>tbody>tr>th{width:12rem;background:#f7f8fa}\
td table{font-size:.85rem}ol{margin:0;padding-left:1.25rem}\
pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f7f8fa;border:1px solid #e2e5ea;padding:.5rem;font-size:.85rem;max-height:40rem;overflow:auto}\
.none,.note,.empty{color:#6b7280}.note{font-size:.85rem}\
.summary{border-color:#7aa2d6}.summary td.count{text-align:right;font-variant-numeric:tabular-nums;width:7rem}\
.summary h3{margin-top:1rem}small{color:#6b7280;font-weight:normal}details>summary{cursor:pointer;color:#2c5aa0}\
";

/// When the file expires, as the page states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    /// The moment.
    pub at: Timestamp,
    /// How long after the build that is.
    pub after: Duration,
}

/// Each section's title for a person, and what it holds.
fn title(section: &'static str) -> (&'static str, &'static str) {
    match section {
        "profile" => ("Profile", "The profile's fields and interests."),
        "subprofiles" => ("Subprofiles", "Records held under the profile, such as subscriptions or orders."),
        "destinations" => ("Messages sent", "Every e-mail sent, shown as text: headers and text decoded."),
        "impressions" => ("Opens", "Each time a sent message was opened."),
        "clicks" => ("Clicks", "Each time a link in a sent message was followed."),
        "deliveries" => ("Deliveries", "Each message accepted by the receiving mail server."),
        "errors" => ("Bounces and errors", "Messages that could not be delivered, and why."),
        "abuses" => ("Complaints", "Messages reported as unwanted (abuse or spam reports)."),
        "unsubscribes" => ("Unsubscribes", "Requests to receive no more messages."),
        "surveys" => ("Surveys", "Answers given to surveys."),
        // A section of the platform's own, under its own name.
        _ => (section, "Records the platform keeps under this name."),
    }
}

fn describe_subject(subject: &Subject) -> (&'static str, String) {
    match subject {
        Subject::Profile(id) => ("Profile", id.to_string()),
        Subject::Subprofile(id) => ("Subprofile", id.to_string()),
        Subject::Email(address) => ("E-mail address", address.as_str().to_owned()),
    }
}

/// The sentence that opens the report and the delivery mail of an export whose every section is
/// empty (the JSON keeps its empty sections).
#[must_use]
pub fn nothing_held(kind: SubjectKind) -> &'static str {
    match kind {
        SubjectKind::Email => "We hold no data about this subject.",
        SubjectKind::Profile => "We hold no data about this profile.",
        SubjectKind::Subprofile => "We hold no data about this subprofile.",
    }
}

/// A span of time in words: whole days, else whole hours, else minutes.
fn in_words(span: Duration) -> String {
    let seconds = span.as_secs();
    let (n, unit) = if seconds >= 86_400 && seconds.is_multiple_of(86_400) {
        (seconds / 86_400, "day")
    } else if seconds >= 3_600 && seconds.is_multiple_of(3_600) {
        (seconds / 3_600, "hour")
    } else {
        (seconds.div_ceil(60), "minute")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// The page being written. Feed it sections and records in export order, drain
/// [`HtmlReport::pending`] now and then, and [`HtmlReport::finish`] it.
pub struct HtmlReport {
    out: Out,
    sections: Vec<(&'static str, u64)>,
    open: bool,
    /// Whether a table of the store's records is open in the current section.
    table: bool,
    earliest: Option<Timestamp>,
    latest: Option<Timestamp>,
    request: RequestId,
    subject: (&'static str, String),
    kind: SubjectKind,
}

/// Where a report stands between two runs of a build that goes on from a checkpoint (its
/// pending bytes were handed on before).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportState {
    sections: Vec<(String, u64)>,
    open: bool,
    table: bool,
    earliest: Option<i64>,
    latest: Option<i64>,
}

impl HtmlReport {
    /// Where the report stands, to continue it with [`HtmlReport::resume`].
    #[must_use]
    pub fn state(&self) -> ReportState {
        ReportState {
            sections: self.sections.iter().map(|(name, count)| ((*name).to_owned(), *count)).collect(),
            open: self.open,
            table: self.table,
            earliest: self.earliest.map(Timestamp::unix),
            latest: self.latest.map(Timestamp::unix),
        }
    }

    /// Continues the page of a request's export, whose sections are `known`, where `state`
    /// left it.
    ///
    /// # Errors
    /// When the state names a section the export does not have.
    pub fn resume(
        request: RequestId,
        subject: &Subject,
        known: &[&'static str],
        state: ReportState,
    ) -> anyhow::Result<Self> {
        let sections = state
            .sections
            .into_iter()
            .map(|(name, count)| {
                let name = known.iter().find(|known| **known == name).copied();
                Ok((name.ok_or_else(|| anyhow::anyhow!("the report's checkpoint names an unknown section"))?, count))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            out: Out(Vec::with_capacity(64 * 1024)),
            sections,
            open: state.open,
            table: state.table,
            earliest: state.earliest.map(Timestamp::from_unix),
            latest: state.latest.map(Timestamp::from_unix),
            request,
            subject: describe_subject(subject),
            kind: subject.kind(),
        })
    }

    /// Starts the page of a request's export.
    #[must_use]
    pub fn start(request: RequestId, subject: &Subject) -> Self {
        let mut report = Self {
            out: Out(Vec::with_capacity(64 * 1024)),
            sections: Vec::with_capacity(10),
            open: false,
            table: false,
            earliest: None,
            latest: None,
            request,
            subject: describe_subject(subject),
            kind: subject.kind(),
        };
        let (kind, id) = report.subject.clone();
        report.out.raw("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
        report.out.raw("<meta http-equiv=\"Content-Security-Policy\" content=\"");
        report.out.raw(META_POLICY);
        report.out.raw("\">\n<meta name=\"referrer\" content=\"no-referrer\">\n");
        report.out.raw("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>");
        report.out.text(&format!("Your data: {} {id} (data request {request})", kind.to_lowercase()));
        report.out.raw("</title>\n<style>");
        report.out.raw(STYLE);
        report.out.raw("</style></head>\n<body><div class=\"page\">\n<header><h1>Your data</h1><p>");
        report.out.text(&format!("Everything held about {} {id}, data request {request}.", kind.to_lowercase()));
        report.out.raw("</p></header>\n<main class=\"sections\">\n");
        report
    }

    /// Bytes written since the last [`HtmlReport::clear`].
    #[must_use]
    pub fn pending(&self) -> &[u8] {
        &self.out.0
    }

    /// Forgets the pending bytes (they were handed on).
    pub fn clear(&mut self) {
        self.out.0.clear();
    }

    fn seen(&mut self, time: Timestamp) {
        self.earliest = Some(self.earliest.map_or(time, |t| t.min(time)));
        self.latest = Some(self.latest.map_or(time, |t| t.max(time)));
    }

    /// Opens a section (an export section name such as `destinations`).
    pub fn open_section(&mut self, name: &'static str) {
        self.sections.push((name, 0));
        self.open = false;
        self.table = false;
        let (heading, about) = title(name);
        self.out.raw("<section id=\"");
        self.out.raw(name);
        self.out.raw("\"><h2>");
        self.out.raw(heading);
        self.out.raw(" <small>(");
        self.out.raw(name);
        self.out.raw(")</small></h2><p class=\"note\">");
        self.out.raw(about);
        self.out.raw("</p>\n");
    }

    /// Counts a record of the open section shown as a row of a table: the first opens the table
    /// with `head`.
    fn table_row(&mut self, head: &str) {
        self.count();
        if !self.table {
            self.table = true;
            self.out.raw(head);
        }
    }

    /// Counts a record of the open section; true for its first.
    fn count(&mut self) -> bool {
        match self.sections.last_mut() {
            Some((_, count)) => {
                *count += 1;
                *count == 1
            }
            None => false,
        }
    }

    /// Closes the open section; an empty one says so.
    pub fn close_section(&mut self) {
        let name = self.sections.last().map_or("", |(name, _)| *name);
        let empty = self.sections.last().is_none_or(|(_, count)| *count == 0);
        if empty {
            self.out.raw("<p class=\"empty\">No records.</p>\n");
        } else if self.table && name != "destinations" && name != "profile" {
            self.out.raw("</tbody></table>\n");
        }
        self.table = false;
        self.out.raw("</section>\n");
    }

    /// The profile.
    pub fn profile(&mut self, p: &Profile) {
        self.count();
        self.seen(p.created);
        self.seen(p.modified);
        self.out.raw("<table class=\"kv\"><tbody>");
        self.out.row("ID", Some(&p.id.to_string()));
        self.out.row("Database", Some(&p.database.to_string()));
        self.out.row("E-mail address", p.email.as_deref());
        self.out.row("Created", Some(&p.created.to_string()));
        self.out.row("Modified", Some(&p.modified.to_string()));
        self.out.raw("<tr><th>Interests</th><td>");
        if p.interests.is_empty() {
            self.out.raw("<span class=\"none\">(none)</span>");
        } else {
            self.out.text(&p.interests.join(", "));
        }
        self.out.raw("</td></tr><tr><th>Fields</th><td>");
        self.out.members(&p.fields);
        self.out.raw("</td></tr></tbody></table>\n");
    }

    /// A subprofile.
    pub fn subprofile(&mut self, s: &Subprofile) {
        self.table_row(
            "<table><thead><tr><th>ID</th><th>Profile</th><th>Collection</th><th>E-mail address</th>\
             <th>Created</th><th>Modified</th><th>Fields</th></tr></thead><tbody>\n",
        );
        self.seen(s.created);
        self.seen(s.modified);
        self.out.raw("<tr>");
        self.out.cell(Some(&s.id.to_string()));
        self.out.cell(Some(&s.profile.to_string()));
        self.out.cell(Some(&s.collection.to_string()));
        self.out.cell(s.email.as_deref());
        self.out.cell(Some(&s.created.to_string()));
        self.out.cell(Some(&s.modified.to_string()));
        self.out.raw("<td>");
        self.out.members(&s.fields);
        self.out.raw("</td></tr>\n");
    }

    /// Counts sent messages (sent at `sent`, in order) whose articles were rendered apart by
    /// [`RenderedMessages::render`], perhaps on another thread. Their articles'
    /// [`RenderedMessages::html`] follows the page's pending bytes, before anything else is
    /// added to the page (a build writes it straight to the file, saving a copy of it).
    pub fn rendered_messages(&mut self, sent: &[Timestamp]) {
        for &time in sent {
            self.count();
            self.seen(time);
        }
    }

    /// An event of the open section.
    pub fn event(&mut self, e: &Event) {
        self.table_row(
            "<table><thead><tr><th>Time</th><th>Message</th><th>Profile</th><th>Subprofile</th>\
             <th>E-mail address</th><th>Details</th></tr></thead><tbody>\n",
        );
        self.seen(e.time);
        self.out.raw("<tr>");
        self.out.cell(Some(&e.time.to_string()));
        self.out.cell(e.message.as_deref());
        self.out.cell(e.profile.map(|p| p.to_string()).as_deref());
        self.out.cell(e.subprofile.map(|s| s.to_string()).as_deref());
        self.out.cell(e.email.as_deref());
        self.out.raw("<td>");
        self.out.members(&e.data);
        self.out.raw("</td></tr>\n");
    }

    /// A row from one of the platform's own databases: its columns as a table of their own,
    /// after the store's records of the section; a `mime` column is shown as a message.
    pub fn source_row(&mut self, row: &SourceRow) {
        self.count();
        if self.table {
            self.out.raw("</tbody></table>\n");
            self.table = false;
        }
        for (name, value) in row.members() {
            if matches!(name, "created" | "modified" | "timestamp" | "timestampsent")
                && let Some(time) = value.as_str().and_then(|text| Timestamp::parse(text).ok())
            {
                self.seen(time);
            }
        }
        self.out.raw("<article><p class=\"note\">From ");
        self.out.text(&row.source);
        self.out.raw("</p><table class=\"kv\"><tbody>");
        let mut mime = None;
        for (name, value) in row.members() {
            match value {
                SourceValue::Value(Value::String(text)) if name == "mime" => mime = Some(text),
                _ => {
                    self.out.raw("<tr><th>");
                    self.out.text(name);
                    self.out.raw("</th><td>");
                    match value {
                        SourceValue::Value(value) => self.out.value(value),
                        SourceValue::Json(raw) => self.out.raw_json(raw),
                    }
                    self.out.raw("</td></tr>");
                }
            }
        }
        self.out.raw("</tbody></table>\n");
        if let Some(text) = mime {
            let shown = &text.as_bytes()[..text.len().min(SHOWN_MIME)];
            self.out.source(shown, shown.len() < text.len());
        }
        self.out.raw("</article>\n");
    }

    /// Writes the summary (shown first by the layout) and ends the page.
    pub fn finish(&mut self, built: Timestamp, expiry: Option<Expiry>) {
        self.out.raw("</main>\n<section class=\"summary\" id=\"summary\">");
        if self.sections.iter().all(|(_, count)| *count == 0) {
            self.out.raw("<p class=\"nothing\">");
            self.out.raw(nothing_held(self.kind));
            self.out.raw("</p>");
        }
        self.out.raw("<h2>Summary</h2><table class=\"kv\"><tbody>");
        let (kind, id) = self.subject.clone();
        self.out.row("Subject", Some(&format!("{kind} {id}")));
        self.out.row("Data request", Some(&self.request.to_string()));
        self.out.row("Built", Some(&format!("{built} UTC")));
        let range = match (self.earliest, self.latest) {
            (Some(first), Some(last)) => Some(format!("{first} UTC to {last} UTC")),
            _ => None,
        };
        self.out.raw("<tr><th>Records dated</th><td>");
        match range {
            Some(range) => self.out.text(&range),
            None => self.out.raw("<span class=\"none\">no dated records</span>"),
        }
        self.out.raw("</td></tr>");
        let expires = expiry.map(|e| format!("{} UTC, {} after it was built", e.at, in_words(e.after)));
        self.out.raw("<tr><th>This file expires</th><td>");
        match expires {
            Some(expires) => self.out.text(&expires),
            None => self.out.raw("<span class=\"none\">when the service's retention ends</span>"),
        }
        self.out.raw("</td></tr></tbody></table>\n<h3>What was searched</h3><table><thead><tr><th>Category</th>");
        self.out.raw("<th>Section</th><th>Records</th></tr></thead><tbody>");
        for (name, count) in self.sections.clone() {
            self.out.raw("<tr><td><a href=\"#");
            self.out.raw(name);
            self.out.raw("\">");
            self.out.raw(title(name).0);
            self.out.raw("</a></td><td>");
            self.out.raw(name);
            self.out.raw("</td><td class=\"count\">");
            self.out.raw(&count.to_string());
            self.out.raw("</td></tr>");
        }
        self.out.raw(
            "</tbody></table>\n<p class=\"note\">Times are UTC. The same data, in Copernica's JSON format, is in ",
        );
        self.out.raw("the JSON file of this data request.</p></section>\n</div></body></html>\n");
    }

    /// The number of records written to each section so far, in order.
    #[must_use]
    pub fn counts(&self) -> &[(&'static str, u64)] {
        &self.sections
    }
}

/// HTML being written: the page's pending bytes, or a message's article rendered apart.
#[derive(Default)]
struct Out(Vec<u8>);

/// Messages' articles in the report, rendered apart from the page: the costly part of a
/// report (parsing each MIME source and escaping it), which can thus run beside the build.
#[derive(Default)]
pub struct RenderedMessages(Out);

impl RenderedMessages {
    /// Renders a message's article, with its MIME shown as text from `source` (the whole
    /// message, or when `cut` its first bytes), after those rendered before;
    /// [`HtmlReport::rendered_messages`] counts them in the page.
    pub fn render<M>(&mut self, m: &Message<M>, source: &[u8], cut: bool) {
        self.0.article(m, source, cut);
    }

    /// The articles rendered, in order.
    #[must_use]
    pub fn html(&self) -> &[u8] {
        &self.0.0
    }

    /// Empties these for a next batch of about `source` bytes of sources, keeping (and when
    /// needed, growing) the room they have: a batch rendered into a fresh buffer paid for
    /// its growth in copies and newly mapped pages.
    pub fn reuse(&mut self, source: usize) {
        self.0.0.clear();
        // Escaped HTML is rarely more than a half longer than its source.
        self.0.0.reserve(source + source / 2);
    }
}

impl Out {
    fn raw(&mut self, html: &str) {
        self.0.extend_from_slice(html.as_bytes());
    }

    fn text(&mut self, text: &str) {
        super::escape::html_into(&mut self.0, text);
    }

    fn cell(&mut self, text: Option<&str>) {
        self.raw("<td>");
        match text {
            Some(text) => self.text(text),
            None => self.raw("<span class=\"none\">—</span>"),
        }
        self.raw("</td>");
    }

    fn row(&mut self, name: &str, text: Option<&str>) {
        self.raw("<tr><th>");
        self.text(name);
        self.raw("</th>");
        self.cell(text);
        self.raw("</tr>");
    }

    fn value(&mut self, value: &Value) {
        match value {
            Value::Null => self.raw("<span class=\"none\">null</span>"),
            Value::String(text) => self.text(text),
            Value::Bool(b) => self.raw(if *b { "true" } else { "false" }),
            Value::Number(n) => self.text(&n.to_string()),
            Value::Array(items) if items.is_empty() => self.raw("<span class=\"none\">(none)</span>"),
            Value::Array(items) => {
                self.raw("<ol>");
                for item in items {
                    self.raw("<li>");
                    self.value(item);
                    self.raw("</li>");
                }
                self.raw("</ol>");
            }
            Value::Object(members) => self.members(members),
        }
    }

    /// A JSON document as a source gave it, shown as [`Self::value`] shows one, its numbers as
    /// written.
    fn raw_json(&mut self, raw: &RawValue) {
        let text = raw.get();
        let parsed = match text.as_bytes().first() {
            Some(b'{') => {
                serde_json::from_str::<std::collections::BTreeMap<String, Box<RawValue>>>(text).map(|members| {
                    if members.is_empty() {
                        self.raw("<span class=\"none\">(none)</span>");
                        return;
                    }
                    self.raw("<table class=\"kv\"><tbody>");
                    for (name, value) in &members {
                        self.raw("<tr><th>");
                        self.text(name);
                        self.raw("</th><td>");
                        self.raw_json(value);
                        self.raw("</td></tr>");
                    }
                    self.raw("</tbody></table>");
                })
            }
            Some(b'[') => serde_json::from_str::<Vec<Box<RawValue>>>(text).map(|items| {
                if items.is_empty() {
                    self.raw("<span class=\"none\">(none)</span>");
                    return;
                }
                self.raw("<ol>");
                for item in &items {
                    self.raw("<li>");
                    self.raw_json(item);
                    self.raw("</li>");
                }
                self.raw("</ol>");
            }),
            Some(b'"') => serde_json::from_str::<String>(text).map(|s| self.text(&s)),
            _ if text == "null" => {
                self.raw("<span class=\"none\">null</span>");
                Ok(())
            }
            _ => {
                self.text(text);
                Ok(())
            }
        };
        if parsed.is_err() {
            self.text(text);
        }
    }

    fn members(&mut self, members: &Map<String, Value>) {
        if members.is_empty() {
            self.raw("<span class=\"none\">(none)</span>");
            return;
        }
        self.raw("<table class=\"kv\"><tbody>");
        for (name, value) in members {
            self.raw("<tr><th>");
            self.text(name);
            self.raw("</th><td>");
            self.value(value);
            self.raw("</td></tr>");
        }
        self.raw("</tbody></table>");
    }

    /// A message's MIME source, decoded; `cut` when it is only the start of the message.
    fn source(&mut self, source: &[u8], cut: bool) {
        if cut {
            self.raw("<p class=\"note\">This message is larger than shown: only its first ");
            self.raw(&format!("{} MiB", SHOWN_MIME / (1024 * 1024)));
            self.raw(" is shown here, and a part it cuts short is shown in part. The complete message is in the ");
            self.raw("JSON file of this data request.</p>\n");
        }
        let parser = MessageParser::default();
        if let Some(read) = super::mime::read(&parser, source) {
            self.headers(&read.headers, source);
            let mut html_parts = 0;
            for part in &read.parts {
                match part {
                    Part::Text(text) => self.text_part(text.as_ref()),
                    Part::Html(html) => {
                        html_parts += 1;
                        self.html_part(html.as_ref());
                    }
                }
            }
            self.html_note(html_parts);
            return;
        }
        match parser.parse(source) {
            Some(parsed) => self.mime(&parsed, 0),
            None => {
                self.raw("<h4>Message source</h4><pre>");
                self.text(&String::from_utf8_lossy(whole_characters(source)));
                self.raw("</pre>\n");
            }
        }
    }

    /// A message read by mail_parser's full parse.
    fn mime(&mut self, message: &mail_parser::Message<'_>, depth: usize) {
        if let Some(root) = message.parts.first() {
            self.headers(&root.headers, message.raw_message.as_ref());
        }
        let mut html_parts = 0;
        for part in &message.parts {
            match &part.body {
                PartType::Text(text) => self.text_part(text),
                PartType::Html(html) => {
                    html_parts += 1;
                    self.html_part(html);
                }
                PartType::Binary(bytes) | PartType::InlineBinary(bytes) => {
                    let name = part.attachment_name().unwrap_or("unnamed");
                    let kind = part.content_type().map_or_else(|| "application/octet-stream".to_owned(), content_type);
                    self.raw("<p class=\"note\">Attachment ");
                    self.text(&format!("\"{name}\" ({kind}, {} bytes)", bytes.len()));
                    self.raw(": not shown here; it is in the JSON file's message source.</p>\n");
                }
                PartType::Message(nested) if depth < NESTING => {
                    self.raw("<article><h4>Attached message</h4>\n");
                    self.mime(nested, depth + 1);
                    self.raw("</article>\n");
                }
                PartType::Message(_) => {
                    self.raw("<p class=\"note\">A further attached message: not shown here.</p>\n");
                }
                PartType::Multipart(_) => {}
            }
        }
        self.html_note(html_parts);
    }

    /// A message's (or an attached message's) own headers, decoded; `raw` is the message
    /// their offsets point into.
    fn headers(&mut self, headers: &[Header<'_>], raw: &[u8]) {
        self.raw("<h4>Headers</h4><table class=\"kv\"><tbody>");
        for header in headers {
            let value = header_text(&header.value, raw, header.offset_start, header.offset_end);
            self.row(header.name.as_str(), Some(&value));
        }
        self.raw("</tbody></table>\n");
    }

    fn text_part(&mut self, text: &str) {
        self.raw("<h4>Text</h4><pre>");
        self.text(text);
        self.raw("</pre>\n");
    }

    fn html_part(&mut self, html: &str) {
        self.raw("<details><summary>HTML version, shown as source text (not rendered)</summary><pre>");
        self.text(html);
        self.raw("</pre></details>\n");
    }

    fn html_note(&mut self, html_parts: usize) {
        if html_parts > 0 {
            self.raw("<p class=\"note\">HTML parts are shown as their source text and never rendered.</p>\n");
        }
    }

    /// A sent message's article, with its MIME shown as text from `source`: the whole message,
    /// or (when `cut`) its first bytes.
    fn article<M>(&mut self, m: &Message<M>, source: &[u8], cut: bool) {
        self.raw("<article><h3>");
        if m.subject.is_empty() {
            self.raw("<span class=\"none\">(no subject)</span>");
        } else {
            self.text(&m.subject);
        }
        self.raw("</h3><table class=\"kv\"><tbody>");
        self.row("ID", Some(&m.id));
        self.row("Mailing", Some(&m.mailing));
        self.row("Sent", Some(&m.sent.to_string()));
        self.row("To", Some(&m.email));
        self.row("Profile", m.profile.map(|p| p.to_string()).as_deref());
        self.row("Subprofile", m.subprofile.map(|s| s.to_string()).as_deref());
        self.raw("</tbody></table>\n");
        self.source(source, cut);
        self.raw("</article>\n");
    }
}

/// `bytes` without a character a cut left incomplete at the end.
fn whole_characters(bytes: &[u8]) -> &[u8] {
    match std::str::from_utf8(bytes) {
        Err(error) if error.error_len().is_none() => &bytes[..error.valid_up_to()],
        _ => bytes,
    }
}

/// A header's decoded value: addresses, dates and encoded words as text; what the parser keeps
/// no structure of, as the raw value unfolded.
fn header_text(value: &HeaderValue<'_>, raw: &[u8], start: u32, end: u32) -> String {
    let unfolded = || {
        let bytes = raw.get(start as usize..end as usize).unwrap_or_default();
        String::from_utf8_lossy(bytes).split_whitespace().collect::<Vec<_>>().join(" ")
    };
    match value {
        HeaderValue::Address(address) => addresses(address),
        HeaderValue::Text(text) => text.to_string(),
        HeaderValue::TextList(list) => list.iter().map(Cow::as_ref).collect::<Vec<_>>().join(", "),
        HeaderValue::DateTime(date) => date.to_rfc822(),
        HeaderValue::ContentType(kind) => content_type(kind),
        HeaderValue::Received(_) | HeaderValue::Empty => unfolded(),
    }
}

fn addr(a: &mail_parser::Addr<'_>) -> String {
    match (a.name.as_deref(), a.address.as_deref()) {
        (Some(name), Some(address)) => format!("{name} <{address}>"),
        (Some(name), None) => name.to_owned(),
        (None, Some(address)) => address.to_owned(),
        (None, None) => String::new(),
    }
}

fn addresses(address: &Address<'_>) -> String {
    match address {
        Address::List(list) => list.iter().map(addr).collect::<Vec<_>>().join(", "),
        Address::Group(groups) => groups
            .iter()
            .map(|g| {
                let members = g.addresses.iter().map(addr).collect::<Vec<_>>().join(", ");
                format!("{}: {members};", g.name.as_deref().unwrap_or_default())
            })
            .collect::<Vec<_>>()
            .join(" "),
    }
}

fn content_type(kind: &mail_parser::ContentType<'_>) -> String {
    let mut text = kind.c_type.to_string();
    if let Some(subtype) = &kind.c_subtype {
        text.push('/');
        text.push_str(subtype);
    }
    for attribute in kind.attributes.iter().flatten() {
        text.push_str(&format!("; {}={}", attribute.name, attribute.value));
    }
    text
}

/// Every section an export of this subject holds, in order (e-mail exports have no profile or
/// subprofiles).
#[must_use]
pub fn sections_of(subject: &Subject) -> Vec<&'static str> {
    subject.kind().standard_sections().to_vec()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used, clippy::unwrap_used)]

    use super::*;
    use crate::domain::{AccountId, EmailAddress, EventKind, ProfileId, SubprofileId};

    const SCRIPT: &str = "<script>document.title='pwned'</script>";
    const IMG: &str = "\"><img src=x onerror=alert(1)>";
    const BREAKOUT: &str = "</td></tr></table><h1>x</h1>";

    fn at(text: &str) -> Timestamp {
        Timestamp::parse(text).expect("time")
    }

    fn request() -> RequestId {
        RequestId::parse("1234567890123456").expect("id")
    }

    fn account() -> AccountId {
        AccountId::try_from(1).expect("account")
    }

    fn hostile_message() -> Message {
        let mime = format!(
            "From: {SCRIPT} <news@shop.example>\r\nTo: jane@example.com\r\nSubject: {IMG}\r\n\
             X-Note: {BREAKOUT}\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/alternative; boundary=\"b\"\r\n\r\n\
             --b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello {SCRIPT} {BREAKOUT}\r\n\
             --b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p onclick=\"x\">Hi</p>{IMG}{SCRIPT}\r\n--b--\r\n"
        );
        Message {
            account: account(),
            id: format!("m-{BREAKOUT}"),
            profile: Some(ProfileId::parse("42").expect("id")),
            subprofile: None,
            email: "jane@example.com".into(),
            mailing: IMG.into(),
            subject: SCRIPT.into(),
            sent: at("2025-03-01 10:00:00"),
            mime,
        }
    }

    fn hostile_event(kind: EventKind, time: &str) -> Event {
        let data = serde_json::json!({"ip": IMG, "useragent": SCRIPT, "nested": {BREAKOUT: [SCRIPT, 1, null]}});
        Event {
            account: account(),
            id: None,
            kind,
            message: Some(SCRIPT.into()),
            profile: None,
            subprofile: Some(SubprofileId::parse("4201").expect("id")),
            email: Some(IMG.into()),
            time: at(time),
            data: data.as_object().cloned().expect("object"),
        }
    }

    /// A whole message in the report, rendered apart as a build renders it.
    fn show(report: &mut HtmlReport, m: &Message) {
        let mut articles = RenderedMessages::default();
        articles.render(m, m.mime.as_bytes(), false);
        report.rendered_messages(&[m.sent]);
        report.out.0.extend_from_slice(articles.html());
    }

    fn render(subject: &Subject, fill: impl FnOnce(&mut HtmlReport)) -> String {
        let mut report = HtmlReport::start(request(), subject);
        fill(&mut report);
        let expiry = Expiry { at: at("2025-12-05 08:53:20"), after: Duration::from_secs(7 * 86_400) };
        report.finish(at("2025-11-28 08:53:20"), Some(expiry));
        String::from_utf8(report.pending().to_vec()).expect("UTF-8")
    }

    /// The summary's row of a section: its title, name and count.
    fn summary_row(name: &'static str, count: u64) -> String {
        format!(
            "<tr><td><a href=\"#{name}\">{}</a></td><td>{name}</td><td class=\"count\">{count}</td></tr>",
            title(name).0
        )
    }

    #[test]
    fn the_summary_names_every_category_with_its_count_empty_ones_too() {
        let subject = Subject::Profile(ProfileId::parse("42").expect("id"));
        let page = render(&subject, |r| {
            for name in sections_of(&subject) {
                r.open_section(name);
                match name {
                    "destinations" => show(r, &hostile_message()),
                    "clicks" => {
                        r.event(&hostile_event(EventKind::Click, "2024-01-02 03:04:05"));
                        r.event(&hostile_event(EventKind::Click, "2025-06-07 08:09:10"));
                    }
                    _ => {}
                }
                r.close_section();
            }
        });
        let summary = &page[page.find("class=\"summary\"").expect("a summary")..];
        for (name, count) in [
            ("profile", 0),
            ("subprofiles", 0),
            ("destinations", 1),
            ("impressions", 0),
            ("clicks", 2),
            ("deliveries", 0),
            ("errors", 0),
            ("abuses", 0),
            ("unsubscribes", 0),
            ("surveys", 0),
        ] {
            assert!(summary.contains(&summary_row(name, count)), "{name}: {count} in {summary}");
        }
        for words in ["Opens", "Bounces and errors", "Complaints", "Unsubscribes", "Surveys", "Messages sent"] {
            assert!(summary.contains(words), "{words}");
        }
        assert!(summary.contains("Profile 42"), "the subject");
        assert!(summary.contains("2024-01-02 03:04:05 UTC to 2025-06-07 08:09:10 UTC"), "the date range");
        assert!(summary.contains("2025-12-05 08:53:20 UTC, 7 days after it was built"), "the expiry");
        assert_eq!(page.matches("No records.").count(), 8, "each empty section says so");
    }

    #[test]
    fn an_email_export_has_no_profile_or_subprofiles_and_says_when_nothing_is_dated() {
        let subject = Subject::Email(EmailAddress::parse("jane@example.com").expect("address"));
        let page = render(&subject, |r| {
            for name in sections_of(&subject) {
                r.open_section(name);
                r.close_section();
            }
        });
        assert!(!page.contains("#profile") && !page.contains("#subprofiles"));
        assert!(page.contains(&summary_row("destinations", 0)) && page.contains(&summary_row("surveys", 0)));
        assert!(page.contains("E-mail address jane@example.com"));
        assert!(page.contains("no dated records"));
        let summary = &page[page.find("class=\"summary\"").expect("a summary")..];
        assert!(
            summary.starts_with(
                "class=\"summary\" id=\"summary\"><p class=\"nothing\">We hold no data about this subject.</p><h2>"
            ),
            "the sentence opens the summary, shown first: {summary}"
        );
    }

    #[test]
    fn a_report_with_a_record_does_not_say_that_nothing_is_held() {
        for subject in [
            Subject::Email(EmailAddress::parse("jane@example.com").expect("address")),
            Subject::Profile(ProfileId::parse("42").expect("id")),
        ] {
            let page = render(&subject, |r| {
                for name in sections_of(&subject) {
                    r.open_section(name);
                    if name == "clicks" {
                        r.event(&hostile_event(EventKind::Click, "2024-01-02 03:04:05"));
                    }
                    r.close_section();
                }
            });
            assert!(!page.contains("We hold no data"), "{subject:?}");
        }
        let subject = Subject::Profile(ProfileId::parse("42").expect("id"));
        let page = render(&subject, |r| {
            for name in sections_of(&subject) {
                r.open_section(name);
                r.close_section();
            }
        });
        assert!(page.contains("<p class=\"nothing\">We hold no data about this profile.</p>"));
    }

    #[test]
    fn hostile_content_in_mime_and_event_data_is_shown_as_text() {
        let subject = Subject::Subprofile(SubprofileId::parse("4201").expect("id"));
        let page = render(&subject, |r| {
            r.open_section("destinations");
            show(r, &hostile_message());
            r.close_section();
            r.open_section("impressions");
            r.event(&hostile_event(EventKind::Impression, "2025-03-01 10:05:00"));
            r.close_section();
        });
        for payload in [SCRIPT, IMG, BREAKOUT, "<p onclick", "<img", "<h1>x", "<script"] {
            assert!(!page.contains(payload), "{payload} escaped");
        }
        assert!(page.contains("&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;"));
        assert!(page.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"));
        assert!(page.contains("&lt;/td&gt;&lt;/tr&gt;&lt;/table&gt;&lt;h1&gt;x&lt;/h1&gt;"));
        // The decoded parts are there: headers, the text part and the HTML part as source.
        assert!(page.contains("<th>Subject</th><td>&quot;&gt;&lt;img"), "the Subject header, decoded");
        assert!(page.contains("<th>X-Note</th><td>&lt;/td&gt;"), "another header");
        assert!(page.contains("Hello &lt;script&gt;"), "the text part");
        assert!(page.contains("&lt;p onclick=&quot;x&quot;&gt;Hi&lt;/p&gt;"), "the HTML part as source");
        // Every tag in the page is one of the writer's own.
        let allowed = [
            "html", "head", "meta", "title", "style", "body", "div", "header", "h1", "h2", "h3", "h4", "p", "main",
            "section", "small", "table", "thead", "tbody", "tr", "th", "td", "article", "pre", "details", "summary",
            "span", "ol", "li", "a",
        ];
        for tag in page.split('<').skip(1) {
            let name: String = tag.trim_start_matches('/').chars().take_while(char::is_ascii_alphanumeric).collect();
            assert!(tag.starts_with('!') || allowed.contains(&name.as_str()), "unexpected tag <{tag:.40}");
        }
        assert_eq!(page.matches("<h1>").count(), 1, "only the page's own heading");
    }

    #[test]
    fn encoded_headers_and_bodies_are_decoded() {
        let mut message = hostile_message();
        message.mime =
            "From: =?utf-8?q?J=C3=B6rg_M=C3=BCller?= <j@example.com>\r\nSubject: =?utf-8?b?SGFsbG8gPGI+?=\r\n\
                        Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
                        Gr=C3=BC=C3=9Fe =3Cscript=3E\r\n"
                .into();
        let subject = Subject::Profile(ProfileId::parse("42").expect("id"));
        let page = render(&subject, |r| {
            r.open_section("destinations");
            show(r, &message);
            r.close_section();
        });
        assert!(page.contains("Jörg Müller &lt;j@example.com&gt;"), "an encoded word in an address");
        assert!(page.contains("<th>Subject</th><td>Hallo &lt;b&gt;</td>"), "a base64 encoded word");
        assert!(page.contains("Grüße &lt;script&gt;"), "a quoted-printable body");
    }

    #[test]
    fn the_page_holds_its_own_policy_and_loads_nothing() {
        let subject = Subject::Profile(ProfileId::parse("42").expect("id"));
        let page = render(&subject, |_| {});
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains("http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'"));
        for outside in ["<script", "<link", "<img", "src=", "url(", "@import", "http://", "https://"] {
            assert!(!page.contains(outside), "{outside}");
        }
        assert!(page.trim_end().ends_with("</html>"));
    }

    #[test]
    fn spans_are_told_in_words() {
        assert_eq!(in_words(Duration::from_secs(7 * 86_400)), "7 days");
        assert_eq!(in_words(Duration::from_secs(86_400)), "1 day");
        assert_eq!(in_words(Duration::from_secs(12 * 3_600)), "12 hours");
        assert_eq!(in_words(Duration::from_secs(90)), "2 minutes");
    }
}
