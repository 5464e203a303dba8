//! Export files in a folder of the local data dir. A file is written under a temporary name
//! and renamed when finished, so a reader never sees a partial export. A checkpoint syncs the
//! temporary file and keeps it for a resume; the server removes, when it starts, every
//! temporary file no checkpoint of an unfinished build names.

use std::io::{ErrorKind, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use rand::Rng;
use tokio::fs::{self, File};
use tokio::io::AsyncSeekExt;

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

/// Bytes handed to the writing thread at a time.
const CHUNK: usize = 512 * 1024;
/// Chunks that may wait for the writing thread.
const QUEUED: usize = 4;
/// Bytes written between two syncs started on the syncing thread.
const WRITE_BACK: usize = 32 * 1024 * 1024;

/// What the writing thread is asked to do.
enum Order {
    Write(Vec<u8>),
    /// Sync the file (its metadata too when `all`), and answer with the first error since the
    /// last sync, if any.
    Sync {
        all: bool,
        done: tokio::sync::oneshot::Sender<std::io::Result<()>>,
    },
}

/// An export file written by a thread of its own: the build hands it chunks through a short
/// queue and goes on, so the kernel's copying of the bytes into the file runs beside the
/// build instead of between its records. A write that fails is reported by the next sync (a
/// checkpoint or the end), and the writes after it are not made.
///
/// A second thread syncs the file after every [`WRITE_BACK`] bytes, so that the disk writes
/// while the build goes on: left to the kernel, a build's gigabytes would reach the disk only
/// at a checkpoint or at the end, and the build would wait for all of them there. A failure of
/// such a sync is kept and reported by the next sync the build asks for (the kernel reports a
/// write-back error only once).
struct FolderWriter {
    orders: tokio::sync::mpsc::Sender<Order>,
    chunk: Vec<u8>,
    temporary: PathBuf,
    target: PathBuf,
    written: u64,
    /// Whether a checkpoint keeps the temporary file for a resume.
    kept: bool,
}

impl FolderWriter {
    fn new(file: std::fs::File, temporary: PathBuf, target: PathBuf, written: u64, kept: bool) -> Self {
        let (orders, mut queue) = tokio::sync::mpsc::channel(QUEUED);
        let early = Arc::new(std::sync::Mutex::new(None));
        let (wake, woken) = std::sync::mpsc::sync_channel::<()>(1);
        match file.try_clone() {
            Ok(handle) => {
                let early = Arc::clone(&early);
                // Ends when the writing thread does (its end drops `wake`).
                tokio::task::spawn_blocking(move || {
                    while woken.recv().is_ok() {
                        // The slot stays locked during the sync: a sync the build asks for
                        // waits for this one, and sees its failure.
                        let Ok(mut slot) = early.lock() else { return };
                        if let Err(error) = handle.sync_data() {
                            slot.get_or_insert(error);
                        }
                    }
                });
            }
            // Without a second handle the file is synced at checkpoints and at the end only.
            Err(_) => drop(woken),
        }
        tokio::task::spawn_blocking(move || {
            let mut file = file;
            let mut failed: Option<std::io::Error> = None;
            let mut unsynced = 0;
            while let Some(order) = queue.blocking_recv() {
                match order {
                    Order::Write(bytes) => {
                        if failed.is_none() {
                            failed = file.write_all(&bytes).err();
                        }
                        unsynced += bytes.len();
                        if unsynced >= WRITE_BACK {
                            unsynced = 0;
                            // Full: a sync is already waiting to start, which covers these bytes.
                            let _ = wake.try_send(());
                        }
                    }
                    Order::Sync { all, done } => {
                        let early = early.lock().ok().and_then(|mut slot| slot.take());
                        let synced = match failed.take().or(early) {
                            Some(error) => Err(error),
                            None if all => file.sync_all(),
                            None => file.sync_data(),
                        };
                        let _ = done.send(synced);
                    }
                }
            }
        });
        Self { orders, chunk: Vec::with_capacity(CHUNK), temporary, target, written, kept }
    }

    async fn hand_on(&mut self) -> anyhow::Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK));
        self.orders.send(Order::Write(chunk)).await.map_err(|_| anyhow::anyhow!("the export's writer stopped"))
    }

    /// Hands on what is buffered and syncs the file once the thread has written it all.
    async fn sync(&mut self, all: bool) -> anyhow::Result<()> {
        self.hand_on().await?;
        let (done, synced) = tokio::sync::oneshot::channel();
        let stopped = || anyhow::anyhow!("the export's writer stopped");
        self.orders.send(Order::Sync { all, done }).await.map_err(|_| stopped())?;
        synced.await.map_err(|_| stopped())?.context("writing an export")
    }
}

