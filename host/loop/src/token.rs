//! The packed identity carried by every [`Token`](crate::Token) and
//! [`RegistrationToken`](crate::RegistrationToken).
//!
//! A token is 64 bits: a slot index in the source list (24 bits), that slot's version (24 bits,
//! bumped each time the slot is reused, so stale tokens never reach a new source), and a
//! sub-id (16 bits) that a composite source uses to tell its children apart.

const BITS_SUBID: u32 = 16;
const BITS_VERSION: u32 = 24;
const BITS_ID: u32 = 24;
const MASK_SUBID: u64 = (1 << BITS_SUBID) - 1;
const MASK_VERSION: u64 = (1 << BITS_VERSION) - 1;
/// Highest slot index; the top indexes are left free so keys never reach the poller's reserved
/// range.
pub(crate) const MAX_ID: u32 = (1 << BITS_ID) - 2;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) struct TokenInner {
    id: u32,
    version: u32,
    sub_id: u16,
}

impl TokenInner {
    pub(crate) fn new(id: u32, version: u32) -> TokenInner {
        debug_assert!(id <= MAX_ID);
        TokenInner {
            id,
            version: version & MASK_VERSION as u32,
            sub_id: 0,
        }
    }

    pub(crate) fn id(self) -> u32 {
        self.id
    }

    pub(crate) fn version(self) -> u32 {
        self.version
    }

    pub(crate) fn same_source_as(self, other: TokenInner) -> bool {
        self.id == other.id && self.version == other.version
    }

    /// The next sub-token of the same source.
    ///
    /// # Panics
    /// When one source asks for more than 65,535 sub-tokens in one registration, as calloop does.
    pub(crate) fn increment_sub_id(self) -> TokenInner {
        let sub_id = match self.sub_id.checked_add(1) {
            Some(s) => s,
            None => panic!("maximum number of sub-ids reached for source #{}", self.id),
        };
        TokenInner { sub_id, ..self }
    }

    pub(crate) fn forget_sub_id(self) -> TokenInner {
        TokenInner { sub_id: 0, ..self }
    }

    pub(crate) fn to_key(self) -> u64 {
        (u64::from(self.id) << (BITS_VERSION + BITS_SUBID))
            | (u64::from(self.version) << BITS_SUBID)
            | u64::from(self.sub_id)
    }

    pub(crate) fn from_key(key: u64) -> TokenInner {
        TokenInner {
            id: (key >> (BITS_VERSION + BITS_SUBID)) as u32,
            version: ((key >> BITS_SUBID) & MASK_VERSION) as u32,
            sub_id: (key & MASK_SUBID) as u16,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_round_trip() {
        let t = TokenInner::new(MAX_ID, 0xAB_CDEF)
            .increment_sub_id()
            .increment_sub_id();
        assert_eq!(TokenInner::from_key(t.to_key()), t);
        assert!(t.to_key() < crate::sys::RESERVED_KEYS);
        assert!(t.same_source_as(t.forget_sub_id()));
        assert!(!t.same_source_as(TokenInner::new(MAX_ID, 0xAB_CDEE)));
    }

    #[test]
    fn version_wraps_within_its_bits() {
        let t = TokenInner::new(1, u32::MAX);
        assert_eq!(t.version(), MASK_VERSION as u32);
    }
}
