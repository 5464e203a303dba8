//! PostgreSQL values as JSON, and the subject's values as query parameters.
//!
//! Rows arrive in the binary format. The types below are decoded from it by the client
//! library's own decoders: integers and floats become JSON numbers (a float that is not finite
//! becomes its name, `"NaN"`, `"Infinity"`, `"-Infinity"`, as JSON has no such number),
//! booleans booleans, text of every kind (`text`, `varchar`, `char`, `name`, `citext`) strings,
//! `json`/`jsonb` the JSON itself exactly as the server gives it (its numbers never pass
//! through a float; only whitespace outside strings is dropped), `timestamp`/`timestamptz` `YYYY-MM-DD hh:mm:ss` in UTC (a
//! `timestamp` without time zone is taken as UTC; fractions of a second are dropped), `date`
//! `YYYY-MM-DD`, `bytea` base64, `inet`/`cidr` as the server writes them, and arrays of these
//! JSON arrays (nested when they have several dimensions). Every other type (`numeric`, `uuid`,
//! `interval`, enums, …) is selected as its text form by the server (see [`needs_text`]), so
//! `numeric` keeps every digit as a string.
//!
//! Parameters are sent in the text format, so the server converts them to whatever type the
//! query compares them with (`integer`, `bigint`, `numeric`, `text`, `varchar`, `citext`, …).

use std::error::Error;

use crate::ports::SourceValue;
use base64::Engine;
use bytes::BytesMut;
use chrono::{DateTime, Days, NaiveDate};
use fallible_iterator::FallibleIterator;
use postgres_protocol::types as wire;
use serde_json::Value;
use tokio_postgres::types::{Format, FromSql, IsNull, Kind, ToSql, Type};

type BoxError = Box<dyn Error + Sync + Send>;

/// Seconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH: i64 = 946_684_800;

fn is_text(ty: &Type) -> bool {
    matches!(*ty, Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN)
        || (ty.name() == "citext" && matches!(ty.kind(), Kind::Simple))
}

/// Whether a column of this type is decoded from the binary format here.
#[must_use]
pub fn native(ty: &Type) -> bool {
    match ty.kind() {
        Kind::Array(element) => native(element),
        Kind::Domain(base) => native(base),
        _ => {
            is_text(ty)
                || matches!(
                    *ty,
                    Type::BOOL
                        | Type::INT2
                        | Type::INT4
                        | Type::INT8
                        | Type::FLOAT4
                        | Type::FLOAT8
                        | Type::JSON
                        | Type::JSONB
                        | Type::TIMESTAMP
                        | Type::TIMESTAMPTZ
                        | Type::DATE
                        | Type::BYTEA
                        | Type::INET
                        | Type::CIDR
                )
        }
    }
}

/// The cast that selects a column of a type that is not [`native`] as its text form: `text`,
/// or `text[]` for an array (so it stays a JSON array); `None` for a native type.
#[must_use]
pub fn needs_text(ty: &Type) -> Option<&'static str> {
    if native(ty) {
        return None;
    }
    Some(if matches!(ty.kind(), Kind::Array(_)) { "text[]" } else { "text" })
}

/// One value of a row as JSON, with the size of its raw bytes.
#[derive(Debug)]
pub struct Cell(pub SourceValue, pub usize);

impl<'a> FromSql<'a> for Cell {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let value = match json_text(ty, raw)? {
            Some(text) => SourceValue::json(&text)?,
            None => SourceValue::Value(decode(ty, raw)?),
        };
        Ok(Self(value, raw.len()))
    }

    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(Self(SourceValue::Value(Value::Null), 0))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// The text of a `json` or `jsonb` value (a domain over one, or an array of them, included), as
/// the server sent it: copied, never parsed into numbers. `None` for any other type.
fn json_text(ty: &Type, raw: &[u8]) -> Result<Option<String>, BoxError> {
    match (ty, ty.kind()) {
        (&Type::JSON, _) => Ok(Some(std::str::from_utf8(raw)?.to_owned())),
        (&Type::JSONB, _) => match raw.split_first() {
            Some((1, text)) => Ok(Some(std::str::from_utf8(text)?.to_owned())),
            _ => Err("unsupported jsonb version".into()),
        },
        (_, Kind::Domain(base)) => json_text(base, raw),
        (_, Kind::Array(element)) if matches!(*element, Type::JSON | Type::JSONB) => {
            let array = wire::array_from_sql(raw)?;
            let lengths: Vec<usize> =
                array.dimensions().map(|d| Ok(usize::try_from(d.len).unwrap_or(0))).collect::<Vec<_>>()?;
            let mut items = Vec::new();
            let mut values = array.values();
            while let Some(item) = values.next()? {
                items.push(match item {
                    Some(raw) => json_text(element, raw)?.unwrap_or_default(),
                    None => "null".to_owned(),
                });
            }
            for &len in lengths.iter().skip(1).rev() {
                if len == 0 {
                    break;
                }
                items = items.chunks(len).map(|chunk| format!("[{}]", chunk.join(","))).collect();
            }
            Ok(Some(format!("[{}]", items.join(","))))
        }
        _ => Ok(None),
    }
}

