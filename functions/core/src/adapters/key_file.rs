//! The signing keys in a file (local mode): the keyring's JSON, readable and writable by the
//! service's user only (mode 0600), replaced whole through a temporary file so that a crash
//! never leaves half a keyring.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use async_trait::async_trait;

use crate::domain::Keyring;
use crate::ports::SigningKeyStore;

/// A keyring in a file.
#[derive(Debug, Clone)]
pub struct KeyFile {
    path: PathBuf,
}

impl KeyFile {
    /// The keyring at `path` (made on the first save).
    #[must_use]
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// The file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the keyring now (at start, before anything runs); no file is an empty keyring.
    ///
    /// # Errors
    /// When the file cannot be read or is not a keyring; the error names the file.
    pub fn read(&self) -> anyhow::Result<Keyring> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => Keyring::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", self.path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Keyring::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", self.path.display())),
        }
    }

    fn write(&self, text: &str) -> anyhow::Result<()> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let temporary = self.path.with_extension("tmp");
        let _ = std::fs::remove_file(&temporary);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temporary).with_context(|| format!("creating {}", temporary.display()))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {}", temporary.display()))?;
        std::fs::rename(&temporary, &self.path).with_context(|| format!("replacing {}", self.path.display()))
    }
}

#[async_trait]
impl SigningKeyStore for KeyFile {
    async fn load(&self) -> anyhow::Result<Keyring> {
        let file = self.clone();
        tokio::task::spawn_blocking(move || file.read()).await?
    }

    async fn save(&self, keyring: &Keyring) -> anyhow::Result<()> {
        let (file, text) = (self.clone(), keyring.to_json());
        tokio::task::spawn_blocking(move || file.write(&text)).await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{KeyId, SigningKey, Timestamp};

    #[tokio::test]
    async fn the_key_file_is_made_readable_by_its_owner_only_and_reads_back() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = KeyFile::new(dir.path().join("keys").join("signing-keys.json"));
        assert!(file.load().await.map(|k| k.ids().is_empty()).unwrap_or(false), "no file: no keys");
        let id = KeyId::parse("dr1.example.com").unwrap_or_else(|e| panic!("{e}"));
        let mut keyring = Keyring::default();
        keyring.add(SigningKey::generate(id.clone(), Timestamp::from_unix(1)).unwrap_or_else(|e| panic!("{e}")));
        file.save(&keyring).await.unwrap_or_else(|e| panic!("{e:#}"));
        let read = file.load().await.unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(read.ids(), vec![&id]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(file.path()).map(|m| m.permissions().mode() & 0o777).unwrap_or(0);
            assert_eq!(mode, 0o600);
        }
    }
}
