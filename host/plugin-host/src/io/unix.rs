//! The `unix-listener` and `unix-stream` resources, and placing their
//! socket paths inside granted directories.

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use cap_std::fs::Dir as CapDir;
use wasmtime::component::Resource;

use super::{Pollable, failure, nb, nonblocking, path_err, wit};
use crate::capabilities::is_plain_name;
use crate::state::PluginState;

/// Host side of a guest `unix-listener`.
pub type UnixListenerRes = Pollable<UnixListener>;

/// Host side of a guest `unix-stream`.
pub type UnixStreamRes = Pollable<UnixStream>;

const STREAM: &str = "unix-stream";

/// The directory of a socket path and the socket's name in it: `rel` is
/// the path inside the grant `root` (guest path `guest`, grant `grant`),
/// `op` names the call in messages.
pub(super) fn socket_dir(
    root: &CapDir,
    rel: &Path,
    op: &str,
    guest: &str,
    grant: &str,
) -> Result<(CapDir, PathBuf), wit::IoFailure> {
    let name = rel
        .file_name()
        .map(PathBuf::from)
        .filter(|n| is_plain_name(n))
        .ok_or_else(|| {
            failure(
                wit::IoErrorKind::InvalidInput,
                format!("{guest}: not a socket path inside a granted directory"),
            )
        })?;
    let parent = match rel.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let dir = root
        .open_dir(&parent)
        .map_err(|e| path_err(op, guest, grant, e))?;
    Ok((dir, name))
}

/// `/proc/self/fd/N/name`: a path to `name` inside an open directory, for
/// the socket calls that only take paths.
pub(super) fn proc_path(dir: &CapDir, name: &Path) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name)
}

impl wit::HostUnixListener for PluginState {
    fn accept(
        &mut self,
        self_: Resource<UnixListenerRes>,
    ) -> Result<Resource<UnixStreamRes>, wit::IoError> {
        let (s, _) = self
            .pollable(&self_, "unix-listener")?
            .accept()
            .map_err(|e| nb("accept", e))?;
        nonblocking(s.set_nonblocking(true)).map_err(wit::IoError::Failed)?;
        self.push_io(Pollable::new(s)).map_err(wit::IoError::Failed)
    }

    fn drop(&mut self, rep: Resource<UnixListenerRes>) -> wasmtime::Result<()> {
        self.drop_pollable(rep);
        Ok(())
    }
}

impl wit::HostUnixStream for PluginState {
    fn read(&mut self, self_: Resource<UnixStreamRes>, max: u32) -> Result<Vec<u8>, wit::IoError> {
        self.stream_read(&self_, max, STREAM)
    }

    fn write(
        &mut self,
        self_: Resource<UnixStreamRes>,
        data: Vec<u8>,
    ) -> Result<u32, wit::IoError> {
        self.stream_write(&self_, &data, STREAM)
    }

    fn shutdown(
        &mut self,
        self_: Resource<UnixStreamRes>,
        h: wit::ShutdownHow,
    ) -> Result<(), wit::IoError> {
        self.stream_shutdown(&self_, h, STREAM)
    }

    fn drop(&mut self, rep: Resource<UnixStreamRes>) -> wasmtime::Result<()> {
        self.drop_pollable(rep);
        Ok(())
    }
}
