//! SIGHUP and policy-file reloads of a running `privnet up`: read and validate the files off the
//! drivers' thread, diff them against what runs, send each driver a typed `Reload` (PSKs, peers,
//! trust, windows, the compiled policy) and report the keys that need a restart.

use super::*;

impl Supervisor {
    /// Read, validate and apply the configuration files at `paths` (see [`Self::apply`]). The
    /// files are read on the blocking pool, never on the drivers' thread.
    ///
    /// # Errors
    /// Every problem of the files; then nothing is applied and the running configuration stays.
    pub async fn reload(&mut self, paths: &[PathBuf]) -> Result<ReloadReport, Vec<Problem>> {
        let paths = paths.to_vec();
        let loaded =
            tokio::task::spawn_blocking(move || config::load(&paths, unix_now().as_secs()))
                .await
                .map_err(|e| {
                    vec![Problem {
                        file: PathBuf::new(),
                        key: String::new(),
                        line: None,
                        expected: format!("a reload that finishes (it failed: {e})"),
                    }]
                })?;
        let new = match loaded {
            Ok(new) => new,
            Err(problems) => {
                self.policy_problems(&problems);
                return Err(problems);
            }
        };
        Ok(self.apply(new).await)
    }

    /// A refused reload: the problems of a network's policy file are shown with its status (the
    /// running policy stays).
    pub(super) fn policy_problems(&self, problems: &[Problem]) {
        for n in &self.networks {
            let Some(file) = &n.policy.file else { continue };
            let mine: Vec<String> = problems
                .iter()
                .filter(|p| &p.file == file)
                .map(ToString::to_string)
                .collect();
            if mine.is_empty() {
                continue;
            }
            tracing::error!(network = %n.name, policy = %file.display(),
                "policy refused, keeping the running one (hash {}): {}",
                n.policy.hash.map_or_else(|| "none".to_owned(), hex), mine.join("; "));
            if let Ok(mut shown) = n.policy_shown.lock() {
                shown.refused = mine;
            }
        }
    }

    /// Look at every network's policy file ([`POLL_EVERY`] by `privnet up`, on the blocking
    /// pool) and apply a new version that has settled (see [`crate::policy_watch`]): compiled
    /// first; a policy that does not compile is refused (logged at error with file and line,
    /// listed in the report and the status) and the running one stays.
    pub async fn poll_policies(&mut self) -> ReloadReport {
        let mut report = ReloadReport::default();
        let watches: Vec<Watch> = self.networks.iter().map(|n| n.policy.clone()).collect();
        let Ok(polled) = tokio::task::spawn_blocking(move || {
            watches
                .into_iter()
                .map(|mut w| {
                    let found = w.poll();
                    (w, found)
                })
                .collect::<Vec<_>>()
        })
        .await
        else {
            return report;
        };
        for (i, (watch, found)) in polled.into_iter().enumerate() {
            let Some(n) = self.networks.get_mut(i) else {
                break;
            };
            // Only the file's state: the policy in force is changed by `install_policy` alone.
            n.policy.checked = watch.checked;
            n.policy.seen = watch.seen;
            match found {
                Found::Nothing => {}
                Found::Changed(Ok(policy)) => {
                    self.install_policy(i, Some(&policy), "file changed", &mut report)
                        .await;
                }
                Found::Changed(Err(problems)) => {
                    report.refused.extend(
                        problems
                            .iter()
                            .map(|p| format!("network {:?}: {p}", n.name)),
                    );
                    self.policy_problems(&problems);
                }
            }
        }
        report
    }

    /// Look at the block-list files of every exposure and install new versions that settled
    /// (see [`crate::exposures`]).
    pub async fn poll_block_lists(&mut self) {
        for n in &mut self.networks {
            n.exposures.poll(&n.name).await;
        }
    }

