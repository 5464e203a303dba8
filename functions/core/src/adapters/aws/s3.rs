//! Exports in S3 under `exports/<id>.json` and their HTML reports under `exports/<id>.html`,
//! each written as a streamed multipart upload (never the whole file in memory). Small files
//! are answered in the response body; larger ones by a `303` to a presigned GET minted per
//! call (a Lambda response is capped at 6 MB), which always downloads as an attachment: S3
//! cannot send the report's Content-Security-Policy, so it is never rendered on S3's origin.
//!
//! A checkpoint keeps the upload open: the bytes not yet in a part go up as a part when they
//! are enough for one (5 MiB), and otherwise into a small object of their own (the tail, named
//! by the offset where it ends, so an older checkpoint's tail is never overwritten). A resume lists the parts
//! from the checkpoint, reads the tail back and goes on; the tails go when the file completes,
//! and the bucket's lifecycle rules catch what a build that never completes leaves.

use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use crate::domain::RequestId;
use crate::ports::{ExportFile, ExportFormat, ExportStore, ExportWriter, Served, WriteError};

/// Bytes per uploaded part (S3's minimum is 5 MiB for all parts but the last).
const PART: usize = 8 * 1024 * 1024;

/// S3's smallest part but the last.
const MIN_PART: usize = 5 * 1024 * 1024;
/// What uploading or completing one part is taken to cost until a writer has measured it.
const PART_COST: Duration = Duration::from_millis(100);

/// The exports bucket.
pub struct S3Exports {
    client: Client,
    bucket: String,
}

impl S3Exports {
    /// Uses this bucket.
    #[must_use]
    pub fn new(client: Client, bucket: String) -> Self {
        Self { client, bucket }
    }

    /// The text of an object of the bucket that is not an export (the sources' mapping).
    ///
    /// # Errors
    /// When the object cannot be read or is not UTF-8.
    pub async fn read_text(&self, key: &str) -> anyhow::Result<String> {
        let object = self.client.get_object().bucket(&self.bucket).key(key).send().await?;
        let bytes = object.body.collect().await?.into_bytes();
        String::from_utf8(bytes.to_vec()).context("the object is not UTF-8 text")
    }
}

fn key(id: RequestId, format: ExportFormat) -> String {
    format!("exports/{id}.{}", format.as_str())
}

/// An unfinished upload, as a checkpoint records it.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Unfinished {
    /// The multipart upload, once one was started.
    upload: Option<String>,
    /// The entity tags of its parts, numbered from 1.
    parts: Vec<String>,
    /// Bytes of the file so far (the parts and the tail).
    written: u64,
    /// Where the tails stored so far end.
    tails: Vec<u64>,
    /// The bytes after the parts, kept in the tail that ends at `written`.
    tail: u64,
}

fn tail_key(key: &str, end: u64) -> String {
    format!("{key}.tail-{end}")
}

struct MultipartWriter {
    client: Client,
    bucket: String,
    key: String,
    content_type: &'static str,
    buffer: Vec<u8>,
    upload: Option<String>,
    parts: Vec<CompletedPart>,
    written: u64,
    /// Where the tails stored by checkpoints end; they are removed once the file is complete.
    tails: Vec<u64>,
    /// Whether a checkpoint keeps the upload for a resume.
    kept: bool,
    /// The time the parts this writer uploaded took, and how many they were.
    uploading: (Duration, u32),
}

impl MultipartWriter {
    async fn upload_part(&mut self) -> Result<(), WriteError> {
        let upload = match &self.upload {
            Some(upload) => upload.clone(),
            None => {
                let created = self
                    .client
                    .create_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&self.key)
                    .content_type(self.content_type)
                    .send()
                    .await
                    .context("starting an export upload")?;
                let upload = created.upload_id.context("S3 gave no upload id")?;
                self.upload = Some(upload.clone());
                upload
            }
        };
        let number = i32::try_from(self.parts.len() + 1).context("too many parts")?;
        let body = std::mem::replace(&mut self.buffer, Vec::with_capacity(PART));
        let started = Instant::now();
        let part = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(upload)
            .part_number(number)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| gone_or(e, "uploading an export part"))?;
        self.parts.push(CompletedPart::builder().part_number(number).set_e_tag(part.e_tag).build());
        self.uploading.0 += started.elapsed();
        self.uploading.1 += 1;
        Ok(())
    }
}

