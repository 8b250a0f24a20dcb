//! The master key: where it is read from, and the development key `demo`, `drill` and
//! `--dev-key` generate beside the data (said loudly, since it protects nothing).

use std::path::Path;

use super::crypto::{self, Key};
use super::{Vault, VaultError};

/// The environment variable naming the master key file (else `[vault] master_key_file`).
pub const MASTER_KEY_ENV: &str = "BALLAST_MASTER_KEY_FILE";
/// Where `demo`, `drill` and `--dev-key` keep a generated development key, in the data dir.
pub const DEV_KEY_FILE: &str = "dev-master.key";

/// Where a master key came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MasterKeySource {
    File(std::path::PathBuf),
    /// A development key generated in the data dir: fine for a demo, not for personal data.
    Dev(std::path::PathBuf),
}

impl MasterKeySource {
    /// Says where the key is; loudly when it is a development key.
    pub fn announce(&self) {
        match self {
            MasterKeySource::File(p) => {
                tracing::info!(file = %p.display(), "vault master key loaded")
            }
            MasterKeySource::Dev(p) => tracing::warn!(
                file = %p.display(),
                "DEVELOPMENT master key: personal values are sealed with a key kept beside the data; \
                 use [vault] master_key_file or $BALLAST_MASTER_KEY_FILE for real data"
            ),
        }
    }
}

impl Vault {
    /// The master key from `path` (32 bytes, hex).
    pub fn read_master(path: &Path) -> Result<Key, VaultError> {
        let err = |message: String| VaultError::MasterKey {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        crypto::parse_master(&text).map_err(err)
    }

    /// The master key: the configured file, else `$BALLAST_MASTER_KEY_FILE`, else — with
    /// `dev` — the data dir's development key (generated on first use). Where it came from is
    /// returned too, so a development key is said loudly.
    pub fn resolve_master(
        configured: Option<&Path>,
        dev: Option<&Path>,
    ) -> Result<(Key, MasterKeySource), VaultError> {
        if let Some(path) = configured {
            return Ok((
                Self::read_master(path)?,
                MasterKeySource::File(path.to_path_buf()),
            ));
        }
        if let Some(path) = std::env::var_os(MASTER_KEY_ENV).filter(|p| !p.is_empty()) {
            let path = std::path::PathBuf::from(path);
            return Ok((Self::read_master(&path)?, MasterKeySource::File(path)));
        }
        match dev {
            Some(dir) => Ok((
                Self::dev_master(dir)?,
                MasterKeySource::Dev(dir.join(DEV_KEY_FILE)),
            )),
            None => Err(VaultError::MasterKey {
                path: format!("${MASTER_KEY_ENV}"),
                message: "no master key: name a file of 32 random bytes in hex with [vault] \
                          master_key_file or $BALLAST_MASTER_KEY_FILE (e.g. `openssl rand -hex 32 \
                          > master.key`), or run with --dev-key for a development key"
                    .into(),
            }),
        }
    }

    /// The development key of a data dir, generated (mode 0600) on first use.
    pub fn dev_master(dir: &Path) -> Result<Key, VaultError> {
        let path = dir.join(DEV_KEY_FILE);
        if !path.exists() {
            std::fs::create_dir_all(dir).map_err(|e| VaultError::MasterKey {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            let key = crypto::random_key();
            write_private(&path, &format!("{}\n", hex::encode(key))).map_err(|e| {
                VaultError::MasterKey {
                    path: path.display().to_string(),
                    message: e.to_string(),
                }
            })?;
        }
        Self::read_master(&path)
    }
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}
