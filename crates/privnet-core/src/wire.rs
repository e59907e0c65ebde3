//! Wire format of the four outer message types (the UDP payloads between members).
//!
//! All integers are little-endian. Every message starts with a 4-byte header:
//!
//! ```text
//!  0      1         2         3          4
//!  +------+---------+---------+----------+
//!  | type | version | cipher  | reserved |
//!  +------+---------+---------+----------+
//! ```
//!
//! `cipher` is the sender's [`CipherSuite`](crate::crypto::CipherSuite) wire id in initiations and
//! responses (covered by mac1) and 0 in the other types; `reserved` is 0, except in data messages,
//! where it holds flags: bit 0 is [`DATA_FLAG_PRIORITY`] (the sender's policy classes the packet's
//! flow `priority = "high"`), the other bits are 0. The flag is bound to the message through the
//! AEAD nonce (`session.rs`); it is a hint for the receiver's fairness gate, which runs before
//! decryption, and the receiver classes the packet again by its own policy after decryption.
//!
//! Parsing is two-layered in the smoltcp style: [`parse`] checks the header and the exact length
//! rules once and returns a borrowed view; once a view exists none of its accessors can panic.
//! Byte layouts, with offsets, are specified in `docs/PROTOCOL.md`; the constants below are the
//! ones that document refers to.

use crate::error::DropReason;

/// Protocol version carried in byte 1 of every message.
pub const VERSION: u8 = 1;
/// Message type: handshake initiation.
pub const TYPE_INITIATION: u8 = 1;
/// Message type: handshake response.
pub const TYPE_RESPONSE: u8 = 2;
/// Message type: cookie reply.
pub const TYPE_COOKIE_REPLY: u8 = 3;
/// Message type: transport data.
pub const TYPE_DATA: u8 = 4;

/// Data message flag (byte 3): the packet belongs to a high-priority flow of the sender's policy.
pub const DATA_FLAG_PRIORITY: u8 = 0x01;
/// Every flag a data message may carry; a data message with another bit set is refused.
pub const DATA_FLAGS: u8 = DATA_FLAG_PRIORITY;

/// Length of the common header.
pub const HEADER_LEN: usize = 4;
/// Length of a MAC field (mac1, mac2).
pub const MAC_LEN: usize = 16;
/// AEAD tag length.
pub const TAG_LEN: usize = 16;
/// X25519 public key length.
pub const KEY_LEN: usize = 32;
/// Largest credential (member certificate) a handshake may carry.
pub const MAX_CREDENTIAL_LEN: usize = 1024;

/// Noise message 1 without payload: e (32) + encrypted s (32 + 16) + payload tag (16).
const NOISE1_FIXED: usize = KEY_LEN + KEY_LEN + TAG_LEN + TAG_LEN;
/// Noise message 2 without payload: e (32) + payload tag (16).
const NOISE2_FIXED: usize = KEY_LEN + TAG_LEN;

/// Bytes of initiation payload before the credential: the TAI64N timestamp.
pub const INITIATION_PAYLOAD_FIXED: usize = crate::tai64n::LEN;

/// Initiation length with an empty credential: header, sender index, noise message 1, mac1, mac2.
pub const INITIATION_MIN_LEN: usize =
    HEADER_LEN + 4 + NOISE1_FIXED + INITIATION_PAYLOAD_FIXED + 2 * MAC_LEN;
/// Largest initiation.
pub const INITIATION_MAX_LEN: usize = INITIATION_MIN_LEN + MAX_CREDENTIAL_LEN;
/// Response length with an empty credential: header, sender and receiver index, noise message 2,
/// mac1, mac2.
pub const RESPONSE_MIN_LEN: usize = HEADER_LEN + 4 + 4 + NOISE2_FIXED + 2 * MAC_LEN;
/// Largest response.
pub const RESPONSE_MAX_LEN: usize = RESPONSE_MIN_LEN + MAX_CREDENTIAL_LEN;
/// Cookie reply length: header, receiver index, 24-byte nonce, encrypted 16-byte cookie + tag.
pub const COOKIE_REPLY_LEN: usize = HEADER_LEN + 4 + 24 + MAC_LEN + TAG_LEN;
/// Data header: common header, receiver index, 64-bit counter.
pub const DATA_HEADER_LEN: usize = HEADER_LEN + 4 + 8;
/// Smallest data packet (a keepalive: empty plaintext, tag only).
pub const DATA_MIN_LEN: usize = DATA_HEADER_LEN + TAG_LEN;
/// Per-packet overhead of the data message over the inner packet.
pub const DATA_OVERHEAD: usize = DATA_HEADER_LEN + TAG_LEN;
/// Largest UDP payload accepted at all.
pub const MAX_DATAGRAM: usize = 65_535;

