//! Export files in a folder of the local data dir. A file is written under a temporary name
//! and renamed when finished, so a reader never sees a partial export. A checkpoint syncs the
//! temporary file and keeps it for a resume; the server removes, when it starts, every
//! temporary file no checkpoint of an unfinished build names.

use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use rand::Rng;
use tokio::fs::{self, File};

use crate::domain::RequestId;
use crate::ports::{ExportFile, ExportFormat, ExportStore, ExportWriter, Served, UnfinishedFile, WriteError};

/// A folder of `<request id>.json` files and their `<request id>.html` reports.
pub struct FolderExports {
    dir: PathBuf,
    /// Whether files are written directly where the file system allows it (always, but in
    /// tests of the other way).
    direct: bool,
}

impl FolderExports {
    /// Uses (and creates) this folder.
    ///
    /// # Errors
    /// When the folder cannot be created.
    pub fn new(dir: PathBuf) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self { dir, direct: true })
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

    /// A writer of a new export file.
    async fn writer(&self, id: RequestId, format: ExportFormat) -> anyhow::Result<FolderWriter> {
        let suffix: u64 = rand::rng().random();
        let temporary = self.dir.join(format!("{}{suffix:016x}.part", temporary_prefix(id, format)));
        let path = temporary.clone();
        let direct_wanted = self.direct;
        let (file, direct) = tokio::task::spawn_blocking(move || open_for_writing(&path, true, direct_wanted))
            .await?
            .context("creating an export")?;
        let output = Output { file, path: temporary.clone(), direct };
        Ok(FolderWriter::new(output, Chunk::new(), temporary, self.path(id, format), 0, false))
    }

    /// A writer that goes on with the file a writer's `checkpoint` names.
    async fn rewriter(&self, id: RequestId, format: ExportFormat, checkpoint: &str) -> anyhow::Result<FolderWriter> {
        let at = UnfinishedFile::parse(checkpoint, &temporary_prefix(id, format))?;
        let temporary = self.dir.join(&at.file);
        let written = at.written;
        let path = temporary.clone();
        let direct_wanted = self.direct;
        let (file, direct, chunk) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let (file, direct) = open_for_writing(&path, false, direct_wanted).context("reopening an export")?;
            let len = file.metadata().context("reading an export's size")?.len();
            anyhow::ensure!(len >= at.written, "the export file is shorter than its checkpoint");
            // Bytes written after the checkpoint are written again.
            file.set_len(at.written).context("cutting an export back to its checkpoint")?;
            // The bytes after the last block boundary are written again with what follows.
            let boundary = at.written - at.written % BLOCK as u64;
            let mut rest = vec![0; usize::try_from(at.written - boundary)?];
            std::fs::File::open(&path)
                .and_then(|reader| reader.read_exact_at(&mut rest, boundary))
                .context("reopening an export")?;
            let mut chunk = Chunk::new();
            chunk.fill(&rest);
            Ok((file, direct, chunk))
        })
        .await??;
        let output = Output { file, path: temporary.clone(), direct };
        Ok(FolderWriter::new(output, chunk, temporary, self.path(id, format), written, true))
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
/// The alignment of a direct write's memory, file offset and length: a page, which is a
/// multiple of every common disk's logical block.
const BLOCK: usize = 4096;

/// Up to [`CHUNK`] bytes of an export, held so that the first sits at a [`BLOCK`] boundary in
/// memory, as a direct write needs.
struct Chunk {
    memory: Vec<u8>,
    start: usize,
    len: usize,
}

impl Chunk {
    fn new() -> Self {
        let memory = vec![0; CHUNK + BLOCK];
        let start = (BLOCK - memory.as_ptr().addr() % BLOCK) % BLOCK;
        Self { memory, start, len: 0 }
    }

    /// Takes as many of `bytes` as fit, and says how many.
    fn fill(&mut self, bytes: &[u8]) -> usize {
        let take = (CHUNK - self.len).min(bytes.len());
        let at = self.start + self.len;
        self.memory[at..at + take].copy_from_slice(&bytes[..take]);
        self.len += take;
        take
    }

