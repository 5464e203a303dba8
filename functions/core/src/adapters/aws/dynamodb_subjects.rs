//! Subject data in one DynamoDB table, laid out so that every export is a few ordered queries:
//!
//! | item | `PK` | `SK` | `GSI1PK` (by subprofile) | `GSI2PK` (by e-mail) |
//! |---|---|---|---|---|
//! | profile | `A#<a>#P#<p>` | `PROFILE` | | |
//! | subprofile | `A#<a>#P#<p>` | `SUB#<id, 20 digits>` | `A#<a>#S#<id>` (`GSI1SK` = `SUB`) | |
//! | message | owner | `M#<sent, 12 digits>#<id>` | `A#<a>#S#<s>` if any | `A#<a>#E#<address>` |
//! | event | owner | `E#<type>#<time, 12 digits>#<hash>` | `A#<a>#S#<s>` if any | `A#<a>#E#<address>` |
//! | id pointer | `A#<a>#ID#<M or S>#<id>` | `ID` | | |
//!
//! The owner partition is the profile's (a subprofile's records go to its parent profile), or
//! `A#<a>#E#<address>` for mail to an address without a profile. `GSI1SK`/`GSI2SK` repeat `SK`.
//! Pointers let an import that changes a message's send time or a subprofile's profile replace
//! the old item instead of leaving a copy. MIME bodies too large for an item live in S3.

use std::collections::HashMap;

use anyhow::Context;
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use sha2::{Digest, Sha256};

use super::attributes::{Item, cursor_of, get_s, opt_s, s, start_key};
use crate::domain::{
    AccountId, Event, EventKind, Message, Profile, ProfileId, Record, Subject, Subprofile, SubprofileId,
};
use crate::ports::{Page, SubjectData};

/// MIME bodies above this size are stored in S3 (an item holds at most 400 KB).
const INLINE_MIME: usize = 300 * 1024;
const MESSAGE_PAGE: i32 = 32;
const RECORD_PAGE: i32 = 500;

/// The subject data table, and the bucket for large MIME bodies.
pub struct DynamoDbSubjects {
    client: Client,
    table: String,
    s3: aws_sdk_s3::Client,
    bucket: String,
}

fn profile_pk(account: AccountId, profile: ProfileId) -> String {
    format!("A#{account}#P#{profile}")
}

fn subprofile_key(account: AccountId, subprofile: SubprofileId) -> String {
    format!("A#{account}#S#{subprofile}")
}

fn email_key(account: AccountId, address: &str) -> String {
    format!("A#{account}#E#{}", address.to_ascii_lowercase())
}

/// The record kept as JSON in an item's `body`.
fn body<T: serde::de::DeserializeOwned>(item: &Item) -> anyhow::Result<T> {
    serde_json::from_str(get_s(item, "body")?).context("a stored record")
}

fn time_key(unix: i64) -> String {
    format!("{:012}", unix.max(0))
}

/// Which partition (table or index) and prefix a subject's records are queried from.
struct Scope {
    index: Option<&'static str>,
    key_name: &'static str,
    sort_name: &'static str,
    key: String,
}

fn scope(account: AccountId, subject: &Subject) -> Scope {
    match subject {
        Subject::Profile(p) => Scope { index: None, key_name: "PK", sort_name: "SK", key: profile_pk(account, *p) },
        Subject::Subprofile(id) => Scope {
            index: Some("by_subprofile"),
            key_name: "GSI1PK",
            sort_name: "GSI1SK",
            key: subprofile_key(account, *id),
        },
        Subject::Email(address) => Scope {
            index: Some("by_email"),
            key_name: "GSI2PK",
            sort_name: "GSI2SK",
            key: email_key(account, address.as_str()),
        },
    }
}

impl DynamoDbSubjects {
    /// Uses this table (keys `PK`/`SK`, indexes `by_subprofile` and `by_email`) and this bucket.
    #[must_use]
    pub fn new(client: Client, table: String, s3: aws_sdk_s3::Client, bucket: String) -> Self {
        Self { client, table, s3, bucket }
    }

