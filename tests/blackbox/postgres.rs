//! Sources on a real PostgreSQL: the private cluster of `infra/postgres.sh`, which the test
//! command starts (and whose URL it exports). Each test loads the sample shop
//! (`examples/postgres/schema.sql`) into a database of its own and points the real binary at it
//! with a mapping: the shipped one (`examples/postgres/sources.toml`) or one of its own.

use std::net::SocketAddr;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_postgres::NoTls;

use crate::databases::{
    self, Relay, assert_cut_off, assert_finds_nothing, assert_one_pooled_connection, assert_snapshot_held,
    assert_timed_out, column, export, records, settle,
};
use crate::helpers::{TestApp, section};

const SCHEMA: &str = include_str!("../../examples/postgres/schema.sql");
const MAPPING: &str = include_str!("../../examples/postgres/sources.toml");

/// The cluster's superuser URL (database `postgres`) and the reading role (`user:password`).
fn cluster() -> (reqwest::Url, String) {
    databases::server("DATAREQUEST_TEST_POSTGRES_URL", "DATAREQUEST_TEST_POSTGRES_READER", "PostgreSQL", "postgres.sh")
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot reach the test cluster (is it running? ./infra/postgres.sh start): {e}"));
    tokio::spawn(connection);
    client
}

/// A database of its own with the sample shop, readable (only) by the reading role.
pub struct Shop {
    /// The superuser, connected to this database.
    pub admin: tokio_postgres::Client,
    /// The reading role's URL of this database.
    pub url: String,
    /// Where the server listens.
    address: SocketAddr,
}

impl Shop {
    pub async fn new() -> Self {
        let (mut url, reader) = cluster();
        let name = databases::unique_name();
        connect(url.as_str()).await.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create database");
        url.set_path(&format!("/{name}"));
        let admin = connect(url.as_str()).await;
        admin.batch_execute(SCHEMA).await.expect("the sample schema loads");
        let role = reader.split(':').next().expect("role");
        admin.batch_execute(&format!("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")).await.expect("grant");
        let host = url.host_str().expect("host").to_owned();
        let port = url.port().expect("port");
        let address = format!("{host}:{port}").parse().expect("the test cluster listens on an IP address");
        Self { admin, url: format!("postgres://{reader}@{host}:{port}/{name}"), address }
    }

    /// The environment of a server reading this database with `mapping`.
    fn env<'a>(&'a self, mapping: &'a str) -> Vec<(&'a str, &'a str)> {
        vec![("DATAREQUEST_SOURCES_TOML", mapping), ("SHOP_DATABASE_URL", &self.url)]
    }
}

