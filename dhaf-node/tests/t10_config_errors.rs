//! The binary refuses a bad config with every problem and its key path, and starts nothing.

use std::process::Command;

fn write(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("dhaf-node-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_bad_config_prints_every_problem_and_exits_2() {
    let path = write(
        "bad.yaml",
        r#"
dhaf:
  cluster-name: c1
  node-name: "n 1"
  tact-interval: 99999
services:
  - name: main
    domain: foo.com
    entry-points:
      - name: ep-1
        ip: 1.2.3
    switcher:
      type: teleport
    health-checker:
      type: web
"#,
    );
    let out = Command::new(env!("CARGO_BIN_EXE_dhaf-node")).arg("--config").arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for want in [
        "dhaf.node-name: only a-z A-Z 0-9 - _ allowed",
        "dhaf.tact-interval: must be a duration from 100ms to 1h (a bare number is seconds), not 99999s",
        "services[0].entry-points[0].ip: '1.2.3' is not an IPv4 or IPv6 address",
    ] {
        assert!(stderr.contains(want), "missing {want:?} in:\n{stderr}");
    }
    assert!(!stderr.contains("node started"), "nothing may start:\n{stderr}");
}

#[test]
fn an_unknown_provider_type_is_named_with_its_path() {
    let path = write(
        "unknown-type.yaml",
        r#"
dhaf: { cluster-name: c1, node-name: n1 }
services:
  - name: main
    domain: foo.com
    entry-points: [ { name: ep-1, ip: 10.0.0.1 } ]
    switcher: { type: teleport }
    health-checker: { type: telepathy }
"#,
    );
    let out = Command::new(env!("CARGO_BIN_EXE_dhaf-node")).args(["--check", "--config"]).arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("services[0].switcher.type: unknown provider type 'teleport'"), "{stderr}");
    assert!(stderr.contains("services[0].health-checker.type: unknown provider type 'telepathy'"), "{stderr}");
}

#[test]
fn a_missing_file_is_reported() {
    let out = Command::new(env!("CARGO_BIN_EXE_dhaf-node")).args(["--config", "/nonexistent/dhaf.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/dhaf.yaml"));
}

#[test]
fn the_etcd_section_is_checked_with_the_providers_and_dcs_names_a_dcs_by_type() {
    let config = |dcs: &str| {
        format!(
            "dhaf: {{ cluster-name: c1, node-name: n1 }}\n{dcs}\nservices:\n  - name: main\n    domain: foo.com\n    \
             entry-points: [ {{ name: ep-1, ip: 10.0.0.1 }} ]\n    switcher: {{ type: teleport }}\n    health-checker: {{ type: tcp, port: 443 }}\n"
        )
    };
    let check = |name: &str, text: &str| {
        let path = write(name, text);
        let out = Command::new(env!("CARGO_BIN_EXE_dhaf-node")).args(["--check", "--config"]).arg(&path).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    // A bad etcd section and an unknown switcher: both told at once.
    let (code, stderr) = check("bad-etcd.yaml", &config("etcd: { hosts: 'nohostport', username: u }"));
    assert_eq!(code, Some(2), "{stderr}");
    for want in [
        "etcd.hosts: 'http://nohostport' is not `host:port` or `http(s)://host:port`",
        "etcd.password: etcd.username and etcd.password go together",
        "services[0].switcher.type: unknown provider type 'teleport'",
    ] {
        assert!(stderr.contains(want), "missing {want:?} in:\n{stderr}");
    }
    let (code, stderr) = check("typed-dcs.yaml", &config("dcs: { type: consul, address: '10.0.0.1:8500' }"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("dcs.type: unknown provider type 'consul' (known: etcd)"), "{stderr}");
    let (code, stderr) = check("both.yaml", &config("etcd: { hosts: '127.0.0.1:2379' }\ndcs: { type: etcd, hosts: '127.0.0.1:2379' }"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("dcs: give either etcd or dcs, not both"), "{stderr}");
}