/// The name every temporary file of an export starts with.
fn temporary_prefix(id: RequestId, format: ExportFormat) -> String {
    format!(".{id}.{}.", format.as_str())
}

#[async_trait]
impl ExportWriter for FolderWriter {
    async fn write(&mut self, mut bytes: &[u8]) -> anyhow::Result<()> {
        self.written += bytes.len() as u64;
        while !bytes.is_empty() {
            let take = (CHUNK - self.chunk.len()).min(bytes.len());
            self.chunk.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.chunk.len() == CHUNK {
                self.hand_on().await?;
            }
        }
        Ok(())
    }

    async fn checkpoint(&mut self) -> anyhow::Result<String> {
        self.sync(false).await?;
        self.kept = true;
        let file = self.temporary.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
        UnfinishedFile { file, written: self.written }.to_text()
    }

    async fn finish(mut self: Box<Self>) -> anyhow::Result<u64> {
        self.sync(true).await?;
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
        let file = File::create(&temporary).await.context("creating an export")?.into_std().await;
        Ok(Box::new(FolderWriter::new(file, temporary, self.path(id, format), 0, false)))
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
        Ok(Box::new(FolderWriter::new(file.into_std().await, temporary, self.path(id, format), at.written, true)))
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn id() -> RequestId {
        RequestId::parse("4242").unwrap()
    }

    #[tokio::test]
    async fn pieces_of_any_size_reach_the_file_in_order_across_a_checkpoint_and_a_resume() {
        let dir = tempfile::tempdir().unwrap();
        let exports = FolderExports::new(dir.path().to_path_buf()).unwrap();
        // More than two write-backs' worth, so the syncing thread runs beside the writing.
        let pieces: Vec<Vec<u8>> =
            (0..100u8).map(|n| vec![b'a' + n % 26; 1 + usize::from(n) * 37_813 % (3 * CHUNK)]).collect();
        assert!(pieces.iter().map(Vec::len).sum::<usize>() > 2 * WRITE_BACK);
        let mut writer = exports.create(id(), ExportFormat::Json).await.unwrap();
        for piece in &pieces[..20] {
            writer.write(piece).await.unwrap();
        }
        let checkpoint = writer.checkpoint().await.unwrap();
        // Bytes after the checkpoint are lost with the run, and written again by the next.
        writer.write(b"lost").await.unwrap();
        drop(writer);
        let mut writer = exports.resume(id(), ExportFormat::Json, &checkpoint).await.unwrap();
        for piece in &pieces[20..] {
            writer.write(piece).await.unwrap();
        }
        let written = writer.finish().await.unwrap();
        let file = std::fs::read(exports.path(id(), ExportFormat::Json)).unwrap();
        assert_eq!(file, pieces.concat());
        assert_eq!(written, file.len() as u64);
    }

    #[tokio::test]
    async fn a_write_the_disk_refuses_fails_the_file_and_publishes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("export.json");
        let temporary = dir.path().join(".export.part");
        std::fs::write(&temporary, b"").unwrap();
        // Every write to this device fails as a full disk does.
        let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
        let mut writer = Box::new(FolderWriter::new(full, temporary, target.clone(), 0, false));
        writer.write(&vec![b'x'; 3 * CHUNK]).await.unwrap();
        let error = writer.finish().await.unwrap_err();
        assert!(format!("{error:#}").contains("writing an export"), "{error:#}");
        assert!(!target.exists());
    }
}
