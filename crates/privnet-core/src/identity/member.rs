//! Member certificates, signed by the network CA.

use std::fmt;
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use super::ca::{CaCertificate, CaKey};
use super::codec::{
    self, is_default, overlaps, DecodeError, Envelope, Fingerprint, WireAddr, WireNet, KIND_MEMBER,
};
use super::issue::IssueError;
use super::{armor, is_valid_name, NetworkId, MAX_ADDRESSES, MAX_GROUPS, MAX_ROUTES};
use crate::credential::PeerIdentity;

/// What goes into a member certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberParams {
    /// Member name ([`is_valid_name`]).
    pub name: String,
    /// Overlay addresses (1 to [`MAX_ADDRESSES`], inside the CA's prefixes, no duplicates).
    pub addresses: Vec<IpAddr>,
    /// Subnet routes the member may act as gateway for (inside the CA's routes, non-overlapping).
    pub routes: Vec<IpNetwork>,
    /// Groups (up to [`MAX_GROUPS`], each a valid name, no duplicates).
    pub groups: Vec<String>,
    /// The member's Noise static public key (X25519).
    pub public_key: [u8; 32],
    /// Start of validity (Unix seconds, inclusive).
    pub not_before: u64,
    /// End of validity (Unix seconds, exclusive; at most the CA's `not_after`).
    pub not_after: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MemberBody {
    name: String,
    network_id: [u8; 16],
    ca_fingerprint: [u8; 32],
    public_key: [u8; 32],
    addresses: Vec<WireAddr>,
    routes: Vec<WireNet>,
    groups: Vec<String>,
    not_before: u64,
    not_after: u64,
}

/// A member certificate. Decoding checks the format and every field, but not the signature, which
/// needs the CA: use [`MemberCertificate::verify_signature`] or a [`super::TrustStore`].
#[derive(Clone, PartialEq, Eq)]
pub struct MemberCertificate {
    env: Envelope<MemberBody>,
    addresses: Vec<IpAddr>,
    routes: Vec<IpNetwork>,
    fingerprint: Fingerprint,
}

type FieldError = (&'static str, &'static str);

fn check_body(b: &MemberBody) -> Result<(Vec<IpAddr>, Vec<IpNetwork>), FieldError> {
    const NAME_RULE: &str =
        "1-64 characters of letters, digits, '.', '_', '-', starting with a letter or digit";
    if !is_valid_name(&b.name) {
        return Err(("name", NAME_RULE));
    }
    if b.addresses.is_empty() {
        return Err(("addresses", "at least one address is required"));
    }
    if b.addresses.len() > MAX_ADDRESSES {
        return Err(("addresses", "too many addresses"));
    }
    let addresses: Vec<IpAddr> = b.addresses.iter().map(|&a| a.into()).collect();
    for (i, a) in addresses.iter().enumerate() {
        if a.is_unspecified() || a.is_multicast() || a.is_loopback() {
            return Err(("addresses", "unspecified, loopback or multicast address"));
        }
        if addresses.iter().skip(i + 1).any(|b| b == a) {
            return Err(("addresses", "duplicate address"));
        }
    }
    if b.routes.len() > MAX_ROUTES {
        return Err(("routes", "too many routes"));
    }
    let routes = b
        .routes
        .iter()
        .map(|n| n.to_net().ok_or(("routes", "not a normalised prefix")))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, r) in routes.iter().enumerate() {
        // A default route (an exit) may sit over the member's subnet routes; not twice.
        if routes
            .iter()
            .skip(i + 1)
            .any(|o| overlaps(r, o) && (r == o || !(is_default(r) || is_default(o))))
        {
            return Err(("routes", "routes overlap"));
        }
    }
    if b.groups.len() > MAX_GROUPS {
        return Err(("groups", "too many groups"));
    }
    for (i, g) in b.groups.iter().enumerate() {
        if !is_valid_name(g) {
            return Err(("groups", NAME_RULE));
        }
        if b.groups.iter().skip(i + 1).any(|o| o == g) {
            return Err(("groups", "duplicate group"));
        }
    }
    // Any low-order point (all-zero among them): every Diffie-Hellman with it is all-zero, so no
    // handshake could authenticate the holder. Refused at issuing and at decoding alike.
    if crate::crypto::is_low_order(&b.public_key) {
        return Err((
            "public_key",
            "low-order point (no Diffie-Hellman with it is secret)",
        ));
    }
    if b.not_before >= b.not_after {
        return Err(("not_after", "must be later than not_before"));
    }
    Ok((addresses, routes))
}

