//! AWS mode against the local emulator (moto server, started by `infra/test.sh`): each adapter
//! with its own uniquely named resources, and the real Lambda binaries driven through the
//! Lambda Runtime API.

mod adapters;
mod cancel;
mod erasure;
mod functions;
mod ingest;
mod mime;
mod sources;
mod subjects_property;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};

use datarequest::adapters::aws::{Clients, Resources};
use datarequest::domain::Mime;
use datarequest::ports::SubjectData;

/// A message's body read whole, from the page or streamed from the store.
pub async fn mime_text(store: &dyn SubjectData, mime: &Mime) -> String {
    match mime {
        Mime::Text(text) => text.clone(),
        Mime::Stored(body) => {
            let mut chunks = store.mime(body).await.expect("the body opens");
            let mut bytes = Vec::new();
            while let Some(chunk) = futures_util::TryStreamExt::try_next(&mut chunks).await.expect("the body reads") {
                bytes.extend_from_slice(&chunk);
            }
            String::from_utf8(bytes).expect("UTF-8")
        }
    }
}

/// The environment of one set of emulator resources, as `infra/emulator.sh provision` prints it.
#[derive(Debug, Clone)]
pub struct Env(pub HashMap<String, String>);

impl Env {
    /// Creates a fresh, uniquely named set of every data resource of `template.yaml`.
    pub fn provision() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let suffix = format!("t{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/emulator.sh");
        let output =
            std::process::Command::new(script).args(["provision", &suffix]).output().expect("runs emulator.sh");
        assert!(output.status.success(), "provision: {}", String::from_utf8_lossy(&output.stderr));
        let text = String::from_utf8(output.stdout).expect("UTF-8");
        let map = text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        let env = Self(map);
        assert!(env.get("AWS_ENDPOINT_URL").starts_with("http://127.0.0.1:"), "the emulator is on loopback");
        env
    }

    pub fn get(&self, key: &str) -> &str {
        self.0.get(key).map_or("", String::as_str)
    }

    pub fn lookup(&self) -> impl Fn(&str) -> Option<String> + '_ {
        move |name: &str| self.0.get(name).cloned()
    }

    /// The subject data store of these resources.
    pub async fn subjects(&self) -> datarequest::adapters::aws::DynamoDbSubjects {
        let (clients, resources) = (self.clients().await, self.resources());
        datarequest::adapters::aws::DynamoDbSubjects::new(
            clients.dynamodb,
            resources.subjects_table,
            clients.s3,
            resources.exports_bucket,
        )
    }

    pub fn resources(&self) -> Resources {
        Resources::from_lookup(&self.lookup()).expect("every resource is named")
    }

    /// SDK clients for the emulator, configured explicitly (nothing read from this process's
    /// environment, and no instance-metadata probe).
    pub async fn clients(&self) -> Clients {
        let credentials = aws_sdk_sqs::config::Credentials::new("testing", "testing", None, None, "emulator");
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(self.get("AWS_ENDPOINT_URL"))
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(credentials)
            .load()
            .await;
        Clients::from_sdk(&sdk)
    }

    /// The mails SES took, as the emulator records them: (source, destinations, raw text).
    pub async fn sent_mail(&self) -> Vec<(String, Vec<String>, String)> {
        let url = format!("{}/moto-api/data.json", self.get("AWS_ENDPOINT_URL"));
        // The emulator serialises its whole state for this call, and fails now and then while
        // other tests write to it at the same time: try again a few times.
        let mut data = serde_json::Value::Null;
        for attempt in 0..10 {
            let response = reqwest::get(&url).await.expect("moto api");
            match response.json::<serde_json::Value>().await {
                Ok(value) => {
                    data = value;
                    break;
                }
                Err(error) => {
                    assert!(attempt < 9, "the emulator's state is not JSON: {error}");
                    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                }
            }
        }
        data["ses"]["RawMessage"]
            .as_array()
            .map(|all| {
                all.iter()
                    .map(|m| {
                        let to = m["destinations"]
                            .as_array()
                            .map(|d| d.iter().filter_map(|a| a.as_str().map(str::to_owned)).collect());
                        (
                            m["source"].as_str().unwrap_or("").to_owned(),
                            to.unwrap_or_default(),
                            m["raw_data"].as_str().unwrap_or("").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// `len` pseudo-random letters from `seed`: text that does not compress.
pub fn noise(len: usize, seed: u64) -> String {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            char::from(b'a' + u8::try_from((state >> 33) % 26).unwrap_or(0))
        })
        .collect()
}
