//! Erasure on AWS: after an erasure, or the deletion of the account, no item of any table and
//! no object of the bucket holds the erased subject's data (compressed MIME bodies and exports
//! are searched decompressed).

use std::io::Read;

use datarequest::domain::{AccountId, EmailAddress, Erasure, ProfileId, Subject};
use serde_json::json;

use super::{Env, noise};

const MARKER: &str = "Zq7Aws-Erasure-Marker-4c1d";
const ADDRESS: &str = "aws-marker-4c1d@erasure.example";

fn records(account: AccountId) -> Vec<datarequest::domain::Record> {
    let at = "2025-02-03 04:05:06";
    // A body large and random enough to be kept in the bucket, not in its item.
    let mime = format!("Subject: {MARKER}\r\n\r\n{MARKER} {}\r\n", noise(6000, 7));
    let lines = [
        json!({"kind":"profile","account":account.get(),"id":9200,"database":1,"email":ADDRESS,
               "fields":{"note":MARKER},"created":at,"modified":at}),
        json!({"kind":"subprofile","account":account.get(),"id":9201,"profile":9200,"collection":1,
               "email":ADDRESS,"fields":{"note":MARKER},"created":at,"modified":at}),
        json!({"kind":"message","account":account.get(),"id":"m-9200","profile":9200,"subprofile":9201,
               "email":ADDRESS,"mailing":"1","subject":MARKER,"sent":at,"mime":mime}),
        json!({"kind":"event","account":account.get(),"type":"click","message":"m-9200","profile":9200,
               "subprofile":9201,"email":ADDRESS,"time":at,"data":{"url":format!("https://shop.example/{MARKER}")}}),
    ];
    let text: String = lines.iter().map(|line| format!("{line}\n")).collect();
    datarequest::app::ingest::parse_records(&text).expect("valid lines")
}

/// Where the marker or the address is found: table items and bucket objects.
async fn holding(env: &Env) -> Vec<String> {
    let clients = env.clients().await;
    let resources = env.resources();
    let needles = [MARKER.to_ascii_lowercase(), ADDRESS.to_ascii_lowercase()];
    let found = |text: &str| needles.iter().any(|n| text.to_ascii_lowercase().contains(n.as_str()));
    let mut hits = Vec::new();
    for table in
        [&resources.subjects_table, &resources.requests_table, &resources.accounts_table, &resources.audit_table]
    {
        let mut start = None;
        loop {
            let page =
                clients.dynamodb.scan().table_name(table).set_exclusive_start_key(start).send().await.expect("scan");
            for item in page.items() {
                let mut text = format!("{item:?}");
                // Small MIME bodies are kept gzipped in their item.
                for value in item.values() {
                    if let Ok(blob) = value.as_b() {
                        text.push_str(&gunzipped(blob.as_ref()));
                    }
                }
                if found(&text) {
                    hits.push(format!("an item of {table}"));
                }
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
    }
    let listed = clients.s3.list_objects_v2().bucket(&resources.exports_bucket).send().await.expect("list");
    for object in listed.contents() {
        let key = object.key().unwrap_or_default();
        let body = clients.s3.get_object().bucket(&resources.exports_bucket).key(key).send().await.expect("get");
        let bytes = body.body.collect().await.expect("body").into_bytes();
        let text = format!("{}{}", String::from_utf8_lossy(&bytes), gunzipped(&bytes));
        if found(&text) {
            hits.push(format!("object {key}"));
        }
    }
    hits
}

fn gunzipped(bytes: &[u8]) -> String {
    let mut text = String::new();
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let _ = flate2::read::GzDecoder::new(bytes).read_to_string(&mut text);
    }
    text
}

/// An account with the marked subject, and a built export of its profile and of its address.
async fn arranged(env: &Env) -> (datarequest::App, AccountId) {
    let clients = env.clients().await;
    let (app, _) = datarequest::compose::aws(&clients, &env.resources(), &env.lookup()).expect("app");
    let account = app.create_account().await.expect("account").account;
    datarequest::compose::ports(&app).subjects.load(&records(account)).await.expect("load");
    let address = EmailAddress::parse(ADDRESS).expect("address");
    for subject in [Subject::Profile(ProfileId::parse("9200").expect("id")), Subject::Email(address)] {
        let origin = datarequest::app::Origin::default();
        let id = app.submit(account, subject, None, &origin).await.expect("accepted");
        app.handle_message(id, 1).await.expect("built");
    }
    let before = holding(env).await;
    assert!(before.iter().any(|hit| hit.starts_with("object")), "the bucket holds the subject at first: {before:?}");
    assert!(before.iter().any(|hit| hit.starts_with("an item")), "the tables hold the subject at first: {before:?}");
    (app, account)
}

#[tokio::test]
async fn an_erased_subject_is_in_no_item_and_no_object() {
    let env = Env::provision();
    let (app, account) = arranged(&env).await;

    let operator = app.operator();
    operator.erase(&Erasure::Profile(account, ProfileId::parse("9200").expect("id"))).await.expect("erased");
    operator.erase(&Erasure::Email(account, EmailAddress::parse(ADDRESS).expect("address"))).await.expect("erased");

    let left = holding(&env).await;
    assert!(left.is_empty(), "erased data is still stored: {left:?}");
}

#[tokio::test]
async fn a_deleted_account_leaves_no_item_and_no_object() {
    let env = Env::provision();
    let (app, account) = arranged(&env).await;

    assert!(app.operator().delete_account(account, true).await.expect("deleted"));

    let left = holding(&env).await;
    assert!(left.is_empty(), "the deleted account's data is still stored: {left:?}");
    assert_eq!(app.erase_deleted_accounts().await.expect("swept"), 0, "no erasure is left to the sweep");
}

#[tokio::test]
async fn an_account_deleted_in_the_background_is_refused_at_once_and_erased_by_the_sweep() {
    let env = Env::provision();
    let (app, account) = arranged(&env).await;

    assert!(app.operator().delete_account(account, false).await.expect("deleted"));
    let accounts = &datarequest::compose::ports(&app).accounts;
    assert!(!accounts.exists(account).await.expect("read"), "the account is refused at once");
    assert!(!holding(&env).await.is_empty(), "the data waits for the sweep");
    assert!(
        app.operator().delete_account(account, false).await.expect("again"),
        "deleting again finds its erasure due"
    );

    assert_eq!(app.erase_deleted_accounts().await.expect("swept"), 1, "the sweep erases the account");
    let left = holding(&env).await;
    assert!(left.is_empty(), "the deleted account's data is still stored: {left:?}");
    assert_eq!(app.erase_deleted_accounts().await.expect("swept"), 0, "and only once");
}
