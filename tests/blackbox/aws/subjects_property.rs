//! The same random writes give byte-identical exports of every subject on the in-memory store,
//! SQLite and DynamoDB (on the emulator), and writing a line twice changes nothing on any of
//! them. Bounded to a few dozen cases; a failure prints its seed.

use std::sync::Arc;

use datarequest::adapters::aws::DynamoDbSubjects;
use datarequest::adapters::memory::MemorySubjects;
use datarequest::adapters::sqlite::SqliteStore;
use datarequest::ports::SubjectData;

use super::Env;
use crate::subjects_model::{run, same_everywhere};

#[test]
fn random_loads_and_erasures_export_the_same_on_memory_sqlite_and_dynamodb() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let env = Env::provision();
    let resources = env.resources();
    let clients = runtime.block_on(env.clients());
    let dynamodb: Arc<dyn SubjectData> = Arc::new(DynamoDbSubjects::new(
        clients.dynamodb.clone(),
        resources.subjects_table.clone(),
        clients.s3.clone(),
        resources.exports_bucket.clone(),
    ));
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite: Arc<dyn SubjectData> = Arc::new(SqliteStore::open(&dir.path().join("db.sqlite3")).expect("database"));
    run(24, 20, |ops| {
        runtime.block_on(async {
            let stores: Vec<(&str, Arc<dyn SubjectData>)> = vec![
                ("memory", Arc::new(MemorySubjects::default())),
                ("sqlite", sqlite.clone()),
                ("dynamodb", dynamodb.clone()),
            ];
            same_everywhere(&stores, &ops).await
        })
    });
}