    /// Install `policy` (or none) in network `i` if it differs from the one in force (by hash):
    /// log and audit it with the number of flows cut, and say so in `report`.
    pub(super) async fn install_policy(
        &mut self,
        i: usize,
        policy: Option<&PolicySettings>,
        trigger: &'static str,
        report: &mut ReloadReport,
    ) {
        let Some(n) = self.networks.get_mut(i) else {
            return;
        };
        let hash = policy.map(|p| p.compiled.hash());
        let file = policy.map(|p| p.file.clone());
        if let Ok(mut shown) = n.policy_shown.lock() {
            shown.refused.clear();
            shown.file.clone_from(&file);
        }
        if hash == n.policy.hash {
            if file != n.policy.file {
                // The same rules from another file: follow the new file from now on.
                n.policy = Watch::of(policy);
            }
            return;
        }
        let previous = n.policy.hash.map_or_else(|| "none".to_owned(), hex);
        let cut = match n
            .handle
            .set_policy(policy.map(|p| p.compiled.clone()))
            .await
        {
            Ok(cut) => cut,
            Err(e) => {
                tracing::error!(network = %n.name, "policy not installed: {e}");
                report
                    .refused
                    .push(format!("network {:?}: policy: {e}", n.name));
                return;
            }
        };
        if file != n.policy.file {
            n.policy = Watch::of(policy);
        } else {
            n.policy.hash = hash;
        }
        let applied = match policy {
            Some(p) => {
                tracing::info!(target: "privnet::audit", event = "policy_applied", network = %n.name,
                    file = %p.file.display(), hash = %p.hash(), previous_hash = %previous,
                    rules = p.rule_count(), flows_cut = cut, trigger,
                    "access policy applied ({trigger}): {}; {cut} flow(s) cut", p.describe());
                format!(
                    "policy {} ({} rules, hash {}): {cut} flow(s) cut",
                    p.file.display(),
                    p.rule_count(),
                    p.hash()
                )
            }
            None => {
                tracing::warn!(target: "privnet::audit", event = "policy_applied", network = %n.name,
                    file = "", hash = "none", previous_hash = %previous, rules = 0usize,
                    flows_cut = cut, trigger,
                    "access policy removed ({trigger}): members of the network talk freely");
                "policy removed: members talk freely".to_owned()
            }
        };
        report
            .applied
            .entry(n.name.clone())
            .or_default()
            .push(applied);
    }

    /// Apply a validated configuration to the running networks (matched by network name): the
    /// access policy (installed when its hash changed; flows it no longer allows are cut), the
    /// trust store and revocation list, the PSKs, the peers (added, removed, and re-added when
    /// their entry changed — other peers' sessions are not touched), the busy-poll and batch-hold
    /// windows, and the log level. Every other change (listen address, TUN device, cipher, own
    /// key or certificate, the CAs' prefixes and routes, metrics, status socket, log format, a
    /// new network) is logged at warn and listed as needing a restart; the running value stays.
    pub async fn apply(&mut self, new: Config) -> ReloadReport {
        let mut report = ReloadReport::default();
        let process = self.process_changes(&new);
        self.apply_log_level(&new.log, &mut report);
        for net in &new.networks {
            if !self.networks.iter().any(|n| n.name == net.network) {
                tracing::warn!(network = %net.network, file = %net.file.display(),
                    "reload: a new network takes a restart to start");
                report.refused.push(format!(
                    "network {:?} ({}): new; a restart starts it",
                    net.network,
                    net.file.display()
                ));
            }
        }
        for i in 0..self.networks.len() {
            let name = self.networks[i].name.clone();
            let Some(net) = new.networks.iter().find(|n| n.network == name) else {
                tracing::warn!(network = %name,
                    "reload: network no longer configured; it keeps running until a restart");
                let keys = vec!["node.network".to_owned()];
                self.set_restart_needed(i, &keys, &process, &mut report);
                continue;
            };
            let keys = self.restart_keys(i, net);
            self.set_restart_needed(i, &keys, &process, &mut report);
            self.install_policy(i, net.policy.as_ref(), "reload", &mut report)
                .await;
            self.apply_network(i, net, &mut report).await;
        }
        report
    }

    /// Changed process-wide keys (they need a restart), logged at warn.
    pub(super) fn process_changes(&self, new: &Config) -> Vec<String> {
        let mut keys = Vec::new();
        let mut cmp = |key: &str, old: String, now: String| {
            if old != now {
                tracing::warn!(key, running = %old, configured = %now,
                    "reload: {key} changed; it takes effect only after a restart (keeping {old})");
                keys.push(key.to_owned());
            }
        };
        cmp(
            "metrics.listen",
            format!("{:?}", self.metrics.listen),
            format!("{:?}", new.metrics.listen),
        );
        cmp(
            "status.socket",
            format!("{:?}", self.status.socket),
            format!("{:?}", new.status.socket),
        );
        cmp(
            "log.format",
            format!("{:?}", self.log.format),
            format!("{:?}", new.log.format),
        );
        cmp(
            "log.audit",
            format!("{:?}", self.log.audit),
            format!("{:?}", new.log.audit),
        );
        keys
    }

