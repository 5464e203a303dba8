//! Small helpers to read and write DynamoDB attribute maps.

use std::collections::HashMap;

use anyhow::Context;
use aws_sdk_dynamodb::types::AttributeValue;

/// A DynamoDB item.
pub type Item = HashMap<String, AttributeValue>;

/// Puts an item, unconditionally; `what` names it in the error.
pub async fn put(client: &aws_sdk_dynamodb::Client, table: &str, item: Item, what: &'static str) -> anyhow::Result<()> {
    client.put_item().table_name(table).set_item(Some(item)).send().await.with_context(|| format!("storing {what}"))?;
    Ok(())
}

/// Every item of a table whose `key` attribute starts with `prefix`, a page at a time (a scan:
/// for the rare erasure of a whole account).
///
/// # Errors
/// When the table cannot be read.
pub async fn scan_prefixed(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    key: &str,
    prefix: &str,
    mut each_page: impl FnMut(&[Item]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(table)
            .filter_expression("begins_with(#key, :prefix)")
            .expression_attribute_names("#key", key)
            .expression_attribute_values(":prefix", s(prefix))
            .set_exclusive_start_key(start)
            .send()
            .await
            .context("scanning a table")?;
        each_page(page.items())?;
        start = page.last_evaluated_key;
        if start.is_none() {
            return Ok(());
        }
    }
}

pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub fn get_s<'a>(item: &'a Item, name: &str) -> anyhow::Result<&'a str> {
    opt_s(item, name).with_context(|| format!("item lacks the string {name}"))
}

pub fn opt_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str)
}

pub fn get_n<T: std::str::FromStr>(item: &Item, name: &str) -> anyhow::Result<T> {
    opt_n(item, name)?.with_context(|| format!("item lacks the number {name}"))
}

pub fn opt_n<T: std::str::FromStr>(item: &Item, name: &str) -> anyhow::Result<Option<T>> {
    match item.get(name).and_then(|v| v.as_n().ok()) {
        None => Ok(None),
        Some(text) => text.parse().map(Some).map_err(|_| anyhow::anyhow!("{name} is not a number")),
    }
}

/// Puts an optional string: absent stays absent (DynamoDB has no empty strings in keys).
pub fn put_opt_s(item: &mut Item, name: &str, value: Option<&str>) {
    if let Some(value) = value {
        item.insert(name.to_owned(), s(value));
    }
}

/// Puts an optional number.
pub fn put_opt_n(item: &mut Item, name: &str, value: Option<impl ToString>) {
    if let Some(value) = value {
        item.insert(name.to_owned(), n(value));
    }
}

/// A page cursor: the string key attributes of `LastEvaluatedKey` as JSON.
pub fn cursor_of(key: Option<&Item>) -> Option<String> {
    let key = key?;
    let map: serde_json::Map<String, serde_json::Value> = key
        .iter()
        .filter_map(|(k, v)| v.as_s().ok().map(|s| (k.clone(), serde_json::Value::from(s.as_str()))))
        .collect();
    Some(serde_json::Value::Object(map).to_string())
}

/// The `ExclusiveStartKey` of a cursor made by [`cursor_of`].
pub fn start_key(cursor: Option<&str>) -> anyhow::Result<Option<Item>> {
    let Some(cursor) = cursor else { return Ok(None) };
    let map: HashMap<String, String> = serde_json::from_str(cursor).context("not a cursor of this store")?;
    Ok(Some(map.into_iter().map(|(k, v)| (k, s(v))).collect()))
}
