//! The outer packet parser and the inner-header peek: never panic, and every accepted message obeys
//! the length rules of its type.
#![no_main]
use libfuzzer_sys::fuzz_target;
use privnet_core::wire::{self, Message};

fuzz_target!(|data: &[u8]| {
    match wire::parse(data) {
        Ok(Message::Data(d)) => {
            assert!(data.len() >= wire::DATA_MIN_LEN);
            assert_eq!(d.ciphertext().len(), data.len() - wire::DATA_HEADER_LEN);
            let _ = (d.receiver(), d.counter());
        }
        Ok(Message::Initiation(m)) => {
            assert!((wire::INITIATION_MIN_LEN..=wire::INITIATION_MAX_LEN).contains(&data.len()));
            assert_eq!(m.ephemeral().len(), 32);
            let (covered, mac1) = m.mac1_parts();
            assert_eq!(covered.len() + 32, data.len());
            assert_eq!(mac1.len(), 16);
        }
        Ok(Message::Response(m)) => {
            assert!((wire::RESPONSE_MIN_LEN..=wire::RESPONSE_MAX_LEN).contains(&data.len()));
            assert_eq!(m.ephemeral().len(), 32);
            let (covered, mac2) = m.mac2_parts();
            assert_eq!(covered.len() + 16, data.len());
            assert_eq!(mac2.len(), 16);
        }
        Ok(Message::CookieReply(c)) => {
            assert_eq!(data.len(), wire::COOKIE_REPLY_LEN);
            assert_eq!(c.nonce().len(), 24);
            assert_eq!(c.encrypted_cookie().len(), 32);
        }
        Err(_) => {}
    }
    if let Some((src, dst)) = privnet_core::packet::addresses(data) {
        assert_eq!(src.is_ipv4(), dst.is_ipv4());
    }
});
