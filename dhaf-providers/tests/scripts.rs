//! Operators' scripts (the `exec` checker and switcher) as a node runs them, from a config file on
//! disk: where a relative script path points, and what a script can see of the node's environment.
//!
//! One test per binary would be needed to change the process environment safely; the secrets are
//! set once, before anything else runs, by [`node_env`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};

use dhaf_core::config::{Config, ConfigError};
use dhaf_core::dcs::memory::MemoryDcs;
use dhaf_core::model::{EntryPoint, FencingToken};
use dhaf_core::registry::ServiceProviders;

/// Secrets a node typically holds in its environment; no script may see them.
const SECRETS: [(&str, &str); 3] =
    [("CF_TOKEN", "cf-secret-4242"), ("ETCD_PASSWORD", "etcd-secret-4242"), ("DHAF_API_TOKEN", "api-secret-4242")];

fn node_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for (name, value) in SECRETS {
            std::env::set_var(name, value);
        }
        std::env::set_var("ZONE_FROM_NODE", "zone-42");
    });
}

#[path = "support/script.rs"]
mod script_support;
use script_support::script;

/// A config file in `dir` whose service uses the exec checker and switcher with `checker` and
/// `switcher` settings.
fn config_file(dir: &Path, checker: &str, switcher: &str) -> PathBuf {
    let yaml = format!(
        "dhaf: {{ cluster-name: c1, node-name: n1 }}
services:
  - name: web
    domain: foo.com
    entry-points: [{{ name: ep-1, ip: 10.0.0.1 }}, {{ name: ep-2, ip: 10.0.0.2 }}]
    health-checker: {{ type: exec, {checker} }}
    switcher: {{ type: exec, {switcher} }}
"
    );
    let path = dir.join("dhaf.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// Load the config file and build its providers, as `dhaf-node` (and `--check`) does.
fn build(path: &Path) -> Result<ServiceProviders, ConfigError> {
    let config = Config::load(path)?;
    let providers = dhaf_providers::registry().build(&config, Arc::new(MemoryDcs::new("c1")))?;
    Ok(providers.services[0].clone())
}

fn ep(name: &str, ip: &str) -> EntryPoint {
    EntryPoint { name: name.into(), ip: ip.parse().unwrap() }
}

#[tokio::test]
async fn scripts_see_only_path_their_dhaf_variables_and_the_configured_env() {
    node_env();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    for name in ["chk-init", "chk", "sw-init", "sw"] {
        script(dir.path(), &format!("{name}.sh"), &format!("env > '{d}/{name}.env'\n[ {name} = sw-init ] && echo ep-1\nexit 0"));
    }
    let env = "env: { ZONE: \"${ZONE_FROM_NODE}\", PLAIN: hello }";
    let path =
        config_file(dir.path(), &format!("init: chk-init.sh, check: chk.sh, {env}"), &format!("init: sw-init.sh, switch: sw.sh, {env}"));
    let p = build(&path).expect("the config builds");
    p.checker.init().await.unwrap();
    assert!(p.checker.check(&ep("ep-1", "10.0.0.1")).await.is_healthy());
    p.switcher.init().await.unwrap();
    p.switcher.switch(&ep("ep-2", "10.0.0.2"), FencingToken(3)).await.unwrap();

    for name in ["chk-init", "chk", "sw-init", "sw"] {
        let seen = std::fs::read_to_string(dir.path().join(format!("{name}.env"))).unwrap();
        for (secret, value) in SECRETS {
            assert!(!seen.contains(secret) && !seen.contains(value), "{name} sees {secret}:\n{seen}");
        }
        for want in ["ZONE=zone-42\n", "PLAIN=hello\n", "DHAF_SERVICE=web\n", "DHAF_DOMAIN=foo.com\n", "PATH="] {
            assert!(seen.contains(want), "{name} lacks {want:?}:\n{seen}");
        }
        assert!(!seen.contains("ZONE_FROM_NODE"), "only what the config names:\n{seen}");
    }
    let sw = std::fs::read_to_string(dir.path().join("sw.env")).unwrap();
    assert!(sw.contains("DHAF_FENCING_TOKEN=3\n"), "{sw}");
}

#[tokio::test]
async fn env_names_must_be_valid_variable_names() {
    node_env();
    let dir = tempfile::tempdir().unwrap();
    script(dir.path(), "ok.sh", "exit 0");
    let path = config_file(dir.path(), "init: ok.sh, check: ok.sh, env: { \"BAD-NAME\": x }", "init: ok.sh, switch: ok.sh");
    let err = build(&path).err().expect("a bad name is refused");
    let problem = err.problems.iter().find(|p| p.path == "services[0].health-checker.env.BAD-NAME").unwrap_or_else(|| panic!("{err}"));
    assert!(problem.message.contains("not a valid environment variable name"), "{problem}");
}

#[tokio::test]
async fn relative_script_paths_are_resolved_against_the_config_files_directory_when_checked_and_when_run() {
    node_env();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    std::fs::create_dir(dir.path().join("scripts")).unwrap();
    for name in ["chkinit", "check", "current", "switch"] {
        script(
            dir.path(),
            &format!("scripts/{name}.sh"),
            &format!("echo ran >> '{d}/{name}.ran'\n[ {name} = current ] && echo ep-1\nexit 0"),
        );
    }
    let path = config_file(
        dir.path(),
        "init: scripts/chkinit.sh, check: ./scripts/check.sh",
        &format!("init: scripts/current.sh, switch: '{d}/scripts/switch.sh'"),
    );
    // The test runs elsewhere: a path taken relative to the working directory would not exist.
    assert_ne!(std::env::current_dir().unwrap(), dir.path());
    let p = build(&path).expect("the scripts are found next to the config file");
    p.checker.init().await.expect("and run from there");
    assert!(p.checker.check(&ep("ep-1", "10.0.0.1")).await.is_healthy());
    p.switcher.init().await.unwrap();
    p.switcher.switch(&ep("ep-2", "10.0.0.2"), FencingToken(1)).await.unwrap();
    for name in ["chkinit", "check", "current", "switch"] {
        assert!(dir.path().join(format!("{name}.ran")).exists(), "{name}.sh did not run");
    }
}

#[tokio::test]
async fn a_missing_relative_script_names_the_key_and_the_resolved_path() {
    node_env();
    let dir = tempfile::tempdir().unwrap();
    script(dir.path(), "ok.sh", "exit 0");
    let path = config_file(dir.path(), "init: chkinit.sh, check: ok.sh", "init: ok.sh, switch: bin/switch.sh");
    let err = build(&path).err().expect("missing scripts stop the node at start");
    let d = std::path::absolute(dir.path()).unwrap();
    for (key, resolved) in [("services[0].health-checker.init", "chkinit.sh"), ("services[0].switcher.switch", "bin/switch.sh")] {
        let problem = err.problems.iter().find(|p| p.path == key).unwrap_or_else(|| panic!("no problem at {key}: {err}"));
        let want = format!("no such file: {}", d.join(resolved).display());
        assert!(problem.message.contains(&want), "{problem} lacks {want:?}");
        assert!(problem.message.contains("relative to the config file's directory"), "{problem}");
    }
    assert_eq!(err.problems.len(), 2, "{err}");
}
