//! The table entry of every pollable resource ([`Pollable`]) and what the
//! loop holds of a registered one ([`IoReg`] over a [`LoopFd`]).
//!
//! A pollable resource's object lives in an [`Arc`]`<`[`IoObj`]`>` shared
//! with its loop source once registered, so that the source can watch its
//! descriptor while the guest keeps using the object. The loop only needs
//! a descriptor and whether the OS can poll it: that is [`LoopFd`], and the
//! loop holds an `IoObj<dyn LoopFd>`, so routing never asks which kind of
//! object it watches.

use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime::component::Resource;

use super::{bad_handle, closed, wit};
use crate::bindings::callop::plugin::types::{Error, ErrorCode, SourceId};
use crate::sources::Source;
use crate::state::{Op, PluginState, wit_err};
use callop::{Interest, Mode};

/// What the loop needs of a registered object: a descriptor to watch with a
/// [`Generic`](callop::generic::Generic) source.
pub(crate) trait LoopFd: AsFd + Send + Sync {
    /// The OS cannot poll it (a regular file): the loop reports it always
    /// ready instead of watching it.
    fn always_ready(&self) -> bool {
        false
    }
}

impl LoopFd for TcpListener {}
impl LoopFd for TcpStream {}
impl LoopFd for UdpSocket {}
impl LoopFd for UnixListener {}
impl LoopFd for UnixStream {}

/// A pollable object shared by its resource and its loop source, with its
/// registration (the loop holds it as `IoObj<dyn LoopFd>`).
pub(crate) struct IoObj<T: ?Sized> {
    /// The registered source id, 0 if none.
    pub reg: AtomicU64,
    /// The object.
    obj: T,
}

impl<T: LoopFd + ?Sized> IoObj<T> {
    /// The OS cannot poll the object: report it always ready.
    pub fn always_ready(&self) -> bool {
        self.obj.always_ready()
    }
}

impl<T: AsFd + ?Sized> AsFd for IoObj<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.obj.as_fd()
    }
}

/// A pollable resource as held in the resource table.
pub struct Pollable<T>(Arc<IoObj<T>>);

impl<T> Pollable<T> {
    /// A new, unregistered pollable object.
    pub(super) fn new(obj: T) -> Pollable<T> {
        Pollable(Arc::new(IoObj {
            reg: AtomicU64::new(0),
            obj,
        }))
    }

    /// The object.
    pub(super) fn get(&self) -> &T {
        &self.0.obj
    }
}

/// I/O registration of a source (kept in its `SourceRec`).
pub(crate) struct IoReg {
    /// The registered object, as the loop sees it.
    pub obj: Arc<IoObj<dyn LoopFd>>,
    pub interest: Interest,
    pub mode: Mode,
    /// For an always-ready object: the ping emulating its readiness.
    pub ping: Option<callop::ping::Ping>,
}

impl PluginState {
    /// The object of a pollable resource; `closed` (naming the resource
    /// `what`) for a handle that is not in the table.
    pub(super) fn pollable<T: Send + Sync + 'static>(
        &self,
        r: &Resource<Pollable<T>>,
        what: &str,
    ) -> Result<&T, wit::IoError> {
        self.table
            .get(r)
            .map(Pollable::get)
            .map_err(|_| wit::IoError::Failed(closed(what)))
    }

    /// `io.register` of one pollable resource: queues its loop source.
    pub(super) fn register_pollable<T: LoopFd + 'static>(
        &mut self,
        r: &Resource<Pollable<T>>,
        interest: Interest,
        mode: Mode,
    ) -> Result<SourceId, Error> {
        let obj: Arc<IoObj<dyn LoopFd>> = self.table.get(r).map_err(bad_handle)?.0.clone();
        if obj.reg.load(Ordering::Relaxed) != 0 {
            return Err(wit_err(
                ErrorCode::AlreadyExists,
                "this object is already registered",
            ));
        }
        let id = self.sources.add(Source::Io(IoReg {
            obj: obj.clone(),
            interest,
            mode,
            ping: None,
        }))?;
        obj.reg.store(id, Ordering::Relaxed);
        self.ops.push(Op::Add(id));
        Ok(id)
    }

    /// The guest dropped a pollable resource: its registration is removed
    /// too (the object closes once the loop source lets go of it).
    pub(super) fn drop_pollable<T: Send + Sync + 'static>(&mut self, rep: Resource<Pollable<T>>) {
        let Some(p) = self.drop_io(rep) else {
            return;
        };
        let id = p.0.reg.swap(0, Ordering::Relaxed);
        if id != 0 && self.sources.remove(id).is_ok() {
            self.ops.push(Op::Remove(id));
        }
    }
}
