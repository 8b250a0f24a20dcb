//! The master key: where it is read from, and the development key `demo`, `drill` and
//! `--dev-key` generate (said loudly, since it protects little).
//!
//! The development key lives outside every data dir — `$XDG_CACHE_HOME/ballast/dev-master.key`
//! (else `~/.cache/…`), one per user, shared by their development data dirs and workers — so a
//! copy of a data dir reads nothing without it. Earlier versions kept it inside the data dir
//! (`DATA_DIR/dev-master.key`); such a key is still used for its data dir, with a warning.

use std::path::{Path, PathBuf};

use super::crypto::{self, Key};
use super::{Vault, VaultError};

/// The environment variable naming the master key file (else `[vault] master_key_file`).
pub const MASTER_KEY_ENV: &str = "BALLAST_MASTER_KEY_FILE";
/// The development key's file name: in the user's cache directory, or — left by an earlier
/// version — in a data dir.
pub const DEV_KEY_FILE: &str = "dev-master.key";

/// Where a master key came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MasterKeySource {
    File(PathBuf),
    /// This user's development key (outside the data dir): for demos and tests.
    Dev(PathBuf),
    /// A development key inside the data dir, made by an earlier version: a copy of the
    /// directory reads every value it holds.
    DevInDataDir(PathBuf),
}

impl MasterKeySource {
    pub fn path(&self) -> &Path {
        match self {
            MasterKeySource::File(p)
            | MasterKeySource::Dev(p)
            | MasterKeySource::DevInDataDir(p) => p,
        }
    }

    /// Says where the key is; loudly when it is a development key.
    pub fn announce(&self) {
        match self {
            MasterKeySource::File(p) => {
                tracing::info!(file = %p.display(), "vault master key loaded")
            }
            MasterKeySource::Dev(p) => tracing::warn!(
                file = %p.display(),
                "DEVELOPMENT master key (this user's, outside the data dir): anyone who can read \
                 it and the data dir reads the personal values; use [vault] master_key_file or \
                 $BALLAST_MASTER_KEY_FILE for real data"
            ),
            MasterKeySource::DevInDataDir(p) => tracing::warn!(
                file = %p.display(),
                "DEVELOPMENT master key kept INSIDE the data dir (made by an earlier version): a \
                 copy of the directory reads every personal value in it; move off it with \
                 `ballast rotate-master-key --old-key <this file> --new-key <new>`, then delete it"
            ),
        }
    }
}

