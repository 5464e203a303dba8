//! Export files in a folder of the local data dir. A file is written under a temporary name
//! and renamed when finished, so a reader never sees a partial export. A checkpoint syncs the
//! temporary file and keeps it for a resume; the server removes, when it starts, every
//! temporary file no checkpoint of an unfinished build names.

use std::io::ErrorKind;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use rand::Rng;
use tokio::fs::{self, File};
use tokio::io::{AsyncSeekExt, AsyncWriteExt, BufWriter};

use crate::domain::RequestId;
use crate::ports::{ExportFile, ExportFormat, ExportStore, ExportWriter, Served, UnfinishedFile};

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
        Ok(Self { dir })
    }

    /// Removes the temporary files of builds that will never finish: every one that none of
    /// `kept` (the writer checkpoints of the builds still to finish) names. Returns how many.
    ///
    /// # Errors
    /// When the folder cannot be read.
    pub fn remove_abandoned(&self, kept: &[String]) -> anyhow::Result<usize> {
        let names: Vec<String> = kept
            .iter()
            .filter_map(|checkpoint| serde_json::from_str::<UnfinishedFile>(checkpoint).ok())
            .map(|file| file.file)
            .collect();
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.dir).with_context(|| format!("reading {}", self.dir.display()))?.flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".part") && !names.contains(&name) {
                std::fs::remove_file(entry.path()).with_context(|| format!("removing {name}"))?;
                removed += 1;
            }
        }
        Ok(removed)
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
    /// Whether a checkpoint keeps the temporary file for a resume.
    kept: bool,
}

/// The name every temporary file of an export starts with.
fn temporary_prefix(id: RequestId, format: ExportFormat) -> String {
    format!(".{id}.{}.", format.as_str())
}

#[async_trait]
impl ExportWriter for FolderWriter {
    async fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.file.write_all(bytes).await.context("writing an export")?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    async fn checkpoint(&mut self) -> anyhow::Result<String> {
        self.file.flush().await.context("flushing an export")?;
        self.file.get_ref().sync_data().await.context("syncing an export")?;
        self.kept = true;
        let file = self.temporary.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
        UnfinishedFile { file, written: self.written }.to_text()
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
        // Unfinished: the temporary file goes, unless a checkpoint keeps it for a resume.
        // Finished: it was renamed and this is a no-op.
        if !self.kept {
            let _ = std::fs::remove_file(&self.temporary);
        }
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
        let temporary = self.dir.join(format!("{}{suffix:016x}.part", temporary_prefix(id, format)));
        let file = File::create(&temporary).await.context("creating an export")?;
        Ok(Box::new(FolderWriter {
            file: BufWriter::with_capacity(256 * 1024, file),
            temporary,
            target: self.path(id, format),
            written: 0,
            kept: false,
        }))
    }

    async fn resume(
        &self,
        id: RequestId,
        format: ExportFormat,
        checkpoint: &str,
    ) -> anyhow::Result<Box<dyn ExportWriter>> {
        let at = UnfinishedFile::parse(checkpoint, &temporary_prefix(id, format))?;
        let temporary = self.dir.join(&at.file);
        let mut file = fs::OpenOptions::new().write(true).open(&temporary).await.context("reopening an export")?;
        let len = file.metadata().await.context("reading an export's size")?.len();
        anyhow::ensure!(len >= at.written, "the export file is shorter than its checkpoint");
        // Bytes written after the checkpoint are written again.
        file.set_len(at.written).await.context("cutting an export back to its checkpoint")?;
        file.seek(std::io::SeekFrom::End(0)).await.context("reopening an export")?;
        Ok(Box::new(FolderWriter {
            file: BufWriter::with_capacity(256 * 1024, file),
            temporary,
            target: self.path(id, format),
            written: at.written,
            kept: true,
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
