//! The `unix-listener` and `unix-stream` resources, and placing their
//! socket paths inside granted directories.
//!
//! The socket file a plugin binds belongs to its listener: it is unlinked
//! when the listener is dropped (by the guest, or with every object when
//! the plugin ends), so that the next bind of that path succeeds — unless
//! the path meanwhile names another file (same device and inode, still a
//! socket).

use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use cap_std::fs::{Dir as CapDir, FileTypeExt, MetadataExt};
use wasmtime::component::Resource;

use super::{LoopFd, Pollable, failure, nb, nonblocking, path_err, wit};
use crate::capabilities::is_plain_name;
use crate::state::PluginState;

/// Host side of a guest `unix-listener`.
pub type UnixListenerRes = Pollable<BoundListener>;

/// A listener and the socket file it bound.
pub struct BoundListener {
    listener: UnixListener,
    /// Unlinks the socket file on drop (after the listener is closed).
    _file: Option<SocketFile>,
}

impl BoundListener {
    /// Binds `name` inside `dir`.
    pub(super) fn bind(dir: CapDir, name: PathBuf) -> std::io::Result<BoundListener> {
        let listener = UnixListener::bind(proc_path(&dir, &name))?;
        // The file just created; if it cannot be identified it is left in
        // place (as before), never unlinked blindly.
        let file = dir.symlink_metadata(&name).ok().map(|m| SocketFile {
            dev: m.dev(),
            ino: m.ino(),
            dir,
            name,
        });
        Ok(BoundListener {
            listener,
            _file: file,
        })
    }

    /// The listening socket.
    pub(super) fn listener(&self) -> &UnixListener {
        &self.listener
    }
}

impl AsFd for BoundListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }
}

impl LoopFd for BoundListener {}

/// A socket file created by a bind: its directory, name and identity.
struct SocketFile {
    dir: CapDir,
    name: PathBuf,
    dev: u64,
    ino: u64,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        // Only the socket the bind created: the path may have been removed
        // and reused (by the plugin, or anyone) since, and a freed inode
        // number may be reused at once by the file now there.
        let same = self
            .dir
            .symlink_metadata(&self.name)
            .is_ok_and(|m| m.file_type().is_socket() && m.dev() == self.dev && m.ino() == self.ino);
        if !same {
            return;
        }
        if let Err(e) = self.dir.remove_file(&self.name) {
            tracing::debug!(name = %self.name.display(), "cannot unlink a socket file: {e}");
        }
    }
}

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
        let _t = crate::stats::HostCall::start();
        let (s, _) = self
            .pollable(&self_, "unix-listener")?
            .listener()
            .accept()
            .map_err(|e| nb("accept", e))?;
        nonblocking(s.set_nonblocking(true)).map_err(wit::IoError::Failed)?;
        self.push_io(Pollable::new(s)).map_err(wit::IoError::Failed)
    }

    fn drop(&mut self, rep: Resource<UnixListenerRes>) -> wasmtime::Result<()> {
        let _t = crate::stats::HostCall::start();
        self.drop_pollable(rep);
        Ok(())
    }
}

impl wit::HostUnixStream for PluginState {
    fn read(&mut self, self_: Resource<UnixStreamRes>, max: u32) -> Result<Vec<u8>, wit::IoError> {
        let _t = crate::stats::HostCall::start();
        self.stream_read(&self_, max, STREAM)
    }

    fn write(
        &mut self,
        self_: Resource<UnixStreamRes>,
        data: Vec<u8>,
    ) -> Result<u32, wit::IoError> {
        let _t = crate::stats::HostCall::start();
        self.stream_write(&self_, &data, STREAM)
    }

    fn shutdown(
        &mut self,
        self_: Resource<UnixStreamRes>,
        h: wit::ShutdownHow,
    ) -> Result<(), wit::IoError> {
        let _t = crate::stats::HostCall::start();
        self.stream_shutdown(&self_, h, STREAM)
    }

    fn drop(&mut self, rep: Resource<UnixStreamRes>) -> wasmtime::Result<()> {
        let _t = crate::stats::HostCall::start();
        self.drop_pollable(rep);
        Ok(())
    }
}
