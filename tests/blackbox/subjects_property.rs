//! The in-memory store (the plainest statement of the ownership rule) and SQLite give the same
//! export of every subject after the same random writes, and writing a line twice changes
//! nothing. The emulator suite runs the same property with DynamoDB as a third store.

use std::sync::Arc;

use datarequest::adapters::memory::MemorySubjects;
use datarequest::adapters::sqlite::SqliteStore;
use datarequest::ports::SubjectData;

use crate::subjects_model::{run, same_everywhere};

#[test]
fn random_loads_and_erasures_export_the_same_on_memory_and_sqlite() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = SqliteStore::open(&dir.path().join("db.sqlite3")).expect("database");
    run(96, 30, |ops| {
        runtime.block_on(async {
            let stores: Vec<(&str, Arc<dyn SubjectData>)> =
                vec![("memory", Arc::new(MemorySubjects::default())), ("sqlite", Arc::new(sqlite.clone()))];
            same_everywhere(&stores, &ops).await
        })
    });
}
