//! The loop's table of sources: a slab with per-slot versions and a free list.

use std::rc::Rc;

use crate::{
    sources::EventDispatcher,
    token::{MAX_ID, TokenInner},
};

pub(crate) struct SourceEntry<'l, Data> {
    pub(crate) token: TokenInner,
    pub(crate) source: Option<Rc<dyn EventDispatcher<Data> + 'l>>,
}

pub(crate) struct SourceList<'l, Data> {
    sources: Vec<SourceEntry<'l, Data>>,
    free: Vec<u32>,
    live: usize,
}

impl<'l, Data> SourceList<'l, Data> {
    pub(crate) fn new() -> Self {
        SourceList {
            sources: Vec::new(),
            free: Vec::new(),
            live: 0,
        }
    }

    /// Stores `source` in a free slot (reused slots get a new version, so tokens of the previous
    /// occupant never reach it) and returns its token.
    pub(crate) fn insert(
        &mut self,
        source: Rc<dyn EventDispatcher<Data> + 'l>,
    ) -> crate::Result<TokenInner> {
        let token = match self.free.pop() {
            Some(id) => {
                let entry = &mut self.sources[id as usize];
                entry.token = TokenInner::new(id, entry.token.version().wrapping_add(1));
                entry.source = Some(source);
                entry.token
            }
            None => {
                let id = self.sources.len();
                if id > MAX_ID as usize {
                    return Err(crate::Error::IoError(std::io::Error::other(
                        "too many sources in one event loop",
                    )));
                }
                let token = TokenInner::new(id as u32, 0);
                self.sources.push(SourceEntry {
                    token,
                    source: Some(source),
                });
                token
            }
        };
        self.live += 1;
        Ok(token)
    }

    /// The live source a token refers to.
    pub(crate) fn get(
        &self,
        token: TokenInner,
    ) -> crate::Result<&Rc<dyn EventDispatcher<Data> + 'l>> {
        match self.sources.get(token.id() as usize) {
            Some(SourceEntry {
                token: t,
                source: Some(source),
            }) if t.same_source_as(token) => Ok(source),
            _ => Err(crate::Error::InvalidToken),
        }
    }

    /// Takes the source out of its slot and frees the slot.
    pub(crate) fn remove(
        &mut self,
        token: TokenInner,
    ) -> Option<Rc<dyn EventDispatcher<Data> + 'l>> {
        let entry = self.sources.get_mut(token.id() as usize)?;
        if !entry.token.same_source_as(token) {
            return None;
        }
        let source = entry.source.take()?;
        self.free.push(token.id());
        self.live -= 1;
        Some(source)
    }

    /// Number of sources in the loop.
    #[allow(dead_code)]
    pub(crate) fn len(&self) -> usize {
        self.live
    }
}