impl MemberCertificate {
    /// Issue a certificate for `params`, signed by `ca_key`, the key of `ca`. Checks the CA's
    /// constraints (addresses in its prefixes, routes in its routes, validity within its own).
    ///
    /// # Errors
    /// [`IssueError`] says which parameter is wrong.
    pub fn issue(
        ca: &CaCertificate,
        ca_key: &CaKey,
        params: &MemberParams,
    ) -> Result<Self, IssueError> {
        if !ca.matches_key(ca_key) {
            return Err(IssueError::KeyMismatch);
        }
        let routes = params
            .routes
            .iter()
            .map(|r| {
                WireNet::from_net(r).ok_or(IssueError::InvalidField {
                    field: "routes",
                    reason: "not a normalised prefix (host bits set)",
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let body = MemberBody {
            name: params.name.clone(),
            network_id: ca.network_id().0,
            ca_fingerprint: ca.fingerprint().0,
            public_key: params.public_key,
            addresses: params.addresses.iter().map(|&a| a.into()).collect(),
            routes,
            groups: params.groups.clone(),
            not_before: params.not_before,
            not_after: params.not_after,
        };
        check_body(&body).map_err(|(field, reason)| IssueError::InvalidField { field, reason })?;
        if let Some(&a) = params.addresses.iter().find(|&&a| !ca.allows_address(a)) {
            return Err(IssueError::AddressOutsidePrefixes(a));
        }
        if let Some(r) = params.routes.iter().find(|r| !ca.allows_route(r)) {
            return Err(IssueError::RouteNotAllowed(*r));
        }
        if params.not_after > ca.not_after() {
            return Err(IssueError::OutlivesCa {
                ca_not_after: ca.not_after(),
            });
        }
        let env =
            codec::seal(KIND_MEMBER, body, ca_key.signing_key()).ok_or(IssueError::TooLarge)?;
        Self::from_envelope(env).map_err(|_| IssueError::TooLarge)
    }

    /// Issue without checking the CA's constraints: what a buggy or malicious issuer could sign.
    #[cfg(test)]
    pub(crate) fn issue_unchecked(
        ca: &CaCertificate,
        ca_key: &CaKey,
        params: &MemberParams,
    ) -> Self {
        let body = MemberBody {
            name: params.name.clone(),
            network_id: ca.network_id().0,
            ca_fingerprint: ca.fingerprint().0,
            public_key: params.public_key,
            addresses: params.addresses.iter().map(|&a| a.into()).collect(),
            routes: params.routes.iter().filter_map(WireNet::from_net).collect(),
            groups: params.groups.clone(),
            not_before: params.not_before,
            not_after: params.not_after,
        };
        let env = codec::seal(KIND_MEMBER, body, ca_key.signing_key()).expect("fits");
        Self::from_envelope(env).expect("well-formed")
    }

    fn from_envelope(env: Envelope<MemberBody>) -> Result<Self, DecodeError> {
        let (addresses, routes) = check_body(&env.body)
            .map_err(|(field, reason)| DecodeError::InvalidField { field, reason })?;
        let fingerprint = env.fingerprint();
        Ok(Self {
            env,
            addresses,
            routes,
            fingerprint,
        })
    }

    /// Decode the binary form (the handshake credential). Checks the format and every field; does
    /// **not** check the signature.
    ///
    /// # Errors
    /// [`DecodeError`] says why; never panics.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::from_envelope(codec::open(KIND_MEMBER, bytes)?)
    }

    /// Decode the armoured form (label [`armor::CERTIFICATE`]); does not check the signature.
    ///
    /// # Errors
    /// [`DecodeError`] says why; never panics.
    pub fn from_pem(text: &str) -> Result<Self, DecodeError> {
        Self::from_bytes(&armor::decode(armor::CERTIFICATE, text)?)
    }

    /// The canonical binary form (what goes in the handshake).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.env.to_bytes()
    }

    /// The armoured form.
    pub fn to_pem(&self) -> String {
        armor::encode(armor::CERTIFICATE, &self.to_bytes())
    }

    /// Whether `ca` signed this certificate (fingerprint and signature; not validity).
    pub fn verify_signature(&self, ca: &CaCertificate) -> bool {
        self.ca_fingerprint() == ca.fingerprint() && ca.envelope_verifies(&self.env)
    }

    /// Member name.
    pub fn name(&self) -> &str {
        &self.env.body.name
    }

    /// Network id.
    pub fn network_id(&self) -> NetworkId {
        NetworkId(self.env.body.network_id)
    }

    /// Fingerprint of the issuing CA certificate.
    pub fn ca_fingerprint(&self) -> Fingerprint {
        Fingerprint(self.env.body.ca_fingerprint)
    }

    /// The member's Noise static public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.env.body.public_key
    }

    /// Overlay addresses.
    pub fn addresses(&self) -> &[IpAddr] {
        &self.addresses
    }

    /// Granted subnet routes.
    pub fn routes(&self) -> &[IpNetwork] {
        &self.routes
    }

    /// Groups.
    pub fn groups(&self) -> &[String] {
        &self.env.body.groups
    }

    /// Start of validity (Unix seconds, inclusive).
    pub fn not_before(&self) -> u64 {
        self.env.body.not_before
    }

    /// End of validity (Unix seconds, exclusive).
    pub fn not_after(&self) -> u64 {
        self.env.body.not_after
    }

    /// Whether the certificate is valid at `now`.
    pub fn is_valid_at(&self, now: u64) -> bool {
        self.not_before() <= now && now < self.not_after()
    }

    /// Fingerprint (see the module docs).
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// Every prefix the member may use as inner source: its addresses as /32 or /128, then its
    /// routes. Built in one place so the anti-spoofing prefixes cannot be constructed wrongly.
    pub fn overlay_prefixes(&self) -> Vec<IpNetwork> {
        self.addresses
            .iter()
            .map(|&a| IpNetwork::from(a))
            .chain(self.routes.iter().copied())
            .collect()
    }

    /// The identity the core gets for this certificate, issued by `ca`.
    pub fn peer_identity(&self, ca: &CaCertificate) -> PeerIdentity {
        PeerIdentity {
            name: self.name().to_owned(),
            addresses: self.overlay_prefixes(),
            groups: self.groups().to_vec(),
            not_after: self.not_after().min(ca.not_after()),
            fingerprint: self.fingerprint.0,
        }
    }
}

impl fmt::Debug for MemberCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemberCertificate")
            .field("name", &self.name())
            .field("network_id", &self.network_id())
            .field("addresses", &self.addresses)
            .field("routes", &self.routes)
            .field("groups", &self.groups())
            .field("not_before", &self.not_before())
            .field("not_after", &self.not_after())
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::test_support::*;
    use super::super::MAX_CERT_LEN;
    use super::*;

