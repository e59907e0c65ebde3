//! The network CA: its signing key and its self-signed certificate.

use std::fmt;
use std::net::IpAddr;

use ed25519_dalek::SigningKey;
use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::codec::{
    self, is_default, overlaps, DecodeError, Envelope, Fingerprint, WireNet, KIND_CA,
};
use super::issue::IssueError;
use super::{armor, is_valid_name, NetworkId, MAX_PREFIXES, MAX_ROUTES};

/// The Ed25519 signing key of a network CA. Zeroised on drop; its `Debug` output hides the key.
#[derive(Clone)]
pub struct CaKey {
    key: SigningKey,
}

impl CaKey {
    /// The key derived from 32 caller-provided random bytes (the Ed25519 seed).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// The Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The armoured private key (label [`armor::CA_PRIVATE_KEY`]), for a 0600 file.
    pub fn to_pem(&self) -> Zeroizing<String> {
        let seed = Zeroizing::new(self.key.to_bytes());
        Zeroizing::new(armor::encode(armor::CA_PRIVATE_KEY, seed.as_slice()))
    }

    /// Parse an armoured private key.
    ///
    /// # Errors
    /// [`DecodeError::Armor`] for bad armour, [`DecodeError::InvalidField`] if it is not 32 bytes.
    pub fn from_pem(text: &str) -> Result<Self, DecodeError> {
        let bytes = Zeroizing::new(armor::decode(armor::CA_PRIVATE_KEY, text)?);
        let seed: Zeroizing<[u8; 32]> = Zeroizing::new(bytes.as_slice().try_into().map_err(
            |_| DecodeError::InvalidField {
                field: "ca_key",
                reason: "must be 32 bytes",
            },
        )?);
        Ok(Self::from_seed(*seed))
    }

    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.key
    }
}

impl fmt::Debug for CaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaKey")
            .field("public_key", &super::hex_encode(&self.public_key()))
            .finish_non_exhaustive()
    }
}

/// What goes into a new CA certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaParams {
    /// Network name ([`is_valid_name`]).
    pub name: String,
    /// Network id; keep it when rolling the CA over, pick 16 random bytes for a new network.
    pub network_id: NetworkId,
    /// Overlay prefixes member addresses must lie in (1 to [`MAX_PREFIXES`], non-overlapping).
    pub prefixes: Vec<IpNetwork>,
    /// Subnets members may be granted as gateway routes (up to [`MAX_ROUTES`]; must not overlap the
    /// prefixes or each other). A default route (`0.0.0.0/0`, `::/0`) is the exception, and only
    /// when listed explicitly: it may be granted to exit members (egress to the outside), lies
    /// over every other prefix and route of its family, and never lets a member claim an address
    /// inside the overlay prefixes (see [`CaCertificate::allows_route`]).
    pub routes: Vec<IpNetwork>,
    /// Start of validity (Unix seconds, inclusive).
    pub not_before: u64,
    /// End of validity (Unix seconds, exclusive).
    pub not_after: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CaBody {
    name: String,
    network_id: [u8; 16],
    prefixes: Vec<WireNet>,
    routes: Vec<WireNet>,
    not_before: u64,
    not_after: u64,
    public_key: [u8; 32],
}

/// A self-signed network CA certificate. Construct with [`CaCertificate::self_signed`] or decode
/// with [`CaCertificate::from_bytes`] / [`CaCertificate::from_pem`], which check every field and the
/// self-signature, so a value of this type is always well-formed.
#[derive(Clone, PartialEq, Eq)]
pub struct CaCertificate {
    env: Envelope<CaBody>,
    prefixes: Vec<IpNetwork>,
    routes: Vec<IpNetwork>,
    fingerprint: Fingerprint,
}

type FieldError = (&'static str, &'static str);

fn check_nets(
    nets: &[WireNet],
    field: &'static str,
    min: usize,
    max: usize,
) -> Result<Vec<IpNetwork>, FieldError> {
    if nets.len() < min {
        return Err((field, "too few entries"));
    }
    if nets.len() > max {
        return Err((field, "too many entries"));
    }
    let out = nets
        .iter()
        .map(|n| n.to_net().ok_or((field, "not a normalised prefix")))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, a) in out.iter().enumerate() {
        // Two default routes of one family are a duplicate; a default route over other entries is
        // what it is for.
        if out
            .iter()
            .skip(i + 1)
            .any(|b| overlaps(a, b) && (a == b || !(is_default(a) || is_default(b))))
        {
            return Err((field, "entries overlap"));
        }
    }
    Ok(out)
}

