//! [`LocalNetwork`]: a throwaway network of embedded members in one process, on loopback UDP —
//! for examples, tests, benchmarks and `privnet demo`. Not for production: its CA key lives in
//! memory and dies with it.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnetwork::IpNetwork;

use super::error::StartError;
use super::node::EmbeddedNode;
use crate::config::{NodeConfig, PeerConfig};
use crate::credential::CredentialVerifier;
use crate::crypto::StaticSecret;
use crate::identity::{
    CaCertificate, CaKey, CaParams, CertVerifier, MemberCertificate, MemberParams, NetworkId,
    NoiseKeyPair, TrustStore,
};
use crate::io::config::{DriverConfig, Identity};
use crate::io::driver::random_seed;
use crate::io::error::DriverError;
use crate::policy::CompiledPolicy;
use crate::stack::StackConfig;

const DAY: u64 = 86_400;

/// A member to create: its name, groups and host number.
#[derive(Clone, Debug)]
struct Spec {
    name: String,
    groups: Vec<String>,
}

/// Builds a [`LocalNetwork`]: [`LocalNetwork::builder`].
#[derive(Debug)]
#[must_use]
pub struct LocalNetworkBuilder {
    name: String,
    prefix: Ipv4Addr,
    members: Vec<Spec>,
    stack: StackConfig,
    underlay_mtu: Option<u16>,
    policy: Option<Arc<CompiledPolicy>>,
}

impl LocalNetworkBuilder {
    /// Add a member named `name` in `groups`; members get `10.x.0.2`, `.3`, ... in the order
    /// they are added.
    pub fn member(mut self, name: &str, groups: &[&str]) -> Self {
        self.members.push(Spec {
            name: name.to_owned(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        });
        self
    }

    /// The network's /16 (default `10.77.0.0`; give each network of one process its own).
    pub fn prefix(mut self, prefix: Ipv4Addr) -> Self {
        self.prefix = prefix;
        self
    }

    /// Tune every member's stack.
    pub fn stack(mut self, stack: StackConfig) -> Self {
        self.stack = stack;
        self
    }

    /// The access policy every member enforces (docs/POLICY.md; default: none, members talk
    /// freely). Rules name members by their certificates' names and groups, as given to
    /// [`member`](Self::member). A `reject` answers a refused TCP connection with a reset, so
    /// [`EmbeddedNode::tcp_connect`] fails at once with [`NetError::Refused`](super::NetError);
    /// a `deny` drops the packets (the connect times out).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use privnet_core::io::embedded::{LocalNetwork, NetError};
    /// use privnet_core::policy::{compile, parse_policy};
    ///
    /// let text = r#"
    /// default = "deny"
    /// [[application]]
    /// id = "no-ssh"
    /// action = "reject"
    /// from = "any"
    /// to = "any"
    /// proto = "tcp"
    /// ports = [22]
    /// "#;
    /// let policy = compile(&parse_policy(text, "policy.toml")?, "policy.toml")?;
    /// let net = LocalNetwork::builder("docnet")
    ///     .member("a", &[])
    ///     .member("b", &[])
    ///     .policy(Arc::new(policy))
    ///     .start()
    ///     .await?;
    /// let _ssh = net.node("b").unwrap().tcp_listen(22)?;
    /// let refused = net.node("a").unwrap().tcp_connect("b:22").await;
    /// assert!(matches!(refused, Err(NetError::Refused)));
    /// # Ok(()) }
    /// ```
    pub fn policy(mut self, policy: Arc<CompiledPolicy>) -> Self {
        self.policy = Some(policy);
        self
    }

    /// The underlay MTU (default 1500; loopback carries up to 9216 here).
    pub fn underlay_mtu(mut self, mtu: u16) -> Self {
        self.underlay_mtu = Some(mtu);
        self
    }

    /// Make the CA and the certificates, and start every member on `127.0.0.1`, each knowing
    /// every other one (key, address, endpoint).
    ///
    /// # Errors
    /// [`StartError`] if a member does not start (no free port, OS randomness).
    pub async fn start(self) -> Result<LocalNetwork, StartError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        let [a, b, ..] = self.prefix.octets();
        let prefix = IpNetwork::new(IpAddr::V4(Ipv4Addr::new(a, b, 0, 0)), 16)
            .map_err(|e| StartError::Setup(e.to_string()))?;
        let ca_key = CaKey::from_seed(random_seed()?);
        let network_id = {
            let s = random_seed()?;
            let mut id = [0u8; 16];
            id.copy_from_slice(&s[..16]);
            NetworkId(id)
        };
        let ca = CaCertificate::self_signed(
            &ca_key,
            &CaParams {
                name: self.name.clone(),
                network_id,
                prefixes: vec![prefix],
                routes: vec![],
                not_before: now.saturating_sub(DAY),
                not_after: now + 30 * DAY,
            },
        )
        .map_err(|e| StartError::Setup(e.to_string()))?;
        let psk = random_seed()?;
        // Members, keys and certificates.
        let mut made = Vec::new();
        for (i, spec) in self.members.iter().enumerate() {
            let host = u8::try_from(i + 2).unwrap_or(u8::MAX);
            let addr = Ipv4Addr::new(a, b, 0, host);
            let keys = NoiseKeyPair::from_random(random_seed()?);
            let cert = MemberCertificate::issue(
                &ca,
                &ca_key,
                &MemberParams {
                    name: spec.name.clone(),
                    addresses: vec![IpAddr::V4(addr)],
                    routes: vec![],
                    groups: spec.groups.clone(),
                    public_key: keys.public(),
                    not_before: now.saturating_sub(DAY),
                    not_after: now + 7 * DAY,
                },
            )
            .map_err(|e| StartError::Setup(e.to_string()))?;
            // Reserve a port so that every member knows every endpoint before any starts.
            let port = reserve_port()?;
            made.push((spec.clone(), addr, keys, cert, port));
        }
        let mut nodes = HashMap::new();
        let mut certificates = HashMap::new();
        let mut order = Vec::new();
        for (spec, addr, keys, cert, port) in &made {
            let verifier = Arc::new(CertVerifier::new(
                TrustStore::new(vec![ca.clone()]).map_err(|e| StartError::Setup(e.to_string()))?,
            ));
            let dyn_verifier: Arc<dyn CredentialVerifier> = verifier.clone();
            let mut node_cfg = NodeConfig::new(
                StaticSecret::from_bytes(*keys.secret()),
                psk,
                network_id.0,
                dyn_verifier,
            );
            node_cfg.credential(cert.to_bytes());
            node_cfg.overlay_prefixes = vec![prefix];
            node_cfg.policy = self.policy.clone();
            let mut cfg = DriverConfig::new(
                self.name.clone(),
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), *port),
            );
            cfg.addresses = vec![IpNetwork::new(IpAddr::V4(*addr), 16)
                .map_err(|e| StartError::Setup(e.to_string()))?];
            cfg.peer_names = made
                .iter()
                .filter(|(other, ..)| other.name != spec.name)
                .map(|(other, _, okeys, _, _)| (okeys.public(), other.name.clone()))
                .collect();
            if let Some(mtu) = self.underlay_mtu {
                cfg.underlay_mtu = mtu;
            }
            let mut builder = EmbeddedNode::builder(node_cfg, cfg)
                .identity(Identity {
                    verifier,
                    certificate: cert.clone(),
                })
                .stack(self.stack.clone());
            for (other, oaddr, okeys, _, oport) in &made {
                if other.name == spec.name {
                    continue;
                }
                let host = IpNetwork::new(IpAddr::V4(*oaddr), 32)
                    .map_err(|e| StartError::Setup(e.to_string()))?;
                builder = builder.peer(
                    PeerConfig::new(okeys.public())
                        .allowed_ip(host)
                        .endpoint(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), *oport)),
                );
            }
            let node = builder.start().await?;
            order.push(spec.name.clone());
            nodes.insert(spec.name.clone(), node);
            certificates.insert(spec.name.clone(), cert.clone());
        }
        Ok(LocalNetwork {
            name: self.name,
            ca,
            ca_key,
            psk,
            nodes,
            certificates,
            order,
        })
    }
}

