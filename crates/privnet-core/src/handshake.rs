//! The Noise_IKpsk2 handshake messages on top of snow: building and consuming initiations and
//! responses, mac1/mac2 framing. Pure functions; the node owns the state machine around them.

use snow::params::NoiseParams;
use snow::{Builder, HandshakeState, StatelessTransportState};

use crate::crypto::{self, PublicKey, Resolver, StaticSecret};
use crate::error::DropReason;
use crate::tai64n::{self, Tai64N};
use crate::wire::{
    self, Initiation, Response, HEADER_LEN, INITIATION_NOISE_OFFSET, KEY_LEN, MAC_LEN,
    MAX_CREDENTIAL_LEN, RESPONSE_NOISE_OFFSET, TAG_LEN, TYPE_INITIATION, TYPE_RESPONSE,
};

/// What the node's handshake functions need to know about the local member.
pub(crate) struct LocalKeys<'a> {
    pub(crate) params: &'a NoiseParams,
    pub(crate) cipher_id: u8,
    pub(crate) static_secret: &'a StaticSecret,
    pub(crate) static_public: &'a PublicKey,
    pub(crate) static_dh: &'a crate::crypto::StaticDhCache,
    pub(crate) psk: &'a [u8; 32],
    pub(crate) prologue: &'a [u8],
}

fn map_snow(e: snow::Error) -> DropReason {
    match e {
        snow::Error::Dh => DropReason::BadKey,
        _ => DropReason::HandshakeFailed,
    }
}

fn builder<'a>(keys: &'a LocalKeys<'a>, seed: [u8; 32]) -> Result<Builder<'a>, DropReason> {
    let resolver = Resolver::new(
        seed,
        keys.static_secret,
        *keys.static_public,
        keys.static_dh.clone(),
    );
    Builder::with_resolver(keys.params.clone(), Box::new(resolver))
        .local_private_key(keys.static_secret.as_bytes())
        .and_then(|b| b.psk(2, keys.psk))
        .and_then(|b| b.prologue(keys.prologue))
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
    keys: &LocalKeys<'_>,
    remote: &PublicKey,
    remote_mac1_key: &[u8; 32],
    local_index: u32,
    timestamp: Tai64N,
    credential: &[u8],
    cookie: Option<&[u8; 16]>,
    seed: [u8; 32],
) -> Result<(PendingInitiation, Vec<u8>), DropReason> {
    if credential.len() > MAX_CREDENTIAL_LEN {
        return Err(DropReason::BufferTooSmall);
    }
    let mut state = builder(keys, seed)?
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
}

/// Consume an initiation (mac1/mac2 already checked). Costs two Diffie-Hellman operations.
pub(crate) fn read_initiation(
    keys: &LocalKeys<'_>,
    msg: &Initiation<'_>,
    seed: [u8; 32],
) -> Result<ReceivedInitiation, DropReason> {
    let mut state = builder(keys, seed)?.build_responder().map_err(map_snow)?;
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
        return Err(DropReason::BufferTooSmall);
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

/// Consume a response into `pending` (mac1 already checked). On failure `pending` is left usable for
/// the genuine response (snow restores its symmetric state on a failed read).
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
