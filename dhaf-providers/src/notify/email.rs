//! The `email` notifier: one plain-text message per notification over SMTP.
//!
//! Settings (key paths relative to the notifier's section):
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `from` | sender address (`dhaf@example.com` or `dhaf <dhaf@example.com>`) | required |
//! | `to` | recipient address(es), comma-separated | required |
//! | `smtp.server` | SMTP host | required |
//! | `smtp.port` | SMTP port | 465 for `ssl`, 587 for `starttls`, else 25 |
//! | `smtp.security` | `ssl` (implicit TLS), `starttls` (required, never downgraded) or `none` | `none` |
//! | `smtp.username`, `smtp.password` | credentials (AUTH PLAIN/LOGIN); go together | none |
//! | `smtp.allow-plaintext-auth` | with `security: none`, send the credentials in clear anyway (logged as a warning) | `false` |
//! | `smtp.ca-file` | PEM file of a CA to trust besides the public roots (a private or self-signed server) | none |
//! | `smtp.accept-invalid-certs` | `true` skips certificate verification entirely; only for test servers | `false` |
//! | `smtp.timeout` | seconds one delivery may take | 30 |
//!
//! The subject is `[dhaf <cluster>] <summary>`; the body says what happened, what dhaf did, when
//! (UTC, RFC 3339), where (cluster, node, service, entry points) and the reasons the nodes gave.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use dhaf_core::config::{ConfigError, ProviderConfig};
use dhaf_core::model::Notification;
use dhaf_core::provider::{BuildContext, Notifier, ProviderError};
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Mailboxes};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{redact, Report};

/// How the SMTP connection is secured (`smtp.security`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Plain text (`none`, or the key left out).
    None,
    /// Plain text upgraded with STARTTLS before anything else is sent; a server that does not
    /// offer STARTTLS is an error, never a silent downgrade.
    StartTls,
    /// TLS from the first byte (`ssl`, usually port 465).
    Ssl,
}

/// Sends notifications by email.
pub struct EmailNotifier {
    from: Mailbox,
    to: Mailboxes,
    server: String,
    port: u16,
    security: Security,
    password: Option<String>,
    timeout: Duration,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl fmt::Debug for EmailNotifier {
    // The password never shows up in Debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailNotifier")
            .field("from", &self.from.to_string())
            .field("to", &self.to.to_string())
            .field("server", &self.server)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

impl EmailNotifier {
    /// Build from the notifier's config section, reporting every problem with its key path.
    ///
    /// No I/O happens here (a `ca-file` is read); the first connection is made by the first
    /// notification.
    pub fn from_config(section: &ProviderConfig, _ctx: &BuildContext) -> Result<EmailNotifier, ConfigError> {
        let f = section.fields();
        let from = f.required_string("from").and_then(|s| match s.parse::<Mailbox>() {
            Ok(m) => Some(m),
            Err(e) => {
                f.problem(f.key("from"), format!("'{s}' is not an email address ({e})"));
                None
            }
        });
        let to = f.required_string("to").and_then(|s| match s.parse::<Mailboxes>() {
            Ok(m) if m.iter().next().is_some() => Some(m),
            Ok(_) => {
                f.problem(f.key("to"), "lists no address");
                None
            }
            Err(e) => {
                f.problem(f.key("to"), format!("'{s}' is not a comma-separated list of email addresses ({e})"));
                None
            }
        });
        let smtp = f.section_required("smtp");
        let mut built = None;
        if let Some(s) = &smtp {
            let server = s.required_string("server");
            let security = match s.string("security").as_deref() {
                None | Some("none") => Security::None,
                Some("ssl") => Security::Ssl,
                Some("starttls") => Security::StartTls,
                Some(other) => {
                    s.problem(s.key("security"), format!("'{other}' is not one of: ssl, starttls, none"));
                    Security::None
                }
            };
            let default_port = match security {
                Security::Ssl => 465,
                Security::StartTls => 587,
                Security::None => 25,
            };
            let port = s.int("port", default_port, 1, 65535) as u16;
            let username = s.string("username");
            let password = s.string("password");
            if username.is_some() != password.is_some() {
                s.problem(s.key(if username.is_some() { "password" } else { "username" }), "smtp.username and smtp.password go together");
            }
            let timeout = s.seconds("timeout", 30, 1, 600);
            let ca = s.string("ca-file").and_then(|path| match std::fs::read(&path) {
                Ok(pem) => match Certificate::from_pem(&pem) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        s.problem(s.key("ca-file"), format!("{path} is not a PEM certificate ({e})"));
                        None
                    }
                },
                Err(e) => {
                    s.problem(s.key("ca-file"), format!("cannot read {path}: {e}"));
                    None
                }
            });
            let accept_invalid = s.boolean("accept-invalid-certs", false);
            let allow_plaintext_auth = s.boolean("allow-plaintext-auth", false);
            if security == Security::None {
                for key in ["ca-file", "accept-invalid-certs"] {
                    if s.has(key) {
                        s.problem(s.key(key), "only applies with smtp.security ssl or starttls");
                    }
                }
                if username.is_some() && password.is_some() {
                    if !allow_plaintext_auth {
                        s.problem(
                            s.key("security"),
                            "none would send smtp.username and smtp.password in clear: use ssl or starttls, or set \
                             allow-plaintext-auth: true for a relay on a trusted network",
                        );
                    } else if let Some(server) = &server {
                        tracing::warn!(
                            notifier = %section.path,
                            server = %server,
                            port,
                            "smtp credentials are sent in clear (smtp.security none, allow-plaintext-auth: true)"
                        );
                    }
                }
            } else if allow_plaintext_auth {
                s.problem(s.key("allow-plaintext-auth"), "only applies with smtp.security none");
            }
            s.finish();
            if let Some(server) = server {
                let tls = match security {
                    Security::None => Some(Tls::None),
                    Security::Ssl | Security::StartTls => {
                        let mut params = TlsParameters::builder(server.clone()).dangerous_accept_invalid_certs(accept_invalid);
                        if let Some(ca) = ca {
                            params = params.add_root_certificate(ca);
                        }
                        match params.build_rustls() {
                            Ok(p) if security == Security::Ssl => Some(Tls::Wrapper(p)),
                            Ok(p) => Some(Tls::Required(p)),
                            Err(e) => {
                                s.problem(s.key("security"), format!("cannot set up TLS: {e}"));
                                None
                            }
                        }
                    }
                };
                if let Some(tls) = tls {
                    let mut builder =
                        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(server.as_str()).port(port).tls(tls).timeout(Some(timeout));
                    if let (Some(u), Some(p)) = (&username, &password) {
                        builder = builder.credentials(Credentials::new(u.clone(), p.clone()));
                    }
                    built = Some((server, port, security, password, timeout, builder.build()));
                }
            }
        }
        f.finish();
        let checked = f.into_result(());
        match (checked, from, to, built) {
            (Ok(()), Some(from), Some(to), Some((server, port, security, password, timeout, transport))) => {
                Ok(EmailNotifier { from, to, server, port, security, password, timeout, transport })
            }
            (Err(e), ..) => Err(e),
            // Every missing piece above recorded a problem; this arm only keeps the match total.
            _ => Err(ConfigError::at(section.path.clone(), "incomplete email notifier settings")),
        }
    }

