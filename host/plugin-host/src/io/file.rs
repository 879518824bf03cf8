//! The `file` resource: a file opened inside a granted directory (plain,
//! blocking calls: regular files are not pollable), and the `metadata`
//! record shared with `dir`.

use std::io::{self, Read, Seek, Write};

use cap_std::fs::{File as CapFile, OpenOptions as CapOpenOptions};
use wasmtime::component::Resource;

use super::{MAX_READ, closed, os, wit};
use crate::state::PluginState;

/// Host side of a guest `file`.
pub struct FileRes(CapFile);

impl FileRes {
    /// A file opened by the guest.
    pub(super) fn new(f: CapFile) -> FileRes {
        FileRes(f)
    }
}

/// The open options of `open-flags`, and whether they may change the file
/// (refused under a read-only grant).
pub(super) fn open_options(f: wit::OpenFlags) -> (CapOpenOptions, bool) {
    let has = |x: wit::OpenFlags| (f & x) == x;
    let mut o = CapOpenOptions::new();
    // Opening a FIFO (or some devices) would wait for the other end, on the
    // loop thread: open without waiting, then refuse what is not a regular
    // file (`dir.rs`). On a regular file the flag changes nothing.
    cap_std::fs::OpenOptionsExt::custom_flags(&mut o, libc::O_NONBLOCK);
    let write = has(wit::OpenFlags::WRITE) || has(wit::OpenFlags::APPEND);
    o.read(has(wit::OpenFlags::READ) || !write)
        .write(has(wit::OpenFlags::WRITE))
        .append(has(wit::OpenFlags::APPEND))
        .create(has(wit::OpenFlags::CREATE))
        .create_new(has(wit::OpenFlags::CREATE_NEW))
        .truncate(has(wit::OpenFlags::TRUNCATE));
    let mutating = write
        || has(wit::OpenFlags::CREATE)
        || has(wit::OpenFlags::CREATE_NEW)
        || has(wit::OpenFlags::TRUNCATE);
    (o, mutating)
}

/// `f` if it is a regular file; a FIFO, socket or device is refused (its
/// calls could wait for the other end on the loop thread).
pub(super) fn only_regular(f: CapFile) -> std::io::Result<CapFile> {
    if f.metadata()?.is_file() {
        Ok(f)
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file (a FIFO, socket or device is refused)",
        ))
    }
}

/// The WIT kind of a directory entry or file.
pub(super) fn entry_kind(ft: cap_std::fs::FileType) -> wit::EntryKind {
    if ft.is_dir() {
        wit::EntryKind::Directory
    } else if ft.is_file() {
        wit::EntryKind::File
    } else if ft.is_symlink() {
        wit::EntryKind::Symlink
    } else {
        wit::EntryKind::Other
    }
}

/// The WIT `metadata` record.
pub(super) fn metadata_of(m: &cap_std::fs::Metadata) -> wit::Metadata {
    let modified = m
        .modified()
        .ok()
        .and_then(|t| t.into_std().duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| u64::try_from(d.as_nanos()).ok());
    wit::Metadata {
        kind: entry_kind(m.file_type()),
        size: m.len(),
        modified,
    }
}

impl PluginState {
    /// The open file of a `file` resource.
    fn file(&mut self, r: &Resource<FileRes>) -> Result<&mut CapFile, wit::IoFailure> {
        Ok(&mut self.table.get_mut(r).map_err(|_| closed("file"))?.0)
    }
}

impl wit::HostFile for PluginState {
    fn read(&mut self, self_: Resource<FileRes>, max: u32) -> Result<Vec<u8>, wit::IoFailure> {
        let _t = crate::stats::HostCall::start();
        let f = self.file(&self_)?;
        let mut buf = vec![0u8; max.min(MAX_READ) as usize];
        let n = f.read(&mut buf).map_err(|e| os("read", e))?;
        buf.truncate(n);
        Ok(buf)
    }

    fn write(&mut self, self_: Resource<FileRes>, data: Vec<u8>) -> Result<(), wit::IoFailure> {
        let _t = crate::stats::HostCall::start();
        self.file(&self_)?
            .write_all(&data)
            .map_err(|e| os("write", e))
    }

    fn seek(
        &mut self,
        self_: Resource<FileRes>,
        pos: wit::SeekFrom,
    ) -> Result<u64, wit::IoFailure> {
        let _t = crate::stats::HostCall::start();
        let pos = match pos {
            wit::SeekFrom::Start(n) => io::SeekFrom::Start(n),
            wit::SeekFrom::Current(n) => io::SeekFrom::Current(n),
            wit::SeekFrom::End(n) => io::SeekFrom::End(n),
        };
        self.file(&self_)?.seek(pos).map_err(|e| os("seek", e))
    }

    fn metadata(&mut self, self_: Resource<FileRes>) -> Result<wit::Metadata, wit::IoFailure> {
        let _t = crate::stats::HostCall::start();
        self.file(&self_)?
            .metadata()
            .map(|m| metadata_of(&m))
            .map_err(|e| os("metadata", e))
    }

    fn set_size(&mut self, self_: Resource<FileRes>, size: u64) -> Result<(), wit::IoFailure> {
        let _t = crate::stats::HostCall::start();
        self.file(&self_)?
            .set_len(size)
            .map_err(|e| os("set size", e))
    }

    fn sync(&mut self, self_: Resource<FileRes>) -> Result<(), wit::IoFailure> {
        let _t = crate::stats::HostCall::start();
        self.file(&self_)?.sync_all().map_err(|e| os("sync", e))
    }

    fn drop(&mut self, rep: Resource<FileRes>) -> wasmtime::Result<()> {
        let _t = crate::stats::HostCall::start();
        self.drop_io(rep);
        Ok(())
    }
}
