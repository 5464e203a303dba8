//! The delivery e-mail: a real MIME message built by a mail library (headers are never
//! concatenated by hand), with the export attached or linked.

use anyhow::Context;
use lettre::Message;
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Attachment, Body, Mailbox, MultiPart, SinglePart};

use crate::config::Settings;
use crate::domain::{DataRequest, EmailAddress, Subject};

/// What the mail carries.
pub enum Content {
    /// The export itself.
    Attachment(Vec<u8>),
    /// A download link and when it stops working.
    Link {
        /// The URL.
        url: String,
        /// `YYYY-MM-DD hh:mm:ss` UTC.
        expires: String,
        /// Size of the export in bytes.
        size: u64,
    },
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
    let builder = Message::builder()
        .from(settings.sender.clone())
        .to(recipient)
        .subject(format!("Your data request {}", request.id));
    let about = describe(&request.subject);
    let message = match content {
        Content::Attachment(json) => {
            let text = format!(
                "The data you requested about {about} (data request {id}) is attached as datarequest-{id}.json.\r\n",
                id = request.id
            );
            let body = Body::new_with_encoding(json, ContentTransferEncoding::Base64)
                .map_err(|_| anyhow::anyhow!("the export cannot be base64 encoded"))?;
            let attachment = Attachment::new(format!("datarequest-{}.json", request.id))
                .body(body, ContentType::parse("application/json").context("content type")?);
            builder.multipart(MultiPart::mixed().singlepart(SinglePart::plain(text)).singlepart(attachment))
        }
        Content::Link { url, expires, size } => {
            let text = format!(
                "The data you requested about {about} (data request {id}) is {size} bytes, too large to attach.\r\n\r\n\
                 Download it here until {expires} UTC:\r\n\r\n{url}\r\n",
                id = request.id
            );
            builder.singlepart(SinglePart::plain(text))
        }
    }
    .context("building the delivery mail")?;
    Ok(message.formatted())
}
