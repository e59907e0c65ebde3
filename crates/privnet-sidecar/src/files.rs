//! Reading and writing identity files: size limits, owner-only permissions for secrets, refusal
//! to overwrite keys by accident, and no trust in what sits at a path.
//!
//! - **Reads** open the path with `O_NONBLOCK` (a FIFO or a device opens at once instead of
//!   hanging the load) and check the *open descriptor* (`fstat`): a regular file, owned by the
//!   running user or root, at most [`MAX_FILE_LEN`] bytes ([`MAX_POLICY_LEN`] for a policy file),
//!   and for secrets no access for group or others. A symbolic link is followed — Kubernetes
//!   mounts Secrets and ConfigMaps as links into `..data/` — but the link itself must be owned by
//!   the running user or root too, and what it points to is checked like any file.
//! - **Writes** never follow a symbolic link and never write into something that is not a regular
//!   file of ours: a new file is created with `O_CREAT | O_EXCL | O_NOFOLLOW`; with `--force` an
//!   existing file (a regular file owned by the running user or root) is replaced by writing a
//!   temporary file in the same directory and renaming it over the old one, so a crash leaves
//!   either the old or the new content and a link planted meanwhile is replaced, not followed.
//!
//! Every error names the file.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{
    FileTypeExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// Largest identity file read (keys, certificates, PSK, revocation lists, configs).
pub const MAX_FILE_LEN: u64 = 1024 * 1024;
/// Largest policy file read (the policy language's limit: 8 MiB of text).
pub const MAX_POLICY_LEN: u64 = 8 * 1024 * 1024;
/// Largest address list (`[[expose]] block_lists`): a few hundred thousand entries.
pub const MAX_LIST_LEN: u64 = 64 * 1024 * 1024;

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
    TooLarge(PathBuf, u64),
    /// Not UTF-8 text.
    NotText(PathBuf),
    /// Not a regular file (a directory, a FIFO, a device, a socket).
    NotAFile {
        /// The file.
        path: PathBuf,
        /// What it is instead ("a directory", "a FIFO", ...).
        kind: &'static str,
    },
    /// Owned by a user other than the running one and root (the file itself, or the symbolic
    /// link at its path).
    WrongOwner {
        /// The file.
        path: PathBuf,
        /// Its owner.
        uid: u32,
        /// The running (effective) user.
        ours: u32,
        /// Whether it is the symbolic link at the path, not the file it points to.
        link: bool,
    },
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
            Self::TooLarge(p, max) => write!(f, "{}: larger than {max} bytes", p.display()),
            Self::NotText(p) => write!(f, "{}: not UTF-8 text", p.display()),
            Self::NotAFile { path, kind } => {
                write!(f, "{}: not a regular file ({kind})", path.display())
            }
            Self::WrongOwner {
                path,
                uid,
                ours,
                link,
            } => write!(
                f,
                "{}: {} owned by uid {uid}, not by the running user (uid {ours}) or root; \
                 refusing to trust it (run `chown {ours} {}`{})",
                path.display(),
                if *link { "a symbolic link" } else { "a file" },
                path.display(),
                if *link { " -h" } else { "" },
            ),
        }
    }
}

impl std::error::Error for FileError {}

/// The effective user id of this process (the owner trusted besides root).
#[allow(unsafe_code)]
pub fn running_uid() -> u32 {
    // SAFETY: geteuid(2) takes no arguments, always succeeds and touches no memory of ours.
    unsafe { libc::geteuid() }
}

/// Whether a file owned by `uid` may be trusted: ours or root's.
fn trusted_owner(uid: u32) -> bool {
    uid == 0 || uid == running_uid()
}

fn kind_of(ft: fs::FileType) -> &'static str {
    if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_char_device() || ft.is_block_device() {
        "a device"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else {
        "not a file"
    }
}

