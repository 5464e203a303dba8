//! Each AWS adapter against the emulator, with its own uniquely named resources.

use std::time::Duration;

use datarequest::adapters::aws::{self, DynamoDbAccounts, DynamoDbRequests, DynamoDbSubjects, S3Exports, SqsQueue};
use datarequest::app::ingest::{parse_line, parse_records};
use datarequest::config::Settings;
use datarequest::domain::build_message;
use datarequest::domain::{
    AccessToken, AccountId, DataRequest, KeyId, Keyring, Mime, ProfileId, Record, RequestId, SigningKey,
    SigningProfile, State, Subject, Timestamp, Transition, WebhookSecret,
};
use datarequest::ports::{
    Accounts, BuildQueue, ExportFormat, ExportStore, RequestStore, Served, SigningKeyStore, SubjectData,
};

use super::Env;
use crate::helpers::SAMPLE;

fn sample() -> Vec<Record> {
    parse_records(&std::fs::read_to_string(SAMPLE).expect("sample")).expect("valid")
}

fn request(account: u64) -> DataRequest {
    let subject = Subject::Profile(ProfileId::parse("42").expect("id"));
    DataRequest::accepted(
        RequestId::random(),
        AccountId::try_from(account).expect("id"),
        subject,
        None,
        Timestamp::now(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_requests_insert_once_and_change_only_under_their_guard() {
    let env = Env::provision();
    let clients = env.clients().await;
    let store = std::sync::Arc::new(DynamoDbRequests::new(clients.dynamodb.clone(), env.resources().requests_table));
    let request = request(1);
    assert!(store.insert(&request).await.expect("insert"));
    assert!(!store.insert(&request).await.expect("insert"), "the id is taken");
    assert_eq!(store.get(request.id).await.expect("get"), Some(request.clone()));
    assert_eq!(store.get(RequestId::random()).await.expect("get"), None);

    let now = Timestamp::now();
    let progress = Transition::Progress { written: 10 };
    assert!(!store.update(request.id, &progress).await.expect("update"), "not building yet");
    let start = Transition::StartBuild { now, lease_until: now.plus_seconds(60) };
    assert!(store.update(request.id, &start).await.expect("update"));
    assert!(!store.update(request.id, &start).await.expect("update"), "the lease is held");
    assert!(store.update(request.id, &progress).await.expect("update"));
    let stored = store.get(request.id).await.expect("get").expect("stored");
    assert_eq!((stored.state, stored.available, stored.lease_until), (State::Building, 10, Some(now.plus_seconds(60))));
    assert_eq!(store.unfinished().await.expect("scan"), vec![request.id]);

    let built = Transition::Built { bytes: 10, completed: now, expires: now, records: Vec::new() };
    assert!(store.update(request.id, &built).await.expect("update"));
    assert_eq!(store.expiring(now, 10).await.expect("scan"), vec![request.id]);
    assert!(store.expiring(now.plus_seconds(-1), 10).await.expect("scan").is_empty());

    // Concurrent writers racing on the version condition: each lands, none is lost.
    let tasks: Vec<_> = (1..=8u32)
        .map(|n| {
            let store = std::sync::Arc::clone(&store);
            tokio::spawn(async move {
                let failed =
                    Transition::DeliveryFailed { attempts: n, method: "web".into(), error: "e".into(), last: false };
                store.update(request.id, &failed).await
            })
        })
        .collect();
    for task in tasks {
        assert!(task.await.expect("task").expect("update"), "every guarded update lands");
    }
}

#[tokio::test]
async fn dynamodb_accounts_store_only_token_hashes_and_find_the_account_by_token() {
    let env = Env::provision();
    let clients = env.clients().await;
    let accounts = DynamoDbAccounts::new(clients.dynamodb.clone(), env.resources().accounts_table.clone());
    let (first, second) = (AccessToken::generate(), AccessToken::generate());
    let secret = WebhookSecret::generate();
    let a = accounts.create(&first.hash(), &secret).await.expect("create");
    let b = accounts.create(&second.hash(), &WebhookSecret::generate()).await.expect("create");
    assert_ne!(a, b);
    assert_eq!(accounts.by_token(&first.hash()).await.expect("lookup"), Some(a));
    assert_eq!(accounts.by_token(&second.hash()).await.expect("lookup"), Some(b));
    assert_eq!(accounts.by_token(&AccessToken::generate().hash()).await.expect("lookup"), None);
    assert_eq!(accounts.webhook_secret(a).await.expect("secret"), Some(secret));
    let third = AccessToken::generate();
    assert!(accounts.add_token(a, &third.hash()).await.expect("add"));
    assert_eq!(accounts.by_token(&third.hash()).await.expect("lookup"), Some(a));
    assert!(!accounts.add_token(AccountId::try_from(999).expect("id"), &third.hash()).await.expect("add"));
    // Nothing in the table holds a token in the clear.
    let scan = clients.dynamodb.scan().table_name(env.resources().accounts_table).send().await.expect("scan");
    let dump = format!("{:?}", scan.items());
    assert!(!dump.contains(first.expose()) && !dump.contains(third.expose()));
}

#[tokio::test]
async fn dynamodb_accounts_keep_a_signing_profile_and_the_secret_keeps_the_signing_keys() {
    let env = Env::provision();
    let clients = env.clients().await;
    let accounts = DynamoDbAccounts::new(clients.dynamodb.clone(), env.resources().accounts_table.clone());
    let account = accounts.create(&AccessToken::generate().hash(), &WebhookSecret::generate()).await.expect("create");
    let unknown = AccountId::try_from(999).expect("id");
    assert_eq!(accounts.signing_profile(account).await.expect("read"), Some(SigningProfile::StandardWebhooks));
    assert!(accounts.set_signing_profile(account, SigningProfile::Copernica).await.expect("set"));
    assert_eq!(accounts.signing_profile(account).await.expect("read"), Some(SigningProfile::Copernica));
    assert!(!accounts.set_signing_profile(unknown, SigningProfile::Copernica).await.expect("set"));
    assert_eq!(accounts.signing_profile(unknown).await.expect("read"), None, "no item is made for it");

    // The stack's secret starts without a value: no keys; then it keeps what is saved.
    let secret = aws::SecretSigningKeys::new(clients.secrets.clone(), env.get("DATAREQUEST_SIGNING_SECRET_ARN").into());
    assert!(secret.load().await.expect("load").ids().is_empty());
    let id = KeyId::parse("dr1._domainkey.shop.test").expect("id");
    let mut keyring = Keyring::default();
    keyring.add(SigningKey::generate(id.clone(), Timestamp::now()).expect("key"));
    secret.save(&keyring).await.expect("save");
    assert_eq!(secret.load().await.expect("load").ids(), vec![&id]);
}

#[tokio::test]
async fn exports_built_on_aws_adapters_equal_the_reference_built_in_memory() {
    let env = Env::provision();
    let clients = env.clients().await;
    let (app, _) = datarequest::compose::aws(&clients, &env.resources(), &env.lookup()).expect("app");
    let account = app.create_account().await.expect("account").account;
    assert_eq!(account.get(), 1, "a fresh table starts at account 1, as the sample data expects");
    datarequest::compose::ports(&app).subjects.load(&sample()).await.expect("load");
    let (reference, _) = datarequest::compose::memory(Settings::for_tests("https://api.example.test"));
    datarequest::compose::ports(&reference)
        .accounts
        .create(&AccessToken::generate().hash(), &WebhookSecret::generate())
        .await
        .expect("account");
    datarequest::compose::ports(&reference).subjects.load(&sample()).await.expect("load");

    for subject in ["profile:42", "subprofile:4201", "email:guest@example.org", "email:Jane.Doe@example.com"] {
        let (kind, value) = subject.split_once(':').expect("pair");
        let subject = Subject::from_parts(kind, value).expect("subject");
        let mut bytes = Vec::new();
        for app in [&app, &reference] {
            let id = app
                .submit(account, subject.clone(), None, &datarequest::app::Origin::default())
                .await
                .expect("accepted");
            app.handle_message(id, 1).await.expect("built");
            let mut file = datarequest::compose::ports(app)
                .exports
                .open(id, ExportFormat::Json)
                .await
                .expect("open")
                .expect("the export exists");
            let mut data = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut file.reader, &mut data).await.expect("read");
            assert_eq!(file.len, data.len() as u64);
            bytes.push(data);
        }
        assert_eq!(String::from_utf8_lossy(&bytes[0]), String::from_utf8_lossy(&bytes[1]), "{subject:?}");
    }
}

#[tokio::test]
async fn dynamodb_subjects_page_long_histories_and_keep_large_mime_in_s3() {
    let env = Env::provision();
    let subjects = env.subjects().await;
    let big_mime = format!("From: a@shop.example\r\nSubject: big\r\n\r\n{}", "x".repeat(500 * 1024));
    let mut lines = vec![
        serde_json::json!({"kind":"profile","account":1,"id":7,"database":1,"created":"2024-01-01 00:00:00","modified":"2024-01-01 00:00:00"}),
        serde_json::json!({"kind":"subprofile","account":1,"id":70,"profile":7,"collection":1,"created":"2024-01-01 00:00:00","modified":"2024-01-01 00:00:00"}),
        serde_json::json!({"kind":"message","account":1,"id":"big","profile":null,"subprofile":70,"email":"Seven@Example.com","mailing":"1","subject":"big","sent":"2024-01-02 00:00:00","mime":big_mime}),
    ];
    for n in 0..1200 {
        lines.push(serde_json::json!({"kind":"event","account":1,"type":"click","message":"big","profile":null,"subprofile":70,
            "email":"seven@example.com","time":format!("2024-01-03 00:{:02}:{:02}", (n / 60) % 60, n % 60),"data":{"n":n}}));
    }
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let records: Vec<Record> = parse_records(&text).expect("valid");
    subjects.load(&records).await.expect("load");

    let account = AccountId::try_from(1).expect("id");
    for subject in [
        Subject::from_parts("profile", "7"),
        Subject::from_parts("subprofile", "70"),
        Subject::from_parts("email", "seven@EXAMPLE.com"),
    ] {
        let subject = subject.expect("subject");
        let page = subjects.messages(account, &subject, None).await.expect("messages");
        assert_eq!(page.items.len(), 1, "{subject:?}: the subprofile's message belongs to its profile too");
        assert!(matches!(page.items[0].mime, Mime::Stored(_)), "a large body stays in the bucket");
        assert_eq!(super::mime_text(&subjects, &page.items[0].mime).await, big_mime);
        let mut events = Vec::new();
        let mut cursor = None;
        let mut pages = 0;
        loop {
            let page = subjects
                .events(account, &subject, datarequest::domain::EventKind::Click, cursor.as_deref())
                .await
                .expect("events");
            events.extend(page.items);
            pages += 1;
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(events.len(), 1200, "{subject:?}");
        assert!(pages >= 3, "{subject:?}: {pages} pages");
        assert!(events.windows(2).all(|w| w[0].time <= w[1].time), "in time order");
    }
    // Re-importing a message with another send time replaces it.
    let moved = serde_json::json!({"kind":"message","account":1,"id":"big","profile":7,"subprofile":null,"email":"seven@example.com",
        "mailing":"1","subject":"big","sent":"2024-05-05 00:00:00","mime":"small"});
    subjects.load(&parse_records(&moved.to_string()).expect("valid")).await.expect("load");
    let page = subjects
        .messages(account, &Subject::from_parts("profile", "7").expect("subject"), None)
        .await
        .expect("messages");
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].mime, Mime::Text("small".into()), "a small body comes with its page");
}

#[tokio::test]
async fn s3_exports_stream_through_multipart_and_are_served_by_presigned_urls() {
    let env = Env::provision();
    let clients = env.clients().await;
    let exports = S3Exports::new(clients.s3.clone(), env.resources().exports_bucket);
    let id = RequestId::random();
    let chunk: Vec<u8> = (0..1024 * 1024).map(|n| (n % 251) as u8).collect();
    let mut writer = exports.create(id, ExportFormat::Json).await.expect("create");
    for _ in 0..20 {
        writer.write(&chunk).await.expect("write");
    }
    assert!(exports.open(id, ExportFormat::Json).await.expect("open").is_none(), "invisible until finished");
    assert_eq!(writer.finish().await.expect("finish"), 20 * 1024 * 1024);
    let uploads = clients.s3.list_objects_v2().bucket(env.resources().exports_bucket).send().await.expect("list");
    assert_eq!(uploads.contents().len(), 1);

    let Some(Served::Redirect(url)) =
        exports.serve(id, ExportFormat::Json, Duration::from_secs(60)).await.expect("serve")
    else {
        panic!("S3 exports are served by redirect");
    };
    assert!(url.contains("X-Amz-Signature=") && url.contains("X-Amz-Expires=60"), "{url}");
    let body = reqwest::get(&url).await.expect("GET").bytes().await.expect("body");
    assert_eq!(body.len(), 20 * 1024 * 1024);
    assert!(body.chunks(chunk.len()).all(|c| c == chunk.as_slice()));

    // The HTML report: its own key and content type; a small one is answered in the body.
    let page = b"<!DOCTYPE html><title>report</title>".to_vec();
    let mut html = exports.create(id, ExportFormat::Html).await.expect("create");
    html.write(&page).await.expect("write");
    assert_eq!(html.finish().await.expect("finish"), page.len() as u64);
    let bucket = env.resources().exports_bucket;
    let head = clients.s3.head_object().bucket(&bucket).key(format!("exports/{id}.html")).send().await.expect("head");
    assert_eq!(head.content_type(), Some("text/html; charset=utf-8"));
    let Some(Served::Stream(mut file)) =
        exports.serve(id, ExportFormat::Html, Duration::from_secs(60)).await.expect("serve")
    else {
        panic!("a small report is answered in the body");
    };
    let mut served = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut file.reader, &mut served).await.expect("read");
    assert_eq!(served, page);

    exports.delete(id).await.expect("delete");
    for format in ExportFormat::ALL {
        assert!(exports.open(id, format).await.expect("open").is_none(), "{format:?} deleted");
        assert!(exports.serve(id, format, Duration::from_secs(60)).await.expect("serve").is_none());
    }
    let left = clients.s3.list_objects_v2().bucket(&bucket).send().await.expect("list");
    assert!(left.contents().is_empty(), "both files are gone");
    exports.delete(id).await.expect("deleting twice is fine");
}