/// This user's development key file: `$XDG_CACHE_HOME/ballast/dev-master.key`, else
/// `$HOME/.cache/ballast/…`, else in the temporary directory.
pub fn dev_key_path() -> PathBuf {
    dev_key_path_from(std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME"))
}

fn dev_key_path_from(
    xdg_cache: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> PathBuf {
    xdg_cache
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            home.filter(|p| !p.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })
        .unwrap_or_else(std::env::temp_dir)
        .join("ballast")
        .join(DEV_KEY_FILE)
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
    /// `dev`, the data dir — the development key (generated on first use). Where it came from
    /// is returned too, so a development key is said loudly.
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
            Some(dir) => Self::dev_master_for(dir),
            None => Err(VaultError::MasterKey {
                path: format!("${MASTER_KEY_ENV}"),
                message: "no master key: name a file of 32 random bytes in hex with [vault] \
                          master_key_file or $BALLAST_MASTER_KEY_FILE (e.g. `openssl rand -hex 32 \
                          > master.key`), or run with --dev-key for a development key"
                    .into(),
            }),
        }
    }

    /// The development key for the data dir `dir`: the one an earlier version left inside it,
    /// else this user's (generated, mode 0600, on first use).
    pub fn dev_master(dir: &Path) -> Result<Key, VaultError> {
        Self::dev_master_for(dir).map(|(k, _)| k)
    }

    /// As [`Vault::dev_master`], with where the key is.
    pub fn dev_master_for(dir: &Path) -> Result<(Key, MasterKeySource), VaultError> {
        Self::dev_master_in(dir, dev_key_path())
    }

    fn dev_master_in(dir: &Path, path: PathBuf) -> Result<(Key, MasterKeySource), VaultError> {
        let inside = dir.join(DEV_KEY_FILE);
        if inside.exists() {
            return Ok((
                Self::read_master(&inside)?,
                MasterKeySource::DevInDataDir(inside),
            ));
        }
        if !path.exists() {
            make_dev_key(&path).map_err(|e| VaultError::MasterKey {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        }
        Ok((Self::read_master(&path)?, MasterKeySource::Dev(path)))
    }

    /// The development key a command may try on the data dir `dir` (never making one): the
    /// data dir's own, else this user's, if it exists.
    pub fn existing_dev_key(dir: &Path) -> Option<PathBuf> {
        let inside = dir.join(DEV_KEY_FILE);
        if inside.exists() {
            return Some(inside);
        }
        Some(dev_key_path()).filter(|p| p.exists())
    }

    /// Whether this vault's master key opens every tenant key its store holds (a development
    /// key tried on a data dir sealed with another key does not).
    pub fn opens_all(&self) -> bool {
        let Ok(ids) = self.store.keys(b"k\0") else {
            return false;
        };
        ids.iter().all(|id| {
            matches!(self.store.get(id), Ok(Some(w))
                if crypto::unwrap(&self.master, &w, super::rotate::bound_id(id)).is_some())
        })
    }
}

/// Makes the development key at `path`: written whole under another name, then linked into
/// place, so a process that races this one (tests start many) reads a whole key or makes none.
fn make_dev_key(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp = dir.join(format!(
        ".{DEV_KEY_FILE}.{}.{}",
        std::process::id(),
        hex::encode(&crypto::random_key()[..4])
    ));
    write_private(&tmp, &format!("{}\n", hex::encode(crypto::random_key())))?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
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
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_development_key_lives_outside_the_data_dir_unless_an_old_one_is_inside() {
        assert_eq!(
            dev_key_path_from(Some("/c".into()), Some("/h".into())),
            Path::new("/c/ballast/dev-master.key")
        );
        assert_eq!(
            dev_key_path_from(Some("".into()), Some("/h".into())),
            Path::new("/h/.cache/ballast/dev-master.key")
        );
        let root = tempfile::tempdir().expect("tmp");
        let data = root.path().join("data");
        std::fs::create_dir_all(&data).expect("data");
        let user = root.path().join("cache").join(DEV_KEY_FILE);
        let (key, source) = Vault::dev_master_in(&data, user.clone()).expect("dev key");
        assert_eq!(source, MasterKeySource::Dev(user.clone()));
        assert_eq!(Vault::read_master(&user).expect("read"), key);
        assert_eq!(
            std::fs::read_dir(&data).expect("ls").count(),
            0,
            "nothing inside"
        );
        // The same key next time, and for another data dir.
        let other = root.path().join("other");
        assert_eq!(
            Vault::dev_master_in(&other, user.clone()).expect("again").0,
            key
        );
        // A key an earlier version made inside a data dir is that data dir's.
        std::fs::write(data.join(DEV_KEY_FILE), hex::encode([7u8; 32])).expect("old");
        let (old, source) = Vault::dev_master_in(&data, user).expect("old key");
        assert_eq!(old, [7u8; 32]);
        assert_eq!(
            source,
            MasterKeySource::DevInDataDir(data.join(DEV_KEY_FILE))
        );
    }

    #[test]
    fn processes_racing_to_make_the_development_key_all_read_one_whole_key() {
        let root = tempfile::tempdir().expect("tmp");
        let path = root.path().join("cache").join(DEV_KEY_FILE);
        let keys: Vec<Key> = std::thread::scope(|s| {
            let tasks: Vec<_> = (0..8)
                .map(|_| {
                    let path = path.clone();
                    s.spawn(move || {
                        make_dev_key(&path).expect("make");
                        Vault::read_master(&path).expect("a whole key")
                    })
                })
                .collect();
            tasks
                .into_iter()
                .map(|t| t.join().expect("thread"))
                .collect()
        });
        assert!(keys.iter().all(|k| *k == keys[0]));
        assert_eq!(
            std::fs::read_dir(path.parent().expect("dir"))
                .expect("ls")
                .count(),
            1,
            "no temporary file left"
        );
    }
}
