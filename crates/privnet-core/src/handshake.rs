//! The Noise_IKpsk2 handshake messages on top of snow: building and consuming initiations and
//! responses, mac1/mac2 framing. Pure functions; the peer state machine (`peer.rs`) owns the state
//! around them.

use snow::params::NoiseParams;
use snow::{Builder, HandshakeState, StatelessTransportState};

use zeroize::Zeroizing;

use crate::crypto::{self, PublicKey, Resolver, StaticSecret};
use crate::error::DropReason;
use crate::tai64n::{self, Tai64N};
use crate::wire::{
    self, Initiation, Response, HEADER_LEN, INITIATION_NOISE_OFFSET, KEY_LEN, MAC_LEN,
    MAX_CREDENTIAL_LEN, RESPONSE_NOISE_OFFSET, TAG_LEN, TYPE_INITIATION, TYPE_RESPONSE,
};

/// One network PSK and the keys derived from it for the local member.
pub(crate) struct NetworkKey {
    psk: Zeroizing<[u8; 32]>,
    /// mac1 key of messages sent to us under this PSK.
    pub(crate) mac1_key: [u8; 32],
    /// Key of the cookie replies we send to messages under this PSK.
    pub(crate) cookie_key: [u8; 32],
}

impl NetworkKey {
    fn new(psk: [u8; 32], static_public: &PublicKey) -> Self {
        Self {
            mac1_key: crypto::mac1_key(&psk, static_public),
            cookie_key: crypto::cookie_key(&psk, static_public),
            psk: Zeroizing::new(psk),
        }
    }

    /// mac1 key of messages we send to the holder of `remote` under this PSK.
    pub(crate) fn mac1_key_for(&self, remote: &PublicKey) -> [u8; 32] {
        crypto::mac1_key(&self.psk, remote)
    }

    /// Key of the cookie replies the holder of `remote` sends us under this PSK.
    pub(crate) fn cookie_key_of(&self, remote: &PublicKey) -> [u8; 32] {
        crypto::cookie_key(&self.psk, remote)
    }
}

/// Which of the node's network keys a message is under: 0 is the primary (the one we send with),
/// the others are accepted during a PSK rotation.
pub(crate) type PskIndex = usize;

/// What the handshake functions need to know about the local member: built once by the node.
pub(crate) struct LocalKeys {
    pub(crate) params: NoiseParams,
    pub(crate) cipher_id: u8,
    pub(crate) static_secret: StaticSecret,
    pub(crate) static_public: PublicKey,
    pub(crate) static_dh: crate::crypto::StaticDhCache,
    /// The primary network key first, then the ones also accepted (a PSK rotation's window).
    pub(crate) network: Vec<NetworkKey>,
    pub(crate) prologue: [u8; 26],
}

impl LocalKeys {
    /// Derive everything from the member's static secret, the network PSKs and id.
    pub(crate) fn new(
        params: NoiseParams,
        cipher_id: u8,
        static_secret: StaticSecret,
        psk: [u8; 32],
        accepted: &[[u8; 32]],
        network_id: &[u8; 16],
    ) -> Self {
        let static_public = static_secret.public_key();
        let mut keys = Self {
            params,
            cipher_id,
            static_secret,
            static_public,
            static_dh: crate::crypto::StaticDhCache::default(),
            network: Vec::new(),
            prologue: crypto::prologue(network_id),
        };
        keys.set_psks(psk, accepted);
        keys
    }

    /// Replace the network keys: `psk` is sent with, `accepted` are also accepted.
    pub(crate) fn set_psks(&mut self, psk: [u8; 32], accepted: &[[u8; 32]]) {
        self.network = std::iter::once(psk)
            .chain(accepted.iter().copied().filter(|a| *a != psk))
            .map(|p| NetworkKey::new(p, &self.static_public))
            .collect();
    }

    /// The primary network key.
    pub(crate) fn primary(&self) -> &NetworkKey {
        // `network` always holds the primary: `set_psks` puts it first.
        &self.network[0]
    }

    /// The network key `i` (the primary for an index out of range).
    pub(crate) fn network_key(&self, i: PskIndex) -> &NetworkKey {
        self.network.get(i).unwrap_or_else(|| self.primary())
    }

