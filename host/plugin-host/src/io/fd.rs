//! The `fd` resource: a descriptor granted with `--fd NAME=N`, or stdin.

use std::fs::File as StdFile;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use wasmtime::component::Resource;

use super::{LoopFd, Pollable, wit};
use crate::state::PluginState;

/// Host side of a guest `fd`.
pub type FdRes = Pollable<GrantedFd>;

const FD: &str = "fd";

/// A granted descriptor (or stdin), in non-blocking mode.
pub struct GrantedFd {
    file: StdFile,
    /// The OS cannot poll it (regular file, directory): always ready.
    always_ready: bool,
    /// File status flags to restore when closed (stdin).
    restore: Option<rustix::fs::OFlags>,
    /// Grant name (`stdin` for stdin).
    name: String,
}

impl GrantedFd {
    /// Wraps a granted descriptor named `name`: puts it in non-blocking
    /// mode (restoring its flags when closed if `restore_flags`), and
    /// notes whether the OS can poll it.
    pub(super) fn new(fd: OwnedFd, name: &str, restore_flags: bool) -> io::Result<GrantedFd> {
        let stat = rustix::fs::fstat(&fd)?;
        let ft = rustix::fs::FileType::from_raw_mode(stat.st_mode);
        let always_ready = matches!(
            ft,
            rustix::fs::FileType::RegularFile | rustix::fs::FileType::Directory
        );
        let old = rustix::fs::fcntl_getfl(&fd)?;
        rustix::fs::fcntl_setfl(&fd, old | rustix::fs::OFlags::NONBLOCK)?;
        Ok(GrantedFd {
            file: StdFile::from(fd),
            always_ready,
            restore: restore_flags.then_some(old),
            name: name.to_string(),
        })
    }
}

impl AsFd for GrantedFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl LoopFd for GrantedFd {
    fn always_ready(&self) -> bool {
        self.always_ready
    }
}

impl Read for &GrantedFd {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.file).read(buf)
    }
}

impl Write for &GrantedFd {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        (&self.file).write(data)
    }

    fn flush(&mut self) -> io::Result<()> {
        (&self.file).flush()
    }
}

impl Drop for GrantedFd {
    fn drop(&mut self) {
        if let Some(flags) = self.restore {
            let _ = rustix::fs::fcntl_setfl(self.file.as_fd(), flags);
        }
    }
}

impl wit::HostFd for PluginState {
    fn name(&mut self, self_: Resource<FdRes>) -> String {
        let _t = crate::stats::HostCall::start();
        self.pollable(&self_, FD)
            .map(|f| f.name.clone())
            .unwrap_or_default()
    }

    fn read(&mut self, self_: Resource<FdRes>, max: u32) -> Result<Vec<u8>, wit::IoError> {
        let _t = crate::stats::HostCall::start();
        self.stream_read(&self_, max, FD)
    }

    fn write(&mut self, self_: Resource<FdRes>, data: Vec<u8>) -> Result<u32, wit::IoError> {
        let _t = crate::stats::HostCall::start();
        self.stream_write(&self_, &data, FD)
    }

    fn drop(&mut self, rep: Resource<FdRes>) -> wasmtime::Result<()> {
        let _t = crate::stats::HostCall::start();
        self.drop_pollable(rep);
        Ok(())
    }
}
