//! The uploaded bytes: one file per id in the storage folder, written so that a crash never
//! leaves a partial file under an id.

use std::io::Write;
use std::path::{Path, PathBuf};

use llama_stack_core::{Error, Result};

/// Temporary files carry this prefix until they are complete and renamed.
const PARTIAL_PREFIX: &str = ".upload-";

/// The storage folder.
#[derive(Debug, Clone)]
pub(crate) struct Blobs {
    dir: PathBuf,
}

/// `file-` and 32 lowercase hex digits: the only names ever joined to the folder, so no
/// client input becomes a path.
pub(crate) fn is_file_id(id: &str) -> bool {
    id.strip_prefix("file-").is_some_and(|hex| {
        hex.len() == 32
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn io_error(action: &str, path: &Path, err: std::io::Error) -> Error {
    Error::internal(format!("files: {action} {} failed: {err}", path.display()))
}

impl Blobs {
    /// Creates the folder when missing and removes partial uploads a crash left behind.
    pub(crate) fn open(dir: PathBuf) -> Result<Blobs> {
        std::fs::create_dir_all(&dir).map_err(|e| {
            Error::invalid(format!(
                "cannot create the files storage_dir {}: {e}",
                dir.display()
            ))
        })?;
        let entries = std::fs::read_dir(&dir).map_err(|e| {
            Error::invalid(format!(
                "cannot read the files storage_dir {}: {e}",
                dir.display()
            ))
        })?;
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(PARTIAL_PREFIX)
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(Blobs { dir })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, id: &str) -> PathBuf {
        debug_assert!(is_file_id(id));
        self.dir.join(id)
    }

    /// Writes the bytes to a temporary file, syncs it, renames it to its id and syncs the
    /// folder, so the file under the id is complete or absent.
    pub(crate) async fn write(&self, id: &str, bytes: Vec<u8>) -> Result<()> {
        let dir = self.dir.clone();
        let target = self.path(id);
        tokio::task::spawn_blocking(move || {
            let mut partial = tempfile::Builder::new()
                .prefix(PARTIAL_PREFIX)
                .tempfile_in(&dir)
                .map_err(|e| io_error("creating a file in", &dir, e))?;
            partial
                .write_all(&bytes)
                .and_then(|_| partial.as_file().sync_all())
                .map_err(|e| io_error("writing", partial.path(), e))?;
            partial
                .persist(&target)
                .map_err(|e| io_error("renaming an upload to", &target, e.error))?;
            sync_dir(&dir).map_err(|e| io_error("syncing", &dir, e))
        })
        .await
        .map_err(|e| Error::internal(format!("files: the write task failed: {e}")))?
    }

    /// The bytes, or `None` when there is no file under the id.
    pub(crate) async fn read(&self, id: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(id);
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("reading", &path, e)),
        }
    }

    /// Removes the bytes; a missing file is not an error.
    pub(crate) async fn remove(&self, id: &str) -> Result<()> {
        let path = self.path(id);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("removing", &path, e)),
        }
    }
}

/// A rename is durable only once the folder entry is on disk.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_generated_ids_are_file_names() {
        assert!(is_file_id("file-0123456789abcdef0123456789abcdef"));
        for bad in [
            "file-../../etc/passwd",
            "file-0123456789ABCDEF0123456789abcdef",
            "file-0123456789abcdef0123456789abcde",
            "0123456789abcdef0123456789abcdef",
            "file-0123456789abcdef0123456789abcdef/",
        ] {
            assert!(!is_file_id(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn partial_uploads_are_swept_and_writes_are_whole() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".upload-abc"), b"half").unwrap();
        std::fs::write(dir.path().join("unrelated.txt"), b"keep").unwrap();
        let blobs = Blobs::open(dir.path().to_path_buf()).unwrap();
        assert!(!dir.path().join(".upload-abc").exists());
        assert!(dir.path().join("unrelated.txt").exists());
        let id = "file-0123456789abcdef0123456789abcdef";
        blobs.write(id, b"bytes".to_vec()).await.unwrap();
        assert_eq!(blobs.read(id).await.unwrap().unwrap(), b"bytes");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        blobs.remove(id).await.unwrap();
        blobs.remove(id).await.unwrap();
        assert_eq!(blobs.read(id).await.unwrap(), None);
    }
}
