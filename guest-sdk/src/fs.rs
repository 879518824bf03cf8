//! Granted descriptors ([`Fd`], [`stdin`]) and files and directories in
//! granted directories ([`File`], [`Dir`], [`OpenOptions`]).
//!
//! * [`Fd::open`]`("name")` takes a descriptor the embedder granted with
//!   `--fd name=N` (or handed over through the embedding API);
//!   [`stdin`]`()` takes the host's stdin if `--stdin` was given. Both are
//!   non-blocking and pollable: register them with
//!   [`Generic`](crate::generic::Generic). Each grant can be taken once.
//! * Files live in directories granted with `--dir HOST[::GUEST][:ro]` and
//!   are named by guest path (`/config/app.toml`). The host resolves them
//!   with cap-std: `..` or symbolic links leading outside the granted
//!   directory are refused. Regular files are not pollable: file calls are
//!   plain calls.
//!
//! ```no_run
//! # fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use callop_guest::fs;
//! let text = fs::read_to_string("/config/app.toml")?;      // needs --dir ./cfg::/config
//! let stdin = fs::stdin()?;                                // needs --stdin
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::io::{self, Read, Seek, SeekFrom, Write};

use crate::bindings::callop::plugin::io as wit;
use crate::io::{byte_stream, copy_read, from_failure, read_len};

/// A granted descriptor or stdin (non-blocking, pollable).
pub struct Fd {
    inner: wit::Fd,
}

impl Fd {
    /// Takes the descriptor granted as `name` (`--fd name=N`). Fails with
    /// `NotPermitted` if it was never granted and `Closed` if it was already
    /// taken.
    pub fn open(name: &str) -> io::Result<Fd> {
        Ok(Fd {
            inner: wit::open_fd(name).map_err(from_failure)?,
        })
    }

    /// The grant name (`"stdin"` for stdin).
    pub fn name(&self) -> String {
        self.inner.name()
    }
}

byte_stream!(
    /// Reads into `buf`; `Ok(0)` is end-of-file, `WouldBlock` means no data
    /// yet.
    Fd
);

impl fmt::Debug for Fd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Fd").field(&self.name()).finish()
    }
}

/// Takes the host's stdin (needs `--stdin`); non-blocking and pollable.
/// (Rust's `std::io::stdin()` inside a plugin is WASI's, which the host
/// leaves closed.)
pub fn stdin() -> io::Result<Fd> {
    Ok(Fd {
        inner: wit::open_stdin().map_err(from_failure)?,
    })
}

/// Kind of a directory entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// Regular file.
    File,
    /// Directory.
    Directory,
    /// Symbolic link (not followed).
    Symlink,
    /// Anything else.
    Other,
}

impl EntryKind {
    fn from_wit(k: wit::EntryKind) -> EntryKind {
        match k {
            wit::EntryKind::File => EntryKind::File,
            wit::EntryKind::Directory => EntryKind::Directory,
            wit::EntryKind::Symlink => EntryKind::Symlink,
            wit::EntryKind::Other => EntryKind::Other,
        }
    }
}

/// Metadata of a file or directory entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metadata {
    /// Its kind.
    pub kind: EntryKind,
    /// Size in bytes.
    pub len: u64,
    /// Modification time, nanoseconds since the unix epoch.
    pub modified_ns: Option<u64>,
}

impl Metadata {
    fn from_wit(m: wit::Metadata) -> Metadata {
        Metadata {
            kind: EntryKind::from_wit(m.kind),
            len: m.size,
            modified_ns: m.modified,
        }
    }

    /// Whether this is a regular file.
    pub fn is_file(&self) -> bool {
        self.kind == EntryKind::File
    }

    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.kind == EntryKind::Directory
    }
}

/// One entry of [`Dir::entries`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// File name.
    pub name: String,
    /// Kind.
    pub kind: EntryKind,
}

/// How to open a file (`std::fs::OpenOptions`).
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenOptions {
    flags: u8,
}

const READ: u8 = 1;
const WRITE: u8 = 2;
const APPEND: u8 = 4;
const CREATE: u8 = 8;
const CREATE_NEW: u8 = 16;
const TRUNCATE: u8 = 32;

impl OpenOptions {
    /// No access at all (set some).
    pub fn new() -> OpenOptions {
        OpenOptions::default()
    }

    fn set(&mut self, bit: u8, on: bool) -> &mut OpenOptions {
        if on {
            self.flags |= bit
        } else {
            self.flags &= !bit
        }
        self
    }

    /// Read access.
    pub fn read(&mut self, on: bool) -> &mut OpenOptions {
        self.set(READ, on)
    }
    /// Write access (needs a read-write grant).
    pub fn write(&mut self, on: bool) -> &mut OpenOptions {
        self.set(WRITE, on)
    }
    /// Append mode.
    pub fn append(&mut self, on: bool) -> &mut OpenOptions {
        self.set(APPEND, on)
    }
    /// Create if missing.
    pub fn create(&mut self, on: bool) -> &mut OpenOptions {
        self.set(CREATE, on)
    }
    /// Create, failing if it exists.
    pub fn create_new(&mut self, on: bool) -> &mut OpenOptions {
        self.set(CREATE_NEW, on)
    }
    /// Truncate to zero length.
    pub fn truncate(&mut self, on: bool) -> &mut OpenOptions {
        self.set(TRUNCATE, on)
    }