    /// The message `n` becomes.
    pub fn message(&self, n: &Notification) -> Result<Message, ProviderError> {
        let subject = format!("[dhaf {}] {}", n.cluster, n.event.summary());
        let mut builder = Message::builder().from(self.from.clone()).subject(subject).date(n.at).header(ContentType::TEXT_PLAIN);
        for to in self.to.iter() {
            builder = builder.to(to.clone());
        }
        builder.body(body(&Report::of(n))).map_err(|e| ProviderError::permanent(format!("cannot build the email: {e}")))
    }
}

/// The plain-text body of a report ([`Report::text`]).
pub fn body(r: &Report) -> String {
    r.text()
}

#[async_trait]
impl Notifier for EmailNotifier {
    async fn notify(&self, n: &Notification) -> Result<(), ProviderError> {
        let message = self.message(n)?;
        // lettre bounds only the connect by its timeout; a server that stops answering mid-way
        // would hold this notifier's queue forever, so the whole delivery is bounded here.
        let sent = match tokio::time::timeout(self.timeout, self.transport.send(message)).await {
            Ok(sent) => sent,
            Err(_) => {
                return Err(ProviderError::transient(format!(
                    "smtp {}:{}: no answer within {}",
                    self.server,
                    self.port,
                    crate::check::secs(self.timeout)
                )))
            }
        };
        match sent {
            Ok(_) => Ok(()),
            Err(e) => {
                let secrets: Vec<&str> = self.password.iter().map(String::as_str).collect();
                let text = redact(&format!("smtp {}:{}: {e}", self.server, self.port), &secrets);
                // A 5xx reply (bad credentials, refused recipient) or a client-side refusal
                // (no common AUTH mechanism) will not change by retrying; everything else
                // (timeouts, 4xx, dropped connections, TLS hiccups) may.
                if e.is_permanent() || e.is_client() {
                    Err(ProviderError::permanent(text))
                } else {
                    Err(ProviderError::transient(text))
                }
            }
        }
    }
}