/// Offset of the Noise message inside an initiation.
pub const INITIATION_NOISE_OFFSET: usize = HEADER_LEN + 4;
/// Offset of the Noise message inside a response.
pub const RESPONSE_NOISE_OFFSET: usize = HEADER_LEN + 8;

/// Write the common header for `msg_type` into `buf[..4]`.
#[inline]
pub fn write_header(buf: &mut [u8], msg_type: u8) {
    write_handshake_header(buf, msg_type, 0);
}

/// Whether `datagram` is a data message marked [`DATA_FLAG_PRIORITY`] (read before parsing, by
/// the receive stage's fairness gate; nothing is checked but the type and the bit).
#[inline]
pub fn priority_hint(datagram: &[u8]) -> bool {
    datagram.first() == Some(&TYPE_DATA)
        && datagram.get(3).is_some_and(|f| f & DATA_FLAG_PRIORITY != 0)
}

/// Write the common header of an initiation or response naming the cipher suite `cipher_id`.
#[inline]
pub fn write_handshake_header(buf: &mut [u8], msg_type: u8, cipher_id: u8) {
    if let Some(h) = buf.get_mut(..HEADER_LEN) {
        h.copy_from_slice(&[msg_type, VERSION, cipher_id, 0]);
    }
}

#[inline]
fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(off..off + 4) {
        a.copy_from_slice(s);
    }
    u32::from_le_bytes(a)
}

#[inline]
fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(off..off + 8) {
        a.copy_from_slice(s);
    }
    u64::from_le_bytes(a)
}

/// A parsed outer message borrowing the datagram.
#[derive(Debug, Clone, Copy)]
pub enum Message<'a> {
    /// Handshake initiation.
    Initiation(Initiation<'a>),
    /// Handshake response.
    Response(Response<'a>),
    /// Cookie reply.
    CookieReply(CookieReply<'a>),
    /// Transport data.
    Data(Data<'a>),
}

/// Handshake initiation view.
#[derive(Debug, Clone, Copy)]
pub struct Initiation<'a> {
    bytes: &'a [u8],
}

impl<'a> Initiation<'a> {
    /// The whole message.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
    /// The sender's cipher suite wire id (header byte 2).
    pub fn cipher_id(&self) -> u8 {
        self.bytes.get(2).copied().unwrap_or(0)
    }
    /// The initiator's session index.
    pub fn sender(&self) -> u32 {
        u32_at(self.bytes, HEADER_LEN)
    }
    /// The Noise handshake message.
    pub fn noise(&self) -> &'a [u8] {
        let end = self.bytes.len().saturating_sub(2 * MAC_LEN);
        self.bytes.get(INITIATION_NOISE_OFFSET..end).unwrap_or(&[])
    }
    /// The initiator's ephemeral public key (cleartext in message 1).
    pub fn ephemeral(&self) -> &'a [u8] {
        self.noise().get(..KEY_LEN).unwrap_or(&[])
    }
    /// Bytes covered by mac1, and mac1.
    pub fn mac1_parts(&self) -> (&'a [u8], &'a [u8]) {
        mac1_parts(self.bytes)
    }
    /// Bytes covered by mac2, and mac2.
    pub fn mac2_parts(&self) -> (&'a [u8], &'a [u8]) {
        mac2_parts(self.bytes)
    }
}

/// Handshake response view.
#[derive(Debug, Clone, Copy)]
pub struct Response<'a> {
    bytes: &'a [u8],
}

impl<'a> Response<'a> {
    /// The whole message.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
    /// The sender's cipher suite wire id (header byte 2).
    pub fn cipher_id(&self) -> u8 {
        self.bytes.get(2).copied().unwrap_or(0)
    }
    /// The responder's session index.
    pub fn sender(&self) -> u32 {
        u32_at(self.bytes, HEADER_LEN)
    }
    /// The initiator's session index this answers.
    pub fn receiver(&self) -> u32 {
        u32_at(self.bytes, HEADER_LEN + 4)
    }
    /// The Noise handshake message.
    pub fn noise(&self) -> &'a [u8] {
        let end = self.bytes.len().saturating_sub(2 * MAC_LEN);
        self.bytes.get(RESPONSE_NOISE_OFFSET..end).unwrap_or(&[])
    }
    /// The responder's ephemeral public key (cleartext in message 2).
    pub fn ephemeral(&self) -> &'a [u8] {
        self.noise().get(..KEY_LEN).unwrap_or(&[])
    }
    /// Bytes covered by mac1, and mac1.
    pub fn mac1_parts(&self) -> (&'a [u8], &'a [u8]) {
        mac1_parts(self.bytes)
    }
    /// Bytes covered by mac2, and mac2.
    pub fn mac2_parts(&self) -> (&'a [u8], &'a [u8]) {
        mac2_parts(self.bytes)
    }
}

