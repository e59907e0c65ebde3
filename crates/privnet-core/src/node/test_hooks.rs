//! Hooks for tests and the simulator (feature `test-util`): they reach into the node's tables to
//! set up corner cases and to check the invariants stated in `peers.rs`.

use super::{Node, PeerId};

impl Node {
    /// Test hook: set the send counter of the peer's current session.
    pub fn set_send_counter_for_test(&mut self, id: PeerId, counter: u64) {
        if let Some(p) = self.peers.get_mut(id) {
            p.set_send_counter(counter);
        }
    }

    /// Test hook: check the node's invariants (see `peers.rs`): the index map holds exactly the
    /// indices of every peer's sessions and pending initiation, each mapped to its peer, and the
    /// router routes only to live peers.
    ///
    /// # Panics
    /// When an invariant is broken.
    pub fn check_invariants(&self) {
        let mut held = 0;
        for (id, p) in self.peers.iter() {
            for i in p.indices() {
                assert_eq!(self.indices.get(i), Some(id), "index {i} of peer {id}");
                held += 1;
            }
            assert_eq!(self.peers.by_key(p.static_public()), Some(id));
        }
        assert_eq!(self.indices.len(), held, "index map holds stale indices");
        for (i, id) in self.indices.iter() {
            assert!(self.peers.get(id).is_some(), "index {i} of a removed peer");
        }
        assert_eq!(self.peers.len(), self.peers.iter().count());
    }
}
