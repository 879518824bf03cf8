//! The `dir` resource: a directory inside a granted one. Paths are
//! resolved by cap-std, so no call leads outside it; a read-only grant
//! refuses every change.

use std::io;

use cap_std::fs::Dir as CapDir;
use wasmtime::component::Resource;

use super::file::{entry_kind, metadata_of, only_regular, open_options};
use super::{FileRes, closed, path_err, ro_denied, wit};
use crate::state::PluginState;

/// Host side of a guest `dir`.
pub struct DirRes {
    dir: CapDir,
    /// Guest path (for messages and `path`).
    guest: String,
    read_only: bool,
}

/// Joins a guest path for messages.
fn join_guest(base: &str, rel: &str) -> String {
    if base.ends_with('/') {
        format!("{base}{rel}")
    } else {
        format!("{base}/{rel}")
    }
}

impl DirRes {
    /// A directory opened by the guest at guest path `guest`.
    pub(super) fn new(dir: CapDir, guest: String, read_only: bool) -> DirRes {
        DirRes {
            dir,
            guest,
            read_only,
        }
    }

    fn check_write(&self, op: &str, path: &str) -> Result<(), wit::IoFailure> {
        if self.read_only {
            Err(ro_denied(op, &join_guest(&self.guest, path), &self.guest))
        } else {
            Ok(())
        }
    }

    fn err(&self, op: &str, path: &str, e: io::Error) -> wit::IoFailure {
        path_err(op, &join_guest(&self.guest, path), &self.guest, e)
    }
}

impl PluginState {
    /// The directory of a `dir` resource.
    fn dir(&self, r: &Resource<DirRes>) -> Result<&DirRes, wit::IoFailure> {
        self.table.get(r).map_err(|_| closed("dir"))
    }

    /// A change `op` of `path` inside a `dir` (refused under a read-only
    /// grant), done by `call`.
    fn dir_change(
        &self,
        r: &Resource<DirRes>,
        op: &str,
        path: &str,
        call: impl FnOnce(&CapDir) -> io::Result<()>,
    ) -> Result<(), wit::IoFailure> {
        let d = self.dir(r)?;
        d.check_write(op, path)?;
        call(&d.dir).map_err(|e| d.err(op, path, e))
    }
}

impl wit::HostDir for PluginState {
    fn path(&mut self, self_: Resource<DirRes>) -> String {
        let _t = crate::stats::HostCall::start();
        self.dir(&self_)
            .map(|d| d.guest.clone())
            .unwrap_or_default()
    }

    fn open_file(
        &mut self,
        self_: Resource<DirRes>,
        path: String,
        flags: wit::OpenFlags,
    ) -> Result<Resource<FileRes>, wit::IoFailure> {
        let _t = crate::stats::HostCall::start();
        let d = self.dir(&self_)?;
        let (opts, mutating) = open_options(flags);
        if mutating {
            d.check_write("write to", &path)?;
        }
        let f = d
            .dir
            .open_with(&path, &opts)
            .and_then(only_regular)
            .map_err(|e| d.err("open", &path, e))?;
        self.push_io(FileRes::new(f))
    }

    fn open_dir(
        &mut self,
        self_: Resource<DirRes>,
        path: String,
    ) -> Result<Resource<DirRes>, wit::IoFailure> {
        let _t = crate::stats::HostCall::start();
        let d = self.dir(&self_)?;
        let sub = d.dir.open_dir(&path).map_err(|e| d.err("open", &path, e))?;
        let res = DirRes::new(sub, join_guest(&d.guest, &path), d.read_only);
        self.push_io(res)
    }

    fn entries(&mut self, self_: Resource<DirRes>) -> Result<Vec<wit::DirEntry>, wit::IoFailure> {
        let _t = crate::stats::HostCall::start();
        let d = self.dir(&self_)?;
        let mut out = Vec::new();
        for e in d.dir.entries().map_err(|e| d.err("list", ".", e))? {
            let e = e.map_err(|e| d.err("list", ".", e))?;
            let kind = e
                .file_type()
                .map(entry_kind)
                .unwrap_or(wit::EntryKind::Other);
            out.push(wit::DirEntry {
                name: e.file_name().to_string_lossy().into_owned(),
                kind,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn metadata(
        &mut self,
        self_: Resource<DirRes>,
        path: String,
    ) -> Result<wit::Metadata, wit::IoFailure> {
        let _t = crate::stats::HostCall::start();
        let d = self.dir(&self_)?;
        d.dir
            .symlink_metadata(&path)
            .map(|m| metadata_of(&m))
            .map_err(|e| d.err("stat", &path, e))
    }

    fn create_dir(&mut self, self_: Resource<DirRes>, path: String) -> Result<(), wit::IoFailure> {
        let _t = crate::stats::HostCall::start();
        self.dir_change(&self_, "create", &path, |d| d.create_dir(&path))
    }

    fn remove_file(&mut self, self_: Resource<DirRes>, path: String) -> Result<(), wit::IoFailure> {
        let _t = crate::stats::HostCall::start();
        self.dir_change(&self_, "remove", &path, |d| d.remove_file(&path))
    }

    fn remove_dir(&mut self, self_: Resource<DirRes>, path: String) -> Result<(), wit::IoFailure> {
        let _t = crate::stats::HostCall::start();
        self.dir_change(&self_, "remove", &path, |d| d.remove_dir(&path))
    }

    fn rename(
        &mut self,
        self_: Resource<DirRes>,
        from: String,
        to: String,
    ) -> Result<(), wit::IoFailure> {
        let _t = crate::stats::HostCall::start();
        self.dir_change(&self_, "rename", &from, |d| d.rename(&from, d, &to))
    }

    fn drop(&mut self, rep: Resource<DirRes>) -> wasmtime::Result<()> {
        let _t = crate::stats::HostCall::start();
        self.drop_io(rep);
        Ok(())
    }
}