fn mac1_parts(b: &[u8]) -> (&[u8], &[u8]) {
    let end = b.len().saturating_sub(2 * MAC_LEN);
    (
        b.get(..end).unwrap_or(&[]),
        b.get(end..end + MAC_LEN).unwrap_or(&[]),
    )
}

fn mac2_parts(b: &[u8]) -> (&[u8], &[u8]) {
    let end = b.len().saturating_sub(MAC_LEN);
    (b.get(..end).unwrap_or(&[]), b.get(end..).unwrap_or(&[]))
}

/// Cookie reply view.
#[derive(Debug, Clone, Copy)]
pub struct CookieReply<'a> {
    bytes: &'a [u8],
}

impl<'a> CookieReply<'a> {
    /// The index of the handshake this answers.
    pub fn receiver(&self) -> u32 {
        u32_at(self.bytes, HEADER_LEN)
    }
    /// The 24-byte XChaCha20 nonce.
    pub fn nonce(&self) -> &'a [u8] {
        self.bytes
            .get(HEADER_LEN + 4..HEADER_LEN + 28)
            .unwrap_or(&[])
    }
    /// The encrypted cookie and its tag.
    pub fn encrypted_cookie(&self) -> &'a [u8] {
        self.bytes.get(HEADER_LEN + 28..).unwrap_or(&[])
    }
}

/// Transport data view.
#[derive(Debug, Clone, Copy)]
pub struct Data<'a> {
    bytes: &'a [u8],
}

impl<'a> Data<'a> {
    /// The receiver's session index.
    #[inline]
    pub fn receiver(&self) -> u32 {
        u32_at(self.bytes, HEADER_LEN)
    }
    /// The packet counter (AEAD nonce).
    #[inline]
    pub fn counter(&self) -> u64 {
        u64_at(self.bytes, HEADER_LEN + 4)
    }
    /// Whether the sender marked it [`DATA_FLAG_PRIORITY`].
    #[inline]
    pub fn priority_hint(&self) -> bool {
        priority_hint(self.bytes)
    }
    /// Ciphertext and tag.
    #[inline]
    pub fn ciphertext(&self) -> &'a [u8] {
        self.bytes.get(DATA_HEADER_LEN..).unwrap_or(&[])
    }
}

