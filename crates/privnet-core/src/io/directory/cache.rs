//! The on-disk cache of the directory: the key set under the network's prefix and its revision,
//! written after every change, so that a member restarting while etcd is unreachable comes up
//! with the last known members and bundles. Everything read back is checked again as if it came
//! from the directory (records verified, bundles verified and versioned), so the file needs no
//! more trust than the directory itself; it is written 0600 through a temporary file and a
//! rename, so a crash leaves the old cache or the new one.
//!
//! Format: `CACHE_MAGIC`, then the postcard encoding of [`CacheFile`]; at most [`MAX_CACHE_LEN`].

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::directory::{KeyValue, Revision};

/// The first bytes of a cache file (format version 1).
const CACHE_MAGIC: &[u8; 8] = b"PNDIRC\x00\x01";
/// Largest cache file read.
pub(crate) const MAX_CACHE_LEN: u64 = 64 << 20;

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    revision: Revision,
    entries: Vec<(String, Vec<u8>, Revision)>,
}

/// Write the key set at `revision` to `path`.
pub(crate) fn write(path: &Path, revision: Revision, kvs: Vec<KeyValue>) -> std::io::Result<()> {
    let file = CacheFile {
        revision,
        entries: kvs
            .into_iter()
            .map(|kv| (kv.key, kv.value, kv.mod_revision))
            .collect(),
    };
    let body = postcard::to_stdvec(&file).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(CACHE_MAGIC)?;
    f.write_all(&body)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// Read the cache at `path`: `Ok(None)` if there is none.
///
/// # Errors
/// An unreadable, oversize or malformed file (the caller logs it and starts empty).
pub(crate) fn read(path: &Path) -> std::io::Result<Option<(Revision, Vec<KeyValue>)>> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if !meta.is_file() || meta.len() > MAX_CACHE_LEN {
        return Err(std::io::Error::other(format!(
            "not a regular file of at most {MAX_CACHE_LEN} bytes"
        )));
    }
    let bytes = std::fs::read(path)?;
    let body = bytes
        .strip_prefix(CACHE_MAGIC)
        .ok_or_else(|| std::io::Error::other("not a privnet directory cache (version 1)"))?;
    let (file, rest): (CacheFile, &[u8]) =
        postcard::take_from_bytes(body).map_err(std::io::Error::other)?;
    if !rest.is_empty() {
        return Err(std::io::Error::other("trailing bytes"));
    }
    let kvs = file
        .entries
        .into_iter()
        .map(|(key, value, mod_revision)| KeyValue {
            key,
            value,
            mod_revision,
        })
        .collect();
    Ok(Some((file.revision, kvs)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_round_trips_and_refuses_garbage() {
        let dir = std::env::temp_dir().join(format!("privnet-cache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("dir.cache");
        assert!(read(&path).unwrap().is_none());
        let kv = KeyValue {
            key: "/p/members/a".into(),
            value: vec![1, 2],
            mod_revision: 4,
        };
        write(&path, 7, vec![kv.clone()]).unwrap();
        assert_eq!(read(&path).unwrap(), Some((7, vec![kv])));
        std::fs::write(&path, b"garbage").unwrap();
        assert!(read(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
