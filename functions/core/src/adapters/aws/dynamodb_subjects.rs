//! Subject data in one DynamoDB table. No record's owner is decided once and for all when it is
//! loaded: a message or event lives in the partition of the subject it *names* (its subprofile,
//! else its profile, else its address), and a profile's export resolves the profile's
//! subprofiles as they are now and merges their partitions with its own. A subprofile that moves
//! to another profile thus takes its records along by changing one item.
//!
//! | item | `PK` | `SK` | `GSI1PK`/`GSI1SK` (`by_parent`) | `GSI2PK`/`GSI2SK` (`by_email`) |
//! |---|---|---|---|---|
//! | profile | `A#<a>#P#<p>` | `PROFILE` | | `A#<a>#E#<address>` / `PROFILE#<p>` |
//! | subprofile | `A#<a>#S#<s>` | `SUBPROFILE` | `A#<a>#P#<parent>` / `SUB#<s, 20 digits>` | `A#<a>#E#<address>` / `SUB#<s>` |
//! | message | named subject | `M#<sent>#<id>` | | `A#<a>#E#<address>` / `SK` |
//! | event | named subject | `E#<type>#<time>#<key>` | | `A#<a>#E#<address>` / `SK` |
//! | id pointer | `A#<a>#ID#<M or E>#<id>` | `ID` | | |
//!
//! The named subject's partition is `A#<a>#S#<s>` for a record that names a subprofile,
//! `A#<a>#P#<p>` for one that names only a profile, and `A#<a>#E#<address>` otherwise. Times
//! are 12 digits, offset so that they sort. Pointers let a message, or an event with an id,
//! that is loaded again with another time or subject replace the old item instead of leaving a
//! copy; events without an id are keyed by their content ([`Event::key`]), so a replay lands on
//! the same item. MIME bodies are stored gzip-compressed: in the item when tiny, otherwise in
//! the bucket under `subjects/`, where a DynamoDB write of every kilobyte would cost far more
//! (see the cost table in docs/aws.md). With a retention, items carry a `ttl` of their own send or
//! event time plus the retention.
//!
//! A page of messages reads the first [`PREFETCH`] bytes of each body in the bucket, a few at a
//! time: a body that fits, and that inflates to at most [`INLINE_TEXT`], comes with the page. A
//! larger one stays in the bucket until the export streams it ([`SubjectData::mime`]) through a
//! streaming gunzip, so no body is ever held whole.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, PutRequest, WriteRequest};
use futures_util::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};

use super::attributes::{Item, cursor_of, get_s, n, opt_s, s, scan_prefixed, start_key};
use crate::domain::{
    AccountId, Erasure, Event, EventKind, Message, Mime, MimeRef, Profile, ProfileId, Record, Subject, Subprofile,
    SubprofileId,
};
use crate::ports::{MimeChunks, Page, SubjectData};

/// Compressed MIME bodies up to this size stay in the item; larger ones go to the bucket.
const INLINE_MIME: usize = 1024;
const MESSAGE_PAGE: i32 = 32;
const RECORD_PAGE: i32 = 500;
/// MIME bodies read from the bucket at once while a page of messages is read.
const MIME_READS: usize = 8;
/// The compressed bytes of a body read with its page: the whole of a common mail.
const PREFETCH: u64 = 32 * 1024;
/// The most text a body read with its page may inflate to; a larger one is streamed.
const INLINE_TEXT: usize = 128 * 1024;
/// Compressed bytes fed to the decoder at a time while streaming, so that even a chunk that
/// inflates a thousandfold comes out in pieces of the decoder's buffer (32 KiB).
const GUNZIP_STEP: usize = 8 * 1024;
/// Added to a Unix time so that every time from year 0 on sorts as 12 digits.
const TIME_OFFSET: i64 = 100_000_000_000;

/// The subject data table, and the bucket for MIME bodies.
pub struct DynamoDbSubjects {
    client: Client,
    table: String,
    s3: aws_sdk_s3::Client,
    bucket: String,
    retention: Option<Duration>,
}

fn profile_key(account: AccountId, profile: ProfileId) -> String {
    format!("A#{account}#P#{profile}")
}

fn subprofile_key(account: AccountId, subprofile: SubprofileId) -> String {
    format!("A#{account}#S#{subprofile}")
}

