//! Sources on a real MariaDB: the private server of `infra/mariadb.sh`, which the test command
//! starts (and whose URL it exports). Each test loads the sample shop
//! (`examples/mysql/schema.sql`) into a database of its own and points the real binary at it
//! with a mapping: the shipped one (`examples/mysql/sources.toml`) or one of its own.

use std::process::Output;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use serde_json::{Value, json};

use crate::databases::{
    self, Relay, assert_cut_off, assert_finds_nothing, assert_one_pooled_connection, assert_snapshot_held,
    assert_timed_out, column, export, records, settle,
};
use crate::helpers::{TestApp, section};

const SCHEMA: &str = include_str!("../../examples/mysql/schema.sql");
const MAPPING: &str = include_str!("../../examples/mysql/sources.toml");

/// The server's superuser URL and the reading account (`user:password`).
fn server() -> (reqwest::Url, String) {
    databases::server("DATAREQUEST_TEST_MARIADB_URL", "DATAREQUEST_TEST_MARIADB_READER", "MySQL", "mariadb.sh")
}

async fn connect(url: &str) -> mysql_async::Conn {
    mysql_async::Conn::from_url(url)
        .await
        .unwrap_or_else(|e| panic!("cannot reach the test server (is it running? ./infra/mariadb.sh start): {e}"))
}

/// A database of its own with the sample shop, readable (only) by the reading account.
pub struct Shop {
    /// The superuser, connected to this database.
    pub admin: mysql_async::Conn,
    /// The reading account's URL of this database.
    pub url: String,
    /// The database's name.
    pub name: String,
    /// Where the server listens.
    port: u16,
}

impl Shop {
    pub async fn new() -> Self {
        let (mut url, reader) = server();
        let name = databases::unique_name();
        connect(url.as_str()).await.query_drop(format!("CREATE DATABASE {name}")).await.expect("create database");
        url.set_path(&format!("/{name}"));
        let mut admin = connect(url.as_str()).await;
        admin.query_drop(SCHEMA).await.expect("the sample schema loads");
        let user = reader.split(':').next().expect("user");
        admin.query_drop(format!("GRANT SELECT ON {name}.* TO '{user}'@'127.0.0.1'")).await.expect("grant");
        let host = url.host_str().expect("host").to_owned();
        let port = url.port().expect("port");
        Self { admin, url: format!("mysql://{reader}@{host}:{port}/{name}"), name, port }
    }

    /// The environment of a server reading this database with `mapping`.
    fn env<'a>(&'a self, mapping: &'a str) -> Vec<(&'a str, &'a str)> {
        vec![("DATAREQUEST_SOURCES_TOML", mapping), ("SHOP_MYSQL_URL", &self.url)]
    }
}

