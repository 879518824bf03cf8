//! TODO (being written)
use std::{os::fd::AsFd, rc::Rc};
/// Placeholder.
#[derive(Debug)]
pub struct Async<'l, F>(std::marker::PhantomData<&'l F>);
impl<'l, F: AsFd> Async<'l, F> {
    pub(crate) fn new<Data>(_inner: Rc<crate::loop_logic::LoopInner<'l, Data>>, _fd: F) -> crate::Result<Self> {
        todo!()
    }
}
