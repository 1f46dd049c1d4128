//! Where a node keeps the files of the links it made: one file per link in
//! `<data_dir>/attachments/`, named by the SHA-256 of the link's token, so
//! the name on disk opens nothing by itself. Written like the spool: a
//! temporary file, fsync, rename, fsync of the directory — the 250 that
//! follows promises the file is there.

use consensus::{ClusterNode, PeerService};
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The peer service that reads a piece of a link's file.
pub const READ_SERVICE: &str = "attachments.read";
/// The most bytes one read returns.
pub const CHUNK_BYTES_MAX: u32 = 4 * 1024 * 1024;

/// A piece of a link's file, with the file's whole length.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChunk {
    pub total: u64,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ReadRequest {
    name: String,
    offset: u64,
    len: u32,
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    bincode::serde::encode_to_vec(value, bincode::config::standard()).map_err(|e| e.to_string())
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard()).map(|(v, _)| v).map_err(|e| e.to_string())
}

/// Reads `len` bytes at `offset` of link file `name` kept by node `owner`
/// (this node's own store directly, another's over the cluster port).
pub async fn read_from(node: &ClusterNode, owner: u64, name: &str, offset: u64, len: u32) -> Result<FileChunk, String> {
    let request = encode(&ReadRequest { name: name.to_string(), offset, len })?;
    let timeout = std::time::Duration::from_secs(30);
    let answer = node.call_member(owner, READ_SERVICE, request, timeout).await.map_err(|e| e.to_string())?;
    decode(&answer)
}

#[derive(Debug)]
pub struct LinkStore {
    dir: PathBuf,
    /// This node's id: the owner recorded in each link it makes.
    pub node_id: u64,
}

/// A name is the hex SHA-256 of a token and nothing else: no path can hide in it.
fn checked(name: &str) -> io::Result<&str> {
    if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
        Ok(name)
    } else {
        Err(io::Error::new(io::ErrorKind::InvalidInput, "not a link file name"))
    }
}

impl LinkStore {
    pub fn open(dir: &Path, node_id: u64) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        Ok(Self { dir: dir.to_path_buf(), node_id })
    }

    /// Stores `data` durably under `name`.
    pub fn save(&self, name: &str, data: &[u8]) -> io::Result<()> {
        let path = self.dir.join(checked(name)?);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        {
            let mut f = File::create(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
        File::open(&self.dir)?.sync_all()
    }

    pub fn remove(&self, name: &str) -> io::Result<()> {
        fs::remove_file(self.dir.join(checked(name)?))
    }

    /// Up to `len` bytes of `name` from `offset`, with the file's length.
    pub fn read_chunk(&self, name: &str, offset: u64, len: u32) -> io::Result<FileChunk> {
        let mut f = File::open(self.dir.join(checked(name)?))?;
        let total = f.metadata()?.len();
        f.seek(SeekFrom::Start(offset.min(total)))?;
        let mut bytes = Vec::with_capacity(len.min(1 << 20) as usize);
        f.take(u64::from(len)).read_to_end(&mut bytes)?;
        Ok(FileChunk { total, bytes })
    }

    /// Deletes the files `keep` refuses, except those written in the last
    /// `grace` (a link whose index entry is still being committed).
    /// Returns how many went.
    pub fn sweep(&self, grace: Duration, keep: impl Fn(&str) -> bool) -> io::Result<usize> {
        let now = SystemTime::now();
        let mut removed = 0;
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let young = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|m| now.duration_since(m).unwrap_or_default() < grace);
            let stale_tmp = name.starts_with('.') && name.ends_with(".tmp");
            if young || (checked(&name).is_ok() && keep(&name)) || (!stale_tmp && checked(&name).is_err()) {
                continue;
            }
            fs::remove_file(entry.path())?;
            removed += 1;
        }
        Ok(removed)
    }
}

/// Peers read link files through this (off the async threads: it reads a disk).
pub struct ReadService(pub Arc<LinkStore>);

impl PeerService for ReadService {
    fn call(&self, body: Vec<u8>) -> futures::future::BoxFuture<'static, Result<Vec<u8>, String>> {
        let store = self.0.clone();
        Box::pin(async move {
            let request: ReadRequest = decode(&body)?;
            let len = request.len.min(CHUNK_BYTES_MAX);
            let chunk = tokio::task::spawn_blocking(move || {
                store.read_chunk(&request.name, request.offset, len).map_err(|e| format!("{}: {e}", request.name))
            })
            .await
            .map_err(|e| e.to_string())??;
            encode(&chunk)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn saves_reads_and_refuses_paths() {
        let dir = tempfile::tempdir().unwrap();
        let store = LinkStore::open(dir.path(), 1).unwrap();
        store.save(NAME, b"hello world").unwrap();
        let chunk = store.read_chunk(NAME, 6, 100).unwrap();
        assert_eq!((chunk.total, chunk.bytes.as_slice()), (11, &b"world"[..]));
        assert_eq!(store.read_chunk(NAME, 50, 10).unwrap().bytes, b"");
        for bad in ["../etc/passwd", "", &NAME.to_uppercase(), &NAME[..63]] {
            assert_eq!(store.save(bad, b"x").unwrap_err().kind(), io::ErrorKind::InvalidInput, "{bad}");
            assert!(store.read_chunk(bad, 0, 1).is_err());
        }
    }

    #[test]
    fn sweep_keeps_young_and_wanted_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = LinkStore::open(dir.path(), 1).unwrap();
        let other = NAME.replace('0', "f");
        store.save(NAME, b"a").unwrap();
        store.save(&other, b"b").unwrap();
        assert_eq!(store.sweep(Duration::from_secs(600), |_| false).unwrap(), 0);
        assert_eq!(store.sweep(Duration::ZERO, |n| n == NAME).unwrap(), 1);
        assert!(store.read_chunk(NAME, 0, 1).is_ok() && store.read_chunk(&other, 0, 1).is_err());
    }
}