fn email_key(account: AccountId, address: &str) -> String {
    format!("A#{account}#E#{}", address.to_ascii_lowercase())
}

fn time_key(unix: i64) -> String {
    format!("{:012}", unix.saturating_add(TIME_OFFSET).max(0))
}

/// The partition of the subject a message or event names.
fn named_partition(account: AccountId, record: &Record) -> String {
    let owner = record.owner().unwrap_or(crate::domain::Owner { profile: None, subprofile: None, email: None });
    match (owner.subprofile, owner.profile) {
        (Some(subprofile), _) => subprofile_key(account, subprofile),
        (None, Some(profile)) => profile_key(account, profile),
        (None, None) => email_key(account, owner.email.unwrap_or_default()),
    }
}

/// The record kept as JSON in an item's `body`.
fn body<T: serde::de::DeserializeOwned>(item: &Item) -> anyhow::Result<T> {
    serde_json::from_str(get_s(item, "body")?).context("a stored record")
}

/// The smallest string above every string that starts with `prefix` (which ends in `#`).
fn prefix_end(prefix: &str) -> String {
    let mut end = prefix.trim_end_matches('#').to_owned();
    end.push('$');
    end
}

fn gzip(text: &str) -> anyhow::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(text.as_bytes())?;
    Ok(encoder.finish()?)
}

/// The text of a gzip body when it inflates to at most `limit` bytes.
fn gunzip_at_most(bytes: &[u8], limit: usize) -> anyhow::Result<Option<String>> {
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .take(u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1))
        .read_to_end(&mut text)
        .context("a stored MIME body")?;
    if text.len() > limit {
        return Ok(None);
    }
    Ok(Some(String::from_utf8(text).context("a stored MIME body is not UTF-8 text")?))
}

/// Inflates a gzip stream as it comes, in pieces of at most the decoder's buffer; checks the
/// stream's end (length and CRC) after the last piece.
fn gunzip_stream(
    input: impl futures_util::Stream<Item = anyhow::Result<bytes::Bytes>> + Send + Unpin + 'static,
) -> MimeChunks {
    struct Inflating<S> {
        input: S,
        pending: bytes::Bytes,
        decoder: Option<flate2::write::GzDecoder<Vec<u8>>>,
    }
    let start =
        Inflating { input, pending: bytes::Bytes::new(), decoder: Some(flate2::write::GzDecoder::new(Vec::new())) };
    Box::pin(futures_util::stream::try_unfold(start, |mut state| async move {
        loop {
            let Some(decoder) = state.decoder.as_mut() else { return Ok(None) };
            if !decoder.get_ref().is_empty() {
                let piece = std::mem::take(decoder.get_mut());
                return Ok(Some((bytes::Bytes::from(piece), state)));
            }
            if state.pending.is_empty() {
                match state.input.try_next().await? {
                    Some(bytes) => state.pending = bytes,
                    None => {
                        decoder.try_finish().context("a stored MIME body ends early or is damaged")?;
                        let last = std::mem::take(decoder.get_mut());
                        state.decoder = None;
                        return Ok((!last.is_empty()).then(|| (bytes::Bytes::from(last), state)));
                    }
                }
                continue;
            }
            let step = state.pending.len().min(GUNZIP_STEP);
            let taken = decoder.write(&state.pending[..step]).context("a stored MIME body is damaged")?;
            anyhow::ensure!(taken > 0, "a stored MIME body has bytes after its end");
            bytes::Buf::advance(&mut state.pending, taken);
        }
    }))
}

/// The size of a whole object from a ranged GET's `Content-Range` (`bytes 0-32767/123456`).
fn object_size(content_range: Option<&str>, content_length: Option<i64>) -> Option<u64> {
    match content_range {
        Some(range) => range.rsplit_once('/').and_then(|(_, total)| total.parse().ok()),
        None => content_length.and_then(|n| u64::try_from(n).ok()),
    }
}

/// Where a query reads: the table by `PK`, or an index by its keys.
struct Partition {
    index: Option<&'static str>,
    key_name: &'static str,
    sort_name: &'static str,
    key: String,
}