    async fn query(
        &self,
        scope: &Scope,
        prefix: &str,
        limit: i32,
        cursor: Option<&str>,
    ) -> anyhow::Result<(Vec<Item>, Option<String>)> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .set_index_name(scope.index.map(str::to_owned))
            .key_condition_expression("#k = :k AND begins_with(#s, :prefix)")
            .expression_attribute_names("#k", scope.key_name)
            .expression_attribute_names("#s", scope.sort_name)
            .expression_attribute_values(":k", s(&scope.key))
            .expression_attribute_values(":prefix", s(prefix))
            .limit(limit)
            .set_exclusive_start_key(start_key(cursor)?)
            .send()
            .await
            .context("querying subject data")?;
        let next = cursor_of(output.last_evaluated_key.as_ref());
        Ok((output.items.unwrap_or_default(), next))
    }

    async fn get(&self, pk: String, sk: &str) -> anyhow::Result<Option<Item>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("PK", s(pk))
            .key("SK", s(sk))
            .send()
            .await
            .context("reading subject data")?;
        Ok(output.item)
    }

    async fn message_from_item(&self, item: &Item) -> anyhow::Result<Message> {
        let mut message: Message = body(item)?;
        if let Some(key) = opt_s(item, "mime_ref") {
            let object =
                self.s3.get_object().bucket(&self.bucket).key(key).send().await.context("reading a MIME body")?;
            let bytes = object.body.collect().await.context("reading a MIME body")?.into_bytes();
            message.mime = String::from_utf8(bytes.to_vec()).context("a MIME body is not UTF-8")?;
        }
        Ok(message)
    }

    /// The profile a subprofile belongs to: from this batch, or from the table.
    async fn parent(
        &self,
        account: AccountId,
        subprofile: SubprofileId,
        batch: &HashMap<(AccountId, SubprofileId), ProfileId>,
    ) -> anyhow::Result<Option<ProfileId>> {
        if let Some(profile) = batch.get(&(account, subprofile)) {
            return Ok(Some(*profile));
        }
        Ok(self.subprofile(account, subprofile).await?.map(|s| s.profile))
    }

    async fn owner(
        &self,
        account: AccountId,
        profile: Option<ProfileId>,
        subprofile: Option<SubprofileId>,
        email: Option<&str>,
        batch: &HashMap<(AccountId, SubprofileId), ProfileId>,
    ) -> anyhow::Result<String> {
        if let Some(profile) = profile {
            return Ok(profile_pk(account, profile));
        }
        if let Some(subprofile) = subprofile {
            return Ok(match self.parent(account, subprofile, batch).await? {
                Some(profile) => profile_pk(account, profile),
                None => subprofile_key(account, subprofile),
            });
        }
        Ok(email_key(account, email.unwrap_or_default()))
    }

    /// Replaces whatever the pointer `id` pointed to with the item at `pk`/`sk`.
    async fn repoint(&self, pointer: String, pk: &str, sk: &str) -> anyhow::Result<()> {
        if let Some(old) = self.get(pointer.clone(), "ID").await?
            && let (Some(old_pk), Some(old_sk)) = (opt_s(&old, "target_pk"), opt_s(&old, "target_sk"))
            && (old_pk != pk || old_sk != sk)
        {
            self.client
                .delete_item()
                .table_name(&self.table)
                .key("PK", s(old_pk))
                .key("SK", s(old_sk))
                .send()
                .await
                .context("replacing subject data")?;
        }
        let item = Item::from([
            ("PK".to_owned(), s(pointer)),
            ("SK".to_owned(), s("ID")),
            ("target_pk".to_owned(), s(pk)),
            ("target_sk".to_owned(), s(sk)),
        ]);
        self.put(item).await
    }

    async fn put(&self, item: Item) -> anyhow::Result<()> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .context("storing subject data")?;
        Ok(())
    }

    async fn put_batch(&self, items: Vec<Item>) -> anyhow::Result<()> {
        for chunk in items.chunks(25) {
            let mut requests: Vec<WriteRequest> = chunk
                .iter()
                .map(|item| {
                    let put = PutRequest::builder().set_item(Some(item.clone())).build().context("building a put")?;
                    Ok(WriteRequest::builder().put_request(put).build())
                })
                .collect::<anyhow::Result<_>>()?;
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
                tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
            }
        }
        Ok(())
    }

    fn index_keys(
        item: &mut Item,
        account: AccountId,
        subprofile: Option<SubprofileId>,
        email: Option<&str>,
        sk: &str,
    ) {
        if let Some(subprofile) = subprofile {
            item.insert("GSI1PK".into(), s(subprofile_key(account, subprofile)));
            item.insert("GSI1SK".into(), s(sk));
        }
        if let Some(email) = email.filter(|e| !e.is_empty()) {
            item.insert("GSI2PK".into(), s(email_key(account, email)));
            item.insert("GSI2SK".into(), s(sk));
        }
    }
}

#[async_trait]
impl SubjectData for DynamoDbSubjects {
    async fn profile(&self, account: AccountId, id: ProfileId) -> anyhow::Result<Option<Profile>> {
        let item = self.get(profile_pk(account, id), "PROFILE").await?;
        item.as_ref().map(body).transpose()
    }

    async fn subprofile(&self, account: AccountId, id: SubprofileId) -> anyhow::Result<Option<Subprofile>> {
        let scope = Scope {
            index: Some("by_subprofile"),
            key_name: "GSI1PK",
            sort_name: "GSI1SK",
            key: subprofile_key(account, id),
        };
        let (items, _) = self.query(&scope, "SUB", 1, None).await?;
        items.first().map(body).transpose()
    }