/// A free UDP port on 127.0.0.1 (bound and released at once: another process could take it
/// before the member binds it, which this throwaway network accepts).
fn reserve_port() -> Result<u16, StartError> {
    let s = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|source| {
        StartError::Driver(DriverError::Bind {
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            source,
        })
    })?;
    s.local_addr().map(|a| a.port()).map_err(|source| {
        StartError::Driver(DriverError::Bind {
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            source,
        })
    })
}

/// A throwaway network: a CA made in memory, one certificate per member, and one
/// [`EmbeddedNode`] per member on loopback UDP, all configured as each other's peers.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use privnet_core::io::embedded::LocalNetwork;
///
/// let net = LocalNetwork::builder("docnet").member("a", &[]).member("b", &["ops"]).start().await?;
/// let b = net.node("b").unwrap();
/// let socket = b.udp_bind(9000)?;
/// let a_socket = net.node("a").unwrap().udp_bind(0)?;
/// a_socket.send_to(b"hi", "b:9000").await?;
/// let mut buf = [0u8; 16];
/// let (n, from) = socket.recv_from(&mut buf).await?;
/// assert_eq!(&buf[..n], b"hi");
/// assert_eq!(b.peer_identity(from.ip()).unwrap().name, "a");
/// # Ok(()) }
/// ```
pub struct LocalNetwork {
    name: String,
    ca: CaCertificate,
    ca_key: CaKey,
    psk: [u8; 32],
    nodes: HashMap<String, EmbeddedNode>,
    certificates: HashMap<String, MemberCertificate>,
    order: Vec<String>,
}

impl std::fmt::Debug for LocalNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalNetwork")
            .field("name", &self.name)
            .field("members", &self.order)
            .finish_non_exhaustive()
    }
}

impl LocalNetwork {
    /// A builder for a network called `name`.
    pub fn builder(name: &str) -> LocalNetworkBuilder {
        LocalNetworkBuilder {
            name: name.to_owned(),
            prefix: Ipv4Addr::new(10, 77, 0, 0),
            members: Vec::new(),
            stack: StackConfig::default(),
            underlay_mtu: None,
            policy: None,
        }
    }

    /// The network's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The member called `name`.
    pub fn node(&self, name: &str) -> Option<&EmbeddedNode> {
        self.nodes.get(name)
    }

    /// Every member, in the order they were added.
    pub fn nodes(&self) -> impl Iterator<Item = (&str, &EmbeddedNode)> {
        self.order
            .iter()
            .filter_map(|n| self.nodes.get(n).map(|e| (n.as_str(), e)))
    }

    /// The certificate of the member called `name`.
    pub fn certificate(&self, name: &str) -> Option<&MemberCertificate> {
        self.certificates.get(name)
    }

    /// The CA certificate.
    pub fn ca(&self) -> &CaCertificate {
        &self.ca
    }

    /// The CA key (to issue more certificates, e.g. for a member started by hand).
    pub fn ca_key(&self) -> &CaKey {
        &self.ca_key
    }

    /// The network's pre-shared key.
    pub fn psk(&self) -> [u8; 32] {
        self.psk
    }

    /// Stop every member.
    pub async fn shutdown(self) {
        for (_, n) in self.nodes {
            let _ = n.shutdown().await;
        }
    }
}