#[tokio::test]
async fn every_column_type_of_the_sample_shop_reaches_the_export_as_the_readme_says() {
    let shop = Shop::new().await;
    let (app, account) = TestApp::start(&shop.env(MAPPING));

    let (id, status) = settle(&app, &account, "profile/7001").await;

    assert_eq!(status["state"], "built", "{status}");
    let bytes = String::from_utf8(app.data(id, &account).await).expect("utf-8");
    let export: Value = serde_json::from_str(&bytes).expect("JSON");
    assert!(bytes.contains(r#"["profile",{"ID":7001,"name":"Ana Silva","email":"#), "members in column order: {bytes}");
    assert_eq!(
        records(&export, "profile"),
        [json!({
            "ID": 7001, "name": "Ana Silva", "email": "Ana.Silva@example.com", "phone": "+351 91 234 5678",
            "balance": "98765432109.99", "rating": 3.25, "score": 12.5, "vip": false,
            "preferences": {"newsletter": false, "sizes": ["M", "L"]}, "interests": ["new"], "avatar": "AP8Q",
            "birthday": "1985-11-30", "created": "2024-02-29 22:59:59", "modified": "2025-01-01 00:00:00"
        })],
        "bigint, text, citext, varchar, numeric, real, double, boolean, jsonb, text[], bytea, date, timestamptz \
         (in UTC, without the fraction) and timestamp"
    );
    assert_eq!(
        records(&export, "subprofiles"),
        [
            json!({"ID": "7101", "profile": 7001, "label": "work", "email": "ana@work.example", "created": "2024-03-01 08:00:00"}),
            json!({"ID": "7102", "profile": 7001, "label": "gift card", "email": null, "created": "2024-12-20 10:30:00"}),
        ],
        "a numeric id is a string"
    );
    let destinations = records(&export, "destinations");
    assert_eq!(column(&destinations, "ID"), [json!("shop-7001-1"), json!("shop-7001-2")]);
    assert_eq!(column(&destinations, "subprofile"), [json!(null), json!("7101")]);
    assert!(destinations[1]["mime"].as_str().expect("mime").contains("invoice 2025-114 (EUR 59.90)"));
    assert_eq!(
        records(&export, "impressions"),
        [json!({"destination": "shop-7001-1", "timestamp": "2025-03-20 08:15:00", "profile": 7001, "subprofile": null,
                "email": "ana.silva@example.com", "data": {"ip": "198.51.100.7", "useragent": "Mozilla/5.0"}})]
    );
    assert_eq!(records(&export, "surveys")[0]["data"], json!({"answers": [5, 4, null], "survey": "satisfaction"}));
    for (name, count) in [("clicks", 1), ("deliveries", 1), ("errors", 1), ("abuses", 1), ("unsubscribes", 1)] {
        assert_eq!(records(&export, name).len(), count, "{name}");
    }
}

const TYPES: &str = r#"
[[source]]
name = "types"
kind = "postgres"
url_env = "SHOP_DATABASE_URL"

[source.email]
destinations = """
SELECT 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS uuid, interval '1 day 02:00' AS span,
       12345678901234567890.000001::numeric AS big, ARRAY[1.5, 2.25]::numeric[] AS decimals,
       ARRAY[[1, 2], [3, 4]] AS grid, ARRAY['a', NULL]::varchar[] AS letters, '{}'::int[] AS empty,
       NULL::int[] AS missing, NULL::text AS nothing, 'NaN'::float8 AS nan, '-infinity'::float4 AS cold,
       'infinity'::timestamptz AS forever, '1999-12-31'::date AS eve, '192.0.2.1'::inet AS host,
       '192.0.2.0/24'::cidr AS net, ARRAY['192.0.2.1'::inet, '2001:db8::1/64'] AS hosts,
       '{"a": [1, 2.5, null]}'::json AS doc, B'101' AS bits, 'x'::"char" AS letter, 32767::int2 AS small,
       9223372036854775807::int8 AS large, true AS yes, 'abc'::bytea AS raw, 'Zoë'::citext AS ci,
       ARRAY['2025-01-02 03:04:05+02'::timestamptz] AS times, 'a b'::tsvector AS words, :email::text AS asked
"""
"#;

#[tokio::test]
async fn other_types_arrays_nulls_and_special_values_take_their_documented_form() {
    let shop = Shop::new().await;
    let (app, account) = TestApp::start(&shop.env(TYPES));

    let export = export(&app, &account, "email/Types%40example.com").await;

    assert_eq!(
        records(&export, "destinations"),
        [json!({
            "uuid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "span": "1 day 02:00:00",
            "big": "12345678901234567890.000001", "decimals": ["1.5", "2.25"], "grid": [[1, 2], [3, 4]],
            "letters": ["a", null], "empty": [], "missing": null, "nothing": null, "nan": "NaN", "cold": "-Infinity",
            "forever": "infinity", "eve": "1999-12-31", "host": "192.0.2.1", "net": "192.0.2.0/24",
            "hosts": ["192.0.2.1", "2001:db8::1/64"], "doc": {"a": [1, 2.5, null]}, "bits": "101", "letter": "x",
            "small": 32767, "large": 9_223_372_036_854_775_807_i64, "yes": true, "raw": "YWJj", "ci": "Zoë",
            "times": ["2025-01-02 01:04:05"], "words": "'a' 'b'", "asked": "Types@example.com"
        })]
    );
}

#[tokio::test]
async fn nulls_of_every_type_are_null_and_an_empty_array_is_empty() {
    let shop = Shop::new().await;
    let (app, account) = TestApp::start(&shop.env(MAPPING));

    let profile = records(&export(&app, &account, "profile/7002").await, "profile");

    assert_eq!(
        profile,
        [json!({
            "ID": 7002, "name": "Bram de Wit", "email": "bram@example.org", "phone": null, "balance": "0.00",
            "rating": null, "score": null, "vip": false, "preferences": null, "interests": [], "avatar": null,
            "birthday": null, "created": "2025-05-05 05:05:05", "modified": null
        })]
    );
}

#[tokio::test]
async fn every_kind_of_subject_reads_its_own_queries_within_its_account() {
    let shop = Shop::new().await;
    let (app, account) = TestApp::start(&shop.env(MAPPING));

    // A subprofile only the shop knows.
    let sub = export(&app, &account, "subprofile/7101").await;
    assert_eq!(column(&records(&sub, "subprofiles"), "ID"), [json!("7101")]);
    assert_eq!(column(&records(&sub, "destinations"), "ID"), [json!("shop-7001-2")]);
    assert_eq!(column(&records(&sub, "errors"), "destination"), [json!("shop-7001-2")]);
    assert!(records(&sub, "impressions").is_empty() && records(&sub, "deliveries").is_empty());

    // An address, in another letter case (citext): the shop's rows for it.
    let email = export(&app, &account, "email/ANA.SILVA%40example.com").await;
    assert_eq!(column(&records(&email, "destinations"), "ID"), [json!("shop-7001-1")]);
    assert_eq!(records(&email, "impressions").len(), 1);
    assert!(section(&email, "profile").is_none(), "the layout of an e-mail export does not change");
    // The shop's own section, after Copernica's.
    assert_eq!(column(&records(&email, "customers"), "name"), [json!("Ana Silva")]);
    assert_eq!(email["data"].as_array().and_then(|data| data.last()).map(|s| s[0].clone()), Some(json!("customers")));

    // The store's records come first, then the shop's.
    let jane = export(&app, &account, "email/jane.doe%40example.com").await;
    let ids = column(&records(&jane, "destinations"), "ID");
    assert_eq!(ids.last(), Some(&json!("shop-1001-1")));
    assert!(ids.len() > 1 && ids[..ids.len() - 1].iter().all(|id| id != "shop-1001-1"), "{ids:?}");

    // The same id in another tenant is another customer.
    let other = app.create_account();
    let theirs = export(&app, &other, "profile/7001").await;
    assert_eq!(column(&records(&theirs, "profile"), "name"), [json!("Someone Else")]);
    assert_eq!(column(&records(&theirs, "destinations"), "ID"), [json!("shop-other-1")]);
    assert!(
        records(&export(&app, &account, "profile/7001").await, "destinations")
            .iter()
            .all(|m| m["ID"] != "shop-other-1")
    );

    // Known nowhere: refused like any unknown subject.
    crate::helpers::assert_unknown(&app, &account, "profile/7003").await;
    crate::helpers::assert_unknown(&app, &account, "subprofile/7103").await;
}

const BINDINGS: &str = r#"
[[source]]
name = "typed"
kind = "postgres"
url_env = "SHOP_DATABASE_URL"

[source.profile]
exists = "SELECT 1 FROM typed WHERE b = :profile"
profile = "SELECT 'integer' AS via FROM typed WHERE i = :profile"
subprofiles = "SELECT 'bigint' AS via FROM typed WHERE b = :profile"
destinations = "SELECT 'numeric' AS via FROM typed WHERE n = :profile"
impressions = "SELECT 'text' AS via FROM typed WHERE t = :profile"
clicks = "SELECT 'varchar' AS via FROM typed WHERE v = :profile"
deliveries = "SELECT 'citext' AS via FROM typed WHERE c = :profile"
errors = "SELECT 'account as smallint' AS via FROM typed WHERE a = :account AND b = :profile"

[source.email]
destinations = "SELECT 'text' AS via FROM typed WHERE et = :email"
impressions = "SELECT 'varchar' AS via FROM typed WHERE ev = :email"
clicks = "SELECT 'citext' AS via FROM typed WHERE ec = :email"
"#;

#[tokio::test]
async fn parameters_bind_to_integer_bigint_numeric_text_varchar_and_citext_columns() {
    let shop = Shop::new().await;
    shop.admin
        .batch_execute(
            "CREATE TABLE typed (a smallint, i integer, b bigint, n numeric, t text, v varchar(20), c citext,
                                 et text, ev varchar(80), ec citext);
             INSERT INTO typed VALUES (1, 7001, 7001, 7001, '7001', '7001', '7001', 'Kim@example.com', 'Kim@example.com', 'Kim@example.com'),
                                      (1, NULL, 4000000000, 4000000000, '4000000000', '4000000000', '4000000000', NULL, NULL, NULL);
             GRANT SELECT ON typed TO PUBLIC;",
        )
        .await
        .expect("typed table");
    let (app, account) = TestApp::start(&shop.env(BINDINGS));

    let small = export(&app, &account, "profile/7001").await;
    for (name, via) in [
        ("profile", "integer"),
        ("subprofiles", "bigint"),
        ("destinations", "numeric"),
        ("impressions", "text"),
        ("clicks", "varchar"),
        ("deliveries", "citext"),
        ("errors", "account as smallint"),
    ] {
        assert_eq!(column(&records(&small, name), "via"), [json!(via)], "{name}");
    }

    // Beyond an integer column's range: that query finds nothing, the others still bind.
    let big = export(&app, &account, "profile/4000000000").await;
    assert!(records(&big, "profile").is_empty(), "4000000000 is no integer");
    assert_eq!(column(&records(&big, "subprofiles"), "via"), [json!("bigint")]);
    assert_eq!(column(&records(&big, "impressions"), "via"), [json!("text")]);

    // Text columns take the address as given; citext in any case.
    let exact = export(&app, &account, "email/Kim%40example.com").await;
    let upper = export(&app, &account, "email/KIM%40EXAMPLE.COM").await;
    for (name, exact_rows, upper_rows) in [("destinations", 1, 0), ("impressions", 1, 0), ("clicks", 1, 1)] {
        assert_eq!(records(&exact, name).len(), exact_rows, "{name}");
        assert_eq!(records(&upper, name).len(), upper_rows, "{name}");
    }
}

#[tokio::test]
async fn a_hostile_address_is_bound_as_a_value_and_finds_nothing() {
    let shop = Shop::new().await;
    let (app, account) = TestApp::start(&shop.env(MAPPING));

    // x'OR'1'='1@example.com: a valid address, and SQL if it were pasted into the query.
    let export = assert_finds_nothing(&app, &account, "email/x%27OR%271%27%3D%271%40example.com").await;

    assert_eq!(export["info"]["id"], "x'OR'1'='1@example.com");
}

const SLOW: &str = r#"
[[source]]
name = "shop"
kind = "postgres"
url_env = "SHOP_DATABASE_URL"

[source.profile]
exists = "SELECT 1 FROM customer WHERE tenant = :account AND id = :profile"
profile = """
WITH pause AS (SELECT pg_sleep(2))
SELECT c.id AS "ID", c.name FROM customer c, pause WHERE c.tenant = :account AND c.id = :profile"""
destinations = "SELECT id AS \"ID\", subject FROM messages WHERE tenant = :account AND customer_id = :profile ORDER BY sent_at, id"
"#;

#[tokio::test]
async fn rows_changed_while_a_build_runs_do_not_tear_its_export() {
    let shop = Shop::new().await;
    let (app, account) = TestApp::start(&shop.env(SLOW));

    let id = app.submit("profile/7001", &account, None).await;
    // While the profile's query sleeps (its snapshot taken), another client changes the rows
    // the next section reads, and commits.
    let start = Instant::now();
    loop {
        let sleeping = shop
            .admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'datarequest' AND state = 'active' \
                 AND query LIKE '%pg_sleep%' AND datname = current_database()",
                &[],
            )
            .await
            .expect("activity")
            .get::<_, i64>(0);
        if sleeping > 0 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the build's query never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shop.admin
        .batch_execute(
            "BEGIN;
             UPDATE customer SET name = 'Ana Changed' WHERE tenant = 1 AND id = 7001;
             UPDATE messages SET subject = 'Changed' WHERE id = 'shop-7001-1';
             INSERT INTO messages VALUES ('shop-7001-3', 1, 7001, NULL, 'ana.silva@example.com', 'x', 'New',
                                          '2025-01-01 00:00:00+00', 'Subject: New');
             COMMIT;",
        )
        .await
        .expect("concurrent change");
    assert_snapshot_held(&app, &account, id).await;
}

const TIMING_OUT: &str = r#"
[[source]]
name = "shop"
kind = "postgres"
url_env = "SHOP_DATABASE_URL"
statement_timeout_secs = 0.5

[source.profile]
exists = "SELECT 1 FROM customer WHERE tenant = :account AND id = :profile"
profile = "SELECT id AS \"ID\" FROM customer WHERE tenant = :account AND id = :profile"
destinations = "SELECT m.id AS \"ID\" FROM messages m, pg_sleep(3) WHERE m.tenant = :account AND m.customer_id = :profile"
"#;

#[tokio::test]
async fn a_failing_query_fails_the_request_with_a_reason_naming_the_source() {
    let shop = Shop::new().await;
    let mut env = shop.env(TIMING_OUT);
    env.push(("DATAREQUEST_BUILD_ATTEMPTS", "1"));
    let (app, account) = TestApp::start(&env);

    assert_timed_out(&app, &account, "statement timeout").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_fails_the_build_and_the_existence_check_and_stops_serve_starting() {
    let shop = Shop::new().await;
    let relay = Relay::to(shop.address).await;
    let through = shop.url.replace(&format!(":{}/", shop.address.port()), &format!(":{}/", relay.port));
    let env = vec![
        ("DATAREQUEST_SOURCES_TOML", MAPPING),
        ("SHOP_DATABASE_URL", through.as_str()),
        ("DATAREQUEST_BUILD_ATTEMPTS", "1"),
    ];
    let (app, account) = TestApp::start(&env);
    assert_cut_off(&app, &account, &relay).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_waiting_for_an_unreachable_server_shows_why_in_its_status_and_builds_once_it_is_back() {
    let shop = Shop::new().await;
    let relay = Relay::to(shop.address).await;
    let through = shop.url.replace(&format!(":{}/", shop.address.port()), &format!(":{}/", relay.port));
    let env = vec![("DATAREQUEST_SOURCES_TOML", MAPPING), ("SHOP_DATABASE_URL", through.as_str())];
    let (app, account) = TestApp::start(&env);
    relay.cut();

    // An e-mail request asks no source whether its subject exists: it is accepted.
    let id = app.submit("email/ana%40example.com", &account, None).await;
    let waiting = app.wait_for(id, &account, |s| s["reason"].is_string()).await;

    assert_eq!(waiting["state"], "building", "{waiting}");
    assert_eq!(waiting["status"], "pending", "{waiting}");
    let reason = waiting["reason"].as_str().expect("reason");
    assert!(
        reason.starts_with("the export could not be built yet; attempt 1 of 5 failed, trying again: source \"shop\"")
            && reason.contains("could not connect"),
        "{reason}"
    );
    relay.open();
    let built = app.wait_for(id, &account, |s| s["state"] == "built").await;
    assert!(built.get("reason").is_none_or(Value::is_null), "the reason goes once built: {built}");
}

/// `datarequest sources check` with a mapping and a connection string of its own.
fn sources_check(mapping: &str, url: &str) -> Output {
    databases::sources_check(mapping, "SHOP_DATABASE_URL", url)
}

#[tokio::test]
async fn sources_check_reports_every_mistake_by_source_kind_and_section() {
    let shop = Shop::new().await;
    let fine = sources_check(MAPPING, &shop.url);
    assert!(fine.status.success(), "{}", String::from_utf8_lossy(&fine.stdout));
    assert_eq!(String::from_utf8_lossy(&fine.stdout), "source \"shop\": connected, 26 queries prepared\n");

    let broken = r#"
[[source]]
name = "shop"
kind = "postgres"
url_env = "SHOP_DATABASE_URL"
[source.profile]
exists = "SELECT 1 FROM customer WHERE tenant = :account AND id = :profile"
profile = "SELEC id FROM customer WHERE id = :profile"
subprofiles = "SELECT id FROM nosuch WHERE customer_id = :profile"
destinations = "SELECT id, id FROM messages WHERE customer_id = :profile"
clicks = "SELECT 1 + 1, id FROM events WHERE customer_id = :profile"
errors = "SELECT id FROM events WHERE at = :profile"
[source.email]
destinations = "SELECT id FROM messages WHERE customer_id = :email"
"#;
    let output = sources_check(broken, &shop.url);
    assert!(!output.status.success());
    let lines: Vec<String> = String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect();
    let expected = [
        r#"source "shop", [source.profile] profile: syntax error at or near "SELEC" at character 1 (SQLSTATE 42601)"#,
        r#"source "shop", [source.profile] subprofiles: relation "nosuch" does not exist at character 16 (SQLSTATE 42P01)"#,
        r#"source "shop", [source.profile] destinations: column "id" appears twice: give one of them another name with AS"#,
        r#"source "shop", [source.profile] clicks: column 1 has no name: give it one with AS"#,
        r#"source "shop", [source.profile] errors: parameter :profile is compared with a value of type timestamptz; it can only be an integer, numeric or text type"#,
        r#"source "shop", [source.email] destinations: parameter :email is compared with a value of type int8; it can only be a text type"#,
    ];
    assert_eq!(lines, expected);
    assert!(String::from_utf8_lossy(&output.stderr).contains("6 mistakes"));

    // A mistake in the file itself comes in the same pass, in its place; its query is not run.
    let unknown = broken.replace("WHERE customer_id = :email", "WHERE address = :profile");
    let output = sources_check(&unknown, &shop.url);
    assert!(!output.status.success());
    let lines: Vec<String> = String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect();
    let mut together = expected[..5].to_vec();
    together.push(
        r#"source "shop", [source.email] destinations: unknown parameter :profile: the queries of [source.email] may use :account and :email"#,
    );
    assert_eq!(lines, together);
}

#[tokio::test]
async fn json_and_jsonb_columns_come_out_byte_for_byte() {
    let shop = Shop::new().await;
    shop.admin
        .batch_execute(
            r#"CREATE TABLE docs (id bigint PRIMARY KEY, doc json, docb jsonb);
               INSERT INTO docs VALUES (1, '{"big": 12345678901234567890.12, "tiny": 1e-400, "dime": 0.10}',
                                           '{"big": 12345678901234567890.12, "dime": 0.10}');
               GRANT SELECT ON docs TO PUBLIC;"#,
        )
        .await
        .expect("docs");
    let mapping = r#"
[[source]]
name = "docs"
kind = "postgres"
url_env = "SHOP_DATABASE_URL"
[source.profile]
exists = "SELECT 1 FROM docs WHERE id = :profile"
profile = "SELECT id AS \"ID\", doc, docb, ARRAY[doc, NULL] AS docs FROM docs WHERE id = :profile"
"#;
    let (app, account) = TestApp::start(&shop.env(mapping));

    let (id, status) = settle(&app, &account, "profile/1").await;

    assert_eq!(status["state"], "built", "{status}");
    let bytes = String::from_utf8(app.data(id, &account).await).expect("utf-8");
    let doc = r#"{"big":12345678901234567890.12,"tiny":1e-400,"dime":0.10}"#;
    // jsonb keeps the digits of a number too (it stores them as numeric), and orders keys its way.
    let docb = r#"{"big":12345678901234567890.12,"dime":0.10}"#;
    assert!(bytes.contains(&format!(r#"{{"ID":1,"doc":{doc},"docb":{docb},"docs":[{doc},null]}}"#)), "{bytes}");
}

const BACKEND: &str = r#"
[[source]]
name = "shop"
kind = "postgres"
url_env = "SHOP_DATABASE_URL"

[source.profile]
exists = "SELECT 1 FROM customer WHERE tenant = :account AND id = :profile"
profile = "SELECT id AS \"ID\", pg_backend_pid() AS connection FROM customer WHERE tenant = :account AND id = :profile"
"#;

#[tokio::test]
async fn builds_and_existence_checks_reuse_one_pooled_postgres_connection() {
    let shop = Shop::new().await;
    let (app, account) = TestApp::start(&shop.env(BACKEND));

    assert_one_pooled_connection(&app, &account).await;
}

#[tokio::test]
async fn sources_check_reports_a_revoked_grant_an_unknown_table_a_bad_parameter_and_the_files_mistakes_at_once() {
    let shop = Shop::new().await;
    let role = cluster().1.split(':').next().expect("role").to_owned();
    shop.admin.batch_execute(&format!("REVOKE SELECT ON events FROM {role}")).await.expect("revoke");
    let mapping = r#"
[[source]]
name = "shop"
kind = "postgres"
url_env = "SHOP_DATABASE_URL"
[source.profile]
exists = "SELECT 1 FROM customer WHERE tenant = :account AND id = :profile"
profile = "SELECT id AS \"ID\" FROM customer WHERE tenant = :account AND id = :profile"
clicks = "SELECT id AS \"ID\" FROM events WHERE customer_id = :profile"
subprofiles = "SELECT id FROM nosuch WHERE customer_id = :profile"
errors = "SELECT id FROM messages WHERE sent_at = :profile"
opens = "SELECT id FROM events WHERE address = :email"
[source.email]
profile = "SELECT id FROM customer WHERE email = :email"
"#;

    let output = sources_check(mapping, &shop.url);

    assert!(!output.status.success());
    let lines: Vec<String> = String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect();
    assert_eq!(
        lines,
        [
            r#"source "shop", [source.profile] opens: unknown parameter :email: the queries of [source.profile] may use :account and :profile"#,
            r#"source "shop", [source.profile] subprofiles: relation "nosuch" does not exist at character 16 (SQLSTATE 42P01)"#,
            r#"source "shop", [source.profile] clicks: permission denied for table events (SQLSTATE 42501)"#,
            r#"source "shop", [source.profile] errors: parameter :profile is compared with a value of type timestamptz; it can only be an integer, numeric or text type"#,
            r#"source "shop", [source.email] profile: an email export has no section profile; [source.email] takes exists, destinations, impressions, clicks, deliveries, errors, abuses, unsubscribes, surveys or sections of your own"#,
        ]
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("5 mistakes"));
}

#[tokio::test]
async fn a_query_the_source_refuses_fails_the_build_at_once_with_its_reason() {
    let shop = Shop::new().await;
    let (app, account) = TestApp::start(&shop.env(MAPPING));
    let role = cluster().1.split(':').next().expect("role").to_owned();
    shop.admin.batch_execute(&format!("REVOKE SELECT ON messages FROM {role}")).await.expect("revoke");

    let started = Instant::now();
    let (_, status) = settle(&app, &account, "profile/7001").await;

    assert_eq!(status["state"], "failed", "{status}");
    let reason = status["reason"].as_str().expect("reason");
    assert!(
        reason.contains(r#"source "shop" (profile, destinations): permission denied for table messages"#),
        "{reason}"
    );
    assert!(started.elapsed() < Duration::from_secs(10), "not retried: {:?}", started.elapsed());
}

#[tokio::test]
async fn a_parameter_the_server_cannot_type_is_named_as_written_with_the_cast_to_add() {
    let shop = Shop::new().await;
    let mapping = r#"
[[source]]
name = "shop"
kind = "postgres"
url_env = "SHOP_DATABASE_URL"
[source.profile]
profile = "SELECT :profile AS profile, name FROM customer WHERE tenant = :account AND id = :profile"
clicks = "SELECT :email IS NULL AS nothing"
"#;

    let output = sources_check(&mapping.replace(":email", ":account"), &shop.url);

    assert!(!output.status.success());
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        printed.contains("[source.profile] profile: inconsistent types deduced for parameter :profile")
            && printed.contains("add a cast to say which type it is, such as :profile::bigint"),
        "{printed}"
    );
    assert!(
        printed.contains("[source.profile] clicks: could not determine data type of parameter :account"),
        "{printed}"
    );
    assert!(!printed.contains('$'), "no numbered placeholder the mapping never wrote: {printed}");
}