#[tokio::test]
async fn the_sqs_queue_carries_the_request_id_and_ses_takes_the_raw_mail() {
    let env = Env::provision();
    let clients = env.clients().await;
    let url = env.get("DATAREQUEST_BUILD_QUEUE_URL").to_owned();
    let queue = SqsQueue::new(clients.sqs.clone(), url.clone());
    let id = RequestId::random();
    queue.enqueue(id).await.expect("enqueue");
    let received = clients.sqs.receive_message().queue_url(&url).wait_time_seconds(2).send().await.expect("receive");
    let bodies: Vec<&str> = received.messages().iter().filter_map(|m| m.body()).collect();
    assert_eq!(bodies.len(), 1);
    assert_eq!(build_message::parse(bodies[0]), Ok(id));

    let mailer = aws::SesMailer::new(clients.ses.clone());
    let mail = datarequest::ports::OutgoingMail {
        request: id,
        from: "datarequest@example.com".into(),
        to: datarequest::domain::EmailAddress::parse("dpo@customer.example").expect("address"),
        raw: format!("From: datarequest@example.com\r\nTo: dpo@customer.example\r\nSubject: Your data request {id}\r\n\r\nhello\r\n").into_bytes(),
    };
    datarequest::ports::Mailer::send(&mailer, &mail).await.expect("sent");
    let sent = env.sent_mail().await;
    let ours: Vec<_> = sent.iter().filter(|(_, _, raw)| raw.contains(&format!("Your data request {id}"))).collect();
    assert_eq!(ours.len(), 1);
    assert_eq!(ours[0].0, "datarequest@example.com");
    assert!(ours[0].1.iter().all(|to| to == "dpo@customer.example"));
}

