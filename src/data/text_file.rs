//! Reading and writing the project's text files with clear errors, and atomic writes.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Reads a UTF-8 text file: a missing file is an I/O error naming the path, invalid UTF-8 names
/// the byte offset of the first bad byte, and an empty file is an error (nothing to tokenize or
/// train on).
pub fn read_text(path: impl AsRef<Path>) -> Result<String> {
    let path = path.as_ref();
    let text = read_text_or_empty(path)?;
    if text.is_empty() {
        return Err(Error::parse(
            path.display().to_string(),
            "the file is empty",
        ));
    }
    Ok(text)
}

/// [`read_text`] where an empty file is simply the empty text (what `tokenize` encodes: no
/// tokens, as tiktoken encodes "").
pub fn read_text_or_empty(path: impl AsRef<Path>) -> Result<String> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    String::from_utf8(bytes).map_err(|e| Error::InvalidUtf8 {
        path: path.display().to_string(),
        offset: e.utf8_error().valid_up_to(),
    })
}

/// Writes `bytes` to `path` atomically: to a temporary file in the same folder, flushed to disk,
/// then renamed over `path` — a crash leaves either the old file or the new one, never half.
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    let path = path.as_ref();
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| {
        Error::invalid(
            "write_atomic",
            format!("{} is not a file path", path.display()),
        )
    })?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}
