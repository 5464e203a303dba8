//! The delivery e-mail: a real MIME message built by a mail library (headers are never
//! concatenated by hand), with the export and its HTML report attached or linked.

use anyhow::Context;
use lettre::Message;
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Attachment, Body, Mailbox, MultiPart, SinglePart};

use crate::config::Settings;
use crate::domain::{DataRequest, EmailAddress, Subject};

/// What the mail carries.
pub enum Content {
    /// The export itself.
    Attachment {
        /// The JSON export.
        json: Vec<u8>,
        /// Its HTML report.
        html: Html,
        /// When links stop working: `YYYY-MM-DD hh:mm:ss` UTC.
        expires: String,
    },
    /// A download link and when it stops working.
    Link {
        /// The URL.
        url: String,
        /// The HTML report (never attached here).
        html: Html,
        /// `YYYY-MM-DD hh:mm:ss` UTC.
        expires: String,
        /// Size of the export in bytes.
        size: u64,
    },
}

/// How the mail carries the HTML report.
pub enum Html {
    /// Attached beside the JSON.
    Attached(Vec<u8>),
    /// As a download link (`…&format=html`).
    Link(String),
    /// Not at all: the export has no report (it was built before reports existed), or no link
    /// to it can be made (no public URL).
    Missing,
}

/// The mail's paragraph about a linked report.
fn report_link(html: &Html, expires: &str) -> String {
    match html {
        Html::Link(url) => format!(
            "\r\nA readable report of the same data, to open in a web browser, is here until {expires} UTC:\r\n\r\n{url}\r\n"
        ),
        Html::Attached(_) | Html::Missing => String::new(),
    }
}

fn describe(subject: &Subject) -> String {
    match subject {
        Subject::Profile(id) => format!("profile {id}"),
        Subject::Subprofile(id) => format!("subprofile {id}"),
        Subject::Email(_) => "the e-mail address you asked about".to_owned(),
    }
}

/// Builds the delivery mail of a request.
///
/// # Errors
/// When the message cannot be built (an address the mail library refuses).
pub fn compose(
    settings: &Settings,
    request: &DataRequest,
    to: &EmailAddress,
    content: Content,
) -> anyhow::Result<Vec<u8>> {
    let recipient = Mailbox::new(None, to.as_str().parse().context("recipient address")?);
    // The same for every attempt of a request, so a mail sent twice (a worker that died between
    // the send and recording it) shows as the same message.
    let message_id = format!("<datarequest-{}@{}>", request.id, settings.sender.email.domain());
    let builder = Message::builder()
        .from(settings.sender.clone())
        .to(recipient)
        .message_id(Some(message_id))
        .subject(format!("Your data request {}", request.id));
    let about = describe(&request.subject);
    // An export whose every section is empty says so first, in one plain sentence.
    let opening = if request.holds_nothing() {
        format!("{}\r\n\r\n", crate::export::html::nothing_held(request.subject.kind()))
    } else {
        String::new()
    };
    let message = match content {
        Content::Attachment { json, html, expires } => {
            let mut text = format!(
                "{opening}The data you requested about {about} (data request {id}) is attached as datarequest-{id}.json.\r\n",
                id = request.id
            );
            if matches!(html, Html::Attached(_)) {
                text.push_str(&format!(
                    "\r\nA readable report of the same data is attached as datarequest-{}.html: open it in a web browser.\r\n",
                    request.id
                ));
            }
            text.push_str(&report_link(&html, &expires));
            let mut parts = MultiPart::mixed()
                .singlepart(SinglePart::plain(text))
                .singlepart(attachment(json, format!("datarequest-{}.json", request.id), "application/json")?);
            if let Html::Attached(page) = html {
                let name = format!("datarequest-{}.html", request.id);
                parts = parts.singlepart(attachment(page, name, "text/html; charset=utf-8")?);
            }
            builder.multipart(parts)
        }
        Content::Link { url, html, expires, size } => {
            let mut text = format!(
                "{opening}The data you requested about {about} (data request {id}) is {size} bytes, too large to attach.\r\n\r\n\
                 Download it here until {expires} UTC:\r\n\r\n{url}\r\n",
                id = request.id
            );
            text.push_str(&report_link(&html, &expires));
            builder.singlepart(SinglePart::plain(text))
        }
    }
    .context("building the delivery mail")?;
    Ok(message.formatted())
}

fn attachment(bytes: Vec<u8>, name: String, content_type: &str) -> anyhow::Result<SinglePart> {
    let body = Body::new_with_encoding(bytes, ContentTransferEncoding::Base64)
        .map_err(|_| anyhow::anyhow!("an attachment cannot be base64 encoded"))?;
    Ok(Attachment::new(name).body(body, ContentType::parse(content_type).context("content type")?))
}