    fn is_full(&self) -> bool {
        self.len == CHUNK
    }

    fn bytes(&self) -> &[u8] {
        &self.memory[self.start..self.start + self.len]
    }

    /// The bytes followed by zeros up to the next block boundary.
    fn padded(&mut self) -> &[u8] {
        let end = self.start + self.len.next_multiple_of(BLOCK);
        self.memory[self.start + self.len..end].fill(0);
        &self.memory[self.start..end]
    }

    /// A new chunk holding this one's bytes after its last block boundary, which a direct write
    /// writes again with the bytes that follow them.
    fn rest(&self) -> Self {
        let mut rest = Self::new();
        rest.fill(&self.bytes()[self.len - self.len % BLOCK..]);
        rest
    }
}

/// What the writing thread is asked to do.
enum Order {
    /// Write a chunk at this offset of the file (a block boundary).
    Write(Chunk, u64),
    /// Sync the file (its metadata too when `all`), and answer with the first error since the
    /// last sync, if any, or else with whether the writes are still direct.
    Sync { all: bool, done: tokio::sync::oneshot::Sender<std::io::Result<bool>> },
}

/// Opens an export file for writing, for direct writes when `direct` and the file system allows
/// them. Returns the file and whether its writes are direct.
fn open_for_writing(path: &Path, create: bool, direct: bool) -> std::io::Result<(std::fs::File, bool)> {
    let options = || {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(create).truncate(create);
        options
    };
    #[cfg(target_os = "linux")]
    if direct {
        use std::os::unix::fs::OpenOptionsExt;
        match options().custom_flags(libc::O_DIRECT).open(path) {
            Ok(file) => return Ok((file, true)),
            // This file system writes through its cache only.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => return Err(e),
        }
    }
    Ok((options().open(path)?, false))
}

/// The writing thread's file.
struct Output {
    file: std::fs::File,
    path: PathBuf,
    /// Whether writes bypass the kernel's cache: they need whole blocks from aligned memory.
    direct: bool,
}

impl Output {
    /// Writes `chunk` at `at`, a block boundary. A direct write writes whole blocks, the last
    /// one padded with zeros, and then cuts the file back to the chunk's end; the next chunk
    /// starts with the bytes of that last block again. A direct write the file system refuses
    /// is made, and every later one, through a handle without direct writes.
    fn write(&mut self, chunk: &mut Chunk, at: u64) -> std::io::Result<()> {
        let written = if self.direct {
            self.file.write_all_at(chunk.padded(), at).and_then(|()| {
                let end = at + chunk.len as u64;
                if chunk.len.is_multiple_of(BLOCK) { Ok(()) } else { self.file.set_len(end) }
            })
        } else {
            self.file.write_all_at(chunk.bytes(), at)
        };
        match written {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && self.direct => {
                self.file = std::fs::OpenOptions::new().write(true).open(&self.path)?;
                self.direct = false;
                self.file.write_all_at(chunk.bytes(), at)
            }
            written => written,
        }
    }
}

/// An export file written by a thread of its own: the build hands it chunks through a short
/// queue and goes on, so the writing runs beside the build instead of between its records. A
/// write that fails is reported by the next sync (a checkpoint or the end), and the writes
/// after it are not made.
///
/// Where the file system allows it, the writes are direct (`O_DIRECT`): the disk takes the
/// bytes from the chunk itself. Written through the kernel's cache, each byte would be copied
/// once more, into pages that take memory from every other process on the machine for a file
/// that is read at most once, later; on a virtual machine that copy was the largest single
/// cost of a build.
///
/// A second thread syncs the file after every [`WRITE_BACK`] bytes, so that the disk writes
/// while the build goes on (through the cache, a build's gigabytes would otherwise reach the
/// disk only at a checkpoint or at the end, and the build would wait for all of them there;
/// direct writes are on the disk, and the syncs write their metadata). A failure of such a sync
/// is kept and reported by the next sync the build asks for (the kernel reports a write-back
/// error only once).
struct FolderWriter {
    orders: tokio::sync::mpsc::Sender<Order>,
    chunk: Chunk,
    /// Chunks the writing thread has written, for the build to fill again: a new one would
    /// cost the kernel's zeroing of its pages each time.
    spare: Arc<std::sync::Mutex<Vec<Chunk>>>,
    /// Where the chunk's first byte goes in the file.
    at: u64,
    temporary: PathBuf,
    target: PathBuf,
    written: u64,
    /// Whether a checkpoint keeps the temporary file for a resume.
    kept: bool,
    /// Whether the writes were direct at the last sync.
    direct: bool,
}

