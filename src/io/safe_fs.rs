//! File operations in directories another account can write (the spool, written by the ERP's
//! account): everything is done relative to a directory handle, no symbolic link is ever
//! followed, only regular files with one link are read (checked on the opened handle, not the
//! name), a FIFO or a device is never opened blocking, new files are created exclusively, and a
//! move never replaces what is at its target. What is refused is left in place and said why, so
//! the caller can log it once.
//!
//! Rationale: a name in such a directory can be swapped between any two system calls (a symlink
//! to the database, a FIFO that blocks a read for ever, a hard link to a file only the service
//! may read). Handles and `*at` calls with `O_NOFOLLOW`, `O_EXCL` and `RENAME_NOREPLACE` make
//! each step act on what was checked, whatever the name points at by then.

use std::fmt;
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags};

/// An open directory; every operation below is relative to it.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

/// Why a name was not opened as a file to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refused {
    Symlink,
    Fifo,
    Device,
    Socket,
    Directory,
    /// A regular file with other hard links: it may be a file the service can read and its
    /// writer cannot, linked into the spool.
    Linked,
    /// Larger than the limit.
    TooLarge,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refused::Symlink => "é um link simbólico (nunca seguido)",
            Refused::Fifo => "é um FIFO (pipe nomeado), não um arquivo",
            Refused::Device => "é um dispositivo, não um arquivo",
            Refused::Socket => "é um socket, não um arquivo",
            Refused::Directory => "é um diretório",
            Refused::Linked => "tem outros links físicos (hard links): não é lido por segurança",
            Refused::TooLarge => "é grande demais",
        })
    }
}

/// A failure to open: refused for what it is, or an I/O error.
#[derive(Debug)]
pub enum OpenError {
    Refused(Refused),
    Io(io::Error),
}

impl From<io::Error> for OpenError {
    fn from(error: io::Error) -> OpenError {
        OpenError::Io(error)
    }
}

/// A regular file read whole, with what it was when opened.
#[derive(Debug)]
pub struct ReadFile {
    pub bytes: Vec<u8>,
    pub identity: Identity,
}

/// What tells one version of a file from another: its inode, size and modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub device: u64,
    pub inode: u64,
    pub size: u64,
    /// Modification time, Unix nanoseconds.
    pub modified: i128,
}

impl Identity {
    /// The identity of a file's metadata (from `fstat` or `statat`).
    fn of(stat: &rustix::fs::Stat) -> Identity {
        Identity {
            device: stat.st_dev,
            inode: stat.st_ino,
            size: u64::try_from(stat.st_size).unwrap_or(0),
            modified: i128::from(stat.st_mtime) * 1_000_000_000 + i128::from(stat.st_mtime_nsec),
        }
    }

    /// The modification time as a timestamp.
    pub fn modified_at(&self) -> jiff::Timestamp {
        jiff::Timestamp::from_nanosecond(self.modified).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    }
}

/// `io::Error` from rustix's errno.
fn os(error: rustix::io::Errno) -> io::Error {
    io::Error::from(error)
}

impl Dir {
    /// Opens the directory at `path`, a path the administrator configured (its components may
    /// be links the administrator made; nothing inside it is followed).
    pub fn open(path: &Path) -> io::Result<Dir> {
        let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(os)?;
        Ok(Dir { fd, path: path.to_path_buf() })
    }