    /// The network key under which `mac1` over `covered` verifies, if any (the primary first).
    pub(crate) fn mac1_matches(&self, covered: &[u8], mac1: &[u8]) -> Option<PskIndex> {
        self.network
            .iter()
            .position(|k| crypto::ct_eq(&crypto::mac16(&k.mac1_key, covered), mac1))
    }

    /// mac1 key of messages we send to the holder of `remote` (under the primary PSK).
    pub(crate) fn mac1_key_for(&self, remote: &PublicKey) -> [u8; 32] {
        self.primary().mac1_key_for(remote)
    }

    /// Key of the cookie replies the holder of `remote` sends us (under the primary PSK).
    pub(crate) fn cookie_key_of(&self, remote: &PublicKey) -> [u8; 32] {
        self.primary().cookie_key_of(remote)
    }
}

fn map_snow(e: snow::Error) -> DropReason {
    match e {
        snow::Error::Dh => DropReason::BadKey,
        _ => DropReason::HandshakeFailed,
    }
}

fn builder(keys: &LocalKeys, psk: PskIndex, seed: [u8; 32]) -> Result<Builder<'_>, DropReason> {
    let resolver = Resolver::new(
        seed,
        &keys.static_secret,
        keys.static_public,
        keys.static_dh.clone(),
    );
    Builder::with_resolver(keys.params.clone(), Box::new(resolver))
        .local_private_key(keys.static_secret.as_bytes())
        .and_then(|b| b.psk(2, &keys.network_key(psk).psk))
        .and_then(|b| b.prologue(&keys.prologue))
        .map_err(|_| DropReason::HandshakeFailed)
}

/// Append mac1 (keyed for the receiver) and mac2 (from a cookie, or zeros) to `msg`, which already
/// holds everything before them and has room for both.
fn write_macs(msg: &mut [u8], mac1_key: &[u8; 32], cookie: Option<&[u8; 16]>) -> [u8; 16] {
    let len = msg.len();
    let m1_at = len - 2 * MAC_LEN;
    let mac1 = crypto::mac16(mac1_key, &msg[..m1_at]);
    msg[m1_at..m1_at + MAC_LEN].copy_from_slice(&mac1);
    let mac2 = match cookie {
        Some(c) => crypto::mac16(c, &msg[..len - MAC_LEN]),
        None => [0; 16],
    };
    msg[len - MAC_LEN..].copy_from_slice(&mac2);
    mac1
}

/// An initiation we sent and whose response we await.
pub(crate) struct PendingInitiation {
    pub(crate) state: HandshakeState,
    pub(crate) local_index: u32,
    pub(crate) mac1: [u8; 16],
}

/// Build an initiation to `remote`. Returns the pending state and the message bytes.
#[allow(clippy::too_many_arguments)]
pub(crate) fn build_initiation(
    keys: &LocalKeys,
    remote: &PublicKey,
    remote_mac1_key: &[u8; 32],
    local_index: u32,
    timestamp: Tai64N,
    credential: &[u8],
    cookie: Option<&[u8; 16]>,
    seed: [u8; 32],
) -> Result<(PendingInitiation, Vec<u8>), DropReason> {
    // `Node::new` refuses a larger credential; this keeps the message within its length bounds
    // even if that check moved.
    if credential.len() > MAX_CREDENTIAL_LEN {
        return Err(DropReason::HandshakeFailed);
    }
    let mut state = builder(keys, 0, seed)?
        .remote_public_key(remote)
        .and_then(|b| b.build_initiator())
        .map_err(map_snow)?;
    let mut payload = Vec::with_capacity(tai64n::LEN + credential.len());
    payload.extend_from_slice(&timestamp.to_bytes());
    payload.extend_from_slice(credential);
    let noise_len = KEY_LEN + KEY_LEN + TAG_LEN + payload.len() + TAG_LEN;
    let total = INITIATION_NOISE_OFFSET + noise_len + 2 * MAC_LEN;
    let mut msg = vec![0u8; total];
    wire::write_handshake_header(&mut msg, TYPE_INITIATION, keys.cipher_id);
    msg[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&local_index.to_le_bytes());
    let n = state
        .write_message(
            &payload,
            &mut msg[INITIATION_NOISE_OFFSET..INITIATION_NOISE_OFFSET + noise_len],
        )
        .map_err(map_snow)?;
    if n != noise_len {
        return Err(DropReason::HandshakeFailed);
    }
    let mac1 = write_macs(&mut msg, remote_mac1_key, cookie);
    Ok((
        PendingInitiation {
            state,
            local_index,
            mac1,
        },
        msg,
    ))
}

