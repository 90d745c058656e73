//! The DCS conformance suite against a real three-member etcd cluster: etcd must behave exactly
//! as the in-memory DCS does.

mod support;

use dhaf_core::dcs::conformance::RawPut;
use dhaf_providers::etcd::{EtcdConfig, EtcdDcs};
use support::etcd::EtcdCluster;

/// Writes straight to etcd under a cluster's prefix, beneath the DCS contract.
struct RawEtcd {
    client: etcd_client::Client,
    prefix: String,
}

#[async_trait::async_trait]
impl RawPut for RawEtcd {
    async fn raw_put(&self, key: &str, value: &str) {
        let key = format!("{}{key}", self.prefix);
        self.client.clone().put(key.as_str(), value, None).await.unwrap_or_else(|e| panic!("raw put of {key}: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_passes_the_dcs_conformance_suite() {
    let cluster = EtcdCluster::start().await;
    let config = EtcdConfig::new(cluster.endpoints());
    let client = cluster.admin().await;
    dhaf_core::dcs::conformance::run_all(|name| {
        let (config, client) = (config.clone(), client.clone());
        async move { (EtcdDcs::new(&config, &name), RawEtcd { client, prefix: format!("/{name}/") }) }
    })
    .await;
}