impl FolderWriter {
    /// A writer that goes on after the `written` bytes the file holds, of which the last
    /// are `chunk`'s, from a block boundary on.
    fn new(output: Output, chunk: Chunk, temporary: PathBuf, target: PathBuf, written: u64, kept: bool) -> Self {
        let (orders, mut queue) = tokio::sync::mpsc::channel(QUEUED);
        let direct = output.direct;
        let spare = Arc::new(std::sync::Mutex::new(Vec::with_capacity(QUEUED + 1)));
        let returned = Arc::clone(&spare);
        let early = Arc::new(std::sync::Mutex::new(None));
        let (wake, woken) = std::sync::mpsc::sync_channel::<()>(1);
        match output.file.try_clone() {
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
            let mut output = output;
            let mut failed: Option<std::io::Error> = None;
            let mut unsynced = 0;
            while let Some(order) = queue.blocking_recv() {
                match order {
                    Order::Write(mut chunk, at) => {
                        if failed.is_none() {
                            failed = output.write(&mut chunk, at).err();
                        }
                        unsynced += chunk.len;
                        if unsynced >= WRITE_BACK {
                            unsynced = 0;
                            // Full: a sync is already waiting to start, which covers these bytes.
                            let _ = wake.try_send(());
                        }
                        if let Ok(mut spare) = returned.lock()
                            && spare.len() <= QUEUED
                        {
                            chunk.len = 0;
                            spare.push(chunk);
                        }
                    }
                    Order::Sync { all, done } => {
                        let early = early.lock().ok().and_then(|mut slot| slot.take());
                        let synced = match failed.take().or(early) {
                            Some(error) => Err(error),
                            None if all => output.file.sync_all(),
                            None => output.file.sync_data(),
                        };
                        let synced = synced.map(|()| output.direct);
                        let _ = done.send(synced);
                    }
                }
            }
        });
        let at = written - chunk.len as u64;
        Self { orders, chunk, spare, at, temporary, target, written, kept, direct }
    }

    async fn order(&self, order: Order) -> anyhow::Result<()> {
        self.orders.send(order).await.map_err(|_| anyhow::anyhow!("the export's writer stopped"))
    }

    /// Hands on the full chunk.
    async fn hand_on(&mut self) -> anyhow::Result<()> {
        let spare = self.spare.lock().ok().and_then(|mut spare| spare.pop());
        let chunk = std::mem::replace(&mut self.chunk, spare.unwrap_or_else(Chunk::new));
        let at = self.at;
        self.at += CHUNK as u64;
        self.order(Order::Write(chunk, at)).await
    }

    /// Hands on what is buffered and syncs the file once the thread has written it all. The
    /// bytes after the last block boundary stay buffered too, to be written again with what
    /// follows them.
    async fn sync(&mut self, all: bool) -> anyhow::Result<()> {
        if self.chunk.len > 0 {
            let rest = self.chunk.rest();
            let chunk = std::mem::replace(&mut self.chunk, rest);
            let at = self.at;
            self.at += (chunk.len - self.chunk.len) as u64;
            self.order(Order::Write(chunk, at)).await?;
        }
        let (done, synced) = tokio::sync::oneshot::channel();
        self.order(Order::Sync { all, done }).await?;
        let direct =
            synced.await.map_err(|_| anyhow::anyhow!("the export's writer stopped"))?.context("writing an export")?;
        if self.direct && !direct {
            tracing::warn!("the file system refused a direct write of an export; it is written through the cache");
        }
        self.direct = direct;
        Ok(())
    }
}