#[tokio::test]
async fn every_column_type_of_the_mysql_sample_shop_reaches_the_export_as_the_docs_say() {
    let shop = Shop::new().await;
    let (app, account) = TestApp::start(&shop.env(MAPPING));

    let (id, status) = settle(&app, &account, "profile/7001").await;

    assert_eq!(status["state"], "built", "{status}");
    let bytes = String::from_utf8(app.data(id, &account).await).expect("utf-8");
    let export: Value = serde_json::from_str(&bytes).expect("JSON");
    assert!(bytes.contains(r#"["profile",{"ID":7001,"name":"Ana Silva","email":"#), "members in column order: {bytes}");
    assert!(
        bytes.contains(r#""preferences":{"newsletter":false,"sizes":["M","L"],"height":1.70}"#),
        "the JSON as the server keeps it: {bytes}"
    );
    assert_eq!(
        records(&export, "profile"),
        [json!({
            "ID": 7001, "name": "Ana Silva", "email": "Ana.Silva@example.com", "phone": "+351 91 234 5678",
            "balance": "98765432109.99", "rating": 3.25, "score": 12.5, "vip": 0, "plan": "plus", "interests": "new",
            "flags": "010", "preferences": {"newsletter": false, "sizes": ["M", "L"], "height": 1.7}, "avatar": "AP8Q",
            "birthday": "1985-11-30", "member_since": 2024, "quiet_from": "838:59:59",
            "created": "2024-02-29 22:59:59", "modified": "2025-01-01 00:00:00"
        })],
        "bigint, varchar, decimal, float, double, boolean, enum, set, bit, json, blob, date, year, time, \
         timestamp (in UTC, without the fraction) and datetime"
    );
    assert_eq!(
        records(&export, "subprofiles"),
        [
            json!({"ID": 7101, "profile": 7001, "label": "work", "email": "ana@work.example", "created": "2024-03-01 08:00:00"}),
            json!({"ID": 7102, "profile": 7001, "label": "gift card", "email": null, "created": "2024-12-20 10:30:00"}),
        ],
        "an unsigned id is a number"
    );
    let destinations = records(&export, "destinations");
    assert_eq!(column(&destinations, "ID"), [json!("shop-7001-1"), json!("shop-7001-2")]);
    assert_eq!(column(&destinations, "subprofile"), [json!(null), json!(7101)]);
    assert!(destinations[1]["mime"].as_str().expect("mime").contains("invoice 2025-114 (EUR 59.90)"));
    assert_eq!(
        records(&export, "impressions"),
        [json!({"destination": "shop-7001-1", "timestamp": "2025-03-20 08:15:00", "profile": 7001, "subprofile": null,
                "email": "ana.silva@example.com", "ip": "198.51.100.7", "data": {"useragent": "Mozilla/5.0"}})]
    );
    assert_eq!(records(&export, "surveys")[0]["data"], json!({"answers": [5, 4, null], "survey": "satisfaction"}));
    for (name, count) in [("clicks", 1), ("deliveries", 1), ("errors", 1), ("abuses", 1), ("unsubscribes", 1)] {
        assert_eq!(records(&export, name).len(), count, "{name}");
    }
}

const TYPES: &str = r#"
[[source]]
name = "types"
kind = "mysql"
url_env = "SHOP_MYSQL_URL"

[source.email]
destinations = """
SELECT CAST(-128 AS SIGNED) AS tiny, 18446744073709551615 AS umax, -9223372036854775808 AS imin,
       CAST(12345678901234567890.000001 AS DECIMAL(30,6)) AS big, CAST(1.1 AS FLOAT) AS f, 2.5e300 AS d,
       CAST('2025-01-02 03:04:05.678' AS DATETIME(3)) AS dt, CAST('1999-12-31' AS DATE) AS eve,
       CAST('-01:02:03' AS TIME) AS back, b'1' AS bit1, x'00ff' AS bytes, CAST('abc' AS BINARY) AS bin,
       NULL AS nothing, 'Zoë' AS text, CONVERT(:email USING utf8mb4) AS asked, CONVERT(:email USING utf8mb4) AS again,
       @@session.time_zone AS tz, JSON_OBJECT('a', 1) AS made, :email AS raw
"""
"#;

#[tokio::test]
async fn other_types_nulls_and_extremes_take_their_documented_form() {
    let shop = Shop::new().await;
    let (app, account) = TestApp::start(&shop.env(TYPES));

    let export = export(&app, &account, "email/Types%40example.com").await;

    assert_eq!(
        records(&export, "destinations"),
        [json!({
            "tiny": -128, "umax": 18_446_744_073_709_551_615_u64, "imin": i64::MIN,
            "big": "12345678901234567890.000001", "f": 1.1, "d": 2.5e300, "dt": "2025-01-02 03:04:05",
            "eve": "1999-12-31", "back": "-01:02:03", "bit1": "AQ==", "bytes": "AP8=", "bin": "YWJj",
            "nothing": null, "text": "Zoë", "asked": "Types@example.com", "again": "Types@example.com",
            "tz": "+00:00", "made": "{\"a\": 1}", "raw": "VHlwZXNAZXhhbXBsZS5jb20="
        })]
    );
}

#[tokio::test]
async fn a_json_column_of_mariadb_comes_out_byte_for_byte() {
    let mut shop = Shop::new().await;
    shop.admin
        .query_drop(
            r#"CREATE TABLE docs (id INT PRIMARY KEY, doc JSON);
               INSERT INTO docs VALUES (1, '{"big": 12345678901234567890.12, "tiny": 1e-400, "dime": 0.10, "s": "a  b"}');"#,
        )
        .await
        .expect("docs");
    let mapping = r#"
[[source]]
name = "docs"
kind = "mysql"
url_env = "SHOP_MYSQL_URL"
[source.profile]
exists = "SELECT 1 FROM docs WHERE id = :profile"
profile = "SELECT id AS `ID`, doc FROM docs WHERE id = :profile"
"#;
    let (app, account) = TestApp::start(&shop.env(mapping));

    let (id, status) = settle(&app, &account, "profile/1").await;

    assert_eq!(status["state"], "built", "{status}");
    let bytes = String::from_utf8(app.data(id, &account).await).expect("utf-8");
    assert!(
        bytes.contains(r#"{"ID":1,"doc":{"big":12345678901234567890.12,"tiny":1e-400,"dime":0.10,"s":"a  b"}}"#),
        "{bytes}"
    );
    let report = app.get(&format!("/v1/datarequest/{id}/data?format=html&access_token={}", account.token)).await;
    let html = String::from_utf8(report.bytes).expect("utf-8");
    for number in ["12345678901234567890.12", "1e-400", "0.10"] {
        assert!(html.contains(&format!("<td>{number}</td>")), "the report shows {number} as written");
    }
}

#[tokio::test]
async fn nulls_of_every_mysql_type_are_null() {
    let shop = Shop::new().await;
    let (app, account) = TestApp::start(&shop.env(MAPPING));

    let profile = records(&export(&app, &account, "profile/7002").await, "profile");

    assert_eq!(
        profile,
        [json!({
            "ID": 7002, "name": "Bram de Wit", "email": "bram@example.org", "phone": null, "balance": "0.00",
            "rating": null, "score": null, "vip": 0, "plan": "free", "interests": "", "flags": null,
            "preferences": null, "avatar": null, "birthday": null, "member_since": null, "quiet_from": null,
            "created": "2025-05-05 05:05:05", "modified": null
        })]
    );
}

#[tokio::test]
async fn every_kind_of_subject_reads_its_own_mysql_queries_within_its_account() {
    let shop = Shop::new().await;
    let (app, account) = TestApp::start(&shop.env(MAPPING));

    let sub = export(&app, &account, "subprofile/7101").await;
    assert_eq!(column(&records(&sub, "subprofiles"), "ID"), [json!(7101)]);
    assert_eq!(column(&records(&sub, "destinations"), "ID"), [json!("shop-7001-2")]);
    assert_eq!(column(&records(&sub, "errors"), "destination"), [json!("shop-7001-2")]);
    assert!(records(&sub, "impressions").is_empty() && records(&sub, "deliveries").is_empty());

    // An address in another letter case: the column's collation ignores case.
    let email = export(&app, &account, "email/ANA.SILVA%40example.com").await;
    assert_eq!(column(&records(&email, "destinations"), "ID"), [json!("shop-7001-1")]);
    assert_eq!(records(&email, "impressions").len(), 1);
    assert!(section(&email, "profile").is_none(), "the layout of an e-mail export does not change");

    let other = app.create_account();
    let theirs = export(&app, &other, "profile/7001").await;
    assert_eq!(column(&records(&theirs, "profile"), "name"), [json!("Someone Else")]);
    assert_eq!(column(&records(&theirs, "destinations"), "ID"), [json!("shop-other-1")]);

    crate::helpers::assert_unknown(&app, &account, "profile/7003").await;
    crate::helpers::assert_unknown(&app, &account, "subprofile/7103").await;
}

#[tokio::test]
async fn a_hostile_address_is_bound_as_a_value_and_finds_nothing_in_mysql() {
    let shop = Shop::new().await;
    let (app, account) = TestApp::start(&shop.env(MAPPING));

    // x'OR'1'='1@example.com and x'OR'1'='1'#@example.com: valid addresses, and SQL if pasted
    // into the query (the second with a comment that ends the statement there).
    for subject in ["email/x%27OR%271%27%3D%271%40example.com", "email/x%27OR%271%27%3D%271%27%23%40example.com"] {
        assert_finds_nothing(&app, &account, subject).await;
    }
}

const SLOW: &str = r#"
[[source]]
name = "shop"
kind = "mysql"
url_env = "SHOP_MYSQL_URL"

[source.profile]
exists = "SELECT 1 FROM customer WHERE tenant = :account AND id = :profile"
profile = """
SELECT c.id AS `ID`, c.name FROM customer c, (SELECT SLEEP(2) AS pause) p WHERE c.tenant = :account AND c.id = :profile"""
destinations = "SELECT id AS `ID`, subject FROM messages WHERE tenant = :account AND customer_id = :profile ORDER BY sent_at, id"
"#;

#[tokio::test]
async fn rows_changed_while_a_mysql_build_runs_do_not_tear_its_export() {
    let mut shop = Shop::new().await;
    let (app, account) = TestApp::start(&shop.env(SLOW));

    let id = app.submit("profile/7001", &account, None).await;
    let start = Instant::now();
    loop {
        let sleeping: Option<i64> = shop
            .admin
            .exec_first(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = ? AND INFO LIKE '%SLEEP(2)%' \
                 AND USER = 'datarequest'",
                (shop.name.clone(),),
            )
            .await
            .expect("processlist");
        if sleeping.unwrap_or(0) > 0 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the build's query never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shop.admin
        .query_drop(
            "START TRANSACTION;
             UPDATE customer SET name = 'Ana Changed' WHERE tenant = 1 AND id = 7001;
             UPDATE messages SET subject = 'Changed' WHERE id = 'shop-7001-1';
             INSERT INTO messages VALUES ('shop-7001-3', 1, 7001, NULL, 'ana.silva@example.com', 'x', 'New',
                                          '2025-01-01 00:00:00', 'Subject: New');
             COMMIT;",
        )
        .await
        .expect("concurrent change");
    assert_snapshot_held(&app, &account, id).await;
}

const TIMING_OUT: &str = r#"
[[source]]
name = "shop"
kind = "mysql"
url_env = "SHOP_MYSQL_URL"
statement_timeout_secs = 0.5

[source.profile]
exists = "SELECT 1 FROM customer WHERE tenant = :account AND id = :profile"
profile = "SELECT id AS `ID` FROM customer WHERE tenant = :account AND id = :profile"
destinations = "SELECT m.id AS `ID`, SLEEP(3) AS pause FROM messages m WHERE m.tenant = :account AND m.customer_id = :profile"
"#;

#[tokio::test]
async fn a_mysql_query_past_its_time_limit_fails_the_request_with_a_reason_naming_the_source() {
    let shop = Shop::new().await;
    let mut env = shop.env(TIMING_OUT);
    env.push(("DATAREQUEST_BUILD_ATTEMPTS", "1"));
    let (app, account) = TestApp::start(&env);

    let started = Instant::now();
    assert_timed_out(&app, &account, "max_statement_time").await;
    assert!(started.elapsed() < Duration::from_secs(20), "stopped by the limit, not run to its end");
}

const CONNECTION: &str = r#"
[[source]]
name = "shop"
kind = "mysql"
url_env = "SHOP_MYSQL_URL"

[source.profile]
exists = "SELECT 1 FROM customer WHERE tenant = :account AND id = :profile"
profile = "SELECT id AS `ID`, CONNECTION_ID() AS connection FROM customer WHERE tenant = :account AND id = :profile"
"#;

#[tokio::test]
async fn builds_and_existence_checks_reuse_one_pooled_mysql_connection() {
    let shop = Shop::new().await;
    let (app, account) = TestApp::start(&shop.env(CONNECTION));

    assert_one_pooled_connection(&app, &account).await;
}

// Two threads: the relay keeps relaying while the test waits for the server to start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_mysql_server_fails_the_build_and_the_existence_check_and_stops_serve_starting() {
    let shop = Shop::new().await;
    let relay = Relay::to(format!("127.0.0.1:{}", shop.port).parse().expect("address")).await;
    let through = shop.url.replace(&format!(":{}/", shop.port), &format!(":{}/", relay.port));
    let env = vec![
        ("DATAREQUEST_SOURCES_TOML", MAPPING),
        ("SHOP_MYSQL_URL", through.as_str()),
        ("DATAREQUEST_BUILD_ATTEMPTS", "1"),
    ];
    let (app, account) = TestApp::start(&env);
    assert_cut_off(&app, &account, &relay).await;
}

fn sources_check(mapping: &str, url: &str) -> Output {
    databases::sources_check(mapping, "SHOP_MYSQL_URL", url)
}

#[tokio::test]
async fn sources_check_reports_every_mysql_mistake_by_source_kind_and_section() {
    let shop = Shop::new().await;
    let fine = sources_check(MAPPING, &shop.url);
    assert!(fine.status.success(), "{}", String::from_utf8_lossy(&fine.stdout));
    assert_eq!(String::from_utf8_lossy(&fine.stdout), "source \"shop\": connected, 25 queries prepared\n");

    let broken = r#"
[[source]]
name = "shop"
kind = "mysql"
url_env = "SHOP_MYSQL_URL"
[source.profile]
exists = "SELECT 1 FROM customer WHERE tenant = :account AND id = :profile"
profile = "SELEC id FROM customer WHERE id = :profile"
subprofiles = "SELECT id FROM nosuch WHERE customer_id = :profile"
destinations = "SELECT id, id FROM messages WHERE customer_id = :profile"
clicks = "SELECT id FROM events WHERE address = :email"
"#;
    let output = sources_check(broken, &shop.url);
    assert!(!output.status.success());
    let lines: Vec<String> = String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    // The file's own mistake comes in the same pass as the database's.
    assert_eq!(
        lines[0],
        r#"source "shop", [source.profile] clicks: unknown parameter :email: the queries of [source.profile] may use :account and :profile"#
    );
    assert!(lines[1].starts_with(r#"source "shop", [source.profile] profile: You have an error in your SQL syntax"#));
    assert!(
        lines[2].starts_with(r#"source "shop", [source.profile] subprofiles: Table '"#)
            && lines[2].contains("nosuch' doesn't exist")
    );
    assert_eq!(
        lines[3],
        r#"source "shop", [source.profile] destinations: column "id" appears twice: give one of them another name with AS"#
    );
}

#[tokio::test]
async fn a_mysql_query_the_source_refuses_fails_the_build_at_once_with_its_reason() {
    let mut shop = Shop::new().await;
    let (app, account) = TestApp::start(&shop.env(MAPPING));
    shop.admin.query_drop("DROP TABLE contact").await.expect("drop");

    let started = Instant::now();
    let (_, status) = settle(&app, &account, "profile/7001").await;

    assert_eq!(status["state"], "failed", "{status}");
    let reason = status["reason"].as_str().expect("reason");
    assert!(
        reason.contains(r#"source "shop" (profile, subprofiles): Table '"#) && reason.contains("SQLSTATE 42S02"),
        "{reason}"
    );
    assert!(started.elapsed() < Duration::from_secs(10), "not retried: {:?}", started.elapsed());
}
