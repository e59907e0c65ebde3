//! The responder side of WireGuard's cookie mechanism (whitepaper §5.4.7): under load, a handshake
//! message costs Diffie-Hellman work only if its mac2 proves that the sender received a cookie at
//! its source address; otherwise it gets a cookie reply and nothing else.
//!
//! The cookie is a MAC of the source address and port under a secret that rotates every
//! [`COOKIE_SECRET_MAX_AGE`]; the reply encrypts it with XChaCha20-Poly1305 under our cookie key
//! with the message's mac1 as associated data, so only the holder of the network key who sent that
//! message can open it.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::RngCore;
use zeroize::Zeroizing;

use crate::config::COOKIE_SECRET_MAX_AGE;
use crate::crypto;
use crate::wire::{self, COOKIE_REPLY_LEN, HEADER_LEN, TYPE_COOKIE_REPLY};

/// A cookie received from a peer is used for this long (its secret may rotate meanwhile; 5 s of
/// margin for latency, as WireGuard).
pub(crate) const COOKIE_USE_TIME: Duration = Duration::from_secs(115);

/// The node's cookie secret.
pub(crate) struct CookieJar {
    secret: Zeroizing<[u8; 32]>,
    born: Instant,
}

impl CookieJar {
    pub(crate) fn new(rng: &mut ChaCha20Rng, now: Instant) -> Self {
        let mut secret = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut secret[..]);
        Self { secret, born: now }
    }

    /// The cookie of `from` at `now` (rotating the secret when it is too old).
    fn cookie_for(&mut self, rng: &mut ChaCha20Rng, from: SocketAddr, now: Instant) -> [u8; 16] {
        if now.saturating_duration_since(self.born) >= COOKIE_SECRET_MAX_AGE {
            rng.fill_bytes(&mut self.secret[..]);
            self.born = now;
        }
        let mut addr = [0u8; 18];
        match from.ip() {
            IpAddr::V4(a) => addr[..4].copy_from_slice(&a.octets()),
            IpAddr::V6(a) => addr[..16].copy_from_slice(&a.octets()),
        }
        addr[16..].copy_from_slice(&from.port().to_le_bytes());
        crypto::mac16(&self.secret[..], &addr)
    }

    /// Whether `mac2` over `covered` proves a cookie for `from`.
    pub(crate) fn mac2_valid(
        &mut self,
        rng: &mut ChaCha20Rng,
        from: SocketAddr,
        (covered, mac2): (&[u8], &[u8]),
        now: Instant,
    ) -> bool {
        let cookie = self.cookie_for(rng, from, now);
        crypto::ct_eq(&crypto::mac16(&cookie, covered), mac2)
    }

    /// A cookie reply to `from`, answering the message with sender index `sender` and `mac1`,
    /// sealed with our cookie key.
    pub(crate) fn reply(
        &mut self,
        rng: &mut ChaCha20Rng,
        our_cookie_key: &[u8; 32],
        from: SocketAddr,
        sender: u32,
        mac1: &[u8],
        now: Instant,
    ) -> Option<Vec<u8>> {
        let cookie = self.cookie_for(rng, from, now);
        let mut nonce = [0u8; 24];
        rng.fill_bytes(&mut nonce);
        let sealed = crypto::seal_cookie(our_cookie_key, &nonce, &cookie, mac1)?;
        let mut msg = vec![0u8; COOKIE_REPLY_LEN];
        wire::write_header(&mut msg, TYPE_COOKIE_REPLY);
        msg[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&sender.to_le_bytes());
        msg[HEADER_LEN + 4..HEADER_LEN + 28].copy_from_slice(&nonce);
        msg[HEADER_LEN + 28..].copy_from_slice(&sealed);
        Some(msg)
    }
}

/// A cookie a peer sent us, with when it arrived.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReceivedCookie {
    cookie: [u8; 16],
    at: Instant,
}

impl ReceivedCookie {
    pub(crate) fn new(cookie: [u8; 16], at: Instant) -> Self {
        Self { cookie, at }
    }

    /// The cookie, while it may still be used.
    pub(crate) fn usable(this: Option<&Self>, now: Instant) -> Option<[u8; 16]> {
        this.filter(|c| now.saturating_duration_since(c.at) < COOKIE_USE_TIME)
            .map(|c| c.cookie)
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests take the origin of their clock from the real one
mod tests {
    use super::*;
    use rand_core::SeedableRng;

    #[test]
    fn mac2_proves_the_source_and_the_secret_rotates() {
        let mut rng = ChaCha20Rng::from_seed([3; 32]);
        let t0 = Instant::now();
        let mut jar = CookieJar::new(&mut rng, t0);
        let a: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let b: SocketAddr = "192.0.2.1:4001".parse().unwrap();
        let msg = b"covered bytes";
        let cookie = jar.cookie_for(&mut rng, a, t0);
        let mac2 = crypto::mac16(&cookie, msg);
        assert!(jar.mac2_valid(&mut rng, a, (msg, &mac2), t0));
        assert!(!jar.mac2_valid(&mut rng, b, (msg, &mac2), t0), "other port");
        let later = t0 + COOKIE_SECRET_MAX_AGE;
        assert!(!jar.mac2_valid(&mut rng, a, (msg, &mac2), later), "rotated");

        let key = [9u8; 32];
        let reply = jar.reply(&mut rng, &key, a, 77, &[1; 16], later).unwrap();
        assert_eq!(reply.len(), COOKIE_REPLY_LEN);
        let opened = crypto::open_cookie(&key, &reply[8..32], &reply[32..], &[1; 16]);
        assert_eq!(opened, Some(jar.cookie_for(&mut rng, a, later)));
    }

    #[test]
    fn a_received_cookie_expires() {
        let t0 = Instant::now();
        let c = ReceivedCookie::new([5; 16], t0);
        assert_eq!(ReceivedCookie::usable(Some(&c), t0), Some([5; 16]));
        assert_eq!(ReceivedCookie::usable(Some(&c), t0 + COOKIE_USE_TIME), None);
        assert_eq!(ReceivedCookie::usable(None, t0), None);
    }
}