    #[test]
    fn member_round_trips_and_verifies() {
        let (_, ca, cert) = member_fixture(1);
        let again = MemberCertificate::from_bytes(&cert.to_bytes()).unwrap();
        assert_eq!(again, cert);
        assert_eq!(MemberCertificate::from_pem(&cert.to_pem()).unwrap(), cert);
        assert!(cert.verify_signature(&ca));
        assert!(cert.to_bytes().len() <= MAX_CERT_LEN);
        let id = cert.peer_identity(&ca);
        assert_eq!(
            id.addresses,
            vec![
                "10.77.0.2/32".parse::<IpNetwork>().unwrap(),
                "fd77::2/128".parse().unwrap(),
                "10.88.0.0/24".parse().unwrap()
            ]
        );
        assert_eq!(id.not_after, cert.not_after().min(ca.not_after()));
    }

    #[test]
    fn issue_checks_ca_constraints() {
        let (key, ca) = ca_fixture(1);
        let (other_key, _) = ca_fixture(2);
        let p = member_params([9; 32]);
        assert_eq!(
            MemberCertificate::issue(&ca, &other_key, &p),
            Err(IssueError::KeyMismatch)
        );
        let mut q = p.clone();
        q.addresses.push("192.168.1.1".parse().unwrap());
        assert!(matches!(
            MemberCertificate::issue(&ca, &key, &q),
            Err(IssueError::AddressOutsidePrefixes(_))
        ));
        let mut q = p.clone();
        q.routes = vec!["10.99.0.0/24".parse().unwrap()];
        assert!(matches!(
            MemberCertificate::issue(&ca, &key, &q),
            Err(IssueError::RouteNotAllowed(_))
        ));
        let mut q = p.clone();
        q.not_after = ca.not_after() + 1;
        assert!(matches!(
            MemberCertificate::issue(&ca, &key, &q),
            Err(IssueError::OutlivesCa { .. })
        ));
        let mut q = p.clone();
        q.groups = (0..20)
            .map(|i| format!("group-with-a-long-name-{i:02}-{}", "x".repeat(30)))
            .collect();
        assert_eq!(
            MemberCertificate::issue(&ca, &key, &q),
            Err(IssueError::TooLarge)
        );
    }

