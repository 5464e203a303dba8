//! Export files in a folder of the local data dir. A file is written under a temporary name
//! and renamed when finished, so a reader never sees a partial export.

use std::io::ErrorKind;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use rand::Rng;
use tokio::fs::{self, File};
use tokio::io::{AsyncWriteExt, BufWriter};

use crate::domain::RequestId;
use crate::ports::{ExportFile, ExportFormat, ExportStore, ExportWriter, Served};

/// A folder of `<request id>.json` files and their `<request id>.html` reports.
pub struct FolderExports {
    dir: PathBuf,
}

impl FolderExports {
    /// Uses (and creates) this folder.
    ///
    /// # Errors
    /// When the folder cannot be created.
    pub fn new(dir: PathBuf) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        // Parts left by a process that died while writing will never be finished.
        for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?.flatten() {
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') && name.to_string_lossy().ends_with(".part") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(Self { dir })
    }

    /// Where the export of a request in a format lives.
    #[must_use]
    pub fn path(&self, id: RequestId, format: ExportFormat) -> PathBuf {
        self.dir.join(format!("{id}.{}", format.as_str()))
    }
}

struct FolderWriter {
    file: BufWriter<File>,
    temporary: PathBuf,
    target: PathBuf,
    written: u64,
}

#[async_trait]
impl ExportWriter for FolderWriter {
    async fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.file.write_all(bytes).await.context("writing an export")?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> anyhow::Result<u64> {
        self.file.flush().await.context("flushing an export")?;
        self.file.get_ref().sync_all().await.context("syncing an export")?;
        fs::rename(&self.temporary, &self.target).await.context("publishing an export")?;
        Ok(self.written)
    }
}

impl Drop for FolderWriter {
    fn drop(&mut self) {
        // Unfinished: the temporary file goes. Finished: it was renamed and this is a no-op.
        let _ = std::fs::remove_file(&self.temporary);
    }
}

async fn open_file(path: PathBuf) -> anyhow::Result<Option<ExportFile>> {
    match File::open(&path).await {
        Ok(file) => {
            let len = file.metadata().await.context("reading an export's size")?.len();
            Ok(Some(ExportFile { len, reader: Box::pin(file) }))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).context("opening an export"),
    }
}

#[async_trait]
impl ExportStore for FolderExports {
    async fn create(&self, id: RequestId, format: ExportFormat) -> anyhow::Result<Box<dyn ExportWriter>> {
        let suffix: u64 = rand::rng().random();
        let temporary = self.dir.join(format!(".{id}.{}.{suffix:016x}.part", format.as_str()));
        let file = File::create(&temporary).await.context("creating an export")?;
        Ok(Box::new(FolderWriter {
            file: BufWriter::with_capacity(256 * 1024, file),
            temporary,
            target: self.path(id, format),
            written: 0,
        }))
    }

    async fn open(&self, id: RequestId, format: ExportFormat) -> anyhow::Result<Option<ExportFile>> {
        open_file(self.path(id, format)).await
    }

    async fn serve(&self, id: RequestId, format: ExportFormat, _ttl: Duration) -> anyhow::Result<Option<Served>> {
        Ok(open_file(self.path(id, format)).await?.map(Served::Stream))
    }

    async fn delete(&self, id: RequestId) -> anyhow::Result<()> {
        for format in ExportFormat::ALL {
            match fs::remove_file(self.path(id, format)).await {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e).context("deleting an export"),
            }
        }
        Ok(())
    }
}