/// Parse an outer datagram. Checks the header and the length rules of each type; never panics.
#[inline]
pub fn parse(datagram: &[u8]) -> Result<Message<'_>, DropReason> {
    if datagram.len() < HEADER_LEN {
        return Err(DropReason::TooShort);
    }
    if datagram.len() > MAX_DATAGRAM {
        return Err(DropReason::BadLength);
    }
    let (t, v, cipher, reserved) = (datagram[0], datagram[1], datagram[2], datagram[3]);
    let handshake = t == TYPE_INITIATION || t == TYPE_RESPONSE;
    let reserved = if t == TYPE_DATA {
        reserved & !DATA_FLAGS
    } else {
        reserved
    };
    if v != VERSION || reserved != 0 || (cipher != 0 && !handshake) {
        return Err(DropReason::BadType);
    }
    let len = datagram.len();
    match t {
        TYPE_DATA => {
            if len < DATA_MIN_LEN {
                Err(DropReason::BadLength)
            } else {
                Ok(Message::Data(Data { bytes: datagram }))
            }
        }
        TYPE_INITIATION => {
            if (INITIATION_MIN_LEN..=INITIATION_MAX_LEN).contains(&len) {
                Ok(Message::Initiation(Initiation { bytes: datagram }))
            } else {
                Err(DropReason::BadLength)
            }
        }
        TYPE_RESPONSE => {
            if (RESPONSE_MIN_LEN..=RESPONSE_MAX_LEN).contains(&len) {
                Ok(Message::Response(Response { bytes: datagram }))
            } else {
                Err(DropReason::BadLength)
            }
        }
        TYPE_COOKIE_REPLY => {
            if len == COOKIE_REPLY_LEN {
                Ok(Message::CookieReply(CookieReply { bytes: datagram }))
            } else {
                Err(DropReason::BadLength)
            }
        }
        _ => Err(DropReason::BadType),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_the_spec() {
        assert_eq!(INITIATION_MIN_LEN, 148);
        assert_eq!(RESPONSE_MIN_LEN, 92);
        assert_eq!(COOKIE_REPLY_LEN, 64);
        assert_eq!(DATA_MIN_LEN, 32);
        assert_eq!(DATA_OVERHEAD, 32);
    }

    #[test]
    fn rejects_short_unknown_and_reserved() {
        assert_eq!(parse(&[]).err(), Some(DropReason::TooShort));
        assert_eq!(parse(&[4, 1, 0]).err(), Some(DropReason::TooShort));
        assert_eq!(parse(&[9, 1, 0, 0]).err(), Some(DropReason::BadType));
        assert_eq!(parse(&[4, 2, 0, 0]).err(), Some(DropReason::BadType));
        let mut d = [0u8; 40];
        write_header(&mut d, TYPE_DATA);
        // Byte 3 of a data message holds flags: the priority hint is known, every other bit is
        // refused.
        assert!(!priority_hint(&d));
        d[3] = DATA_FLAG_PRIORITY;
        assert!(priority_hint(&d));
        match parse(&d) {
            Ok(Message::Data(m)) => assert!(m.priority_hint()),
            other => panic!("a data message with the priority hint: {other:?}"),
        }
        for bit in 1..8 {
            d[3] = 1 << bit;
            assert_eq!(parse(&d).err(), Some(DropReason::BadType), "flag bit {bit}");
        }
        // In the other types byte 3 stays reserved.
        for (t, len) in [
            (TYPE_COOKIE_REPLY, COOKIE_REPLY_LEN),
            (TYPE_INITIATION, INITIATION_MIN_LEN),
        ] {
            let mut b = vec![0u8; len];
            write_header(&mut b, t);
            b[3] = DATA_FLAG_PRIORITY;
            assert_eq!(parse(&b).err(), Some(DropReason::BadType), "type {t}");
            assert!(!priority_hint(&b));
        }
        // the cipher byte is meaningful only in initiations and responses
        for (t, len) in [
            (TYPE_DATA, DATA_MIN_LEN),
            (TYPE_COOKIE_REPLY, COOKIE_REPLY_LEN),
            (TYPE_INITIATION, INITIATION_MIN_LEN),
            (TYPE_RESPONSE, RESPONSE_MIN_LEN),
        ] {
            let mut b = vec![0u8; len];
            write_handshake_header(&mut b, t, 7);
            let handshake = t == TYPE_INITIATION || t == TYPE_RESPONSE;
            assert_eq!(parse(&b).is_ok(), handshake, "type {t}");
            match parse(&b) {
                Ok(Message::Initiation(m)) => assert_eq!(m.cipher_id(), 7),
                Ok(Message::Response(m)) => assert_eq!(m.cipher_id(), 7),
                Ok(_) => panic!("type {t}"),
                Err(e) => assert_eq!(e, DropReason::BadType),
            }
        }
    }

    #[test]
    fn every_truncation_is_refused() {
        for (t, min) in [
            (TYPE_INITIATION, INITIATION_MIN_LEN),
            (TYPE_RESPONSE, RESPONSE_MIN_LEN),
            (TYPE_COOKIE_REPLY, COOKIE_REPLY_LEN),
            (TYPE_DATA, DATA_MIN_LEN),
        ] {
            for len in HEADER_LEN..min {
                let mut b = vec![0u8; len];
                write_header(&mut b, t);
                assert_eq!(
                    parse(&b).err(),
                    Some(DropReason::BadLength),
                    "type {t} len {len}"
                );
            }
            let mut b = vec![0u8; min];
            write_header(&mut b, t);
            assert!(parse(&b).is_ok(), "type {t} len {min}");
        }
        let mut b = vec![0u8; COOKIE_REPLY_LEN + 1];
        write_header(&mut b, TYPE_COOKIE_REPLY);
        assert_eq!(parse(&b).err(), Some(DropReason::BadLength));
        let mut b = vec![0u8; INITIATION_MAX_LEN + 1];
        write_header(&mut b, TYPE_INITIATION);
        assert_eq!(parse(&b).err(), Some(DropReason::BadLength));
    }

    #[test]
    fn data_accessors() {
        let mut b = vec![0u8; 48];
        write_header(&mut b, TYPE_DATA);
        b[4..8].copy_from_slice(&7u32.to_le_bytes());
        b[8..16].copy_from_slice(&99u64.to_le_bytes());
        match parse(&b) {
            Ok(Message::Data(d)) => {
                assert_eq!(d.receiver(), 7);
                assert_eq!(d.counter(), 99);
                assert_eq!(d.ciphertext().len(), 32);
            }
            other => panic!("{other:?}"),
        }
    }
}