    #[test]
    fn a_default_route_is_granted_only_when_the_ca_lists_it() {
        let (key, ca) = ca_fixture(1);
        let mut p = member_params([9; 32]);
        p.routes = vec!["0.0.0.0/0".parse().unwrap()];
        // The standard CA lists 10.88.0.0/16 only: no exits.
        assert!(!ca.allows_default_route());
        assert_eq!(
            MemberCertificate::issue(&ca, &key, &p),
            Err(IssueError::RouteNotAllowed("0.0.0.0/0".parse().unwrap()))
        );
        // A CA that lists the default route explicitly, next to its subnet route.
        let mut cp = ca_params();
        cp.routes.push("0.0.0.0/0".parse().unwrap());
        let exit_ca = CaCertificate::self_signed(&key, &cp).unwrap();
        assert!(exit_ca.allows_default_route());
        // An exit that is also the gateway of a subnet: the default route may lie over it.
        p.routes = vec![
            "0.0.0.0/0".parse().unwrap(),
            "10.88.0.0/24".parse().unwrap(),
        ];
        let cert = MemberCertificate::issue(&exit_ca, &key, &p).unwrap();
        assert_eq!(cert.routes(), &p.routes[..]);
        let again = MemberCertificate::from_bytes(&cert.to_bytes()).unwrap();
        assert_eq!(again, cert);
        // The CA's default route is IPv4 only: no ::/0.
        p.routes = vec!["::/0".parse().unwrap()];
        assert!(matches!(
            MemberCertificate::issue(&exit_ca, &key, &p),
            Err(IssueError::RouteNotAllowed(_))
        ));
        // Under the default route, a subnet outside the CA's other routes may be granted, but
        // never one inside the overlay prefixes (another member's address).
        for (route, ok) in [
            ("198.51.100.0/24", true),
            ("10.77.0.0/24", false),
            ("10.77.0.9/32", false),
            ("10.0.0.0/8", false),
        ] {
            p.routes = vec![route.parse().unwrap()];
            assert_eq!(
                MemberCertificate::issue(&exit_ca, &key, &p).is_ok(),
                ok,
                "{route}"
            );
        }
        // Two default routes of one family are a duplicate.
        p.routes = vec!["0.0.0.0/0".parse().unwrap(), "0.0.0.0/0".parse().unwrap()];
        assert!(matches!(
            MemberCertificate::issue(&exit_ca, &key, &p),
            Err(IssueError::InvalidField {
                field: "routes",
                ..
            })
        ));
    }

