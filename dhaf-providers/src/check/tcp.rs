//! The `tcp` health checker: an entry point is healthy when it accepts a TCP connection.
//!
//! Settings:
//!
//! | key | | default |
//! |---|---|---|
//! | `port` | port to connect to, 1–65535 | required |
//! | `timeout` | how long to wait for the connection, 50ms–24h (`500ms`, `5s`; a bare number is seconds) | `5` |

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use dhaf_core::config::{ConfigError, ProviderConfig};
use dhaf_core::model::{EntryPoint, Health};
use dhaf_core::provider::{BuildContext, HealthChecker};

use super::{io_reason, local_trouble, secs, DEFAULT_TIMEOUT, SLACK, TIMEOUT_RANGE};

/// Checks that an entry point accepts TCP connections on a port.
#[derive(Debug, Clone)]
pub struct TcpChecker {
    port: u16,
    timeout: Duration,
}

impl TcpChecker {
    /// A checker connecting to `port`, giving up after `timeout`.
    pub fn new(port: u16, timeout: Duration) -> Self {
        TcpChecker { port, timeout }
    }
}

impl TcpChecker {
    /// Build a [`TcpChecker`] from a `health-checker` section of type `tcp`.
    pub fn from_config(section: &ProviderConfig, _ctx: &BuildContext) -> Result<TcpChecker, ConfigError> {
        let f = section.fields();
        let port = if f.has("port") {
            Some(f.int("port", 0, 1, 65535) as u16)
        } else {
            f.problem(f.key("port"), "is required (the port to connect to, 1-65535)");
            None
        };
        let timeout = f.duration("timeout", DEFAULT_TIMEOUT, TIMEOUT_RANGE.0, TIMEOUT_RANGE.1);
        f.finish();
        let checker = TcpChecker::new(port.unwrap_or(0), timeout);
        f.into_result(checker)
    }
}

#[async_trait]
impl HealthChecker for TcpChecker {
    async fn check(&self, entry_point: &EntryPoint) -> Health {
        let addr = SocketAddr::new(entry_point.ip, self.port);
        match tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_stream)) => Health::Healthy,
            // No socket to be had on this node: nothing learnt about the entry point.
            Ok(Err(e)) if local_trouble(&e) => Health::abstain(format!("cannot open a socket on this node: {}", io_reason(&e))),
            Ok(Err(e)) => Health::unhealthy(io_reason(&e)),
            Err(_) => Health::unhealthy(format!("timed out after {}", secs(self.timeout))),
        }
    }

    fn timeout(&self) -> Duration {
        self.timeout + SLACK
    }
}
