//! One-shot directory operations for tools (`privnet directory members | publish-policy |
//! revoke`): read the network's prefix, read one key, write one key. The decisions — what a
//! record says, whether a bundle verifies — stay with the callers and the sans-IO
//! [`crate::directory`].

use std::time::Duration;

use etcd_client::{Client, ConnectOptions, GetOptions};
use zeroize::Zeroizing;

use crate::directory::{KeyValue, Revision};

/// Longest wait for the whole operation.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Where the directory is: endpoints and optional etcd credentials.
#[derive(Clone, Debug)]
pub struct DirectoryAccess {
    /// etcd endpoints (`http://HOST:PORT`).
    pub endpoints: Vec<String>,
    /// etcd user and password.
    pub credentials: Option<(String, Zeroizing<String>)>,
}

impl DirectoryAccess {
    async fn client(&self) -> Result<Client, String> {
        let mut opts = ConnectOptions::new().with_connect_timeout(Duration::from_secs(3));
        if let Some((u, p)) = &self.credentials {
            opts = opts.with_user(u.clone(), p.as_str());
        }
        Client::connect(self.endpoints.clone(), Some(opts))
            .await
            .map_err(|e| format!("etcd at {}: {e}", self.endpoints.join(",")))
    }

    /// Every key under `prefix` and the revision of the read.
    ///
    /// # Errors
    /// etcd unreachable or refusing, in words.
    pub async fn read_prefix(&self, prefix: &str) -> Result<(Revision, Vec<KeyValue>), String> {
        let work = async {
            let mut c = self.client().await?;
            let resp = c
                .get(prefix, Some(GetOptions::new().with_prefix()))
                .await
                .map_err(|e| format!("reading {prefix}: {e}"))?;
            let revision = resp.header().map_or(0, |h| h.revision());
            let kvs = resp
                .kvs()
                .iter()
                .filter_map(|kv| {
                    Some(KeyValue {
                        key: kv.key_str().ok()?.to_owned(),
                        value: kv.value().to_vec(),
                        mod_revision: kv.mod_revision(),
                    })
                })
                .collect();
            Ok((revision, kvs))
        };
        tokio::time::timeout(TIMEOUT, work)
            .await
            .map_err(|_| format!("etcd did not answer within {} s", TIMEOUT.as_secs()))?
    }

    /// The value of `key`, if it exists.
    ///
    /// # Errors
    /// etcd unreachable or refusing, in words.
    pub async fn read(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        let work = async {
            let mut c = self.client().await?;
            let resp = c
                .get(key, None)
                .await
                .map_err(|e| format!("reading {key}: {e}"))?;
            Ok(resp.kvs().first().map(|kv| kv.value().to_vec()))
        };
        tokio::time::timeout(TIMEOUT, work)
            .await
            .map_err(|_| format!("etcd did not answer within {} s", TIMEOUT.as_secs()))?
    }

    /// Write `value` at `key`; returns the revision of the write.
    ///
    /// # Errors
    /// etcd unreachable or refusing, in words.
    pub async fn write(&self, key: &str, value: Vec<u8>) -> Result<Revision, String> {
        let work = async {
            let mut c = self.client().await?;
            let resp = c
                .put(key, value, None)
                .await
                .map_err(|e| format!("writing {key}: {e}"))?;
            Ok(resp.header().map_or(0, |h| h.revision()))
        };
        tokio::time::timeout(TIMEOUT, work)
            .await
            .map_err(|_| format!("etcd did not answer within {} s", TIMEOUT.as_secs()))?
    }
}