#[async_trait]
impl ExportWriter for MultipartWriter {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), WriteError> {
        self.buffer.extend_from_slice(bytes);
        self.written += bytes.len() as u64;
        if self.buffer.len() >= PART {
            self.upload_part().await?;
        }
        Ok(())
    }

    async fn checkpoint(&mut self) -> Result<String, WriteError> {
        if self.buffer.len() >= MIN_PART {
            self.upload_part().await?;
        }
        let tail = self.buffer.len() as u64;
        if tail > 0 {
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(tail_key(&self.key, self.written))
                .body(ByteStream::from(self.buffer.clone()))
                .send()
                .await
                .context("storing the tail of an unfinished export")?;
            if self.tails.last() != Some(&self.written) {
                self.tails.push(self.written);
            }
        }
        self.kept = true;
        let parts = self.parts.iter().map(|p| p.e_tag.clone().unwrap_or_default()).collect();
        let state =
            Unfinished { upload: self.upload.clone(), parts, written: self.written, tails: self.tails.clone(), tail };
        Ok(serde_json::to_string(&state).map_err(anyhow::Error::from)?)
    }

    /// Completing an upload assembles its parts: it is taken to cost, per part, what uploading
    /// one cost this writer (on the emulator, completing 64 parts of 8 MiB took 36 ms a part
    /// against 43 ms to upload one), [`PART_COST`] before it has uploaded any; the last part
    /// is uploaded first.
    fn finish_cost(&self) -> Duration {
        if self.upload.is_none() {
            return if self.buffer.is_empty() { Duration::ZERO } else { PART_COST };
        }
        let per_part = match self.uploading {
            (_, 0) => PART_COST,
            (took, parts) => took / parts,
        };
        let parts = u32::try_from(self.parts.len()).unwrap_or(u32::MAX).saturating_add(1);
        per_part.saturating_mul(parts).saturating_add(per_part)
    }

    async fn finish(mut self: Box<Self>) -> Result<u64, WriteError> {
        let tails = std::mem::take(&mut self.tails);
        let written = self.complete().await?;
        for end in tails {
            // Best effort: the lifecycle rule removes what is left.
            let key = tail_key(&self.key, end);
            if let Err(error) = self.client.delete_object().bucket(&self.bucket).key(key).send().await {
                tracing::warn!(error = %aws_sdk_s3::error::DisplayErrorContext(&error), "removing a checkpoint's tail failed");
            }
        }
        Ok(written)
    }

    async fn discard(mut self: Box<Self>) -> Result<(), WriteError> {
        let (upload, tails) = (self.upload.take(), std::mem::take(&mut self.tails));
        abandon(&self.client, &self.bucket, &self.key, upload, &tails).await?;
        Ok(())
    }
}

/// Aborts an unfinished upload (one S3 no longer knows is fine) and removes the tails its
/// checkpoints stored.
async fn abandon(
    client: &Client,
    bucket: &str,
    key: &str,
    upload: Option<String>,
    tails: &[u64],
) -> anyhow::Result<()> {
    if let Some(upload) = upload {
        let aborted = client.abort_multipart_upload().bucket(bucket).key(key).upload_id(upload).send().await;
        if let Err(error) = aborted
            && let WriteError::Failed(error) = gone_or(error, "aborting an export upload")
        {
            return Err(error);
        }
    }
    for end in tails {
        client.delete_object().bucket(bucket).key(tail_key(key, *end)).send().await.context("removing a tail")?;
    }
    Ok(())
}

impl MultipartWriter {
    async fn complete(&mut self) -> Result<u64, WriteError> {
        if self.upload.is_none() {
            let body = std::mem::take(&mut self.buffer);
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&self.key)
                .content_type(self.content_type)
                .body(ByteStream::from(body))
                .send()
                .await
                .context("storing an export")?;
            return Ok(self.written);
        }
        if !self.buffer.is_empty() {
            self.upload_part().await?;
        }
        let parts = CompletedMultipartUpload::builder().set_parts(Some(std::mem::take(&mut self.parts))).build();
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .set_upload_id(self.upload.take())
            .multipart_upload(parts)
            .send()
            .await
            .map_err(|e| gone_or(e, "completing an export upload"))?;
        Ok(self.written)
    }
}

impl Drop for MultipartWriter {
    fn drop(&mut self) {
        // An unfinished upload is aborted by the bucket's lifecycle rule; try now as well,
        // unless a checkpoint keeps it for a resume.
        if let Some(upload) = self.upload.take().filter(|_| !self.kept) {
            let request = self.client.abort_multipart_upload().bucket(&self.bucket).key(&self.key).upload_id(upload);
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    let _ = request.send().await;
                });
            }
        }
    }
}

/// An upload's error: [`WriteError::UnfinishedGone`] when S3 no longer knows the upload (a
/// checkpoint's upload that was completed by a run killed before it could record so, or
/// aborted).
fn gone_or<E>(error: aws_sdk_s3::error::SdkError<E>, doing: &'static str) -> WriteError
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    use aws_sdk_s3::error::ProvideErrorMetadata;
    let gone = error.code() == Some("NoSuchUpload") || error.raw_response().is_some_and(|r| r.status().as_u16() == 404);
    if gone { WriteError::UnfinishedGone } else { WriteError::Failed(anyhow::Error::new(error).context(doing)) }
}