#[tokio::test]
async fn dynamodb_subjects_carry_the_retention_as_ttl_and_an_erasure_leaves_no_item_or_mime_body() {
    let env = Env::provision();
    let clients = env.clients().await;
    let resources = env.resources();
    let subjects = DynamoDbSubjects::new(
        clients.dynamodb.clone(),
        resources.subjects_table.clone(),
        clients.s3.clone(),
        resources.exports_bucket.clone(),
    )
    .with_retention(Some(Duration::from_secs(10 * 86_400)));
    // Text that does not compress below the inline limit, so the body goes to the bucket.
    let noise = super::noise(20_000, 7);
    let lines = [
        serde_json::json!({"kind":"profile","account":9,"id":9,"database":1,"email":"Nine@Example.com",
            "created":"2024-01-01 00:00:00","modified":"2024-01-01 00:00:00"}),
        serde_json::json!({"kind":"message","account":9,"id":"m9","profile":9,"email":"nine@example.com","mailing":"1",
            "subject":"s","sent":"2025-01-01 00:00:00","mime":format!("Subject: s\r\n\r\n{noise}")}),
        serde_json::json!({"kind":"event","account":9,"id":"e9","type":"click","message":"m9","profile":9,
            "email":"nine@example.com","time":"2025-01-02 00:00:00"}),
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    subjects.load(&parse_records(&text).expect("valid")).await.expect("load");

    let objects = || async {
        let listed = clients
            .s3
            .list_objects_v2()
            .bucket(&resources.exports_bucket)
            .prefix("subjects/")
            .send()
            .await
            .expect("list");
        listed.contents().len()
    };
    let items = || async {
        let scanned = clients.dynamodb.scan().table_name(&resources.subjects_table).send().await.expect("scan");
        scanned.items().to_vec()
    };
    assert_eq!(objects().await, 1, "the MIME body is in the bucket");
    let ttl_of = |prefix: &str, all: &[std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>]| {
        all.iter()
            .find(|i| i.get("SK").and_then(|v| v.as_s().ok()).is_some_and(|sk| sk.starts_with(prefix)))
            .and_then(|i| i.get("ttl").and_then(|v| v.as_n().ok()).cloned())
    };
    let all = items().await;
    assert_eq!(ttl_of("M#", &all).as_deref(), Some("1736553600"), "sent + 10 days");
    assert_eq!(ttl_of("E#", &all).as_deref(), Some("1736640000"), "event time + 10 days");
    assert_eq!(ttl_of("PROFILE", &all), None, "profiles are kept until erased");

    let erase = parse_line(r#"{"kind":"erase","account":9,"email":"NINE@example.COM"}"#).expect("valid");
    let Some(datarequest::domain::Line::Erase(erasure)) = erase else { panic!("an erase line") };
    subjects.erase(&erasure).await.expect("erase");
    assert_eq!(objects().await, 0, "the MIME body is erased from the bucket");
    assert_eq!(items().await.len(), 0, "no item is left: not the profile, message, event or id pointers");
    subjects.erase(&erasure).await.expect("erasing again is no error");
}

#[tokio::test]
async fn dynamodb_idempotency_keys_name_one_request_per_account_for_their_window() {
    let env = Env::provision();
    let clients = env.clients().await;
    let requests = DynamoDbRequests::new(clients.dynamodb.clone(), env.resources().requests_table);
    let (a, b) = (AccountId::try_from(1).expect("id"), AccountId::try_from(2).expect("id"));
    let now = Timestamp::from_unix(1_800_000_000);
    let claim = |request: u64, fingerprint: &str| datarequest::ports::KeyClaim {
        request: RequestId::try_from(request).expect("id"),
        fingerprint: fingerprint.to_owned(),
        expires: now.plus_seconds(86_400),
    };
    assert_eq!(requests.claim_key(a, "k", &claim(11, "profile:42|"), now).await.expect("claim"), None);
    let stored = requests.claim_key(a, "k", &claim(12, "profile:43|"), now).await.expect("claim");
    assert_eq!(stored, Some(claim(11, "profile:42|")), "the first claim stands");
    assert_eq!(requests.claim_key(b, "k", &claim(13, "profile:42|"), now).await.expect("claim"), None, "per account");
    let later = now.plus_seconds(86_401);
    assert_eq!(requests.claim_key(a, "k", &claim(14, "profile:42|"), later).await.expect("claim"), None, "expired");
    assert_eq!(requests.get(RequestId::try_from(11).expect("id")).await.expect("get"), None, "keys are no requests");
    assert!(requests.unfinished().await.expect("scan").is_empty(), "nor do scans of requests see them");
}

#[tokio::test]
async fn the_dynamodb_audit_log_keeps_each_accounts_entries_in_order_with_a_ttl() {
    use datarequest::domain::{AuditEntry, AuditEvent};
    use datarequest::ports::AuditLog;
    let env = Env::provision();
    let clients = env.clients().await;
    let table = env.get("DATAREQUEST_AUDIT_TABLE").to_owned();
    let audit = aws::DynamoDbAudit::new(clients.dynamodb.clone(), table.clone(), Duration::from_secs(1095 * 86_400));
    let (a, b) = (AccountId::try_from(1).expect("id"), AccountId::try_from(2).expect("id"));
    let id = RequestId::random();
    let at = Timestamp::from_unix(1_800_000_000);
    let events = [AuditEvent::BuildStarted, AuditEvent::Expired, AuditEvent::BuildStarted];
    for (n, event) in events.iter().enumerate() {
        let entry = AuditEntry { at: at.plus_seconds(i64::try_from(n).expect("n")), event: event.clone() };
        audit.append(a, id, &entry).await.expect("append");
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let read = audit.entries(a, id).await.expect("entries");
    assert_eq!(read.iter().map(|e| e.event.clone()).collect::<Vec<_>>(), events, "oldest first");
    assert!(audit.entries(b, id).await.expect("entries").is_empty(), "another account reads nothing");
    let scanned = clients.dynamodb.scan().table_name(&table).send().await.expect("scan");
    let ttl = scanned.items()[0].get("ttl").and_then(|v| v.as_n().ok()).cloned();
    assert_eq!(ttl.as_deref(), Some("1894608000"), "kept 1095 days from the entry");
}

#[tokio::test]
async fn dynamodb_accounts_add_revoke_and_delete_tokens_without_a_scan() {
    let env = Env::provision();
    let clients = env.clients().await;
    let accounts = DynamoDbAccounts::new(clients.dynamodb.clone(), env.resources().accounts_table);
    let (first, second, third) =
        (AccessToken::generate().hash(), AccessToken::generate().hash(), AccessToken::generate().hash());
    let account = accounts.create(&first, &WebhookSecret::generate()).await.expect("create");
    let other = accounts.create(&third, &WebhookSecret::generate()).await.expect("create");
    assert!(accounts.add_token(account, &second).await.expect("add"));
    assert_eq!(accounts.by_token(&second).await.expect("lookup"), Some(account));
    assert!(!accounts.revoke_token(other, &second).await.expect("revoke"), "only its own account revokes it");
    assert!(accounts.revoke_token(account, &second).await.expect("revoke"));
    assert!(!accounts.revoke_token(account, &second).await.expect("revoke"), "gone already");
    assert_eq!(accounts.by_token(&second).await.expect("lookup"), None);

    assert!(accounts.add_token(account, &second).await.expect("add"));
    assert!(accounts.delete_account(account).await.expect("delete"));
    for token in [&first, &second] {
        assert_eq!(accounts.by_token(token).await.expect("lookup"), None, "every token of the account is gone");
    }
    assert_eq!(accounts.webhook_secret(account).await.expect("read"), None);
    assert!(!accounts.add_token(account, &first).await.expect("add"), "a deleted account takes no token");
    assert!(!accounts.delete_account(account).await.expect("delete"), "deleting twice finds nothing");
    assert_eq!(accounts.by_token(&third).await.expect("lookup"), Some(other), "another account is untouched");
}