    #[test]
    fn issue_rejects_invalid_fields() {
        let (key, ca) = ca_fixture(1);
        let base = member_params([9; 32]);
        let cases: Vec<(&str, Mutation<MemberParams>)> = vec![
            ("name", Box::new(|p| p.name = String::new())),
            ("addresses", Box::new(|p| p.addresses.clear())),
            ("addresses", Box::new(|p| p.addresses.push(p.addresses[0]))),
            (
                "addresses",
                Box::new(|p| p.addresses = vec!["::".parse().unwrap()]),
            ),
            (
                "routes",
                Box::new(|p| p.routes.push("10.88.0.128/25".parse().unwrap())),
            ),
            (
                "routes",
                Box::new(|p| p.routes = vec!["10.88.0.1/24".parse().unwrap()]),
            ),
            ("groups", Box::new(|p| p.groups.push("bad group".into()))),
            ("groups", Box::new(|p| p.groups.push("web".into()))),
            ("public_key", Box::new(|p| p.public_key = [0; 32])),
            (
                "public_key",
                Box::new(|p| {
                    let mut one = [0u8; 32];
                    one[0] = 1; // the identity point: low order, not all-zero
                    p.public_key = one;
                }),
            ),
            ("not_after", Box::new(|p| p.not_after = p.not_before)),
        ];
        for (field, mutate) in cases {
            let mut p = base.clone();
            mutate(&mut p);
            match MemberCertificate::issue(&ca, &key, &p) {
                Err(IssueError::InvalidField { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn decode_rejects_truncation_trailing_and_versions() {
        let (_, _, cert) = member_fixture(1);
        let bytes = cert.to_bytes();
        for len in 0..bytes.len() {
            assert!(
                MemberCertificate::from_bytes(&bytes[..len]).is_err(),
                "len {len}"
            );
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(MemberCertificate::from_bytes(&long).is_err());
        let mut v2 = bytes.clone();
        v2[0] = 2;
        assert_eq!(
            MemberCertificate::from_bytes(&v2),
            Err(DecodeError::UnsupportedVersion(2))
        );
        assert!(matches!(
            MemberCertificate::from_bytes(&vec![1u8; MAX_CERT_LEN + 1]),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn decode_rejects_non_canonical_varint() {
        let (_, _, cert) = member_fixture(1);
        let bytes = cert.to_bytes();
        // Byte 2 is the varint length of the name ("member-a", 8): re-encode it as 0x88 0x00.
        let mut b = bytes[..2].to_vec();
        b.push(bytes[2] | 0x80);
        b.push(0x00);
        b.extend_from_slice(&bytes[3..]);
        assert!(matches!(
            MemberCertificate::from_bytes(&b),
            Err(DecodeError::NonCanonical | DecodeError::Malformed)
        ));
    }

    #[test]
    fn wrong_armour_is_refused() {
        let (_, ca, cert) = member_fixture(1);
        assert!(matches!(
            MemberCertificate::from_pem(&ca.to_pem()),
            Err(DecodeError::Armor(_))
        ));
        assert!(MemberCertificate::from_pem("hello").is_err());
        let pem = cert.to_pem();
        let cut: String = pem.lines().take(3).map(|l| format!("{l}\n")).collect();
        assert!(MemberCertificate::from_pem(&cut).is_err());
    }
}