fn is_missing<E: aws_sdk_s3::error::ProvideErrorMetadata>(error: &aws_sdk_s3::error::SdkError<E>) -> bool {
    use aws_sdk_s3::error::ProvideErrorMetadata;
    matches!(error.code(), Some("NoSuchKey" | "NotFound"))
        || error.raw_response().is_some_and(|r| r.status().as_u16() == 404)
}

/// Exports up to this size are served in the response body; larger ones by a signed URL.
pub const INLINE_EXPORT: u64 = 5 * 1024 * 1024;

#[async_trait]
impl ExportStore for S3Exports {
    async fn create(&self, id: RequestId, format: ExportFormat) -> anyhow::Result<Box<dyn ExportWriter>> {
        Ok(Box::new(MultipartWriter {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: key(id, format),
            content_type: format.content_type(),
            buffer: Vec::with_capacity(PART),
            upload: None,
            parts: Vec::new(),
            written: 0,
            tails: Vec::new(),
            kept: false,
            uploading: (Duration::ZERO, 0),
        }))
    }

    async fn resume(
        &self,
        id: RequestId,
        format: ExportFormat,
        checkpoint: &str,
    ) -> Result<Box<dyn ExportWriter>, WriteError> {
        let at: Unfinished = serde_json::from_str(checkpoint).context("not an export checkpoint")?;
        let key = key(id, format);
        // A run killed between completing the file and recording so leaves the upload closed:
        // then the build starts again (and writes the same file).
        match self.client.head_object().bucket(&self.bucket).key(&key).send().await {
            Ok(_) => return Err(WriteError::UnfinishedGone),
            Err(e) if is_missing(&e) => {}
            Err(e) => return Err(anyhow::Error::new(e).context("looking for an unfinished export").into()),
        }
        let mut buffer = Vec::with_capacity(PART);
        if at.tail > 0 {
            let object = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(tail_key(&key, at.written))
                .send()
                .await
                .context("reading the tail of an unfinished export")?;
            let bytes = object.body.collect().await.context("reading the tail of an unfinished export")?;
            buffer.extend_from_slice(&bytes.into_bytes());
            if buffer.len() as u64 != at.tail {
                return Err(anyhow::anyhow!("the tail is not the checkpoint's").into());
            }
        }
        let parts = (1..)
            .zip(at.parts)
            .map(|(number, e_tag)| CompletedPart::builder().part_number(number).e_tag(e_tag).build())
            .collect();
        Ok(Box::new(MultipartWriter {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key,
            content_type: format.content_type(),
            buffer,
            upload: at.upload,
            parts,
            written: at.written,
            tails: at.tails,
            kept: true,
            uploading: (Duration::ZERO, 0),
        }))
    }

    async fn open(&self, id: RequestId, format: ExportFormat) -> anyhow::Result<Option<ExportFile>> {
        match self.client.get_object().bucket(&self.bucket).key(key(id, format)).send().await {
            Ok(object) => {
                let len = u64::try_from(object.content_length.unwrap_or(0)).unwrap_or(0);
                Ok(Some(ExportFile { len, reader: Box::pin(object.body.into_async_read()) }))
            }
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(anyhow::Error::new(e).context("reading an export")),
        }
    }

    async fn serve(&self, id: RequestId, format: ExportFormat, ttl: Duration) -> anyhow::Result<Option<Served>> {
        let len = match self.client.head_object().bucket(&self.bucket).key(key(id, format)).send().await {
            Ok(head) => u64::try_from(head.content_length.unwrap_or(0)).unwrap_or(u64::MAX),
            Err(e) if is_missing(&e) => return Ok(None),
            Err(e) => return Err(anyhow::Error::new(e).context("looking up an export")),
        };
        // Small exports are answered in the body, within Lambda's 6 MB response limit: clients
        // that do not follow redirects (Copernica's PHP class) get the data.
        if len <= INLINE_EXPORT {
            return Ok(self.open(id, format).await?.map(Served::Stream));
        }
        let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(ttl).context("presigning")?;
        let presigned = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key(id, format))
            .response_content_type(format.content_type())
            .response_content_disposition(format!("attachment; filename=\"datarequest-{id}.{}\"", format.as_str()))
            .presigned(config)
            .await
            .context("presigning an export")?;
        Ok(Some(Served::Redirect(presigned.uri().to_owned())))
    }

    async fn delete(&self, id: RequestId) -> anyhow::Result<()> {
        for format in ExportFormat::ALL {
            let key = key(id, format);
            self.client.delete_object().bucket(&self.bucket).key(key).send().await.context("deleting an export")?;
        }
        Ok(())
    }

    async fn discard(&self, id: RequestId, format: ExportFormat, checkpoint: &str) -> anyhow::Result<()> {
        let at: Unfinished = serde_json::from_str(checkpoint).context("not an export checkpoint")?;
        abandon(&self.client, &self.bucket, &key(id, format), at.upload, &at.tails).await
    }
}