impl Partition {
    fn table(key: String) -> Self {
        Self { index: None, key_name: "PK", sort_name: "SK", key }
    }

    fn by_email(account: AccountId, address: &str) -> Self {
        Self { index: Some("by_email"), key_name: "GSI2PK", sort_name: "GSI2SK", key: email_key(account, address) }
    }

    fn by_parent(account: AccountId, profile: ProfileId) -> Self {
        Self { index: Some("by_parent"), key_name: "GSI1PK", sort_name: "GSI1SK", key: profile_key(account, profile) }
    }
}

impl DynamoDbSubjects {
    /// Uses this table (keys `PK`/`SK`, indexes `by_parent` and `by_email`) and this bucket.
    #[must_use]
    pub fn new(client: Client, table: String, s3: aws_sdk_s3::Client, bucket: String) -> Self {
        Self { client, table, s3, bucket, retention: None }
    }

    /// Gives messages and events a `ttl` of their own time plus `retention`, so that DynamoDB
    /// deletes them after it.
    #[must_use]
    pub fn with_retention(mut self, retention: Option<Duration>) -> Self {
        self.retention = retention;
        self
    }

    fn ttl(&self, item: &mut Item, unix: i64) {
        if let Some(keep) = self.retention {
            item.insert("ttl".into(), n(unix.saturating_add(i64::try_from(keep.as_secs()).unwrap_or(i64::MAX))));
        }
    }

    /// One page of a partition: all of it, or the sort keys from `start` (inclusive) to the
    /// end of `prefix`.
    async fn query(
        &self,
        partition: &Partition,
        range: Option<(&str, &str)>,
        limit: i32,
        exclusive_start: Option<Item>,
    ) -> anyhow::Result<(Vec<Item>, Option<Item>)> {
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .set_index_name(partition.index.map(str::to_owned))
            // The table can be read consistently (an erasure then sees the lines just before
            // it); the indexes only eventually.
            .consistent_read(partition.index.is_none())
            .expression_attribute_names("#k", partition.key_name)
            .expression_attribute_values(":k", s(&partition.key))
            .limit(limit)
            .set_exclusive_start_key(exclusive_start);
        query = match range {
            None => query.key_condition_expression("#k = :k"),
            Some((start, prefix)) => query
                .key_condition_expression("#k = :k AND #s BETWEEN :from AND :to")
                .expression_attribute_names("#s", partition.sort_name)
                .expression_attribute_values(":from", s(start))
                .expression_attribute_values(":to", s(prefix_end(prefix))),
        };
        let output = query.send().await.context("querying subject data")?;
        Ok((output.items.unwrap_or_default(), output.last_evaluated_key))
    }

    /// Every item of a partition, or of its items under `prefix`.
    async fn query_all(&self, partition: &Partition, prefix: Option<&str>) -> anyhow::Result<Vec<Item>> {
        let (mut all, mut next) = (Vec::new(), None);
        loop {
            let (items, last) = self.query(partition, prefix.map(|p| (p, p)), 1000, next).await?;
            all.extend(items);
            match last {
                Some(key) => next = Some(key),
                None => return Ok(all),
            }
        }
    }

    /// The next page of the items under `prefix` of several partitions, merged in sort-key
    /// order. The cursor is the sort key of the last item returned; sort keys are unique
    /// within an account, so every partition resumes just after it. A partition whose query
    /// was cut short bounds the page, so nothing it did not return can be skipped.
    async fn merged(
        &self,
        partitions: &[Partition],
        prefix: &str,
        limit: i32,
        cursor: Option<&str>,
    ) -> anyhow::Result<(Vec<Item>, Option<String>)> {
        let start = cursor.unwrap_or(prefix);
        let sort_name = partitions.first().map_or("SK", |p| p.sort_name);
        let mut candidates: BTreeMap<String, Item> = BTreeMap::new();
        let mut bound: Option<String> = None;
        for partition in partitions {
            // One more than a page: the first item may be the cursor itself.
            let (items, last) = self.query(partition, Some((start, prefix)), limit + 1, None).await?;
            let mut last_key = None;
            for item in items {
                let key = get_s(&item, sort_name)?.to_owned();
                last_key = Some(key.clone());
                if cursor != Some(key.as_str()) {
                    candidates.insert(key, item);
                }
            }
            if last.is_some()
                && let Some(key) = last_key
            {
                bound = Some(bound.map_or(key.clone(), |b: String| b.min(key)));
            }
        }
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let more = bound.is_some() || candidates.len() > limit;
        let page: Vec<(String, Item)> =
            candidates.into_iter().filter(|(key, _)| bound.as_ref().is_none_or(|b| key <= b)).take(limit).collect();
        let next = if more { page.last().map(|(key, _)| key.clone()) } else { None };
        Ok((page.into_iter().map(|(_, item)| item).collect(), next))
    }

