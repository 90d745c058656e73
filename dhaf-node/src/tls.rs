//! TLS for the REST API (`dhaf.web-api.tls`): the server certificate, optionally the CA that
//! signs client certificates (mutual TLS), and their rotation without a restart.
//!
//! [`ApiTls`] holds the current rustls config behind a lock; every accepted connection takes the
//! config in force at that moment, so a reloaded certificate applies to the next handshake while
//! open connections keep theirs. [`ApiTls::reload_if_changed`] re-reads the files when their
//! contents changed; [`ApiTls::watch`] calls it periodically. A file caught half-written (or any
//! bad file) keeps the old certificate in force and is reported, never taken.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use dhaf_core::config::{ConfigError, ConfigProblem, WebApiTls};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};

/// How often [`ApiTls::watch`] looks at the files by default.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(10);

/// The API's TLS settings as currently in force.
pub struct ApiTls {
    files: Files,
    current: RwLock<Arc<ServerConfig>>,
    /// The files' contents the current config was built from, to tell a change.
    loaded_from: Mutex<Vec<u8>>,
}

#[derive(Clone)]
struct Files {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
}

impl ApiTls {
    /// Load `dhaf.web-api.tls`, relative paths taken against `base_dir` (the config file's
    /// directory). Errors name the key whose file is missing or unusable.
    pub fn load(tls: &WebApiTls, base_dir: &Path) -> Result<ApiTls, ConfigError> {
        let files = Files {
            cert: base_dir.join(&tls.cert),
            key: base_dir.join(&tls.key),
            client_ca: tls.client_ca.as_ref().map(|p| base_dir.join(p)),
        };
        let (config, contents) = build(&files).map_err(|problems| ConfigError { problems })?;
        Ok(ApiTls { files, current: RwLock::new(config), loaded_from: Mutex::new(contents) })
    }

    /// The config for the next handshake.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current.read().unwrap().clone()
    }

    /// Whether clients must present a certificate.
    pub fn requires_client_certificate(&self) -> bool {
        self.files.client_ca.is_some()
    }

    /// Re-read the files; take them if their contents changed and they are valid. Returns
    /// whether a new certificate is now in force; a bad file is logged and the old one kept.
    pub fn reload_if_changed(&self) -> bool {
        let contents = match read_all(&self.files) {
            Ok(c) => c,
            Err(problems) => {
                tracing::warn!(problem = %problems[0], "rest api: cannot read the TLS files; the current certificate stays in force");
                return false;
            }
        };
        if *self.loaded_from.lock().unwrap() == contents {
            return false;
        }
        match build(&self.files) {
            Ok((config, contents)) => {
                *self.current.write().unwrap() = config;
                *self.loaded_from.lock().unwrap() = contents;
                tracing::info!(cert = %self.files.cert.display(), "rest api: TLS certificate reloaded");
                true
            }
            Err(problems) => {
                tracing::warn!(problem = %problems[0], "rest api: the changed TLS files are not usable; the current certificate stays in force");
                false
            }
        }
    }

    /// Reload the files whenever they change, checking every `every`, until dropped.
    pub async fn watch(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let me = self.clone();
            // File reads block; keep them off the runtime's workers.
            let _ = tokio::task::spawn_blocking(move || me.reload_if_changed()).await;
        }
    }
}

fn problem(key: &str, message: String) -> Vec<ConfigProblem> {
    vec![ConfigProblem { path: format!("dhaf.web-api.tls.{key}"), message }]
}

fn read(key: &str, path: &Path) -> Result<Vec<u8>, Vec<ConfigProblem>> {
    std::fs::read(path).map_err(|e| problem(key, format!("cannot read {}: {e}", path.display())))
}

fn read_all(files: &Files) -> Result<Vec<u8>, Vec<ConfigProblem>> {
    let mut all = read("cert", &files.cert)?;
    all.extend(read("key", &files.key)?);
    if let Some(ca) = &files.client_ca {
        all.extend(read("client-ca", ca)?);
    }
    Ok(all)
}

fn certificates(key: &str, path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, Vec<ConfigProblem>> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| problem(key, format!("{} is not PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(problem(key, format!("{} holds no PEM certificate", path.display())));
    }
    Ok(certs)
}

fn build(files: &Files) -> Result<(Arc<ServerConfig>, Vec<u8>), Vec<ConfigProblem>> {
    let cert_pem = read("cert", &files.cert)?;
    let key_pem = read("key", &files.key)?;
    let chain = certificates("cert", &files.cert, &cert_pem)?;
    // The message of a key parse error never holds key material.
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| problem("key", format!("{} holds no usable PEM private key: {e}", files.key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| problem("cert", format!("TLS setup: {e}")))?;
    let mut contents = cert_pem;
    contents.extend(&key_pem);
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let ca_pem = read("client-ca", ca)?;
            let mut roots = RootCertStore::empty();
            for c in certificates("client-ca", ca, &ca_pem)? {
                roots.add(c).map_err(|e| problem("client-ca", format!("{}: not a usable CA certificate: {e}", ca.display())))?;
            }
            contents.extend(&ca_pem);
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| problem("client-ca", format!("{}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| problem("key", format!("does not fit the certificate in {}: {e}", files.cert.display())))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(config), contents))
}
