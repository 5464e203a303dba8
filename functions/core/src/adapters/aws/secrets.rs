//! The sources' connection strings from a Secrets Manager secret, read once when a function
//! starts (`DATAREQUEST_SOURCES_SECRET_ARN`), so no password sits in the functions'
//! configuration. The secret holds a JSON object of connection strings by the names the
//! mapping's `url_env` gives; or an Amazon RDS secret (`engine`, `host`, `port`, `username`,
//! `password`, `dbname`), or a connection string, either of which serves every source. A
//! variable set in the environment wins over the secret.

use std::collections::HashMap;

use anyhow::Context;
use serde_json::Value;

/// What a secret holds for the sources.
#[derive(Clone, PartialEq, Eq)]
pub enum SourceSecret {
    /// Connection strings by `url_env` name.
    ByName(HashMap<String, String>),
    /// One connection string for every source.
    Every(String),
}

impl std::fmt::Debug for SourceSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ByName(urls) => f.debug_tuple("ByName").field(&urls.keys().collect::<Vec<_>>()).finish(),
            Self::Every(_) => f.write_str("Every(…)"),
        }
    }
}

impl SourceSecret {
    /// Reads the text of a secret.
    ///
    /// # Errors
    /// When it is a JSON object that is neither of the two shapes; the text never quotes it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let Ok(Value::Object(members)) = serde_json::from_str::<Value>(text) else {
            return Ok(Self::Every(text.to_owned()));
        };
        if members.contains_key("host") && members.contains_key("username") {
            return rds_url(&members).map(Self::Every);
        }
        let mut urls = HashMap::new();
        for (name, value) in members {
            let url = value.as_str().ok_or_else(|| format!("the member {name} of the secret is not a string"))?;
            urls.insert(name, url.to_owned());
        }
        Ok(Self::ByName(urls))
    }

    /// The connection string for a source's `url_env`.
    #[must_use]
    pub fn url(&self, name: &str) -> Option<String> {
        match self {
            Self::ByName(urls) => urls.get(name).cloned(),
            Self::Every(url) => Some(url.clone()),
        }
    }
}

/// `postgres://user:password@host:port/dbname` of an RDS secret, every part encoded
/// (`mysql://…`, port 3306 by default, when its `engine` is `mysql` or `mariadb`).
fn rds_url(members: &serde_json::Map<String, Value>) -> Result<String, String> {
    let text = |name: &str| members.get(name).and_then(Value::as_str);
    let host = text("host").ok_or("the secret's host is not a string")?;
    let (scheme, default_port) = match text("engine") {
        Some("mysql" | "mariadb") => ("mysql", 3306),
        _ => ("postgres", 5432),
    };
    let mut url = url::Url::parse(&format!("{scheme}://localhost")).map_err(|e| e.to_string())?;
    url.set_host(Some(host)).map_err(|_| "the secret's host is not a host name".to_owned())?;
    url.set_username(text("username").unwrap_or_default()).map_err(|()| "the secret's username")?;
    url.set_password(text("password")).map_err(|()| "the secret's password")?;
    let port = match members.get("port") {
        Some(Value::Number(n)) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
        Some(Value::String(p)) => p.parse().ok(),
        _ => Some(default_port),
    };
    url.set_port(Some(port.ok_or("the secret's port is not a port")?)).map_err(|()| "the secret's port")?;
    if let Some(database) = text("dbname") {
        url.path_segments_mut().map_err(|()| "the secret's dbname")?.push(database);
    }
    Ok(url.to_string())
}

/// Reads the secret.
///
/// # Errors
/// When it cannot be read or has no text.
pub async fn fetch(client: &aws_sdk_secretsmanager::Client, arn: &str) -> anyhow::Result<SourceSecret> {
    let answer = client.get_secret_value().secret_id(arn).send().await.context("reading the sources' secret")?;
    let text = answer.secret_string().context("the sources' secret holds no text")?;
    SourceSecret::parse(text).map_err(|e| anyhow::anyhow!("the sources' secret: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn a_secret_holds_urls_by_name_an_rds_login_or_one_url() {
        let by_name = SourceSecret::parse(r#"{"SHOP_DATABASE_URL": "postgres://a@db/shop"}"#).unwrap();
        assert_eq!(by_name.url("SHOP_DATABASE_URL").as_deref(), Some("postgres://a@db/shop"));
        assert_eq!(by_name.url("CRM_URL"), None);

        let rds = SourceSecret::parse(
            r#"{"engine": "postgres", "host": "db.abc.eu-west-1.rds.amazonaws.com", "port": 5432,
                "username": "reader", "password": "p@ss/w:rd", "dbname": "shop"}"#,
        )
        .unwrap();
        assert_eq!(
            rds.url("ANY").as_deref(),
            Some("postgres://reader:p%40ss%2Fw%3Ard@db.abc.eu-west-1.rds.amazonaws.com:5432/shop")
        );

        let maria =
            SourceSecret::parse(r#"{"engine": "mariadb", "host": "db.example", "username": "r", "password": "p"}"#);
        assert_eq!(maria.unwrap().url("ANY").as_deref(), Some("mysql://r:p@db.example:3306"));

        let one = SourceSecret::parse(" postgres://a:b@db/shop?sslmode=verify-full \n").unwrap();
        assert_eq!(one.url("X").as_deref(), Some("postgres://a:b@db/shop?sslmode=verify-full"));

        let error = SourceSecret::parse(r#"{"SHOP_DATABASE_URL": 5, "password": "secret"}"#).unwrap_err();
        assert!(!error.contains("secret\""), "{error}");
        assert!(!format!("{rds:?}").contains("p@ss"), "Debug never shows a password");
    }
}