fn float(x: f64) -> Value {
    match serde_json::Number::from_f64(x) {
        Some(n) => Value::Number(n),
        None if x.is_nan() => Value::String("NaN".into()),
        None if x > 0.0 => Value::String("Infinity".into()),
        None => Value::String("-Infinity".into()),
    }
}

/// `YYYY-MM-DD hh:mm:ss` of microseconds since 2000-01-01 UTC.
fn timestamp(micros: i64) -> Value {
    match micros {
        i64::MAX => return Value::String("infinity".into()),
        i64::MIN => return Value::String("-infinity".into()),
        _ => {}
    }
    let seconds = micros.div_euclid(1_000_000).saturating_add(PG_EPOCH);
    // The store's own writing of a time (no format string to read for every value).
    match DateTime::from_timestamp(seconds, 0) {
        Some(_) => Value::String(crate::domain::Timestamp::from_unix(seconds).to_string()),
        None => Value::Null,
    }
}

/// `YYYY-MM-DD` of days since 2000-01-01.
fn date(days: i32) -> Value {
    match days {
        i32::MAX => return Value::String("infinity".into()),
        i32::MIN => return Value::String("-infinity".into()),
        _ => {}
    }
    let base = NaiveDate::from_ymd_opt(2000, 1, 1);
    let day = base.and_then(|base| {
        let n = Days::new(u64::from(days.unsigned_abs()));
        if days >= 0 { base.checked_add_days(n) } else { base.checked_sub_days(n) }
    });
    day.map_or(Value::Null, |d| Value::String(d.format("%Y-%m-%d").to_string()))
}

fn decode(ty: &Type, raw: &[u8]) -> Result<Value, BoxError> {
    if is_text(ty) {
        return Ok(Value::String(wire::text_from_sql(raw)?.to_owned()));
    }
    Ok(match *ty {
        Type::BOOL => Value::Bool(wire::bool_from_sql(raw)?),
        Type::INT2 => wire::int2_from_sql(raw)?.into(),
        Type::INT4 => wire::int4_from_sql(raw)?.into(),
        Type::INT8 => wire::int8_from_sql(raw)?.into(),
        Type::FLOAT4 => float(f64::from(wire::float4_from_sql(raw)?)),
        Type::FLOAT8 => float(wire::float8_from_sql(raw)?),
        Type::JSON | Type::JSONB => match json_text(ty, raw)? {
            Some(text) => serde_json::from_str(&text)?,
            None => Value::Null,
        },
        Type::TIMESTAMP | Type::TIMESTAMPTZ => timestamp(wire::timestamp_from_sql(raw)?),
        Type::DATE => date(wire::date_from_sql(raw)?),
        Type::BYTEA => Value::String(base64::engine::general_purpose::STANDARD.encode(wire::bytea_from_sql(raw))),
        // As the server writes them (its cast to text would add the mask to every address).
        Type::INET | Type::CIDR => {
            let inet = wire::inet_from_sql(raw)?;
            let full = if inet.addr().is_ipv4() { 32 } else { 128 };
            Value::String(if *ty == Type::INET && inet.netmask() == full {
                inet.addr().to_string()
            } else {
                format!("{}/{}", inet.addr(), inet.netmask())
            })
        }
        _ => match ty.kind() {
            Kind::Array(element) => array(element, raw)?,
            Kind::Domain(base) => decode(base, raw)?,
            _ => return Err(format!("no JSON form of type {}", ty.name()).into()),
        },
    })
}

fn array(element: &Type, raw: &[u8]) -> Result<Value, BoxError> {
    let array = wire::array_from_sql(raw)?;
    let lengths: Vec<usize> =
        array.dimensions().map(|d| Ok(usize::try_from(d.len).unwrap_or(0))).collect::<Vec<_>>()?;
    let mut values = Vec::new();
    let mut items = array.values();
    while let Some(item) = items.next()? {
        values.push(match item {
            Some(raw) => decode(element, raw)?,
            None => Value::Null,
        });
    }
    // The elements come in row-major order: group them from the innermost dimension out.
    for &len in lengths.iter().skip(1).rev() {
        if len == 0 {
            break;
        }
        values = values.chunks(len).map(|chunk| Value::Array(chunk.to_vec())).collect();
    }
    Ok(Value::Array(values))
}

