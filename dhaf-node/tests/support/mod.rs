//! Scaffolding shared by dhaf-node's integration tests: operators' scripts and a one-service
//! config over them. Each test binary uses only some of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// An executable shell script `name` in `dir`.
pub fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Write `dir/node.yaml`: node-1 of `cluster` with its API on a free port, and one service whose
/// single entry point is checked by tcp on `port` and switched by exec scripts that keep the
/// public entry in `dir/entry`. `service_keys` are extra lines for the service (indented by 4).
pub fn tcp_site(dir: &Path, cluster: &str, port: u16, service_keys: &str) -> PathBuf {
    let entry = dir.join("entry");
    std::fs::write(&entry, "ep-1\n").unwrap();
    let init = script(dir, "init", "exit 0");
    let current = script(dir, "current", &format!("cat '{}'", entry.display()));
    let switch = script(dir, "switch", &format!("echo \"$1\" > '{}'", entry.display()));
    let config = dir.join("node.yaml");
    std::fs::write(
        &config,
        format!(
            "dhaf:
  cluster-name: {cluster}
  node-name: node-1
  tact-interval: 1
  heartbeat-interval: 1
  healthy-node-status-ttl: 5
  web-api: {{ host: 127.0.0.1, port: 0 }}
services:
  - name: site
    domain: site.test
{service_keys}    entry-points:
      - {{ name: ep-1, ip: 127.0.0.1 }}
    health-checker: {{ type: tcp, port: {port}, timeout: 1 }}
    switcher: {{ type: exec, init: {}, switch: {}, current: {} }}
",
            init.display(),
            switch.display(),
            current.display()
        ),
    )
    .unwrap();
    config
}
