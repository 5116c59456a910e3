//! Where the rotated refresh token lives between runs. Intuit rotates refresh tokens about
//! once a day and the previous one may die at once (Intuit's OAuth 2.0 docs), so losing the new
//! value means re-consent. The store is a 0600 JSON file replaced atomically (write a
//! temporary file, fsync, rename), and a sibling `.lock` file serialises refreshes between
//! processes (Mage runs windows in parallel worker processes), so two workers never spend
//! the same refresh token.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The persisted state. It holds live secrets: the file is created 0600 and this type's
/// Debug output is redacted.
#[derive(Clone, Serialize, Deserialize)]
pub struct SavedTokens {
    pub realm_id: String,
    pub client_id: String,
    /// The token endpoint that issued these tokens: they are worth nothing to another server,
    /// and a refresh token must never be sent to one. `None` in stores written before it was
    /// recorded.
    #[serde(default)]
    pub token_url: Option<String>,
    pub refresh_token: String,
    pub refresh_token_expires_at: Option<DateTime<Utc>>,
    pub refresh_token_hard_expires_at: Option<DateTime<Utc>>,
    pub access_token: Option<String>,
    pub access_token_expires_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl std::fmt::Debug for SavedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SavedTokens")
            .field("realm_id", &self.realm_id)
            .field("token_url", &self.token_url)
            .field("refresh_token_expires_at", &self.refresh_token_expires_at)
            .field("access_token_expires_at", &self.access_token_expires_at)
            .field("updated_at", &self.updated_at)
            .finish_non_exhaustive()
    }
}

/// Where rotated refresh tokens live unless told otherwise: `$QBO_TOKEN_STORE`, else
/// `$XDG_STATE_HOME/qbo_rs/<file>`, else `~/.local/state/qbo_rs/<file>`, where `<file>` is
/// [`file_name`] for the realm on `token_endpoint`.
pub fn default_path(realm_id: &str, token_endpoint: &str) -> Option<PathBuf> {
    let env = |k: &str| std::env::var(k).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    if let Some(explicit) = env("QBO_TOKEN_STORE") {
        return Some(PathBuf::from(explicit));
    }
    let state = env("XDG_STATE_HOME").map(PathBuf::from).or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
    Some(state.join("qbo_rs").join(file_name(realm_id, token_endpoint)))
}

/// The default store's file name: `tokens-<realm>.json` for Intuit's token endpoint (the name
/// stores have always had, so a rotated refresh token saved there is found again), and
/// `tokens-<realm>-<tag of the endpoint>.json` for any other (an emulator, a proxy). Two servers
/// can hand out the same realm id (two emulators started with one seed): each keeps its own
/// tokens, so neither is handed the other's access token, nor sent the other's refresh token.
pub fn file_name(realm_id: &str, token_endpoint: &str) -> String {
    if token_endpoint == crate::credentials::TOKEN_ENDPOINT {
        format!("tokens-{realm_id}.json")
    } else {
        format!("tokens-{realm_id}-{}.json", crate::credentials::endpoint_tag(token_endpoint))
    }
}

/// Disk space set aside for the next save: a saved store is well under 2 KiB.
pub const RESERVED_BYTES: u64 = 8 << 10;

#[derive(Debug, Clone)]
pub struct FileTokenStore {
    path: PathBuf,
}

/// Holds the inter-process refresh lock until dropped.
pub struct StoreLock {
    file: File,
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

impl FileTokenStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileTokenStore { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Room set aside for the next save (see [`FileTokenStore::reserve`]).
    fn reserve_path(&self) -> PathBuf {
        let mut name = self.path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        name.push(".reserve");
        self.path.with_file_name(name)
    }