/// A parameter sent as text, for the server to convert to the type the query needs.
#[derive(Debug)]
pub struct TextParam<'a>(pub &'a str);

impl ToSql for TextParam<'_> {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        out.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn to_sql_checked(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        self.to_sql(ty, out)
    }

    fn encode_format(&self, _: &Type) -> Format {
        Format::Text
    }
}

/// The range of an integer type (a domain over one included), if it is one.
#[must_use]
pub fn integer_range(ty: &Type) -> Option<(i64, i64)> {
    match (ty, ty.kind()) {
        (_, Kind::Domain(base)) => integer_range(base),
        (&Type::INT2, _) => Some((i16::MIN.into(), i16::MAX.into())),
        (&Type::INT4, _) => Some((i32::MIN.into(), i32::MAX.into())),
        (&Type::INT8, _) => Some((i64::MIN, i64::MAX)),
        _ => None,
    }
}

/// Whether a value can be given to a parameter of this type: an integer type needs a number
/// in its range. A value that cannot is equal to nothing in such a column, so the query is not
/// run and returns no rows.
#[must_use]
pub fn fits(ty: &Type, value: &str) -> bool {
    match integer_range(ty) {
        Some((min, max)) => value.parse::<i64>().is_ok_and(|n| (min..=max).contains(&n)),
        None => true,
    }
}

