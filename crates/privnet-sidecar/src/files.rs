//! Reading and writing identity files: size limits, owner-only permissions for secrets, and
//! refusal to overwrite keys by accident.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// Largest identity file read (keys, certificates, PSK, revocation lists, configs).
pub const MAX_FILE_LEN: u64 = 1024 * 1024;

/// Why a file could not be read.
#[derive(Debug)]
pub enum FileError {
    /// The file does not exist.
    NotFound(PathBuf),
    /// Another I/O error.
    Io(PathBuf, io::Error),
    /// A secret file that group or others may access.
    LoosePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Larger than [`MAX_FILE_LEN`].
    TooLarge(PathBuf),
    /// Not UTF-8 text.
    NotText(PathBuf),
    /// Not a regular file.
    NotAFile(PathBuf),
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound(p) => write!(f, "{}: file not found", p.display()),
            Self::Io(p, e) => write!(f, "{}: {e}", p.display()),
            Self::LoosePermissions { path, mode } => write!(
                f,
                "{}: permissions {mode:04o} are too open; a secret file must be readable only by \
                 its owner (run `chmod 600 {}`)",
                path.display(),
                path.display()
            ),
            Self::TooLarge(p) => write!(f, "{}: larger than {MAX_FILE_LEN} bytes", p.display()),
            Self::NotText(p) => write!(f, "{}: not UTF-8 text", p.display()),
            Self::NotAFile(p) => write!(f, "{}: not a regular file", p.display()),
        }
    }
}

impl std::error::Error for FileError {}

fn open_checked(path: &Path, secret: bool) -> Result<fs::File, FileError> {
    let file = fs::File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => FileError::NotFound(path.to_owned()),
        _ => FileError::Io(path.to_owned(), e),
    })?;
    let meta = file
        .metadata()
        .map_err(|e| FileError::Io(path.to_owned(), e))?;
    if !meta.is_file() {
        return Err(FileError::NotAFile(path.to_owned()));
    }
    if meta.len() > MAX_FILE_LEN {
        return Err(FileError::TooLarge(path.to_owned()));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if secret && mode & 0o077 != 0 {
        return Err(FileError::LoosePermissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(file)
}

fn read_limited(path: &Path, file: fs::File) -> Result<Vec<u8>, FileError> {
    let mut buf = Vec::new();
    file.take(MAX_FILE_LEN + 1)
        .read_to_end(&mut buf)
        .map_err(|e| FileError::Io(path.to_owned(), e))?;
    if buf.len() as u64 > MAX_FILE_LEN {
        return Err(FileError::TooLarge(path.to_owned()));
    }
    Ok(buf)
}

/// Read a text file (certificates, revocation lists, configs).
///
/// # Errors
/// [`FileError`] naming the file.
pub fn read_text(path: &Path) -> Result<String, FileError> {
    let file = open_checked(path, false)?;
    let bytes = read_limited(path, file)?;
    String::from_utf8(bytes).map_err(|_| FileError::NotText(path.to_owned()))
}

/// Read a secret text file (private keys, PSKs). Refuses files that group or others can access.
///
/// # Errors
/// [`FileError`] naming the file; [`FileError::LoosePermissions`] for mode bits beyond 0600/0400.
pub fn read_secret(path: &Path) -> Result<Zeroizing<String>, FileError> {
    let file = open_checked(path, true)?;
    let bytes = Zeroizing::new(read_limited(path, file)?);
    match std::str::from_utf8(&bytes) {
        Ok(s) => Ok(Zeroizing::new(s.to_owned())),
        Err(_) => Err(FileError::NotText(path.to_owned())),
    }
}

/// Write `contents` to a new file with mode 0600. Fails if the file exists unless `overwrite`.
///
/// # Errors
/// The I/O error, with the path in the message.
pub fn write_secret(path: &Path, contents: &str, overwrite: bool) -> io::Result<()> {
    write_with_mode(path, contents, 0o600, overwrite)
}

/// Write `contents` to a file with mode 0644 (certificates, public keys).
///
/// # Errors
/// The I/O error, with the path in the message.
pub fn write_public(path: &Path, contents: &str, overwrite: bool) -> io::Result<()> {
    write_with_mode(path, contents, 0o644, overwrite)
}

fn write_with_mode(path: &Path, contents: &str, mode: u32, overwrite: bool) -> io::Result<()> {
    let with_path = |e: io::Error| {
        let msg = if e.kind() == io::ErrorKind::AlreadyExists {
            "already exists (use --force to overwrite)".to_owned()
        } else {
            e.to_string()
        };
        io::Error::new(e.kind(), format!("{}: {msg}", path.display()))
    };
    let mut opts = OpenOptions::new();
    opts.write(true).mode(mode);
    if overwrite {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    let mut f = opts.open(path).map_err(with_path)?;
    // `mode` only applies when the file is created; tighten an existing file too.
    f.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(with_path)?;
    f.write_all(contents.as_bytes()).map_err(with_path)?;
    f.sync_all().map_err(with_path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn secret_files_need_owner_only_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        write_secret(&p, "secret", false).unwrap();
        assert_eq!(*read_secret(&p).unwrap(), "secret");
        assert!(write_secret(&p, "again", false).is_err());
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        let err = read_secret(&p).unwrap_err();
        assert!(matches!(
            err,
            FileError::LoosePermissions { mode: 0o640, .. }
        ));
        assert!(err.to_string().contains("chmod 600"));
        fs::set_permissions(&p, fs::Permissions::from_mode(0o400)).unwrap();
        assert!(read_secret(&p).is_ok());
        assert!(matches!(
            read_text(&dir.path().join("missing")),
            Err(FileError::NotFound(_))
        ));
        assert!(matches!(
            read_text(dir.path()),
            Err(FileError::NotAFile(_)) | Err(FileError::Io(..))
        ));
    }
}