fn open_checked(path: &Path, secret: bool, max: u64) -> Result<fs::File, FileError> {
    let not_found = |e: io::Error| match e.kind() {
        io::ErrorKind::NotFound => FileError::NotFound(path.to_owned()),
        _ => FileError::Io(path.to_owned(), e),
    };
    // The link itself (if the path is one) must be ours or root's; what it points to is checked
    // below on the open descriptor, so swapping the target after this check gains nothing.
    let at_path = fs::symlink_metadata(path).map_err(not_found)?;
    if at_path.file_type().is_symlink() && !trusted_owner(at_path.uid()) {
        return Err(FileError::WrongOwner {
            path: path.to_owned(),
            uid: at_path.uid(),
            ours: running_uid(),
            link: true,
        });
    }
    // O_NONBLOCK: opening a FIFO (or a device) must not wait for a writer; what was opened is
    // refused below unless it is a regular file, for which the flag changes nothing.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(not_found)?;
    let meta = file
        .metadata()
        .map_err(|e| FileError::Io(path.to_owned(), e))?;
    if !meta.is_file() {
        return Err(FileError::NotAFile {
            path: path.to_owned(),
            kind: kind_of(meta.file_type()),
        });
    }
    if !trusted_owner(meta.uid()) {
        return Err(FileError::WrongOwner {
            path: path.to_owned(),
            uid: meta.uid(),
            ours: running_uid(),
            link: false,
        });
    }
    if meta.len() > max {
        return Err(FileError::TooLarge(path.to_owned(), max));
    }
    let mode = meta.mode() & 0o7777;
    if secret && mode & 0o077 != 0 {
        return Err(FileError::LoosePermissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(file)
}

fn read_limited(path: &Path, file: fs::File, max: u64) -> Result<Vec<u8>, FileError> {
    let mut buf = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|e| FileError::Io(path.to_owned(), e))?;
    if buf.len() as u64 > max {
        return Err(FileError::TooLarge(path.to_owned(), max));
    }
    Ok(buf)
}

/// Read a text file (certificates, revocation lists, configs).
///
/// # Errors
/// [`FileError`] naming the file.
pub fn read_text(path: &Path) -> Result<String, FileError> {
    read_text_up_to(path, MAX_FILE_LEN)
}

/// Read a policy file: as [`read_text`], up to [`MAX_POLICY_LEN`] bytes (the policy language's
/// own limit, docs/POLICY.md §12).
///
/// # Errors
/// [`FileError`] naming the file.
pub fn read_policy(path: &Path) -> Result<String, FileError> {
    read_text_up_to(path, MAX_POLICY_LEN)
}

/// Read an address list (`[[expose]] block_lists`), up to [`MAX_LIST_LEN`] bytes; its text is
/// checked line by line by the list parser (which names the line that is not UTF-8).
///
/// # Errors
/// [`FileError`] naming the file.
pub fn read_list(path: &Path) -> Result<Vec<u8>, FileError> {
    let file = open_checked(path, false, MAX_LIST_LEN)?;
    read_limited(path, file, MAX_LIST_LEN)
}

fn read_text_up_to(path: &Path, max: u64) -> Result<String, FileError> {
    let file = open_checked(path, false, max)?;
    let bytes = read_limited(path, file, max)?;
    String::from_utf8(bytes).map_err(|_| FileError::NotText(path.to_owned()))
}

/// Read a secret text file (private keys, PSKs). Refuses files that group or others can access.
///
/// # Errors
/// [`FileError`] naming the file; [`FileError::LoosePermissions`] for mode bits beyond 0600/0400.
pub fn read_secret(path: &Path) -> Result<Zeroizing<String>, FileError> {
    let file = open_checked(path, true, MAX_FILE_LEN)?;
    let bytes = Zeroizing::new(read_limited(path, file, MAX_FILE_LEN)?);
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
    let named = |e: io::Error| {
        let msg = if e.kind() == io::ErrorKind::AlreadyExists {
            "already exists (use --force to overwrite)".to_owned()
        } else {
            e.to_string()
        };
        io::Error::new(e.kind(), format!("{}: {msg}", path.display()))
    };
    let refuse = |why: String| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: {why}; refusing to overwrite it", path.display()),
        )
    };
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // O_EXCL never follows a link: one planted meanwhile makes this fail (EEXIST).
            write_new(path, contents, mode).map_err(named)
        }
        Err(e) => Err(named(e)),
        Ok(_) if !overwrite => Err(named(io::ErrorKind::AlreadyExists.into())),
        Ok(m) if m.file_type().is_symlink() => Err(refuse(
            "a symbolic link (writes never follow links; remove it first)".to_owned(),
        )),
        Ok(m) if !m.is_file() => Err(refuse(format!(
            "not a regular file ({})",
            kind_of(m.file_type())
        ))),
        Ok(m) if !trusted_owner(m.uid()) => Err(refuse(format!(
            "owned by uid {}, not by the running user (uid {}) or root",
            m.uid(),
            running_uid()
        ))),
        Ok(_) => replace(path, contents, mode).map_err(named),
    }
}

/// Create `path` (it must not exist, not even as a dangling link) with `mode` and `contents`.
fn write_new(path: &Path, contents: &str, mode: u32) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    // `mode` is masked by the umask; set it exactly.
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