    /// The partitions holding a subject's messages and events.
    async fn partitions(&self, account: AccountId, subject: &Subject) -> anyhow::Result<Vec<Partition>> {
        Ok(match subject {
            Subject::Profile(id) => {
                let mut partitions = vec![Partition::table(profile_key(account, *id))];
                for item in self.query_all(&Partition::by_parent(account, *id), Some("SUB#")).await? {
                    partitions.push(Partition::table(get_s(&item, "PK")?.to_owned()));
                }
                partitions
            }
            Subject::Subprofile(id) => vec![Partition::table(subprofile_key(account, *id))],
            Subject::Email(address) => vec![Partition::by_email(account, address.as_str())],
        })
    }

    async fn get(&self, pk: String, sk: &str) -> anyhow::Result<Option<Item>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("PK", s(pk))
            .key("SK", s(sk))
            .consistent_read(true)
            .send()
            .await
            .context("reading subject data")?;
        Ok(output.item)
    }

    /// A message of a page: its body read along when small, else left where it is.
    async fn message_from_item(&self, item: Item) -> anyhow::Result<Message<Mime>> {
        let message: Message = body(&item)?;
        let mime = if let Some(key) = opt_s(&item, "mime_ref") {
            let object = self
                .s3
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .range(format!("bytes=0-{}", PREFETCH - 1))
                .send()
                .await
                .context("reading a MIME body")?;
            let stored = || Mime::Stored(MimeRef::new(format!("s3:{key}")));
            // A server that ignored the range sends the whole object: left unread if large.
            match object_size(object.content_range(), object.content_length()) {
                Some(size) if size <= PREFETCH => {
                    let bytes = object.body.collect().await.context("reading a MIME body")?.into_bytes();
                    gunzip_at_most(&bytes, INLINE_TEXT)?.map_or_else(stored, Mime::Text)
                }
                _ => stored(),
            }
        } else if let Some(AttributeValue::B(blob)) = item.get("mime_gz") {
            // A tiny compressed body may still inflate to a large one (a mail of one repeated
            // line): then it is streamed from its item like a body in the bucket.
            match gunzip_at_most(blob.as_ref(), INLINE_TEXT)? {
                Some(text) => Mime::Text(text),
                None => Mime::Stored(MimeRef::new(format!("item:{}\n{}", get_s(&item, "PK")?, get_s(&item, "SK")?))),
            }
        } else {
            Mime::Text(String::new())
        };
        Ok(message.with_mime(mime))
    }

    /// Streams a body from the bucket.
    async fn object_stream(&self, key: &str) -> anyhow::Result<MimeChunks> {
        let object = self.s3.get_object().bucket(&self.bucket).key(key).send().await.context("reading a MIME body")?;
        let chunks = futures_util::stream::try_unfold(object.body, |mut body| async move {
            Ok(body.try_next().await.context("reading a MIME body")?.map(|chunk| (chunk, body)))
        });
        Ok(gunzip_stream(Box::pin(chunks)))
    }

    async fn put(&self, item: Item) -> anyhow::Result<()> {
        super::attributes::put(&self.client, &self.table, item, "subject data").await
    }

    async fn delete(&self, pk: &str, sk: &str) -> anyhow::Result<()> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("PK", s(pk))
            .key("SK", s(sk))
            .send()
            .await
            .context("deleting subject data")?;
        Ok(())
    }

    /// Writes puts and deletes 25 at a time, retrying what DynamoDB leaves unprocessed.
    async fn write_batch(&self, writes: Vec<WriteRequest>) -> anyhow::Result<()> {
        for chunk in writes.chunks(25) {
            let mut requests = chunk.to_vec();
            for attempt in 0..8 {
                let output = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, requests)
                    .send()
                    .await
                    .context("storing subject data")?;
                requests = output.unprocessed_items.and_then(|mut u| u.remove(&self.table)).unwrap_or_default();
                if requests.is_empty() {
                    break;
                }
                anyhow::ensure!(attempt < 7, "DynamoDB kept {} items unprocessed", requests.len());
                tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
            }
        }
        Ok(())
    }

    /// Points `pointer` at `pk`/`sk`, deleting whatever it pointed to before if that was
    /// elsewhere (a message or event with an id loaded again with another time or subject).
    async fn repoint(&self, pointer: &str, pk: &str, sk: &str, ttl: Option<&AttributeValue>) -> anyhow::Result<()> {
        if let Some(old) = self.get(pointer.to_owned(), "ID").await?
            && let (Some(old_pk), Some(old_sk)) = (opt_s(&old, "target_pk"), opt_s(&old, "target_sk"))
            && (old_pk != pk || old_sk != sk)
        {
            self.delete(old_pk, old_sk).await?;
        }
        let mut item = Item::from([
            ("PK".to_owned(), s(pointer)),
            ("SK".to_owned(), s("ID")),
            ("target_pk".to_owned(), s(pk)),
            ("target_sk".to_owned(), s(sk)),
        ]);
        if let Some(ttl) = ttl {
            item.insert("ttl".into(), ttl.clone());
        }
        self.put(item).await
    }

    fn index_email(item: &mut Item, account: AccountId, email: Option<&str>, sort: &str) {
        if let Some(email) = email.filter(|e| !e.is_empty()) {
            item.insert("GSI2PK".into(), s(email_key(account, email)));
            item.insert("GSI2SK".into(), s(sort));
        }
    }

    fn mime_object(account: AccountId, id: &str) -> String {
        format!("subjects/{account}/mime/{:x}", Sha256::digest(id.as_bytes()))
    }

    async fn load_message(&self, m: &Message) -> anyhow::Result<()> {
        let record = Record::Message(m.clone());
        let pk = named_partition(m.account, &record);
        let sk = format!("M#{}#{}", time_key(m.sent.unix()), m.id);
        let pointer = format!("A#{}#ID#M#{}", m.account, m.id);
        let mut item =
            Item::from([("PK".to_owned(), s(&pk)), ("SK".to_owned(), s(&sk)), ("pointer".to_owned(), s(&pointer))]);
        let compressed = gzip(&m.mime)?;
        let object = Self::mime_object(m.account, &m.id);
        if compressed.len() > INLINE_MIME {
            self.s3
                .put_object()
                .bucket(&self.bucket)
                .key(&object)
                .content_type("message/rfc822")
                .content_encoding("gzip")
                .body(compressed.into())
                .send()
                .await
                .context("storing a MIME body")?;
            item.insert("mime_ref".into(), s(&object));
        } else {
            item.insert("mime_gz".into(), AttributeValue::B(Blob::new(compressed)));
            // A larger body stored before under this id is replaced by this one.
            self.s3.delete_object().bucket(&self.bucket).key(&object).send().await.context("replacing a MIME body")?;
        }
        let stored = Message { mime: String::new(), ..m.clone() };
        item.insert("body".into(), s(serde_json::to_string(&stored)?));
        Self::index_email(&mut item, m.account, Some(&m.email), &sk);
        self.ttl(&mut item, m.sent.unix());
        let ttl = item.get("ttl").cloned();
        self.put(item).await?;
        self.repoint(&pointer, &pk, &sk, ttl.as_ref()).await
    }

    fn event_item(&self, e: &Event) -> anyhow::Result<(Item, Option<String>)> {
        let pk = named_partition(e.account, &Record::Event(e.clone()));
        let sk = format!("E#{}#{}#{}", e.kind.as_str(), time_key(e.time.unix()), e.key());
        let mut item: Item = HashMap::from([
            ("PK".to_owned(), s(pk)),
            ("SK".to_owned(), s(&sk)),
            ("body".to_owned(), s(serde_json::to_string(e)?)),
        ]);
        let pointer = e.id.as_ref().map(|id| format!("A#{}#ID#E#{id}", e.account));
        if let Some(pointer) = &pointer {
            item.insert("pointer".into(), s(pointer));
        }
        Self::index_email(&mut item, e.account, e.email.as_deref(), &sk);
        self.ttl(&mut item, e.time.unix());
        Ok((item, pointer))
    }

    /// Deletes items with what hangs on them: their MIME body in the bucket and their id
    /// pointer.
    async fn delete_items(&self, items: &[Item]) -> anyhow::Result<()> {
        let mut writes = Vec::with_capacity(items.len() * 2);
        for item in items {
            if let Some(object) = opt_s(item, "mime_ref") {
                self.s3.delete_object().bucket(&self.bucket).key(object).send().await.context("erasing a MIME body")?;
            }
            let mut keys = vec![(get_s(item, "PK")?, get_s(item, "SK")?)];
            if let Some(pointer) = opt_s(item, "pointer") {
                keys.push((pointer, "ID"));
            }
            for (pk, sk) in keys {
                let key = HashMap::from([("PK".to_owned(), s(pk)), ("SK".to_owned(), s(sk))]);
                let delete = DeleteRequest::builder().set_key(Some(key)).build().context("building a delete")?;
                writes.push(WriteRequest::builder().delete_request(delete).build());
            }
        }
        self.write_batch(writes).await
    }

    async fn erase_partition(&self, pk: String) -> anyhow::Result<()> {
        let items = self.query_all(&Partition::table(pk), None).await?;
        self.delete_items(&items).await
    }

    async fn erase_profile(&self, account: AccountId, id: ProfileId) -> anyhow::Result<()> {
        for item in self.query_all(&Partition::by_parent(account, id), Some("SUB#")).await? {
            self.erase_partition(get_s(&item, "PK")?.to_owned()).await?;
        }
        self.erase_partition(profile_key(account, id)).await
    }
}