    /// The subdirectory `name`, created with `mode` if missing. Never through a link, and only
    /// if this process owns it: one planted by another account (to send files out of the
    /// spool) is refused (an error with no OS code).
    pub fn subdir(&self, name: &str, mode: u32) -> io::Result<Dir> {
        match rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(mode)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(error) => return Err(os(error)),
        }
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(os)?;
        let stat = rustix::fs::fstat(&fd).map_err(os)?;
        if stat.st_uid != rustix::process::geteuid().as_raw() {
            return Err(io::Error::other(
                "não pertence ao usuário do serviço (outra conta o criou): remova-o, o serviço o recria",
            ));
        }
        Ok(Dir { fd, path: self.path.join(name) })
    }

    /// The directory's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The names in the directory that are UTF-8 (others are ignored: the spool's names are
    /// ASCII by convention), without `.` and `..`. What each is, is checked when it is opened.
    pub fn names(&self) -> io::Result<Vec<String>> {
        let mut dir = rustix::fs::Dir::read_from(&self.fd).map_err(os)?;
        let mut names = Vec::new();
        while let Some(entry) = dir.read() {
            let entry = entry.map_err(os)?;
            let Ok(name) = entry.file_name().to_str() else { continue };
            if name != "." && name != ".." {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }

    /// What `name` is now, without following a link.
    pub fn identity(&self, name: &str) -> io::Result<Identity> {
        rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW)
            .map(|stat| Identity::of(&stat))
            .map_err(os)
    }

    /// Whether anything (a link included) has this name.
    pub fn exists(&self, name: &str) -> bool {
        rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW).is_ok()
    }

    /// Opens `name` to read: a regular file with one link, never through a symlink, never
    /// blocking on a FIFO (`O_NONBLOCK`, then refused for what it is).
    pub fn open_regular(&self, name: &str) -> Result<(File, Metadata), OpenError> {
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|error| match error {
            // O_NOFOLLOW on a symlink.
            rustix::io::Errno::LOOP => OpenError::Refused(Refused::Symlink),
            error => OpenError::Io(os(error)),
        })?;
        let file = File::from(fd);
        let meta = file.metadata()?;
        let kind = meta.file_type();
        let refused = if kind.is_fifo() {
            Some(Refused::Fifo)
        } else if kind.is_char_device() || kind.is_block_device() {
            Some(Refused::Device)
        } else if kind.is_socket() {
            Some(Refused::Socket)
        } else if kind.is_dir() {
            Some(Refused::Directory)
        } else if kind.is_symlink() {
            Some(Refused::Symlink)
        } else if meta.nlink() != 1 {
            Some(Refused::Linked)
        } else {
            None
        };
        match refused {
            Some(refused) => Err(OpenError::Refused(refused)),
            None => Ok((file, meta)),
        }
    }

    /// Reads `name` whole (see `open_regular`), refusing it past `limit` bytes.
    pub fn read_regular(&self, name: &str, limit: u64) -> Result<ReadFile, OpenError> {
        let (file, meta) = self.open_regular(name)?;
        if meta.len() > limit {
            return Err(OpenError::Refused(Refused::TooLarge));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        (&file).take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > limit {
            return Err(OpenError::Refused(Refused::TooLarge));
        }
        // The identity after the read: a file still being written shows a new size or time.
        let identity = Identity::of(&rustix::fs::fstat(&file).map_err(os)?);
        Ok(ReadFile { bytes, identity })
    }

    /// Creates `name` exclusively (never an existing file, never through a link) to write.
    pub fn create_new(&self, name: &str, mode: u32) -> io::Result<File> {
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )
        .map_err(os)?;
        Ok(File::from(fd))
    }

    /// Writes `bytes` to the new file `name` durably: a temporary name created exclusively,
    /// written and synced, then moved to `name` (which must not exist), then the directory
    /// synced.
    pub fn write_new(&self, name: &str, bytes: &[u8], mode: u32) -> io::Result<()> {
        use std::io::Write;
        let temporary = format!(".{name}.{}.tmp", std::process::id());
        let written = self.create_new(&temporary, mode).and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        });
        let moved = written.and_then(|()| self.rename_into(&temporary, self, name));
        if moved.is_err() {
            let _ = rustix::fs::unlinkat(&self.fd, temporary.as_str(), AtFlags::empty());
        }
        moved?;
        self.sync()
    }

    /// Moves `name` to `target`/`target_name`; fails with `AlreadyExists` rather than replace
    /// anything there. A link is moved as the link itself, never followed.
    pub fn rename_into(&self, name: &str, target: &Dir, target_name: &str) -> io::Result<()> {
        rustix::fs::renameat_with(&self.fd, name, &target.fd, target_name, RenameFlags::NOREPLACE).map_err(os)
    }

    /// Removes the file `name` (a link is removed as the link itself).
    pub fn remove(&self, name: &str) -> io::Result<()> {
        rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()).map_err(os)
    }

    /// Syncs the directory itself, so a rename or a new name in it survives a power loss.
    pub fn sync(&self) -> io::Result<()> {
        rustix::fs::fsync(&self.fd).map_err(os)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_fifos_and_hard_links_are_refused_and_left_in_place() {
        let temp = tempfile::tempdir().unwrap();
        let dir = Dir::open(temp.path()).unwrap();
        std::fs::write(temp.path().join("alvo"), "segredo").unwrap();
        std::os::unix::fs::symlink(temp.path().join("alvo"), temp.path().join("link.json")).unwrap();
        std::fs::hard_link(temp.path().join("alvo"), temp.path().join("fisico.json")).unwrap();
        let fifo = temp.path().join("fifo.json");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        for (name, why) in
            [("link.json", Refused::Symlink), ("fisico.json", Refused::Linked), ("fifo.json", Refused::Fifo)]
        {
            match dir.read_regular(name, 1024) {
                Err(OpenError::Refused(refused)) => assert_eq!(refused, why, "{name}"),
                other => panic!("{name}: {other:?}"),
            }
            assert!(dir.exists(name), "{name} must stay where it was");
        }
        std::fs::write(temp.path().join("grande.json"), vec![b' '; 2048]).unwrap();
        assert!(matches!(dir.read_regular("grande.json", 1024), Err(OpenError::Refused(Refused::TooLarge))));
    }

    #[test]
    fn new_files_and_moves_never_replace_or_follow() {
        let temp = tempfile::tempdir().unwrap();
        let dir = Dir::open(temp.path()).unwrap();
        std::fs::write(temp.path().join("banco"), "fila").unwrap();
        std::os::unix::fs::symlink(temp.path().join("banco"), temp.path().join("x.erro")).unwrap();
        assert_eq!(dir.create_new("x.erro", 0o640).unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(
            dir.write_new("x.erro", b"texto", 0o640).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        assert_eq!(std::fs::read_to_string(temp.path().join("banco")).unwrap(), "fila");
        std::fs::write(temp.path().join("a.json"), "a").unwrap();
        assert_eq!(
            dir.rename_into("a.json", &dir, "banco").unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        dir.write_new("novo", b"texto", 0o640).unwrap();
        assert_eq!(std::fs::read_to_string(temp.path().join("novo")).unwrap(), "texto");
        let leftovers: Vec<_> =
            dir.names().unwrap().into_iter().filter(|name| name.ends_with(".tmp")).collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn a_subdirectory_planted_as_a_link_is_refused() {
        let temp = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), temp.path().join("processados")).unwrap();
        let dir = Dir::open(temp.path()).unwrap();
        assert!(dir.subdir("processados", 0o750).is_err());
        let made = dir.subdir("rejeitados", 0o750).unwrap();
        assert_eq!(made.path(), temp.path().join("rejeitados"));
    }
}