    pub(super) fn apply_log_level(&mut self, new: &LogSection, report: &mut ReloadReport) {
        if new.level == self.log.level {
            return;
        }
        let applied = match &self.log_control {
            Some(c) if c.env_override() => {
                tracing::warn!("reload: log.level changed, but PRIVNET_LOG decides the level; unset it to use log.level");
                false
            }
            Some(c) => c.set_level(new.level),
            None => false,
        };
        if applied {
            tracing::info!(level = ?new.level, "reload: log level changed");
            self.log.level = new.level;
            for n in &self.networks {
                report
                    .applied
                    .entry(n.name.clone())
                    .or_default()
                    .push(format!("log.level {:?}", new.level).to_lowercase());
            }
        }
    }

    /// The keys of network `i` that differ from `net` and need a restart, logged at warn.
    pub(super) fn restart_keys(&self, i: usize, net: &NetworkConfig) -> Vec<String> {
        let n = &self.networks[i];
        n.fixed
            .changed(&Fixed::of(net))
            .into_iter()
            .map(|(key, old, new)| {
                tracing::warn!(network = %n.name, key, running = %old, configured = %new,
                    "reload: {key} changed; it takes effect only after a restart (keeping the running value)");
                key.to_owned()
            })
            .collect()
    }

    pub(super) fn set_restart_needed(
        &self,
        i: usize,
        keys: &[String],
        process: &[String],
        report: &mut ReloadReport,
    ) {
        let n = &self.networks[i];
        let all: Vec<String> = keys.iter().chain(process).cloned().collect();
        if let Ok(mut shown) = n.restart_needed.lock() {
            shown.clone_from(&all);
        }
        if !all.is_empty() {
            report.restart_needed.insert(n.name.clone(), all);
        }
    }

    /// Send network `i` what changed live in `net`.
    pub(super) async fn apply_network(
        &mut self,
        i: usize,
        net: &NetworkConfig,
        report: &mut ReloadReport,
    ) {
        let name = self.networks[i].name.clone();
        let mut applied = vec!["trust store and revocation list".to_owned()];
        let new_psks = psks_of(net);
        let psks = (new_psks != **self.networks[i].psks).then(|| {
            applied.push(format!(
                "network PSKs (1 sent with, {} more accepted)",
                new_psks.len() - 1
            ));
            Psks {
                primary: Zeroizing::new(new_psks[0]),
                accepted: Zeroizing::new(new_psks[1..].to_vec()),
            }
        });
        let old = &self.networks[i].peers;
        let remove_peers: Vec<[u8; 32]> = old
            .iter()
            .filter(|p| !net.peers.iter().any(|q| q.public_key == p.public_key))
            .map(|p| {
                applied.push(format!("peer {} removed", p.name));
                p.public_key
            })
            .collect();
        let changed: Vec<PeerConfig> = net
            .peers
            .iter()
            .filter(
                |q| match old.iter().find(|p| p.public_key == q.public_key) {
                    None => {
                        applied.push(format!("peer {} added", q.name));
                        true
                    }
                    Some(p) if p != *q => {
                        applied.push(format!("peer {} changed (re-added)", q.name));
                        true
                    }
                    Some(_) => false,
                },
            )
            .cloned()
            .collect();
        let add_peers = match resolve_peers(name.clone(), changed).await {
            Ok(peers) => peers,
            Err(e) => {
                tracing::error!(network = %name, "reload: {e}; peers not changed");
                report.refused.push(format!("network {name:?}: {e}"));
                return;
            }
        };
        let reload = Reload {
            trust: Some(net.identity.trust.clone()),
            // The driver keeps what the directory revoked (it adds it to this store).
            directory_revocations: None,
            busy_poll: Some(net.tun.busy_poll),
            batch_hold: Some(net.tun.batch_hold),
            psks,
            remove_peers,
            add_peers,
        };
        let n = &mut self.networks[i];
        let mut trust_taken = true;
        match n.handle.reload(reload).await {
            Ok(()) => {}
            // Logged by the driver; the rest of the reload was applied.
            Err(e @ ControlError::TrustStore(_)) => {
                trust_taken = false;
                report.refused.push(format!("network {name:?}: {e}"));
            }
            Err(e @ ControlError::PeerRefused { .. }) => {
                report.refused.push(format!("network {name:?}: {e}"));
            }
            Err(e) => {
                tracing::error!(network = %name, "reload: {e}");
                report.refused.push(format!("network {name:?}: {e}"));
                return;
            }
        }
        // The directory checks records and bundles against the same trust store as the driver.
        if let (true, Some(d)) = (trust_taken, &n.directory) {
            d.set_trust(net.identity.trust.clone());
        }
        n.peers.clone_from(&net.peers);
        n.exposures.reloaded(&name, &net.exposures);
        n.psks = Zeroizing::new(new_psks);
        tracing::info!(network = %name, "reload applied: {}", applied.join("; "));
        report.applied.entry(name).or_default().extend(applied);
    }
}
