//! Sources on AWS: the connection string from a Secrets Manager secret (on the emulator), read
//! by the functions' composition root, and a build on the AWS adapters that reads the shop.

use datarequest::app::Origin;
use datarequest::compose::aws_with_secret as app_with_secret;
use datarequest::domain::{ProfileId, Subject};
use datarequest::ports::ExportFormat;
use tokio::io::AsyncReadExt;

use super::Env;
use crate::postgres::Shop;

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

    let mut file = datarequest::compose::ports(&app)
        .exports
        .open(id, ExportFormat::Json)
        .await
        .expect("store")
        .expect("the export");
    let mut text = String::new();
    file.reader.read_to_string(&mut text).await.expect("read");
    assert!(text.contains(r#"["profile",{"ID":7001,"name":"Ana Silva","balance":"98765432109.99"}]"#), "{text}");
}