/// The name every temporary file of an export starts with.
fn temporary_prefix(id: RequestId, format: ExportFormat) -> String {
    format!(".{id}.{}.", format.as_str())
}

#[async_trait]
impl ExportWriter for FolderWriter {
    async fn write(&mut self, mut bytes: &[u8]) -> Result<(), WriteError> {
        self.written += bytes.len() as u64;
        while !bytes.is_empty() {
            let taken = self.chunk.fill(bytes);
            bytes = &bytes[taken..];
            if self.chunk.is_full() {
                self.hand_on().await?;
            }
        }
        Ok(())
    }

    async fn checkpoint(&mut self) -> Result<String, WriteError> {
        self.sync(false).await?;
        self.kept = true;
        let file = self.temporary.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
        Ok(UnfinishedFile { file, written: self.written }.to_text()?)
    }

    async fn finish(mut self: Box<Self>) -> Result<u64, WriteError> {
        self.sync(true).await?;
        fs::rename(&self.temporary, &self.target).await.context("publishing an export")?;
        Ok(self.written)
    }

    async fn discard(mut self: Box<Self>) -> Result<(), WriteError> {
        // Dropped unkept, the temporary file goes.
        self.kept = false;
        Ok(())
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
        Ok(Box::new(self.writer(id, format).await?))
    }

