//! The shipped examples work: every config in examples/configs/ builds with the built-in registry
//! (as `dhaf-node --check` would), together they use every built-in provider, the embedding
//! example runs to its end, and so does the embedder crate (`examples/embedder/`, outside the
//! workspace, on `dhaf-core` alone).
//!
//! The embedding example is compiled into this test (`#[path]`) and its `main` called: that runs
//! exactly the example's code, with its own runtime and its own assertions, without starting a
//! nested `cargo run` that would fight this build for the target directory.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::{build_file, registered_types, root};

#[allow(dead_code)]
#[path = "../examples/embedding.rs"]
mod embedding;

fn example_configs() -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(root().join("examples/configs"))
        .expect("examples/configs")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_config_builds() {
    // Their exec paths are relative to their own directory, wherever the node runs from.
    let files = example_configs();
    assert!(files.len() >= 10, "examples/configs lost files: {files:?}");
    let mut failures = Vec::new();
    for file in &files {
        if let Err(e) = build_file(file) {
            failures.push(format!("{}: {e}", file.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_examples_cover_every_built_in_provider() {
    let mut used = [BTreeSet::new(), BTreeSet::new(), BTreeSet::new()];
    for file in example_configs() {
        let Ok(config) = build_file(&file) else { continue };
        for s in &config.services {
            used[0].insert(s.health_checker.kind.clone());
            used[1].insert(s.switcher.kind.clone());
        }
        used[2].extend(config.notifiers.iter().map(|n| n.kind.clone()));
    }
    for (i, section) in ["health-checker", "switcher", "notifier"].into_iter().enumerate() {
        let registered: BTreeSet<String> = registered_types(section).into_iter().collect();
        let missing: Vec<_> = registered.difference(&used[i]).collect();
        assert!(missing.is_empty(), "no example config in examples/configs uses the {section} types {missing:?}");
    }
}

#[test]
fn the_etcd_example_is_three_nodes_of_one_cluster() {
    let mut names = BTreeSet::new();
    for n in 1..=3 {
        let config = build_file(&root().join(format!("examples/configs/config-n{n}.yaml"))).unwrap();
        assert_eq!(config.dhaf.cluster_name, "foo-cluster");
        let etcd = config.dcs.as_ref().expect("an etcd section");
        assert_eq!(etcd.kind, "etcd");
        assert_eq!(etcd.fields().string("hosts").expect("etcd hosts").split(',').count(), 3);
        names.insert(config.dhaf.node_name.clone());
    }
    assert_eq!(names.len(), 3, "the three nodes need distinct names");
}

#[test]
fn the_embedding_example_fails_over_and_exits() {
    let (done, finished) = std::sync::mpsc::channel();
    let run = std::thread::spawn(move || {
        embedding::main();
        let _ = done.send(());
    });
    // A loose bound that only catches a hang; the example bounds its own steps.
    match finished.recv_timeout(Duration::from_secs(60)) {
        Ok(()) => run.join().unwrap(),
        Err(_) if run.is_finished() => std::panic::resume_unwind(run.join().unwrap_err()),
        Err(e) => panic!("the embedding example did not finish within 60 s: {e}"),
    }
}

/// `examples/embedder/` is a crate of its own, outside the workspace, as an embedder's would be:
/// it builds against `dhaf-core` alone (no provider crate, no protoc, no YAML) and its three nodes
/// fail over and hand the lead on. It is built with `cargo` in a target directory of its own (this
/// build holds the workspace's), offline: the workspace's build fetched every crate it needs, at
/// the versions of its `Cargo.lock`, a copy of the workspace's.
#[test]
fn the_embedder_crate_runs_three_nodes_on_dhaf_core_alone() {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| root().join("target"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut child = std::process::Command::new(cargo)
        .args(["run", "--quiet", "--offline", "--manifest-path"])
        .arg(root().join("examples/embedder/Cargo.toml"))
        .arg("--target-dir")
        .arg(target.join("embedder"))
        .env_remove("CARGO_TARGET_DIR")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cargo runs");
    // A loose bound, for a hang: a cold build of dhaf-core and its dependencies takes minutes.
    let started = std::time::Instant::now();
    while child.try_wait().expect("cargo's status").is_none() {
        if started.elapsed() > Duration::from_secs(1200) {
            let _ = child.kill();
            panic!("the embedder example did not finish within 20 minutes");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = child.wait_with_output().expect("cargo's output");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the embedder example failed:\n{stdout}\n{stderr}");
    for line in ["flagging the primary down", "failover from primary to secondary", "traffic stays on secondary", "done"] {
        assert!(stdout.contains(line), "the embedder example never said {line:?}:\n{stdout}");
    }
}