/// Replace the regular file at `path`: write a temporary file next to it, then rename it over
/// `path` (atomic; a link put at `path` meanwhile is replaced, never followed).
fn replace(path: &Path, contents: &str, mode: u32) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = None;
    for attempt in 0..16u32 {
        let candidate = dir.join(format!(".{name}.{}.{attempt}.tmp", std::process::id()));
        match write_new(&candidate, contents, mode) {
            Ok(()) => {
                tmp = Some(candidate);
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                let _ = fs::remove_file(&candidate);
                return Err(e);
            }
        }
    }
    let tmp = tmp.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::AlreadyExists,
            "no free temporary file name next to it",
        )
    })?;
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // Make the rename durable.
    fs::File::open(dir)?.sync_all()
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
            Err(FileError::NotAFile { .. }) | Err(FileError::Io(..))
        ));
    }

    /// Whether tests that need root (chown to another user) must run rather than skip.
    fn require_root() -> bool {
        std::env::var_os("PRIVNET_REQUIRE_PRIVILEGED_TESTS").is_some_and(|v| v == "1")
    }

    #[test]
    fn forced_writes_never_follow_a_symbolic_link() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "do not touch").unwrap();
        let link = dir.path().join("key");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        for overwrite in [false, true] {
            let err = write_secret(&link, "secret", overwrite).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(&link.display().to_string()), "{msg}");
            if overwrite {
                assert!(msg.contains("symbolic link"), "{msg}");
            }
            assert_eq!(fs::read_to_string(&victim).unwrap(), "do not touch");
            assert!(fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink());
        }
        // A dangling link is not created through either.
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        assert!(write_public(&dangling, "x", false).is_err());
        assert!(!dir.path().join("nowhere").exists());
        // --force replaces a regular file of ours, atomically, with the new mode.
        let key = dir.path().join("real");
        write_public(&key, "old", false).unwrap();
        write_secret(&key, "new", true).unwrap();
        assert_eq!(*read_secret(&key).unwrap(), "new");
        assert_eq!(fs::metadata(&key).unwrap().mode() & 0o777, 0o600);
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn reads_follow_links_of_ours_and_check_what_they_point_to() {
        // Kubernetes mounts Secrets as links into `..data/`: those must keep working.
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("..data");
        fs::create_dir(&data).unwrap();
        write_secret(&data.join("network.psk"), "psk", false).unwrap();
        let link = dir.path().join("network.psk");
        std::os::unix::fs::symlink("..data/network.psk", &link).unwrap();
        assert_eq!(*read_secret(&link).unwrap(), "psk");
        // A link to a loose file is refused as the file would be.
        fs::set_permissions(data.join("network.psk"), fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            read_secret(&link),
            Err(FileError::LoosePermissions { .. })
        ));
    }

    #[test]
    fn a_fifo_is_refused_without_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("network.psk");
        let made = std::process::Command::new("mkfifo")
            .arg("-m")
            .arg("600")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let (tx, rx) = std::sync::mpsc::channel();
        let path = fifo.clone();
        std::thread::spawn(move || {
            let _ = tx.send((read_secret(&path).map(|_| ()), read_text(&path).map(|_| ())));
        });
        // The old code blocked in open(2) until a writer came: bounded here.
        let (secret, text) = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("reading a FIFO hung");
        for r in [secret, text] {
            let err = r.unwrap_err();
            assert!(
                matches!(err, FileError::NotAFile { kind: "a FIFO", .. }),
                "{err}"
            );
            assert!(err.to_string().contains(&fifo.display().to_string()));
        }
        // Nor is it written into with --force.
        let err = write_secret(&fifo, "x", true).unwrap_err().to_string();
        assert!(err.contains("not a regular file (a FIFO)"), "{err}");
    }

    #[test]
    fn files_of_another_user_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("private.key");
        write_secret(&key, "secret", false).unwrap();
        let other = 4242;
        if let Err(e) = std::os::unix::fs::chown(&key, Some(other), None) {
            assert!(
                !require_root(),
                "PRIVNET_REQUIRE_PRIVILEGED_TESTS=1 but chown failed: {e}"
            );
            eprintln!("skipped: chown needs root ({e})");
            return;
        }
        for err in [
            read_secret(&key).map(|_| ()).unwrap_err(),
            read_text(&key).map(|_| ()).unwrap_err(),
        ] {
            assert!(
                matches!(
                    err,
                    FileError::WrongOwner {
                        uid: 4242,
                        link: false,
                        ..
                    }
                ),
                "{err}"
            );
            let msg = err.to_string();
            assert!(
                msg.contains(&key.display().to_string()) && msg.contains("uid 4242"),
                "{msg}"
            );
        }
        let err = write_secret(&key, "x", true).unwrap_err().to_string();
        assert!(err.contains("owned by uid 4242"), "{err}");
        // A link owned by another user is refused even if it points to a file of ours.
        let ours = dir.path().join("ours.key");
        write_secret(&ours, "secret", false).unwrap();
        let link = dir.path().join("link.key");
        std::os::unix::fs::symlink(&ours, &link).unwrap();
        std::os::unix::fs::lchown(&link, Some(other), None).unwrap();
        assert!(matches!(
            read_secret(&link),
            Err(FileError::WrongOwner { link: true, .. })
        ));
    }
}