#[async_trait]
impl SubjectData for DynamoDbSubjects {
    async fn profile(&self, account: AccountId, id: ProfileId) -> anyhow::Result<Option<Profile>> {
        self.get(profile_key(account, id), "PROFILE").await?.as_ref().map(body).transpose()
    }

    async fn subprofile(&self, account: AccountId, id: SubprofileId) -> anyhow::Result<Option<Subprofile>> {
        self.get(subprofile_key(account, id), "SUBPROFILE").await?.as_ref().map(body).transpose()
    }

    async fn subprofiles(
        &self,
        account: AccountId,
        profile: ProfileId,
        cursor: Option<&str>,
    ) -> anyhow::Result<Page<Subprofile>> {
        let (items, last) = self
            .query(&Partition::by_parent(account, profile), Some(("SUB#", "SUB#")), RECORD_PAGE, start_key(cursor)?)
            .await?;
        let items = items.iter().map(body).collect::<anyhow::Result<_>>()?;
        Ok(Page { items, next: cursor_of(last.as_ref()) })
    }

    async fn messages(
        &self,
        account: AccountId,
        subject: &Subject,
        cursor: Option<&str>,
    ) -> anyhow::Result<Page<Message<Mime>>> {
        let partitions = self.partitions(account, subject).await?;
        let (items, next) = self.merged(&partitions, "M#", MESSAGE_PAGE, cursor).await?;
        let items = futures_util::stream::iter(items.into_iter().map(|item| self.message_from_item(item)))
            .buffered(MIME_READS)
            .try_collect()
            .await?;
        Ok(Page { items, next })
    }