    /// Sets aside, before a refresh token is spent, the disk space its successor will need:
    /// a file of [`RESERVED_BYTES`] written out (not sparse). [`FileTokenStore::save`] writes
    /// into it and renames it over the store, so a disk that fills up meanwhile cannot make
    /// Intuit's rotated token unsavable. An error here means the old token must not be spent.
    pub fn reserve(&self) -> Result<(), Error> {
        let path = self.reserve_path();
        if fs::metadata(&path).is_ok_and(|m| m.len() >= RESERVED_BYTES) {
            return Ok(());
        }
        self.ensure_dir()?;
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new().create(true).truncate(false).write(true).mode(0o600).open(&path)?;
            f.write_all(&[0u8; RESERVED_BYTES as usize])?;
            f.sync_all()
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&path);
            Error::TokenStore(format!(
                "no room to save a rotated refresh token beside {} ({e}): free some space there (or set QBO_TOKEN_STORE \
                 elsewhere); the current refresh token was not spent",
                self.path.display()
            ))
        })
    }

    fn lock_path(&self) -> PathBuf {
        let mut name = self.path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        name.push(".lock");
        self.path.with_file_name(name)
    }

    fn err(&self, action: &str, e: impl std::fmt::Display) -> Error {
        Error::TokenStore(format!(
            "token store {}: cannot {action}: {e} (check the directory exists and is writable, or set QBO_TOKEN_STORE)",
            self.path.display()
        ))
    }

    fn ensure_dir(&self) -> Result<(), Error> {
        if let Some(dir) = self.path.parent() {
            if !dir.as_os_str().is_empty() {
                fs::create_dir_all(dir).map_err(|e| self.err("create its directory", e))?;
            }
        }
        Ok(())
    }

    /// Blocks until this process holds the refresh lock. Call from a blocking thread.
    pub fn lock_blocking(&self) -> Result<StoreLock, Error> {
        self.ensure_dir()?;
        let file =
            OpenOptions::new().create(true).truncate(false).write(true).mode(0o600).open(self.lock_path()).map_err(|e| self.err("open its lock file", e))?;
        file.lock().map_err(|e| self.err("lock", e))?;
        Ok(StoreLock { file })
    }

    /// Reads the saved tokens; `None` when there is no store yet. A store that is a symbolic
    /// link, or not a regular file, is refused without touching what it points to, and a file
    /// is tightened to 0600 only once it has read as a valid store.
    pub fn load(&self) -> Result<Option<SavedTokens>, Error> {
        let meta = match fs::symlink_metadata(&self.path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.err("read", e)),
        };
        if meta.file_type().is_symlink() {
            return Err(Error::TokenStore(format!(
                "token store {} is a symbolic link: refused (a link could hand the refresh token to another file); \
                 point QBO_TOKEN_STORE or token_store at a regular file",
                self.path.display()
            )));
        }
        if !meta.is_file() {
            return Err(Error::TokenStore(format!(
                "token store {} is not a regular file: point QBO_TOKEN_STORE or token_store at a file",
                self.path.display()
            )));
        }
        let bytes = fs::read(&self.path).map_err(|e| self.err("read", e))?;
        let saved: SavedTokens = serde_json::from_slice(&bytes).map_err(|e| {
            Error::TokenStore(format!("token store {} is not valid JSON ({e}): delete it to start again from QBO_REFRESH_TOKEN", self.path.display()))
        })?;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(target: "qbo_rs", path = %self.path.display(),
                "token store is readable by other users; tightening it to 0600");
            let _ = fs::set_permissions(&self.path, fs::Permissions::from_mode(0o600));
        }
        Ok(Some(saved))
    }

    /// Replaces the store atomically (a crash leaves either the old or the new file), writing
    /// into the room [`FileTokenStore::reserve`] set aside when there is some, so it needs no
    /// new disk space; then sets aside room for the next save, if it can.
    pub fn save(&self, tokens: &SavedTokens) -> Result<(), Error> {
        self.ensure_dir()?;
        let body = serde_json::to_vec_pretty(tokens).map_err(|e| self.err("serialise", e))?;
        let reserved = self.reserve_path();
        let into_reserve = fs::metadata(&reserved).is_ok_and(|m| m.len() >= body.len() as u64);
        let tmp = if into_reserve { reserved } else { self.path.with_extension(format!("tmp.{}", std::process::id())) };
        let write = || -> std::io::Result<()> {
            // Overwritten in place, then shortened: no block the file does not have already.
            let mut f = OpenOptions::new().create(true).truncate(false).write(true).mode(0o600).open(&tmp)?;
            f.write_all(&body)?;
            f.set_len(body.len() as u64)?;
            f.sync_all()?;
            fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent() {
                if let Ok(d) = File::open(if dir.as_os_str().is_empty() { Path::new(".") } else { dir }) {
                    let _ = d.sync_all();
                }
            }
            Ok(())
        };
        write().map_err(|e| {
            if !into_reserve {
                let _ = fs::remove_file(&tmp);
            }
            self.err("write", e)
        })?;
        if let Err(e) = self.reserve() {
            tracing::warn!(target: "qbo_rs", "{e}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SavedTokens {
        SavedTokens {
            realm_id: "1".into(),
            client_id: "c".into(),
            token_url: Some("http://127.0.0.1:8765/oauth2/v1/tokens/bearer".into()),
            refresh_token: "RT-secret".into(),
            refresh_token_expires_at: None,
            refresh_token_hard_expires_at: None,
            access_token: Some("AT-secret".into()),
            access_token_expires_at: None,
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn a_symlinked_or_invalid_store_is_refused_and_its_target_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("someone-elses.json");
        fs::write(&target, b"{\"not\": \"a store\"}").unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
        let link = dir.path().join("tokens.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = FileTokenStore::new(&link).load().unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        assert_eq!(fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o644, "the target was not chmod-ed");
        // A regular file that is not a store is refused too, and keeps its mode.
        let err = FileTokenStore::new(&target).load().unwrap_err().to_string();
        assert!(err.contains("not valid JSON") || err.contains("missing field"), "{err}");
        assert_eq!(fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o644);
        let err = FileTokenStore::new(dir.path()).load().unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
    }

    #[test]
    fn saves_0600_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileTokenStore::new(dir.path().join("sub/tokens.json"));
        assert!(store.load().unwrap().is_none());
        let _lock = store.lock_blocking().unwrap();
        store.save(&sample()).unwrap();
        let mode = fs::metadata(store.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(store.load().unwrap().unwrap().refresh_token, "RT-secret");
        assert!(!format!("{:?}", sample()).contains("secret"));
    }

    #[test]
    fn each_token_endpoint_has_its_own_default_file_and_intuits_keeps_its_name() {
        let intuit = file_name("9130", crate::credentials::TOKEN_ENDPOINT);
        assert_eq!(intuit, "tokens-9130.json");
        let one = file_name("9130", "http://127.0.0.1:8765/oauth2/v1/tokens/bearer");
        let other = file_name("9130", "http://127.0.0.1:8766/oauth2/v1/tokens/bearer");
        assert!(one.starts_with("tokens-9130-") && one.ends_with(".json"), "{one}");
        assert_ne!(one, other);
        assert_ne!(one, intuit);
    }

    #[test]
    fn a_store_written_before_the_endpoint_was_recorded_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        let mut old = serde_json::to_value(sample()).unwrap();
        old.as_object_mut().unwrap().remove("token_url");
        fs::write(&path, serde_json::to_vec(&old).unwrap()).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let loaded = FileTokenStore::new(&path).load().unwrap().unwrap();
        assert_eq!(loaded.token_url, None);
        assert_eq!(loaded.refresh_token, "RT-secret");
    }

    #[test]
    fn corrupt_store_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        fs::write(&path, b"{not json").unwrap();
        let err = FileTokenStore::new(&path).load().unwrap_err().to_string();
        assert!(err.contains("delete it"), "{err}");
    }
}