    async fn subprofiles(
        &self,
        account: AccountId,
        profile: ProfileId,
        cursor: Option<&str>,
    ) -> anyhow::Result<Page<Subprofile>> {
        let scope = scope(account, &Subject::Profile(profile));
        let (items, next) = self.query(&scope, "SUB#", RECORD_PAGE, cursor).await?;
        let items = items.iter().map(body).collect::<anyhow::Result<_>>()?;
        Ok(Page { items, next })
    }

    async fn messages(
        &self,
        account: AccountId,
        subject: &Subject,
        cursor: Option<&str>,
    ) -> anyhow::Result<Page<Message>> {
        let (items, next) = self.query(&scope(account, subject), "M#", MESSAGE_PAGE, cursor).await?;
        let mut messages = Vec::with_capacity(items.len());
        for item in &items {
            messages.push(self.message_from_item(item).await?);
        }
        Ok(Page { items: messages, next })
    }

    async fn events(
        &self,
        account: AccountId,
        subject: &Subject,
        kind: EventKind,
        cursor: Option<&str>,
    ) -> anyhow::Result<Page<Event>> {
        let prefix = format!("E#{}#", kind.as_str());
        let (items, next) = self.query(&scope(account, subject), &prefix, RECORD_PAGE, cursor).await?;
        let items = items.iter().map(body).collect::<anyhow::Result<_>>()?;
        Ok(Page { items, next })
    }

    async fn load(&self, records: &[Record]) -> anyhow::Result<()> {
        let parents: HashMap<(AccountId, SubprofileId), ProfileId> = records
            .iter()
            .filter_map(|r| match r {
                Record::Subprofile(s) => Some(((s.account, s.id), s.profile)),
                _ => None,
            })
            .collect();
        let mut events = Vec::new();
        for record in records {
            match record {
                Record::Profile(p) => {
                    let item = Item::from([
                        ("PK".to_owned(), s(profile_pk(p.account, p.id))),
                        ("SK".to_owned(), s("PROFILE")),
                        ("body".to_owned(), s(serde_json::to_string(p)?)),
                    ]);
                    self.put(item).await?;
                }
                Record::Subprofile(sub) => {
                    let (pk, sk) = (profile_pk(sub.account, sub.profile), format!("SUB#{:020}", sub.id.get()));
                    let mut item = Item::from([
                        ("PK".to_owned(), s(&pk)),
                        ("SK".to_owned(), s(&sk)),
                        ("body".to_owned(), s(serde_json::to_string(sub)?)),
                    ]);
                    item.insert("GSI1PK".into(), s(subprofile_key(sub.account, sub.id)));
                    item.insert("GSI1SK".into(), s("SUB"));
                    self.put(item).await?;
                    self.repoint(format!("A#{}#ID#S#{}", sub.account, sub.id), &pk, &sk).await?;
                }
                Record::Message(m) => {
                    let pk = self.owner(m.account, m.profile, m.subprofile, Some(&m.email), &parents).await?;
                    let sk = format!("M#{}#{}", time_key(m.sent.unix()), m.id);
                    let mut stored = m.clone();
                    let mut item = Item::from([("PK".to_owned(), s(&pk)), ("SK".to_owned(), s(&sk))]);
                    if m.mime.len() > INLINE_MIME {
                        let key = format!("subjects/{}/mime/{:x}", m.account, Sha256::digest(m.id.as_bytes()));
                        self.s3
                            .put_object()
                            .bucket(&self.bucket)
                            .key(&key)
                            .content_type("message/rfc822")
                            .body(m.mime.clone().into_bytes().into())
                            .send()
                            .await
                            .context("storing a MIME body")?;
                        stored.mime = String::new();
                        item.insert("mime_ref".into(), s(key));
                    }
                    item.insert("body".into(), s(serde_json::to_string(&stored)?));
                    Self::index_keys(&mut item, m.account, m.subprofile, Some(&m.email), &sk);
                    self.put(item).await?;
                    self.repoint(format!("A#{}#ID#M#{}", m.account, m.id), &pk, &sk).await?;
                }
                Record::Event(e) => {
                    let pk = self.owner(e.account, e.profile, e.subprofile, e.email.as_deref(), &parents).await?;
                    let body = serde_json::to_string(e)?;
                    let hash = format!("{:x}", Sha256::digest(body.as_bytes()));
                    let sk = format!("E#{}#{}#{}", e.kind.as_str(), time_key(e.time.unix()), &hash[..16]);
                    let mut item: Item = HashMap::from([
                        ("PK".to_owned(), s(pk)),
                        ("SK".to_owned(), s(&sk)),
                        ("body".to_owned(), AttributeValue::S(body)),
                    ]);
                    Self::index_keys(&mut item, e.account, e.subprofile, e.email.as_deref(), &sk);
                    events.push(item);
                }
            }
        }
        self.put_batch(events).await
    }
}
