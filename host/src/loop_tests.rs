//! Behaviour tests of the loop itself (being written).
