//! The node's side of handshake messages, before any peer is involved: mac1 under the accepted
//! network keys, the cipher byte, the overlay-source check, admission, then the Noise work and
//! the hand-over to the peer's state machine (`Peer::on_initiation` / `on_response` /
//! `on_cookie_reply`). Also the PSK rotation entry point.

use super::*;

impl Node {
    /// mac1 of a handshake message, checked with our own mac1 keys (before any other work):
    /// which network key (PSK) the message is under.
    pub(super) fn check_mac1<'a>(
        &self,
        (covered, mac1): (&[u8], &'a [u8]),
    ) -> Result<(&'a [u8], PskIndex), DropReason> {
        self.keys
            .mac1_matches(covered, mac1)
            .map(|psk| (mac1, psk))
            .ok_or(DropReason::BadMac1)
    }

    /// Replace the network PSKs live (a PSK rotation step): `psk` is sent with, `accepted` are
    /// also accepted. Sessions are kept; the next handshakes use the new keys.
    pub fn set_psks(&mut self, psk: [u8; 32], accepted: &[[u8; 32]]) {
        self.keys.set_psks(psk, accepted);
        let ids: Vec<PeerId> = self.peers.iter().map(|(id, _)| id).collect();
        for id in ids {
            self.with_peer(id, |p, ctx| p.rekey_network(ctx.keys));
        }
    }

    /// The cipher suite named by a handshake message that passed mac1 (so it comes from a holder
    /// of the network's key) must be ours: another one is a different Noise protocol, which would
    /// fail later as an anonymous `handshake_failed`.
    pub(super) fn check_cipher(&self, id: u8) -> Result<(), DropReason> {
        if id == self.keys.cipher_id {
            Ok(())
        } else {
            tracing::debug!(
                ours = %self.settings.cipher,
                theirs = ?crypto::CipherSuite::from_wire_id(id),
                "handshake from a member with another cipher suite"
            );
            Err(DropReason::CipherMismatch)
        }
    }

    pub(super) fn handle_initiation(
        &mut self,
        from: SocketAddr,
        m: &wire::Initiation<'_>,
        now: Instant,
    ) -> Result<(), DropReason> {
        let mac1 = self.check_mac1(m.mac1_parts())?;
        self.check_cipher(m.cipher_id())?;
        if self.in_overlay(from.ip()) {
            return Err(DropReason::EndpointInOverlay);
        }
        let known = self.known_endpoints.get(&from).copied();
        let priority = known
            .and_then(|id| self.with_peer(id, |p, _| p.priority_initiation(now)))
            .unwrap_or(false);
        let lane = Lane::of(priority);
        self.admission.admit(
            AdmitCtx {
                rng: &mut self.rng,
                keys: &self.keys,
                out: &mut self.out,
            },
            from,
            (m.sender(), mac1),
            m.mac2_parts(),
            lane,
            now,
        )?;
        // A low-order ephemeral or static key makes the first Diffie-Hellman that uses it all-zero,
        // which our X25519 refuses: the handshake stops there with `BadKey`.
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        let rx = handshake::read_initiation(&self.keys, m, mac1.1, seed)?;
        let unix_now = self.wall.unix(now);
        let identity = self
            .settings
            .verifier
            .verify(&rx.credential, &rx.remote_static, unix_now.as_secs())
            .map_err(|e| {
                tracing::debug!(%from, error = %e, "initiation with refused credential");
                DropReason::BadCredential
            })?;
        if rx.timestamp.to_unix() > unix_now + MAX_TIMESTAMP_SKEW {
            return Err(DropReason::FutureTimestamp);
        }
        // Our own static key (a cloned image, or a copied key): never a peer, whatever its
        // credential says — it would be routed our own addresses.
        if rx.remote_static == self.keys.static_public {
            return Err(DropReason::BadCredential);
        }
        let id = match self.peers.by_key(&rx.remote_static) {
            Some(id) => id,
            None if self.settings.accept_unknown_peers => self
                .new_peer(rx.remote_static)
                .map_err(|_| DropReason::TooManyPeers)?,
            None => return Err(DropReason::BadCredential),
        };
        let sender = m.sender();
        let changed = self
            .with_peer(id, |p, ctx| {
                p.on_initiation(from, rx, identity, sender, now, ctx)
            })
            .ok_or(DropReason::BadCredential)??;
        self.apply(id, changed);
        Ok(())
    }

    pub(super) fn handle_response(
        &mut self,
        from: SocketAddr,
        m: &wire::Response<'_>,
        now: Instant,
    ) -> Result<(), DropReason> {
        let mac1 = self.check_mac1(m.mac1_parts())?;
        self.check_cipher(m.cipher_id())?;
        if self.in_overlay(from.ip()) {
            return Err(DropReason::EndpointInOverlay);
        }
        let id = self
            .indices
            .get(m.receiver())
            .ok_or(DropReason::UnexpectedHandshake)?;
        // Responses cost two DH operations too: the same admission as initiations (as WireGuard),
        // with the priority lane for a response to the initiation we sent.
        let receiver = m.receiver();
        let priority = self
            .with_peer(id, |p, _| p.priority_response(receiver, now))
            .unwrap_or(false);
        self.admission.admit(
            AdmitCtx {
                rng: &mut self.rng,
                keys: &self.keys,
                out: &mut self.out,
            },
            from,
            (m.sender(), mac1),
            m.mac2_parts(),
            Lane::of(priority),
            now,
        )?;
        let changed = self
            .with_peer(id, |p, ctx| p.on_response(from, m, now, ctx))
            .ok_or(DropReason::UnexpectedHandshake)??;
        self.apply(id, changed);
        Ok(())
    }

    pub(super) fn handle_cookie_reply(
        &mut self,
        m: &wire::CookieReply<'_>,
        now: Instant,
    ) -> Result<(), DropReason> {
        let id = self
            .indices
            .get(m.receiver())
            .ok_or(DropReason::UnexpectedHandshake)?;
        self.with_peer(id, |p, ctx| p.on_cookie_reply(m, now, ctx))
            .ok_or(DropReason::UnexpectedHandshake)?
    }

    /// Per-packet overhead added by [`Node::encapsulate`].
    pub const OVERHEAD: usize = DATA_OVERHEAD;
}