/// Whether a parameter holding ids (`numeric_value`) or an address can be compared with a
/// value of this type: integer types and `numeric` for ids, text of any kind for both.
#[must_use]
pub fn bindable(ty: &Type, numeric_value: bool) -> bool {
    match ty.kind() {
        Kind::Domain(base) => bindable(base, numeric_value),
        _ => is_text(ty) || (numeric_value && (integer_range(ty).is_some() || *ty == Type::NUMERIC)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn encoded(f: impl FnOnce(&mut BytesMut)) -> Vec<u8> {
        let mut buf = BytesMut::new();
        f(&mut buf);
        buf.to_vec()
    }

    fn value(ty: &Type, raw: &[u8]) -> Value {
        match Cell::from_sql(ty, raw).expect("decodes").0 {
            SourceValue::Value(value) => value,
            SourceValue::Json(raw) => serde_json::from_str(raw.get()).expect("JSON"),
        }
    }

    #[test]
    fn numbers_booleans_and_text_keep_their_json_kind() {
        assert_eq!(value(&Type::INT2, &encoded(|b| wire::int2_to_sql(-7, b))), serde_json::json!(-7));
        assert_eq!(value(&Type::INT8, &encoded(|b| wire::int8_to_sql(i64::MAX, b))), serde_json::json!(i64::MAX));
        assert_eq!(value(&Type::FLOAT8, &encoded(|b| wire::float8_to_sql(1.5, b))), serde_json::json!(1.5));
        assert_eq!(value(&Type::FLOAT4, &encoded(|b| wire::float4_to_sql(f32::NAN, b))), serde_json::json!("NaN"));
        assert_eq!(
            value(&Type::FLOAT8, &encoded(|b| wire::float8_to_sql(f64::NEG_INFINITY, b))),
            serde_json::json!("-Infinity")
        );
        assert_eq!(value(&Type::BOOL, &encoded(|b| wire::bool_to_sql(true, b))), serde_json::json!(true));
        assert_eq!(value(&Type::VARCHAR, "Zoë <z@x>".as_bytes()), serde_json::json!("Zoë <z@x>"));
        assert_eq!(Cell::from_sql_nullable(&Type::INT4, None).expect("null").0, SourceValue::Value(Value::Null));
    }

    #[test]
    fn times_dates_bytes_and_json_take_their_export_form() {
        // 2026-03-04 05:06:07.890 UTC, in microseconds since 2000-01-01.
        let micros = (1_772_600_767 - PG_EPOCH) * 1_000_000 + 890_000;
        let at = encoded(|b| wire::timestamp_to_sql(micros, b));
        assert_eq!(value(&Type::TIMESTAMPTZ, &at), serde_json::json!("2026-03-04 05:06:07"));
        assert_eq!(value(&Type::TIMESTAMP, &at), serde_json::json!("2026-03-04 05:06:07"));
        let before = encoded(|b| wire::timestamp_to_sql(-1, b));
        assert_eq!(value(&Type::TIMESTAMP, &before), serde_json::json!("1999-12-31 23:59:59"));
        assert_eq!(value(&Type::TIMESTAMP, &encoded(|b| wire::timestamp_to_sql(i64::MAX, b))), "infinity");
        assert_eq!(value(&Type::DATE, &encoded(|b| wire::date_to_sql(-1, b))), serde_json::json!("1999-12-31"));
        assert_eq!(value(&Type::DATE, &encoded(|b| wire::date_to_sql(9_559, b))), serde_json::json!("2026-03-04"));
        assert_eq!(value(&Type::BYTEA, b"\x00\xffhi"), serde_json::json!("AP9oaQ=="));
        assert_eq!(value(&Type::JSON, br#"{"a":[1,null]}"#), serde_json::json!({"a": [1, null]}));
        assert_eq!(value(&Type::JSONB, b"\x01{\"b\":true}"), serde_json::json!({"b": true}));
        let ip = |addr: &str, mask: u8| encoded(|b| wire::inet_to_sql(addr.parse().expect("address"), mask, b));
        assert_eq!(value(&Type::INET, &ip("192.0.2.1", 32)), serde_json::json!("192.0.2.1"));
        assert_eq!(value(&Type::INET, &ip("192.0.2.1", 24)), serde_json::json!("192.0.2.1/24"));
        assert_eq!(value(&Type::CIDR, &ip("2001:db8::", 32)), serde_json::json!("2001:db8::/32"));
    }

    #[test]
    fn json_and_jsonb_are_copied_as_the_server_wrote_them_without_blanks() {
        let text = br#"{"big": 12345678901234567890.12, "tiny": 1e-400, "dime": 0.10, "s": "a  b\" c"}"#;
        let exact = r#"{"big":12345678901234567890.12,"tiny":1e-400,"dime":0.10,"s":"a  b\" c"}"#;
        let json = Cell::from_sql(&Type::JSON, text).expect("decodes").0;
        assert!(matches!(&json, SourceValue::Json(raw) if raw.get() == exact), "{json:?}");
        let jsonb = Cell::from_sql(&Type::JSONB, &[&[1][..], text].concat()).expect("decodes").0;
        assert!(matches!(&jsonb, SourceValue::Json(raw) if raw.get() == exact), "{jsonb:?}");
        assert!(Cell::from_sql(&Type::JSON, b"{nope").is_err());
    }

    #[test]
    fn arrays_nest_by_dimension_and_keep_nulls() {
        let int4 = |n: i32| {
            let mut b = BytesMut::new();
            wire::int4_to_sql(n, &mut b);
            b
        };
        let dims = [wire::ArrayDimension { len: 2, lower_bound: 1 }, wire::ArrayDimension { len: 2, lower_bound: 1 }];
        let raw = encoded(|buf| {
            wire::array_to_sql(
                dims,
                Type::INT4.oid(),
                [Some(1), None, Some(3), Some(4)],
                |v, out| match v {
                    Some(n) => {
                        out.extend_from_slice(&int4(n));
                        Ok(postgres_protocol::IsNull::No)
                    }
                    None => Ok(postgres_protocol::IsNull::Yes),
                },
                buf,
            )
            .expect("encodes");
        });
        assert_eq!(value(&Type::INT4_ARRAY, &raw), serde_json::json!([[1, null], [3, 4]]));
        let empty = encoded(|buf| {
            wire::array_to_sql([], Type::TEXT.oid(), [None::<i32>; 0], |_, _| Ok(postgres_protocol::IsNull::Yes), buf)
                .expect("encodes");
        });
        assert_eq!(value(&Type::TEXT_ARRAY, &empty), serde_json::json!([]));
    }

    #[test]
    fn other_types_are_selected_as_text() {
        assert_eq!(needs_text(&Type::NUMERIC), Some("text"));
        assert_eq!(needs_text(&Type::UUID), Some("text"));
        assert_eq!(needs_text(&Type::NUMERIC_ARRAY), Some("text[]"));
        assert_eq!(needs_text(&Type::INT8_ARRAY), None);
        assert_eq!(needs_text(&Type::TIMESTAMPTZ), None);
    }

    #[test]
    fn a_value_fits_an_integer_parameter_only_in_range() {
        assert!(fits(&Type::INT4, "2147483647"));
        assert!(!fits(&Type::INT4, "2147483648"));
        assert!(!fits(&Type::INT2, "40000"));
        assert!(!fits(&Type::INT8, "jane@example.com"));
        assert!(fits(&Type::TEXT, "x' OR '1'='1"));
        assert!(fits(&Type::NUMERIC, "12345678901234567890"));
        assert!(bindable(&Type::NUMERIC, true) && !bindable(&Type::NUMERIC, false));
        assert!(bindable(&Type::VARCHAR, false) && !bindable(&Type::BOOL, true));
    }
}
