//! `GET /leader` on a three-node cluster over a real etcd, as a load balancer sees it: exactly
//! one node answers 200, the others 503; when the leader dies, exactly one of the survivors
//! takes over the 200, and the others export it as down. `GET /healthz` answers 200 on every
//! registered node.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::Kill;

mod support;

struct Member {
    node: Kill,
    log: PathBuf,
    api: Option<String>,
}

impl Member {
    fn start(dir: &Path, i: usize, port: u16, etcd: &str) -> Member {
        let dir = dir.join(format!("n{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let config = support::tcp_site(&dir, "trio", port, "");
        let text = std::fs::read_to_string(&config)
            .unwrap()
            .replace("node-name: node-1", &format!("node-name: node-{i}"))
            .replace("services:\n", &format!("etcd: {{ hosts: \"{etcd}\" }}\nservices:\n"));
        std::fs::write(&config, text).unwrap();
        let log = dir.join("node.log");
        let node = support::spawn_node_logging_json(&config, &log, "info");
        Member { node, log, api: None }
    }

    /// The API's address, from the node's "rest api listening" line.
    fn api(&mut self) -> Option<String> {
        if self.api.is_none() {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            self.api = text
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find_map(|l| l["bound"].as_str().map(str::to_string));
        }
        self.api.clone()
    }

    /// The status code and body of `GET path`; status 0 when the node does not answer.
    fn get(&mut self, path: &str) -> (u16, String) {
        use std::io::{Read as _, Write as _};
        let Some(addr) = self.api() else { return (0, String::new()) };
        let Ok(mut s) = std::net::TcpStream::connect(&addr) else { return (0, String::new()) };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        let status = answer.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        (status, answer.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
    }

    fn status(&mut self, path: &str) -> u16 {
        self.get(path).0
    }
}

/// Wait until `/leader` answers 200 on exactly one of `members` and 503 on the rest, several
/// times in a row; returns the leader's index.
fn one_leader(members: &mut [&mut Member], limit: Duration) -> usize {
    let start = Instant::now();
    let mut steady = 0;
    let mut last = Vec::new();
    loop {
        assert!(start.elapsed() < limit, "no single leader within {limit:?}: /leader answered {last:?}");
        last = members.iter_mut().map(|m| m.status("/leader")).collect();
        let leaders: Vec<usize> = (0..last.len()).filter(|i| last[*i] == 200).collect();
        if leaders.len() == 1 && last.iter().filter(|s| **s == 503).count() == last.len() - 1 {
            steady += 1;
            if steady == 5 {
                return leaders[0];
            }
        } else {
            steady = 0;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn exactly_one_of_three_nodes_answers_200_on_leader_and_a_survivor_takes_over() {
    let dir = std::env::temp_dir().join(format!("dhaf-leader-endpoint-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (_etcd, hosts) = support::etcd_member(&dir);
    let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = backend.local_addr().unwrap().port();
    let mut nodes: Vec<Member> = (1..=3).map(|i| Member::start(&dir, i, port, &hosts)).collect();

    let leader = one_leader(&mut nodes.iter_mut().collect::<Vec<_>>(), Duration::from_secs(60));
    for m in &mut nodes {
        assert_eq!(m.status("/healthz"), 200, "every registered node is healthy");
    }

    // The leader dies without resigning: its lease runs out, and one survivor leads.
    let mut dead = nodes.remove(leader);
    dead.node.0.kill().unwrap();
    let _ = dead.node.0.wait();
    assert_eq!(dead.status("/leader"), 0, "the dead node answers nothing");
    one_leader(&mut nodes.iter_mut().collect::<Vec<_>>(), Duration::from_secs(60));

    // What the node-down alert reads: the survivors export the dead node as not alive.
    let gone = format!("dhaf_node_alive{{node=\"node-{}\"}} 0", leader + 1);
    let start = Instant::now();
    for m in &mut nodes {
        loop {
            let (_, metrics) = m.get("/metrics");
            if metrics.contains(&gone) {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "no `{gone}` in:\n{metrics}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    drop(nodes);
    let _ = std::fs::remove_dir_all(&dir);
}
