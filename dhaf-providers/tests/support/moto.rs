//! Route 53 for tests: `moto` in server mode (PyPI `moto[server]`) on a free loopback port, killed
//! when dropped. Hosted zones are created and edited behind dhaf's back with plain HTTP requests.
//!
//! moto is imported from `$DHAF_PYTHONPATH` (where `cargo xtask test` installs it), else from the
//! Python path.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What moto is given as credentials (it accepts any in server mode).
pub const ACCESS_KEY_ID: &str = "AKIADHAFTESTKEY00001";
/// Its secret.
pub const SECRET_ACCESS_KEY: &str = "dGhlLXNlY3JldC1vZi10aGUtZGhhZi1yb3V0ZTUzLXRlc3Q";

/// A running moto server.
pub struct Moto {
    child: Child,
    log: tempfile::NamedTempFile,
    pub port: u16,
}

impl Moto {
    pub fn start() -> Moto {
        Moto::spawn(None)
    }

    /// A server that checks every request's SigV4 signature against its own IAM users, as AWS
    /// does, and lets only the user it creates here manage Route 53. Returns it with that user's
    /// access key id and secret, and the id of a hosted zone for `zone`. Only the switcher can talk
    /// to it from then on (the helpers below send unsigned requests).
    pub fn start_checking_signatures(zone: &str) -> (Moto, String, String, String) {
        // Unsigned set-up requests moto lets through before it starts checking.
        let moto = Moto::spawn(Some(4));
        let iam = |form: &str| {
            let (status, body) = moto.send("POST", "/", "iam", "application/x-www-form-urlencoded", form);
            assert_eq!(status, 200, "{body}");
            body
        };
        iam("Action=CreateUser&UserName=dhaf&Version=2010-05-08");
        let key = iam("Action=CreateAccessKey&UserName=dhaf&Version=2010-05-08");
        let policy = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C%22Action%22%3A%22route53%3A%2A%22%2C%22Resource%22%3A%22%2A%22%7D%5D%7D";
        iam(&format!("Action=PutUserPolicy&UserName=dhaf&PolicyName=route53&PolicyDocument={policy}&Version=2010-05-08"));
        let id = between(&key, "<AccessKeyId>", "</AccessKeyId>").remove(0);
        let secret = between(&key, "<SecretAccessKey>", "</SecretAccessKey>").remove(0);
        let zone_id = moto.create_zone(zone);
        (moto, id, secret, zone_id)
    }

    fn spawn(unsigned_actions: Option<u32>) -> Moto {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()]);
        if let Some(path) = std::env::var_os("DHAF_PYTHONPATH") {
            cmd.env("PYTHONPATH", path);
        }
        if let Some(n) = unsigned_actions {
            cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", n.to_string());
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("python3 runs moto; run the tests with `cargo xtask test`, which installs moto[server]");
        let mut moto = Moto { child, log, port };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto_server exited ({status}); is moto[server] installed (`cargo xtask test`)?\n{}", moto.log());
            }
            assert!(start.elapsed() < Duration::from_secs(30), "moto did not listen within 30 s\n{}", moto.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// One request; the status and body. moto picks the service from the credential scope.
    pub fn request(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        self.send(method, path, "route53", "application/xml", body)
    }

    fn send(&self, method: &str, path: &str, service: &str, content_type: &str, body: &str) -> (u16, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=00\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let status = resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        (status, body)
    }

    /// Create a hosted zone; its id.
    pub fn create_zone(&self, name: &str) -> String {
        let (status, body) = self.request(
            "POST",
            "/2013-04-01/hostedzone",
            &format!("<CreateHostedZoneRequest xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><Name>{name}.</Name><CallerReference>{name}-{}</CallerReference></CreateHostedZoneRequest>", self.port),
        );
        assert_eq!(status, 201, "{body}");
        let id = between(&body, "<Id>", "</Id>").remove(0);
        id.trim_start_matches("/hostedzone/").to_string()
    }

    /// Apply changes `(action, name, type, values)` to a zone, as someone editing it by hand.
    pub fn change(&self, zone: &str, changes: &[(&str, &str, &str, &[&str])]) {
        let changes: String = changes
            .iter()
            .map(|(action, name, kind, values)| {
                let records: String = values
                    .iter()
                    .map(|v| format!("<ResourceRecord><Value>{}</Value></ResourceRecord>", v.replace('"', "&quot;")))
                    .collect();
                format!("<Change><Action>{action}</Action><ResourceRecordSet><Name>{name}.</Name><Type>{kind}</Type><TTL>60</TTL><ResourceRecords>{records}</ResourceRecords></ResourceRecordSet></Change>")
            })
            .collect();
        let (status, body) = self.request(
            "POST",
            &format!("/2013-04-01/hostedzone/{zone}/rrset"),
            &format!("<ChangeResourceRecordSetsRequest xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><ChangeBatch><Changes>{changes}</Changes></ChangeBatch></ChangeResourceRecordSetsRequest>"),
        );
        assert_eq!(status, 200, "{body}");
    }

    /// The values of the record set `name` `kind`, sorted (empty when there is none).
    pub fn values(&self, zone: &str, name: &str, kind: &str) -> Vec<String> {
        let (status, body) = self.request("GET", &format!("/2013-04-01/hostedzone/{zone}/rrset?name={name}.&type={kind}&maxitems=50"), "");
        assert_eq!(status, 200, "{body}");
        let mut values = Vec::new();
        for set in between(&body, "<ResourceRecordSet>", "</ResourceRecordSet>") {
            let set_name = between(&set, "<Name>", "</Name>").pop().unwrap_or_default();
            let set_kind = between(&set, "<Type>", "</Type>").pop().unwrap_or_default();
            if set_name.trim_end_matches('.') == name && set_kind == kind {
                values.extend(between(&set, "<Value>", "</Value>").into_iter().map(|v| v.replace("&quot;", "\"")));
            }
        }
        values.sort();
        values
    }
}

fn between(text: &str, open: &str, close: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(close) else { break };
        found.push(after[..j].to_string());
        rest = &after[j + close.len()..];
    }
    found
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