    async fn mime(&self, body: &MimeRef) -> anyhow::Result<MimeChunks> {
        if let Some(key) = body.key().strip_prefix("s3:") {
            return self.object_stream(key).await;
        }
        let (pk, sk) = body
            .key()
            .strip_prefix("item:")
            .and_then(|key| key.split_once('\n'))
            .context("not a MIME body of this store")?;
        // The item as it is now: its body may have moved to the bucket since the page.
        let item =
            self.get(pk.to_owned(), sk).await?.context("the message is no longer stored (erased during the build)")?;
        match (opt_s(&item, "mime_ref"), item.get("mime_gz")) {
            (Some(key), _) => self.object_stream(key).await,
            (None, Some(AttributeValue::B(blob))) => {
                let compressed = bytes::Bytes::copy_from_slice(blob.as_ref());
                Ok(gunzip_stream(futures_util::stream::iter([Ok(compressed)])))
            }
            _ => Ok(Box::pin(futures_util::stream::empty())),
        }
    }

    async fn events(
        &self,
        account: AccountId,
        subject: &Subject,
        kind: EventKind,
        cursor: Option<&str>,
    ) -> anyhow::Result<Page<Event>> {
        let partitions = self.partitions(account, subject).await?;
        let prefix = format!("E#{}#", kind.as_str());
        let (items, next) = self.merged(&partitions, &prefix, RECORD_PAGE, cursor).await?;
        let items = items.iter().map(body).collect::<anyhow::Result<_>>()?;
        Ok(Page { items, next })
    }

