//! The DCS conformance suite against a real three-member etcd cluster: etcd must behave exactly
//! as the in-memory DCS does.

mod support;

use dhaf_core::config::EtcdConfig;
use dhaf_providers::etcd::EtcdDcs;
use support::etcd::EtcdCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_passes_the_dcs_conformance_suite() {
    let cluster = EtcdCluster::start().await;
    let config = EtcdConfig { hosts: cluster.endpoints(), username: None, password: None, tls: None };
    dhaf_core::dcs::conformance::run_all(|name| {
        let config = config.clone();
        async move { EtcdDcs::new(&config, &name) }
    })
    .await;
}
