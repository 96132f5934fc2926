//! Where export objects go, and where an import reads them from: small traits with a
//! local-directory and an S3 implementation each.

use std::fs;
use std::io::Write as _;
use std::path::{Component, Path, PathBuf};

use crate::error::{ExportError, Result};

/// A destination for export objects, addressed by S3-style keys (`a/b/c.ion`).
///
/// `put` must be all-or-nothing per object (readers never see half an object) and may replace
/// an object of the same key: a resumed export rewrites the objects it had already written.
pub trait ObjectSink: Send + Sync {
    /// Stores `body` under `key`.
    fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<()>;
    /// The destination, for messages (`/path/to/dir`, `s3://bucket`).
    fn location(&self) -> String;
}

/// Objects as files under a directory: key `a/b.ion` is `<root>/a/b.ion`.
pub struct DirSink {
    root: PathBuf,
}

impl DirSink {
    /// A sink writing under `root` (created when missing).
    pub fn new(root: &Path) -> Result<DirSink> {
        fs::create_dir_all(root)?;
        Ok(DirSink {
            root: root.to_owned(),
        })
    }

    fn path_of(&self, key: &str) -> Result<PathBuf> {
        let relative = Path::new(key);
        let plain = relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
        if key.is_empty() || !plain {
            return Err(ExportError::InvalidInput(format!(
                "object key {key:?} cannot be a file below {}",
                self.root.display()
            )));
        }
        Ok(self.root.join(relative))
    }
}

impl ObjectSink for DirSink {
    fn put(&self, key: &str, body: Vec<u8>, _content_type: &str) -> Result<()> {
        let path = self.path_of(key)?;
        let failed = |e: std::io::Error| ExportError::Write {
            key: key.to_owned(),
            detail: e.to_string(),
        };
        let dir = path.parent().unwrap_or(&self.root);
        fs::create_dir_all(dir).map_err(failed)?;
        // Written beside, then renamed: a crash never leaves half an object under its name.
        let tmp = path.with_file_name(format!(
            ".{}.tmp",
            path.file_name().unwrap_or_default().to_string_lossy()
        ));
        let mut file = fs::File::create(&tmp).map_err(failed)?;
        file.write_all(&body).map_err(failed)?;
        file.sync_all().map_err(failed)?;
        fs::rename(&tmp, &path).map_err(failed)?;
        Ok(())
    }

    fn location(&self) -> String {
        self.root.display().to_string()
    }
}

/// Where an export is read from (an import): objects addressed by S3-style keys.
pub trait ObjectSource: Send + Sync {
    /// The keys that start with `prefix`, sorted.
    fn list(&self, prefix: &str) -> Result<Vec<String>>;
    /// The object `key`; [`ExportError::MissingObject`] when there is none.
    fn get(&self, key: &str) -> Result<Vec<u8>>;
    /// The source, for messages.
    fn location(&self) -> String;
}

/// Objects as files under a directory (an export written with `--to DIR`, or a bucket copied
/// locally): key `a/b.ion` is `<root>/a/b.ion`.
pub struct DirSource {
    root: PathBuf,
}

impl DirSource {
    /// A source reading under `root`, which must be a directory.
    pub fn new(root: &Path) -> Result<DirSource> {
        if !root.is_dir() {
            return Err(ExportError::InvalidInput(format!(
                "{} is not a directory",
                root.display()
            )));
        }
        Ok(DirSource {
            root: root.to_owned(),
        })
    }
}

impl ObjectSource for DirSource {
    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut pending = vec![self.root.clone()];
        while let Some(dir) = pending.pop() {
            for entry in fs::read_dir(&dir)? {
                let path = entry?.path();
                if path.is_dir() {
                    pending.push(path);
                    continue;
                }
                let Ok(relative) = path.strip_prefix(&self.root) else {
                    continue;
                };
                let key: Vec<String> = relative
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                let key = key.join("/");
                if key.starts_with(prefix) {
                    keys.push(key);
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        let relative = Path::new(key);
        if key.is_empty()
            || !relative
                .components()
                .all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(ExportError::InvalidInput(format!(
                "object key {key:?} cannot be a file below {}",
                self.root.display()
            )));
        }
        fs::read(self.root.join(relative)).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ExportError::MissingObject(key.to_owned()),
            _ => ExportError::Read {
                key: key.to_owned(),
                detail: e.to_string(),
            },
        })
    }

    fn location(&self) -> String {
        self.root.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_nested_keys_and_refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let sink = DirSink::new(dir.path()).unwrap();
        sink.put(
            "p/x/2019/04/15/22/S.1-4.ion",
            b"{a:1}".to_vec(),
            "text/plain",
        )
        .unwrap();
        let written = fs::read(dir.path().join("p/x/2019/04/15/22/S.1-4.ion")).unwrap();
        assert_eq!(written, b"{a:1}");
        for bad in ["", "../x", "/etc/x", "a/../../x"] {
            assert!(sink.put(bad, vec![], "text/plain").is_err(), "{bad}");
        }
    }
}