    async fn load(&self, records: &[Record]) -> anyhow::Result<()> {
        // Events without an id go in batches; a batch may not name one item twice, and the
        // last line about an item wins, as it would one by one.
        let mut batch: Vec<(String, String, Item)> = Vec::new();
        for record in records {
            match record {
                Record::Profile(p) => {
                    let mut item = Item::from([
                        ("PK".to_owned(), s(profile_key(p.account, p.id))),
                        ("SK".to_owned(), s("PROFILE")),
                        ("body".to_owned(), s(serde_json::to_string(p)?)),
                    ]);
                    Self::index_email(&mut item, p.account, p.email.as_deref(), &format!("PROFILE#{}", p.id));
                    self.put(item).await?;
                }
                Record::Subprofile(sub) => {
                    let mut item = Item::from([
                        ("PK".to_owned(), s(subprofile_key(sub.account, sub.id))),
                        ("SK".to_owned(), s("SUBPROFILE")),
                        ("body".to_owned(), s(serde_json::to_string(sub)?)),
                        ("GSI1PK".to_owned(), s(profile_key(sub.account, sub.profile))),
                        ("GSI1SK".to_owned(), s(format!("SUB#{:020}", sub.id.get()))),
                    ]);
                    Self::index_email(&mut item, sub.account, sub.email.as_deref(), &format!("SUB#{}", sub.id));
                    self.put(item).await?;
                }
                Record::Message(m) => self.load_message(m).await?,
                Record::Event(e) => {
                    let (item, pointer) = self.event_item(e)?;
                    match pointer {
                        Some(pointer) => {
                            let (pk, sk) = (get_s(&item, "PK")?.to_owned(), get_s(&item, "SK")?.to_owned());
                            let ttl = item.get("ttl").cloned();
                            self.put(item).await?;
                            self.repoint(&pointer, &pk, &sk, ttl.as_ref()).await?;
                        }
                        None => {
                            let (pk, sk) = (get_s(&item, "PK")?.to_owned(), get_s(&item, "SK")?.to_owned());
                            batch.retain(|(p, k, _)| !(*p == pk && *k == sk));
                            batch.push((pk, sk, item));
                        }
                    }
                }
            }
        }
        let writes = batch
            .into_iter()
            .map(|(_, _, item)| {
                let put = PutRequest::builder().set_item(Some(item)).build().context("building a put")?;
                Ok(WriteRequest::builder().put_request(put).build())
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        self.write_batch(writes).await
    }

    async fn erase_account(&self, account: AccountId) -> anyhow::Result<()> {
        // Every item of the account's subjects lives in a partition named by the account.
        let prefix = format!("A#{account}#");
        let mut pages = Vec::new();
        scan_prefixed(&self.client, &self.table, "PK", &prefix, |items| {
            pages.push(items.to_vec());
            Ok(())
        })
        .await?;
        for items in pages {
            // A record's delete takes its id pointer along; a pointer whose record is on
            // another page goes by itself (one key may not come twice in a batch).
            let (pointers, records): (Vec<Item>, Vec<Item>) =
                items.into_iter().partition(|item| opt_s(item, "SK") == Some("ID"));
            let taken: std::collections::HashSet<&str> = records.iter().filter_map(|r| opt_s(r, "pointer")).collect();
            let pointers: Vec<Item> =
                pointers.into_iter().filter(|p| opt_s(p, "PK").is_none_or(|pk| !taken.contains(pk))).collect();
            self.delete_items(&records).await?;
            self.delete_items(&pointers).await?;
        }
        Ok(())
    }

    async fn erase(&self, erasure: &Erasure) -> anyhow::Result<()> {
        match erasure {
            Erasure::Profile(account, id) => self.erase_profile(*account, *id).await,
            Erasure::Subprofile(account, id) => self.erase_partition(subprofile_key(*account, *id)).await,
            Erasure::Email(account, address) => {
                let items = self.query_all(&Partition::by_email(*account, address.as_str()), None).await?;
                let mut records = Vec::new();
                for item in items {
                    let sort = get_s(&item, "GSI2SK")?;
                    if let Some(profile) = sort.strip_prefix("PROFILE#") {
                        self.erase_profile(*account, ProfileId::parse(profile)?).await?;
                    } else if let Some(subprofile) = sort.strip_prefix("SUB#") {
                        self.erase_partition(subprofile_key(*account, SubprofileId::parse(subprofile)?)).await?;
                    } else {
                        records.push(item);
                    }
                }
                // Records a profile or subprofile erasure above already took are gone; deleting
                // them again is a no-op.
                self.delete_items(&records).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_sort_as_text_across_the_epoch() {
        let keys: Vec<String> = [-62_000_000_000, -1, 0, 1, 1_800_000_000, 253_000_000_000].map(time_key).into();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert!(keys.iter().all(|k| k.len() == 12), "{keys:?}");
    }

    #[test]
    fn a_prefix_end_is_above_everything_under_the_prefix_and_nothing_else() {
        let end = prefix_end("E#click#");
        assert!("E#click#999999999999#id:~~~" < end.as_str());
        assert!(end.as_str() < "E#delivery#");
        assert!(prefix_end("M#").as_str() > "M#999999999999#\u{10FFFF}");
    }

    #[test]
    fn mime_bodies_survive_compression() {
        let text = "From: a@example.com\r\n\r\nHéllo\r\n".repeat(100);
        let compressed = gzip(&text).unwrap_or_default();
        assert_eq!(gunzip_at_most(&compressed, text.len()).ok(), Some(Some(text.clone())));
        assert_eq!(gunzip_at_most(&compressed, text.len() - 1).ok(), Some(None), "over the limit: left for a stream");
    }

    /// The pieces of a body streamed from `compressed` arriving in chunks of `chunk` bytes.
    async fn inflate(compressed: &[u8], chunk: usize) -> anyhow::Result<Vec<bytes::Bytes>> {
        let chunks: Vec<anyhow::Result<bytes::Bytes>> =
            compressed.chunks(chunk).map(|c| Ok(bytes::Bytes::copy_from_slice(c))).collect();
        gunzip_stream(futures_util::stream::iter(chunks)).try_collect().await
    }

    #[tokio::test]
    async fn a_streamed_body_inflates_whole_however_it_arrives_and_in_small_pieces() {
        // A mail of one repeated line: a few kilobytes that inflate a thousandfold.
        let text = format!("Subject: x\r\n\r\n{}", "the same line, é € 𝄞\r\n".repeat(200_000));
        let compressed = gzip(&text).unwrap_or_default();
        assert!(compressed.len() * 200 < text.len(), "{} bytes compressed", compressed.len());
        for chunk in [1, 7, 4096, compressed.len()] {
            let pieces = inflate(&compressed, chunk).await.unwrap_or_else(|e| panic!("{e:#}"));
            assert!(pieces.iter().all(|p| p.len() <= 64 * 1024), "chunks of {chunk}: pieces stay small");
            assert!(pieces.concat() == text.as_bytes(), "chunks of {chunk}: the whole text");
        }
    }

    #[tokio::test]
    async fn a_streamed_body_cut_short_or_damaged_fails_instead_of_ending_quietly() {
        let compressed = gzip(&"Hello, world.\r\n".repeat(1000)).unwrap_or_default();
        let cut = inflate(&compressed[..compressed.len() - 4], 100).await;
        assert!(cut.is_err(), "a body without its end");
        let mut damaged = compressed.clone();
        let last = damaged.len() - 5;
        damaged[last] ^= 0xFF;
        assert!(inflate(&damaged, 100).await.is_err(), "a body whose length or CRC is wrong");
    }
}
