//! One metric record per build, in CloudWatch's embedded metric format: a JSON line on standard
//! output that Lambda's log capture turns into metrics (namespace `Datarequest`, dimension
//! `Outcome`). Figures only, no personal data. Outside Lambda nothing is printed.

use std::time::Duration;

use serde_json::json;

/// What one build came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildFigures {
    /// `built` or `failed`.
    pub outcome: &'static str,
    /// Bytes of the export.
    pub bytes: u64,
    /// Records in it.
    pub records: u64,
    /// How long the build took.
    pub duration: Duration,
    /// How many queue receives (invocations) it used.
    pub invocations: u32,
}

/// The record for `figures` at `unix_millis`.
#[must_use]
pub fn record(figures: &BuildFigures, unix_millis: u128) -> String {
    json!({
        "_aws": {
            "Timestamp": unix_millis,
            "CloudWatchMetrics": [{
                "Namespace": "Datarequest",
                "Dimensions": [["Outcome"]],
                "Metrics": [
                    {"Name": "Bytes", "Unit": "Bytes"},
                    {"Name": "Records", "Unit": "Count"},
                    {"Name": "Duration", "Unit": "Milliseconds"},
                    {"Name": "Invocations", "Unit": "Count"}
                ]
            }]
        },
        "Outcome": figures.outcome,
        "Bytes": figures.bytes,
        "Records": figures.records,
        "Duration": figures.duration.as_millis(),
        "Invocations": figures.invocations,
    })
    .to_string()
}

/// Prints the record of a build when running in Lambda.
pub fn emit(figures: &BuildFigures) {
    if std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some() {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        println!("{}", record(figures, now.as_millis()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_names_its_metrics_and_carries_their_values() {
        let figures = BuildFigures {
            outcome: "built",
            bytes: 1234,
            records: 56,
            duration: Duration::from_millis(789),
            invocations: 2,
        };
        let value: serde_json::Value = serde_json::from_str(&record(&figures, 1_700_000_000_000)).unwrap_or_default();
        assert_eq!(value["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Datarequest");
        assert_eq!(value["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().map(Vec::len), Some(4));
        assert_eq!(value["_aws"]["Timestamp"], 1_700_000_000_000_u64);
        assert_eq!(
            (&value["Outcome"], &value["Bytes"], &value["Records"], &value["Duration"], &value["Invocations"]),
            (&json!("built"), &json!(1234), &json!(56), &json!(789), &json!(2))
        );
    }
}