/// A consumed initiation: the responder state after message 1 and what it carried.
pub(crate) struct ReceivedInitiation {
    pub(crate) state: HandshakeState,
    pub(crate) remote_static: PublicKey,
    pub(crate) timestamp: Tai64N,
    pub(crate) credential: Vec<u8>,
    /// The network key it was under (the response uses the same).
    pub(crate) psk: PskIndex,
}

/// Consume an initiation (mac1/mac2 already checked). Costs two Diffie-Hellman operations.
pub(crate) fn read_initiation(
    keys: &LocalKeys,
    msg: &Initiation<'_>,
    psk: PskIndex,
    seed: [u8; 32],
) -> Result<ReceivedInitiation, DropReason> {
    let mut state = builder(keys, psk, seed)?
        .build_responder()
        .map_err(map_snow)?;
    let noise = msg.noise();
    let mut payload = vec![0u8; noise.len()];
    let n = state.read_message(noise, &mut payload).map_err(map_snow)?;
    payload.truncate(n);
    let remote_static: PublicKey = state
        .get_remote_static()
        .and_then(|s| s.try_into().ok())
        .ok_or(DropReason::HandshakeFailed)?;
    if payload.len() < tai64n::LEN {
        return Err(DropReason::HandshakeFailed);
    }
    let mut ts = [0u8; tai64n::LEN];
    ts.copy_from_slice(&payload[..tai64n::LEN]);
    let credential = payload.split_off(tai64n::LEN);
    Ok(ReceivedInitiation {
        state,
        remote_static,
        timestamp: Tai64N::from_bytes(ts),
        credential,
        psk,
    })
}

/// Build the response to a consumed initiation. Costs two Diffie-Hellman operations.
pub(crate) fn build_response(
    mut state: HandshakeState,
    cipher_id: u8,
    local_index: u32,
    remote_index: u32,
    credential: &[u8],
    remote_mac1_key: &[u8; 32],
    cookie: Option<&[u8; 16]>,
) -> Result<(StatelessTransportState, Vec<u8>), DropReason> {
    if credential.len() > MAX_CREDENTIAL_LEN {
        return Err(DropReason::HandshakeFailed);
    }
    let noise_len = KEY_LEN + credential.len() + TAG_LEN;
    let total = RESPONSE_NOISE_OFFSET + noise_len + 2 * MAC_LEN;
    let mut msg = vec![0u8; total];
    wire::write_handshake_header(&mut msg, TYPE_RESPONSE, cipher_id);
    msg[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&local_index.to_le_bytes());
    msg[HEADER_LEN + 4..HEADER_LEN + 8].copy_from_slice(&remote_index.to_le_bytes());
    let n = state
        .write_message(
            credential,
            &mut msg[RESPONSE_NOISE_OFFSET..RESPONSE_NOISE_OFFSET + noise_len],
        )
        .map_err(map_snow)?;
    if n != noise_len {
        return Err(DropReason::HandshakeFailed);
    }
    write_macs(&mut msg, remote_mac1_key, cookie);
    let transport = state
        .into_stateless_transport_mode()
        .map_err(|_| DropReason::HandshakeFailed)?;
    Ok((transport, msg))
}

/// Consume a response into `pending` (mac1 already checked). When the Noise message fails to
/// decrypt, `pending` is left usable for the genuine response (snow restores its symmetric state
/// on a failed read). When it decrypts, `pending` has consumed it: if the caller then refuses the
/// response (its credential), `pending` can no longer complete and the next retransmission
/// replaces it (docs/PROTOCOL.md §4.3).
pub(crate) fn read_response(
    pending: &mut PendingInitiation,
    msg: &Response<'_>,
) -> Result<Vec<u8>, DropReason> {
    let noise = msg.noise();
    let mut payload = vec![0u8; noise.len()];
    let n = pending
        .state
        .read_message(noise, &mut payload)
        .map_err(map_snow)?;
    payload.truncate(n);
    Ok(payload)
}

/// Finish an initiator handshake whose response was read.
pub(crate) fn into_transport(
    pending: PendingInitiation,
) -> Result<StatelessTransportState, DropReason> {
    pending
        .state
        .into_stateless_transport_mode()
        .map_err(|_| DropReason::HandshakeFailed)
}
