//! Sources on AWS: the connection string from a Secrets Manager secret (on the emulator), read
//! by the functions' composition root, and a build on the AWS adapters that reads the shop.

use datarequest::app::Origin;
use datarequest::compose::aws_with_secret as app_with_secret;
use datarequest::domain::{ProfileId, Subject};
use datarequest::ports::ExportFormat;
use tokio::io::AsyncReadExt;

use super::Env;
use crate::postgres::Shop;

/// The JSON export of a request, as text.
async fn exported(app: &datarequest::App, id: datarequest::domain::RequestId) -> String {
    let exports = datarequest::compose::ports(app).exports;
    let mut file = exports.open(id, ExportFormat::Json).await.expect("store").expect("the export");
    let mut text = String::new();
    file.reader.read_to_string(&mut text).await.expect("read");
    text
}

const MAPPING: &str = r#"
[[source]]
name = "shop"
kind = "postgres"
url_env = "SHOP_DATABASE_URL"

[source.profile]
exists = "SELECT 1 FROM customer WHERE tenant = 1 AND id = :profile AND :account::bigint > 0"
profile = "SELECT id AS \"ID\", name, balance FROM customer WHERE tenant = 1 AND id = :profile"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_functions_read_the_connection_string_from_the_secret_and_build_from_the_shop() {
    let shop = Shop::new().await;
    let env = Env::provision();
    let clients = env.clients().await;
    let name = format!("sources-{}", env.get("DATAREQUEST_REQUESTS_TABLE"));
    let secret = serde_json::json!({ "SHOP_DATABASE_URL": shop.url }).to_string();
    let created = clients.secrets.create_secret().name(name).secret_string(secret).send().await.expect("secret");
    let arn = created.arn().expect("arn").to_owned();
    let lookup = |key: &str| match key {
        "DATAREQUEST_SOURCES_TOML" => Some(MAPPING.to_owned()),
        "DATAREQUEST_SOURCES_SECRET_ARN" => Some(arn.clone()),
        "DATAREQUEST_LINK_SECRET" => Some("0123456789abcdef0123456789abcdef".to_owned()),
        _ => env.0.get(key).cloned(),
    };
    assert_eq!(lookup("SHOP_DATABASE_URL"), None, "only the secret holds the connection string");

    let (app, _) = app_with_secret(&clients, &env.resources(), &lookup).await.expect("the app starts");
    let account = app.create_account().await.expect("account").account;
    let subject = Subject::Profile(ProfileId::parse("7001").expect("id"));
    let id = app.submit(account, subject, None, &Origin::default()).await.expect("the shop knows 7001");
    app.handle_message(id, 1).await.expect("built");

    let text = exported(&app, id).await;
    assert!(text.contains(r#"["profile",{"ID":7001,"name":"Ana Silva","balance":"98765432109.99"}]"#), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mapping_of_any_size_comes_from_an_object_in_the_bucket() {
    let shop = Shop::new().await;
    let env = Env::provision();
    let clients = env.clients().await;
    // Beyond the 4 KB Lambda allows for all of a function's variables.
    let mapping = format!("{}\n{}", "# a long comment\n".repeat(400), MAPPING);
    assert!(mapping.len() > 4_096);
    let key = "config/sources.toml";
    let bucket = env.get("DATAREQUEST_EXPORTS_BUCKET");
    clients.s3.put_object().bucket(bucket).key(key).body(mapping.into_bytes().into()).send().await.expect("put");
    let url = shop.url.clone();
    let lookup = |name: &str| match name {
        "DATAREQUEST_SOURCES_OBJECT" => Some(key.to_owned()),
        "SHOP_DATABASE_URL" => Some(url.clone()),
        "DATAREQUEST_LINK_SECRET" => Some("0123456789abcdef0123456789abcdef".to_owned()),
        _ => env.0.get(name).cloned(),
    };

    let (app, _) = app_with_secret(&clients, &env.resources(), &lookup).await.expect("the app starts");
    let account = app.create_account().await.expect("account").account;
    let subject = Subject::Profile(ProfileId::parse("7001").expect("id"));
    let id = app.submit(account, subject, None, &Origin::default()).await.expect("the shop knows 7001");
    app.handle_message(id, 1).await.expect("built");
    let text = exported(&app, id).await;
    assert!(text.contains(r#"["profile",{"ID":7001,"name":"Ana Silva""#), "{text}");

    // Named beside another mapping, or missing: the app does not start, and says why.
    let both = |name: &str| if name == "DATAREQUEST_SOURCES_TOML" { Some(MAPPING.to_owned()) } else { lookup(name) };
    let refused = app_with_secret(&clients, &env.resources(), &both).await.err().expect("refused");
    assert!(format!("{refused:#}").contains("DATAREQUEST_SOURCES_OBJECT"), "{refused:#}");
    let missing = |name: &str| {
        if name == "DATAREQUEST_SOURCES_OBJECT" { Some("config/none.toml".to_owned()) } else { lookup(name) }
    };
    let refused = app_with_secret(&clients, &env.resources(), &missing).await.err().expect("refused");
    assert!(format!("{refused:#}").contains("cannot read the mapping config/none.toml"), "{refused:#}");
}
