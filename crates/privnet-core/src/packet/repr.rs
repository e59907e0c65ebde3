//! The emit half of the packet layer: high-level IPv4 / IPv6 fixed headers ([`IpRepr`]) written
//! into a caller buffer. `IpRepr::parse` (in the parent module, next to the view it reads) is the
//! other half; `parse(emit(r)) == r` for every `r` that `emit` accepts.
//!
//! Only the fixed header is represented: an emitted IPv4 header has no options (IHL 5) and a
//! zero reserved flag, and an IPv6 header's extension headers, if any, are payload (as in
//! smoltcp's `Ipv6Repr`).

use core::net::{Ipv4Addr, Ipv6Addr};

use crate::checksum;

/// Length of the IPv4 header `emit` writes (no options).
pub const IPV4_HEADER_LEN: usize = 20;
/// Length of the fixed IPv6 header.
pub const IPV6_HEADER_LEN: usize = 40;

/// Why [`IpRepr::emit`] refused to write a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    /// The buffer is shorter than the header.
    #[error("buffer too small for the IP header")]
    BufferTooSmall,
    /// The payload does not fit the 16-bit length field.
    #[error("payload too long for the IP length field")]
    PayloadTooLong,
    /// The IPv4 fragment offset is not a multiple of 8 below 65,536.
    #[error("IPv4 fragment offset not a multiple of 8 or too large")]
    BadFragmentOffset,
    /// The IPv6 flow label has more than 20 bits.
    #[error("IPv6 flow label wider than 20 bits")]
    BadFlowLabel,
}

/// The fixed IPv4 header, without options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Upper-layer protocol.
    pub protocol: u8,
    /// Bytes after the header (so the total length is `20 + payload_len`).
    pub payload_len: usize,
    /// Time to live.
    pub hop_limit: u8,
    /// The second byte: DSCP (6 bits) and ECN (2 bits).
    pub dscp_ecn: u8,
    /// Identification.
    pub ident: u16,
    /// The "don't fragment" flag.
    pub dont_frag: bool,
    /// The "more fragments" flag.
    pub more_frags: bool,
    /// Fragment offset in bytes (a multiple of 8).
    pub frag_offset: u16,
}

/// The fixed IPv6 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Repr {
    /// Source address.
    pub src: Ipv6Addr,
    /// Destination address.
    pub dst: Ipv6Addr,
    /// The header's next header field (an extension header or the upper-layer protocol).
    pub next_header: u8,
    /// Bytes after the fixed header, extension headers included.
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class (DSCP and ECN).
    pub traffic_class: u8,
    /// Flow label (20 bits).
    pub flow_label: u32,
}

/// An IPv4 or IPv6 fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpRepr {
    /// IPv4.
    V4(Ipv4Repr),
    /// IPv6.
    V6(Ipv6Repr),
}

impl IpRepr {
    /// Bytes `emit` writes: 20 or 40.
    #[inline]
    pub fn buffer_len(&self) -> usize {
        match self {
            Self::V4(_) => IPV4_HEADER_LEN,
            Self::V6(_) => IPV6_HEADER_LEN,
        }
    }

    /// Header plus payload.
    #[inline]
    pub fn total_len(&self) -> usize {
        match self {
            Self::V4(r) => IPV4_HEADER_LEN + r.payload_len,
            Self::V6(r) => IPV6_HEADER_LEN + r.payload_len,
        }
    }

    /// Write the header at the start of `buf` (IPv4: with its checksum) and return its length.
    /// Nothing is written when an error is returned.
    ///
    /// # Errors
    /// [`EmitError`] if `buf` is shorter than [`IpRepr::buffer_len`] or a field does not fit.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, EmitError> {
        match self {
            Self::V4(r) => r.emit(buf),
            Self::V6(r) => r.emit(buf),
        }
    }
}

impl Ipv4Repr {
    /// Write this header (20 bytes, checksum filled in) at the start of `buf`.
    ///
    /// # Errors
    /// See [`IpRepr::emit`].
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, EmitError> {
        let total = u16::try_from(IPV4_HEADER_LEN + self.payload_len)
            .map_err(|_| EmitError::PayloadTooLong)?;
        if !self.frag_offset.is_multiple_of(8) {
            return Err(EmitError::BadFragmentOffset);
        }
        let h: &mut [u8; IPV4_HEADER_LEN] =
            buf.first_chunk_mut().ok_or(EmitError::BufferTooSmall)?;
        let flags = (u16::from(self.dont_frag) << 14) | (u16::from(self.more_frags) << 13);
        h[0] = 0x45;
        h[1] = self.dscp_ecn;
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h[4..6].copy_from_slice(&self.ident.to_be_bytes());
        h[6..8].copy_from_slice(&(flags | (self.frag_offset >> 3)).to_be_bytes());
        h[8] = self.hop_limit;
        h[9] = self.protocol;
        h[10..12].copy_from_slice(&[0, 0]);
        h[12..16].copy_from_slice(&self.src.octets());
        h[16..20].copy_from_slice(&self.dst.octets());
        let c = checksum::checksum(&h[..]);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        Ok(IPV4_HEADER_LEN)
    }
}

impl Ipv6Repr {
    /// Write this header (40 bytes) at the start of `buf`.
    ///
    /// # Errors
    /// See [`IpRepr::emit`].
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, EmitError> {
        let payload = u16::try_from(self.payload_len).map_err(|_| EmitError::PayloadTooLong)?;
        if self.flow_label > 0xf_ffff {
            return Err(EmitError::BadFlowLabel);
        }
        let h: &mut [u8; IPV6_HEADER_LEN] =
            buf.first_chunk_mut().ok_or(EmitError::BufferTooSmall)?;
        let word = (6u32 << 28) | (u32::from(self.traffic_class) << 20) | self.flow_label;
        h[0..4].copy_from_slice(&word.to_be_bytes());
        h[4..6].copy_from_slice(&payload.to_be_bytes());
        h[6] = self.next_header;
        h[7] = self.hop_limit;
        h[8..24].copy_from_slice(&self.src.octets());
        h[24..40].copy_from_slice(&self.dst.octets());
        Ok(IPV6_HEADER_LEN)
    }
}