    async fn resume(
        &self,
        id: RequestId,
        format: ExportFormat,
        checkpoint: &str,
    ) -> Result<Box<dyn ExportWriter>, WriteError> {
        Ok(Box::new(self.rewriter(id, format, checkpoint).await?))
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

    async fn discard(&self, id: RequestId, format: ExportFormat, checkpoint: &str) -> anyhow::Result<()> {
        let at = UnfinishedFile::parse(checkpoint, &temporary_prefix(id, format))?;
        match fs::remove_file(self.dir.join(&at.file)).await {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(e).context("removing an unfinished export"),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn id() -> RequestId {
        RequestId::parse("4242").unwrap()
    }

    /// Writes `pieces` through `exports`, taking a checkpoint after each piece whose index is in
    /// `checkpoints`, and going on in the same writer or, when its flag says so, writing bytes
    /// that are then lost and resuming in a new writer; returns the published file and the size
    /// the writer reported.
    async fn write_with_resumes(
        exports: &FolderExports,
        pieces: &[Vec<u8>],
        checkpoints: &[(usize, bool)],
    ) -> (Vec<u8>, u64) {
        // Writes stay direct where asked for and allowed: none falls back to the cache.
        let direct = exports.direct && open_for_writing(&exports.dir.join("probe"), true, true).unwrap().1;
        let mut writer = exports.writer(id(), ExportFormat::Json).await.unwrap();
        for (n, piece) in pieces.iter().enumerate() {
            writer.write(piece).await.unwrap();
            for &(_, resume) in checkpoints.iter().filter(|(at, _)| *at == n) {
                let checkpoint = writer.checkpoint().await.unwrap();
                assert_eq!(writer.direct, direct);
                if !resume {
                    continue;
                }
                // Bytes after the checkpoint are lost with the run, and written again by the next.
                writer.write(b"lost").await.unwrap();
                drop(writer);
                writer = exports.rewriter(id(), ExportFormat::Json, &checkpoint).await.unwrap();
            }
        }
        let written = Box::new(writer).finish().await.unwrap();
        (std::fs::read(exports.path(id(), ExportFormat::Json)).unwrap(), written)
    }

    #[tokio::test]
    async fn pieces_of_any_size_reach_the_file_in_order_across_a_checkpoint_and_a_resume() {
        // More than two write-backs' worth, so the syncing thread runs beside the writing.
        let pieces: Vec<Vec<u8>> =
            (0..100u8).map(|n| vec![b'a' + n % 26; 1 + usize::from(n) * 37_813 % (3 * CHUNK)]).collect();
        assert!(pieces.iter().map(Vec::len).sum::<usize>() > 2 * WRITE_BACK);
        for direct in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let mut exports = FolderExports::new(dir.path().to_path_buf()).unwrap();
            exports.direct = direct;
            let (file, written) =
                write_with_resumes(&exports, &pieces, &[(19, false), (20, true), (21, true), (63, false), (64, true)])
                    .await;
            assert!(file == pieces.concat(), "direct: {direct}");
            assert_eq!(written, file.len() as u64);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config { cases: 48, ..Default::default() })]

        /// Whatever the sizes of the pieces and wherever the checkpoints fall (on a block
        /// boundary, inside a block, twice in a row), the file holds exactly the pieces, written
        /// directly or through the cache.
        #[test]
        fn the_file_holds_exactly_the_pieces_whatever_the_checkpoints(
            sizes in proptest::collection::vec(
                proptest::prop_oneof![0..3 * BLOCK, proptest::sample::select(vec![BLOCK, 2 * BLOCK, CHUNK - 1, CHUNK, CHUNK + 1]), 0..2 * CHUNK],
                1..24,
            ),
            checkpoints in proptest::collection::vec((0..24usize, proptest::bool::ANY), 0..6),
            direct in proptest::bool::ANY,
        ) {
            let pieces: Vec<Vec<u8>> = sizes
                .iter()
                .enumerate()
                .map(|(n, &size)| (0..size).map(|i| u8::try_from((n * 7 + i) % 251).unwrap()).collect())
                .collect();
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let dir = tempfile::tempdir().unwrap();
            let mut exports = FolderExports::new(dir.path().to_path_buf()).unwrap();
            exports.direct = direct;
            let (file, written) = runtime.block_on(write_with_resumes(&exports, &pieces, &checkpoints));
            proptest::prop_assert!(file == pieces.concat());
            proptest::prop_assert_eq!(written, file.len() as u64);
        }
    }

    #[tokio::test]
    async fn a_write_a_direct_handle_refuses_is_made_through_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let temporary = dir.path().join(".export.part");
        let target = dir.path().join("export.json");
        let (file, direct) = open_for_writing(&temporary, true, true).unwrap();
        let output = Output { file, path: temporary.clone(), direct };
        // A first chunk off its block boundary in memory, which a direct write refuses.
        let mut chunk = Chunk::new();
        chunk.start += 1;
        let mut writer = Box::new(FolderWriter::new(output, chunk, temporary, target.clone(), 0, false));
        let bytes: Vec<u8> = (0..3 * CHUNK + 77).map(|i| u8::try_from(i % 253).unwrap()).collect();
        writer.write(&bytes[..100]).await.unwrap();
        writer.checkpoint().await.unwrap();
        writer.write(&bytes[100..]).await.unwrap();
        writer.checkpoint().await.unwrap();
        assert!(!writer.direct);
        writer.finish().await.unwrap();
        assert!(std::fs::read(&target).unwrap() == bytes);
    }

    #[tokio::test]
    async fn a_write_the_disk_refuses_fails_the_file_and_publishes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("export.json");
        let temporary = dir.path().join(".export.part");
        std::fs::write(&temporary, b"").unwrap();
        // Every write to this device fails as a full disk does.
        let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
        let output = Output { file: full, path: temporary.clone(), direct: false };
        let mut writer = Box::new(FolderWriter::new(output, Chunk::new(), temporary, target.clone(), 0, false));
        writer.write(&vec![b'x'; 3 * CHUNK]).await.unwrap();
        let error = writer.finish().await.unwrap_err();
        assert!(format!("{error:#}").contains("writing an export"), "{error:#}");
        assert!(!target.exists());
    }
}
