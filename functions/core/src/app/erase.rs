//! Erasure (GDPR Art. 17) as it reaches every file: the subject's data goes from the subject
//! store, and so does every copy of it the service made, the export files and the outbox mail
//! of each request that named the subject (those requests keep only an erased stand-in of an
//! address, see [`crate::domain::EmailAddress::erased`]); the store then rewrites what it keeps
//! of deleted data ([`SubjectData::scrub`]). The deletion of an account does the same for all
//! of its data. What cannot be called back: a mail already delivered to its receiver, a POST
//! already made to a web address, and backups within their period (see the docs).

use std::collections::HashSet;

use super::{App, Operator};
use crate::domain::{AccountId, Erasure, Line, RequestId, Subject, Transition};
use crate::ports::{Accounts, ExportStore, Mailer, Page, RequestStore, SubjectData};

/// A subject as a set member: its kind and its id or address.
fn key(subject: &Subject) -> (&'static str, String) {
    (subject.kind().as_str(), subject.value())
}

/// The stores an erasure touches.
pub(crate) struct Eraser<'a> {
    pub(crate) subjects: &'a dyn SubjectData,
    pub(crate) requests: &'a dyn RequestStore,
    pub(crate) exports: &'a dyn ExportStore,
    pub(crate) mailer: &'a dyn Mailer,
}

impl Eraser<'_> {
    /// The requests of the erasure's account whose exports may hold the subject's data: the
    /// subject's own, and for a profile its subprofiles' and both's addresses; for a
    /// subprofile its address; for an address every profile and subprofile it is the address
    /// of. Read before the data goes, since the links are in it.
    async fn related(&self, erasure: &Erasure) -> anyhow::Result<Vec<RequestId>> {
        let account = erasure.account();
        let mut ids = HashSet::new();
        let mut addresses = HashSet::new();
        match erasure {
            Erasure::Profile(_, profile) => {
                ids.insert(key(&Subject::Profile(*profile)));
                if let Some(found) = self.subjects.profile(account, *profile).await? {
                    addresses.extend(found.email.map(|e| e.to_ascii_lowercase()));
                }
                let mut cursor: Option<String> = None;
                loop {
                    let Page { items, next } = self.subjects.subprofiles(account, *profile, cursor.as_deref()).await?;
                    for subprofile in items {
                        ids.insert(key(&Subject::Subprofile(subprofile.id)));
                        addresses.extend(subprofile.email.map(|e| e.to_ascii_lowercase()));
                    }
                    match next {
                        Some(next) => cursor = Some(next),
                        None => break,
                    }
                }
            }
            Erasure::Subprofile(_, subprofile) => {
                ids.insert(key(&Subject::Subprofile(*subprofile)));
                if let Some(found) = self.subjects.subprofile(account, *subprofile).await? {
                    addresses.extend(found.email.map(|e| e.to_ascii_lowercase()));
                }
            }
            Erasure::Email(_, address) => {
                addresses.insert(address.normalized());
            }
        }
        let mut related = Vec::new();
        for request in self.requests.requests_of(account).await? {
            let named = match &request.subject {
                Subject::Email(address) => addresses.contains(&address.normalized()),
                subject => ids.contains(&key(subject)),
            };
            // A profile or subprofile whose address is the erased one is erased with it.
            let owned_by_address = matches!(erasure, Erasure::Email(..))
                && self.address_of(account, &request.subject).await?.is_some_and(|e| addresses.contains(&e));

            if named || owned_by_address {
                related.push(request.id);
            }
        }
        Ok(related)
    }

    /// The lower-cased address of a profile or subprofile subject, as stored now.
    async fn address_of(&self, account: AccountId, subject: &Subject) -> anyhow::Result<Option<String>> {
        let email = match subject {
            Subject::Profile(id) => self.subjects.profile(account, *id).await?.and_then(|p| p.email),
            Subject::Subprofile(id) => self.subjects.subprofile(account, *id).await?.and_then(|s| s.email),
            Subject::Email(_) => None,
        };
        Ok(email.map(|e| e.to_ascii_lowercase()))
    }

    /// Deletes the files and the kept mail of these requests and erases what they hold.
    async fn purge(&self, ids: &[RequestId]) -> anyhow::Result<()> {
        for id in ids {
            self.exports.delete(*id).await?;
            self.mailer.forget(*id).await?;
            self.requests.update(*id, &Transition::Erase).await?;
        }
        Ok(())
    }

    /// Erases one subject and every copy the service made of its data.
    ///
    /// # Errors
    /// When a store fails; erasing again completes the erasure.
    pub(crate) async fn erase(&self, erasure: &Erasure) -> anyhow::Result<()> {
        let related = self.related(erasure).await?;
        self.subjects.erase(erasure).await?;
        self.purge(&related).await?;
        self.subjects.scrub().await
    }

    /// Stores lines of subject data in order ([`SubjectData::apply`]); the erase lines among
    /// them also reach the copies of their subjects' data: the requests to purge are found
    /// before the lines are stored (while the data still links them), and purged after.
    pub(crate) async fn apply(&self, lines: Vec<Line>) -> anyhow::Result<()> {
        let mut related = Vec::new();
        for line in &lines {
            if let Line::Erase(erasure) = line {
                related.extend(self.related(erasure).await?);
            }
        }
        let erases = lines.iter().any(|line| matches!(line, Line::Erase(_)));
        self.subjects.apply(lines).await?;
        self.purge(&related).await?;
        if erases { self.subjects.scrub().await } else { Ok(()) }
    }

    /// Deletes an account: refused at once (its tokens go, and the store records the erasure
    /// to come), then, when `erase_now`, its data is erased as [`Eraser::erase_deleted`] says
    /// (otherwise the sweep does it). `false` when there is no such account, nor one whose
    /// erasure is still to finish.
    pub(crate) async fn delete_account(
        &self,
        accounts: &dyn Accounts,
        account: AccountId,
        erase_now: bool,
    ) -> anyhow::Result<bool> {
        let deleted = accounts.delete_account(account).await?;
        if !deleted && !accounts.erasing().await?.contains(&account) {
            return Ok(false);
        }
        if erase_now {
            self.erase_deleted(accounts, account).await?;
        }
        Ok(true)
    }

    /// Erases a deleted account's data: its requests' files and kept mails, its requests and
    /// idempotency keys, and its subject data; then the store forgets the erasure was due.
    /// Running it again after a failure completes it.
    pub(crate) async fn erase_deleted(&self, accounts: &dyn Accounts, account: AccountId) -> anyhow::Result<()> {
        // An account whose deletion a failure cut short is deleted first.
        accounts.delete_account(account).await?;
        for request in self.requests.requests_of(account).await? {
            self.exports.delete(request.id).await?;
            self.mailer.forget(request.id).await?;
        }
        self.requests.forget_account(account).await?;
        self.subjects.erase_account(account).await?;
        self.subjects.scrub().await?;
        accounts.erased(account).await
    }
}

impl App {
    pub(crate) fn eraser(&self) -> Eraser<'_> {
        Eraser { subjects: &*self.subjects, requests: &*self.requests, exports: &*self.exports, mailer: &*self.mailer }
    }
}

impl Operator {
    pub(crate) fn eraser(&self) -> Eraser<'_> {
        Eraser { subjects: &*self.subjects, requests: &*self.requests, exports: &*self.exports, mailer: &*self.mailer }
    }
}