fn check_body(body: &CaBody) -> Result<(Vec<IpNetwork>, Vec<IpNetwork>), FieldError> {
    if !is_valid_name(&body.name) {
        return Err((
            "name",
            "1-64 characters of letters, digits, '.', '_', '-', starting with a letter or digit",
        ));
    }
    let prefixes = check_nets(&body.prefixes, "prefixes", 1, MAX_PREFIXES)?;
    let routes = check_nets(&body.routes, "routes", 0, MAX_ROUTES)?;
    if routes
        .iter()
        .any(|r| !is_default(r) && prefixes.iter().any(|p| overlaps(r, p)))
    {
        return Err(("routes", "must not overlap the overlay prefixes"));
    }
    if body.not_before >= body.not_after {
        return Err(("not_after", "must be later than not_before"));
    }
    Ok((prefixes, routes))
}

impl CaCertificate {
    /// Create and self-sign a CA certificate for `params` with `key`.
    ///
    /// # Errors
    /// [`IssueError::InvalidField`] names the parameter that is invalid.
    pub fn self_signed(key: &CaKey, params: &CaParams) -> Result<Self, IssueError> {
        let to_wire = |nets: &[IpNetwork], field: &'static str| {
            nets.iter()
                .map(|n| {
                    WireNet::from_net(n).ok_or(IssueError::InvalidField {
                        field,
                        reason: "not a normalised prefix (host bits set)",
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let body = CaBody {
            name: params.name.clone(),
            network_id: params.network_id.0,
            prefixes: to_wire(&params.prefixes, "prefixes")?,
            routes: to_wire(&params.routes, "routes")?,
            not_before: params.not_before,
            not_after: params.not_after,
            public_key: key.public_key(),
        };
        check_body(&body).map_err(|(field, reason)| IssueError::InvalidField { field, reason })?;
        let env = codec::seal(KIND_CA, body, key.signing_key()).ok_or(IssueError::TooLarge)?;
        Self::from_envelope(env).map_err(|_| IssueError::TooLarge)
    }

    fn from_envelope(env: Envelope<CaBody>) -> Result<Self, DecodeError> {
        let (prefixes, routes) = check_body(&env.body)
            .map_err(|(field, reason)| DecodeError::InvalidField { field, reason })?;
        if !env.verify(&env.body.public_key) {
            return Err(DecodeError::BadSelfSignature);
        }
        let fingerprint = env.fingerprint();
        Ok(Self {
            env,
            prefixes,
            routes,
            fingerprint,
        })
    }

    /// Decode the binary form, checking every field and the self-signature.
    ///
    /// # Errors
    /// [`DecodeError`] says why; never panics.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::from_envelope(codec::open(KIND_CA, bytes)?)
    }

    /// Decode the armoured form (label [`armor::CA_CERTIFICATE`]).
    ///
    /// # Errors
    /// [`DecodeError`] says why; never panics.
    pub fn from_pem(text: &str) -> Result<Self, DecodeError> {
        Self::from_bytes(&armor::decode(armor::CA_CERTIFICATE, text)?)
    }

    /// The canonical binary form.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.env.to_bytes()
    }

    /// The armoured form.
    pub fn to_pem(&self) -> String {
        armor::encode(armor::CA_CERTIFICATE, &self.to_bytes())
    }

    /// Network name.
    pub fn name(&self) -> &str {
        &self.env.body.name
    }

    /// Network id.
    pub fn network_id(&self) -> NetworkId {
        NetworkId(self.env.body.network_id)
    }

    /// Overlay prefixes.
    pub fn prefixes(&self) -> &[IpNetwork] {
        &self.prefixes
    }

    /// Subnets that may be granted to members as routes.
    pub fn routes(&self) -> &[IpNetwork] {
        &self.routes
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

    /// Ed25519 public key of the CA.
    pub fn public_key(&self) -> [u8; 32] {
        self.env.body.public_key
    }

    /// Fingerprint (see the module docs).
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// Whether `addr` lies in one of the overlay prefixes.
    pub fn allows_address(&self, addr: IpAddr) -> bool {
        self.prefixes.iter().any(|p| p.contains(addr))
    }

    /// Whether `route` lies entirely inside one of the CA's routes. Under a default route of the
    /// CA, a route other than the default itself must also stay clear of the overlay prefixes: a
    /// member is never granted the addresses of other members.
    pub fn allows_route(&self, route: &IpNetwork) -> bool {
        self.routes.iter().any(|r| codec::net_within(route, r))
            && (is_default(route) || !self.prefixes.iter().any(|p| overlaps(route, p)))
    }

    /// Whether the CA lets members be granted a default route (`0.0.0.0/0` or `::/0`): exits.
    pub fn allows_default_route(&self) -> bool {
        self.routes.iter().any(is_default)
    }

    /// Whether `key` is this CA's signing key.
    pub fn matches_key(&self, key: &CaKey) -> bool {
        key.public_key() == self.public_key()
    }

    pub(crate) fn envelope_verifies<B>(&self, env: &Envelope<B>) -> bool {
        env.verify(&self.env.body.public_key)
    }
}

impl fmt::Debug for CaCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaCertificate")
            .field("name", &self.name())
            .field("network_id", &self.network_id())
            .field("prefixes", &self.prefixes)
            .field("routes", &self.routes)
            .field("not_before", &self.not_before())
            .field("not_after", &self.not_after())
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn ca_round_trips_binary_and_pem() {
        let (key, ca) = ca_fixture(1);
        let again = CaCertificate::from_bytes(&ca.to_bytes()).unwrap();
        assert_eq!(again, ca);
        let again = CaCertificate::from_pem(&ca.to_pem()).unwrap();
        assert_eq!(again, ca);
        assert!(ca.matches_key(&key));
        assert_eq!(ca.name(), "testnet");
        assert!(ca.allows_address("10.77.1.2".parse().unwrap()));
        assert!(ca.allows_address("fd77::9".parse().unwrap()));
        assert!(!ca.allows_address("10.78.0.1".parse().unwrap()));
        assert!(ca.allows_route(&"10.88.1.0/24".parse().unwrap()));
        assert!(!ca.allows_route(&"10.0.0.0/8".parse().unwrap()));
    }

    #[test]
    fn ca_key_pem_round_trip_and_debug_hides_secret() {
        let key = CaKey::from_seed([7; 32]);
        let again = CaKey::from_pem(&key.to_pem()).unwrap();
        assert_eq!(again.public_key(), key.public_key());
        let dbg = format!("{key:?}");
        assert!(!dbg.contains(&super::super::hex_encode(&[7; 32])));
        assert!(CaKey::from_pem(&armor::encode(armor::CA_PRIVATE_KEY, &[1; 31])).is_err());
    }

    #[test]
    fn ca_rejects_bad_params() {
        let key = CaKey::from_seed([1; 32]);
        let base = ca_params();
        let cases: Vec<(&str, Mutation<CaParams>)> = vec![
            ("name", Box::new(|p| p.name = "bad name".into())),
            ("prefixes", Box::new(|p| p.prefixes.clear())),
            (
                "prefixes",
                Box::new(|p| p.prefixes.push("10.77.3.0/24".parse().unwrap())),
            ),
            (
                "prefixes",
                Box::new(|p| p.prefixes[0] = "10.77.0.1/16".parse().unwrap()),
            ),
            (
                "routes",
                Box::new(|p| p.routes.push("10.77.5.0/24".parse().unwrap())),
            ),
            ("not_after", Box::new(|p| p.not_after = p.not_before)),
        ];
        for (field, mutate) in cases {
            let mut p = base.clone();
            mutate(&mut p);
            match CaCertificate::self_signed(&key, &p) {
                Err(IssueError::InvalidField { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_default_route_may_lie_over_the_prefixes_and_routes() {
        let key = CaKey::from_seed([1; 32]);
        let mut p = ca_params();
        p.routes.push("0.0.0.0/0".parse().unwrap());
        p.routes.push("::/0".parse().unwrap());
        let ca = CaCertificate::self_signed(&key, &p).unwrap();
        assert_eq!(CaCertificate::from_bytes(&ca.to_bytes()).unwrap(), ca);
        assert!(ca.allows_default_route());
        assert!(ca.allows_route(&"0.0.0.0/0".parse().unwrap()));
        assert!(ca.allows_route(&"::/0".parse().unwrap()));
        assert!(ca.allows_route(&"203.0.113.0/24".parse().unwrap()));
        assert!(!ca.allows_route(&"10.77.1.0/24".parse().unwrap()));
        assert!(!ca.allows_route(&"fd77::/64".parse().unwrap()));
        // Still refused: a default route twice, an ordinary route over the prefixes.
        let mut twice = p.clone();
        twice.routes.push("0.0.0.0/0".parse().unwrap());
        let mut over = ca_params();
        over.routes.push("10.0.0.0/8".parse().unwrap());
        for bad in [twice, over] {
            assert!(matches!(
                CaCertificate::self_signed(&key, &bad),
                Err(IssueError::InvalidField {
                    field: "routes",
                    ..
                })
            ));
        }
    }

    #[test]
    fn ca_rejects_tampering_and_wrong_kind() {
        let (_, ca) = ca_fixture(1);
        let bytes = ca.to_bytes();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            assert!(CaCertificate::from_bytes(&b).is_err(), "byte {i}");
        }
        let (_, _, member) = member_fixture(1);
        assert!(matches!(
            CaCertificate::from_bytes(&member.to_bytes()),
            Err(DecodeError::WrongKind { .. })
        ));
        assert!(matches!(
            CaCertificate::from_pem(&member.to_pem()),
            Err(DecodeError::Armor(_))
        ));
    }
}