    fn to_wit(self) -> wit::OpenFlags {
        let mut f = wit::OpenFlags::empty();
        for (bit, w) in [
            (READ, wit::OpenFlags::READ),
            (WRITE, wit::OpenFlags::WRITE),
            (APPEND, wit::OpenFlags::APPEND),
            (CREATE, wit::OpenFlags::CREATE),
            (CREATE_NEW, wit::OpenFlags::CREATE_NEW),
            (TRUNCATE, wit::OpenFlags::TRUNCATE),
        ] {
            if self.flags & bit != 0 {
                f = f | w;
            }
        }
        f
    }

    /// Opens the file at guest path `path`.
    pub fn open(&self, path: &str) -> io::Result<File> {
        Ok(File {
            inner: wit::open_file(path, self.to_wit()).map_err(from_failure)?,
        })
    }
}

/// An open regular file in a granted directory. Calls are plain calls.
pub struct File {
    inner: wit::File,
}

impl File {
    /// Opens `path` for reading.
    pub fn open(path: &str) -> io::Result<File> {
        OpenOptions::new().read(true).open(path)
    }

    /// Creates (or truncates) `path` for writing.
    pub fn create(path: &str) -> io::Result<File> {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
    }

    /// Metadata of the open file.
    pub fn metadata(&self) -> io::Result<Metadata> {
        Ok(Metadata::from_wit(
            self.inner.metadata().map_err(from_failure)?,
        ))
    }

    /// Truncates or extends the file.
    pub fn set_len(&self, size: u64) -> io::Result<()> {
        self.inner.set_size(size).map_err(from_failure)
    }

    /// Flushes data and metadata to the device.
    pub fn sync_all(&self) -> io::Result<()> {
        self.inner.sync().map_err(from_failure)
    }
}

impl Read for File {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        Ok(copy_read(
            self.inner.read(read_len(buf)).map_err(from_failure)?,
            buf,
        ))
    }
}

impl Write for File {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf).map_err(from_failure)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for File {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let pos = match pos {
            SeekFrom::Start(n) => wit::SeekFrom::Start(n),
            SeekFrom::Current(n) => wit::SeekFrom::Current(n),
            SeekFrom::End(n) => wit::SeekFrom::End(n),
        };
        self.inner.seek(pos).map_err(from_failure)
    }
}

impl fmt::Debug for File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("File")
    }
}

/// An open directory inside a granted one; relative paths given to its
/// methods never leave it.
pub struct Dir {
    inner: wit::Dir,
}

impl Dir {
    /// Opens a granted directory (or one inside it) by guest path.
    pub fn open(path: &str) -> io::Result<Dir> {
        Ok(Dir {
            inner: wit::open_dir(path).map_err(from_failure)?,
        })
    }

    /// The guest path it was opened with.
    pub fn path(&self) -> String {
        self.inner.path()
    }

    /// Opens a file relative to this directory.
    pub fn open_file(&self, path: &str, options: &OpenOptions) -> io::Result<File> {
        Ok(File {
            inner: self
                .inner
                .open_file(path, options.to_wit())
                .map_err(from_failure)?,
        })
    }

    /// Opens a subdirectory.
    pub fn open_dir(&self, path: &str) -> io::Result<Dir> {
        Ok(Dir {
            inner: self.inner.open_dir(path).map_err(from_failure)?,
        })
    }

    /// The entries, sorted by name.
    pub fn entries(&self) -> io::Result<Vec<DirEntry>> {
        Ok(self
            .inner
            .entries()
            .map_err(from_failure)?
            .into_iter()
            .map(|e| DirEntry {
                name: e.name,
                kind: EntryKind::from_wit(e.kind),
            })
            .collect())
    }

    /// Metadata of an entry (symbolic links are not followed).
    pub fn metadata(&self, path: &str) -> io::Result<Metadata> {
        Ok(Metadata::from_wit(
            self.inner.metadata(path).map_err(from_failure)?,
        ))
    }

    /// Creates a directory.
    pub fn create_dir(&self, path: &str) -> io::Result<()> {
        self.inner.create_dir(path).map_err(from_failure)
    }

    /// Removes a file.
    pub fn remove_file(&self, path: &str) -> io::Result<()> {
        self.inner.remove_file(path).map_err(from_failure)
    }

    /// Removes an empty directory.
    pub fn remove_dir(&self, path: &str) -> io::Result<()> {
        self.inner.remove_dir(path).map_err(from_failure)
    }

    /// Renames an entry within this directory.
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.inner.rename(from, to).map_err(from_failure)
    }
}

impl fmt::Debug for Dir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Dir").field(&self.path()).finish()
    }
}

/// Reads a whole file (guest path).
pub fn read(path: &str) -> io::Result<Vec<u8>> {
    let mut f = File::open(path)?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    Ok(buf)
}

/// Reads a whole UTF-8 file (guest path).
pub fn read_to_string(path: &str) -> io::Result<String> {
    String::from_utf8(read(path)?).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Writes a whole file (guest path), creating or truncating it.
pub fn write(path: &str, data: impl AsRef<[u8]>) -> io::Result<()> {
    File::create(path)?.write_all(data.as_ref())
}
