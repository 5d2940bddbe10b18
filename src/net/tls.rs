//! TLS on both ports (`--tls-cert`, `--tls-key`, `--tls-ca`, `--tls-auth-clients`), with
//! rustls. A deployment has one CA; each node has a certificate it signed.
//!
//! - **Replication link: mutual.** The upstream requires a client certificate signed by
//!   the CA. The replica verifies the upstream's certificate against the CA, and the
//!   `--join` host name against the certificate's names.
//! - **Client port.** Clients verify the node with the CA. A client certificate is
//!   optional (verified if sent) unless `--tls-auth-clients` requires one.
//! - **No plain text.** A TLS port speaks TLS only. A peer whose first byte is not a TLS
//!   handshake is handed back to the port ([`Accepted::PlainText`]), which tells it so in
//!   its own protocol, logs it, and closes.

use super::stream::Stream;
use crate::error::{Error, Result};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::crypto::{ring, CryptoProvider};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// How long a client has to complete the TLS handshake (as long as it has to `AUTH`).
pub const CLIENT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long either end of a replication link has to complete it (as long as the link's
/// own handshake), so strangers hold the port's few slots only briefly.
pub const LINK_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The first byte of every TLS connection: a handshake record (the ClientHello).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// The TLS options of the command line, as given.
#[derive(Clone, Debug, Default)]
pub struct TlsFiles {
    /// This node's certificate chain (PEM), `--tls-cert`.
    pub cert: Option<PathBuf>,
    /// This node's private key (PEM), `--tls-key`.
    pub key: Option<PathBuf>,
    /// The deployment's CA certificate (PEM), `--tls-ca`.
    pub ca: Option<PathBuf>,
    /// Whether clients must present a certificate signed by the CA, `--tls-auth-clients`.
    pub auth_clients: bool,
}

/// Which port a connection arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// The client (Redis protocol) port: client certificates optional by default.
    Clients,
    /// The replication port: client certificates required.
    Link,
}

/// What became of an incoming connection on a TLS port.
pub enum Accepted {
    /// The handshake completed.
    Tls(Stream),
    /// The peer spoke plain text: the port answers it in its own protocol and closes.
    PlainText(TcpStream),
    /// The handshake failed (a certificate refused, a timeout); why, for the log.
    Failed(String),
    /// The peer closed before sending anything (a port probe, a health check).
    Closed,
}

/// A node's TLS setup, loaded once at start.
pub struct Tls {
    clients: TlsAcceptor,
    link_server: TlsAcceptor,
    link_client: TlsConnector,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls(..)")
    }
}

impl TlsFiles {
    /// Loads the certificates and key, or says in one line what is missing or wrong;
    /// `None` without any TLS option.
    pub fn load(&self) -> Result<Option<Arc<Tls>>> {
        let (cert, key, ca) = match (&self.cert, &self.key, &self.ca) {
            (Some(cert), Some(key), Some(ca)) => (cert, key, ca),
            (None, None, None) if !self.auth_clients => return Ok(None),
            (None, None, None) => {
                return Err(invalid(
                    "--tls-auth-clients needs TLS: add --tls-cert, --tls-key and --tls-ca",
                ))
            }
            (cert, key, ca) => {
                let missing = [("--tls-cert", cert), ("--tls-key", key), ("--tls-ca", ca)]
                    .iter()
                    .filter(|(_, given)| given.is_none())
                    .map(|(option, _)| *option)
                    .collect::<Vec<_>>()
                    .join(" and ");
                let why = match ca {
                    Some(_) => "a node given --tls-ca needs its own certificate and key",
                    None => {
                        "TLS needs all three of --tls-cert, --tls-key and --tls-ca (the CA \
                         that signed the deployment's certificates, which nodes verify each \
                         other against)"
                    }
                };
                return Err(invalid(&format!("{why}: add {missing}")));
            }
        };
        Tls::load(cert, key, ca, self.auth_clients).map(|tls| Some(Arc::new(tls)))
    }
}

fn invalid(message: &str) -> Error {
    Error::Invalid(message.to_string())
}

impl Tls {
    fn load(cert: &Path, key_path: &Path, ca: &Path, auth_clients: bool) -> Result<Tls> {
        let chain = certificates("--tls-cert", cert)?;
        let key = private_key(key_path)?;
        let roots = Arc::new(roots(ca)?);
        let provider = Arc::new(ring::default_provider());
        let files = format!(
            "--tls-cert {}, --tls-key {}",
            cert.display(),
            key_path.display()
        );
        let setup = |e: &dyn std::fmt::Display| Error::Invalid(format!("{files}: {e}"));
        let server = |require_client_cert: bool| -> Result<TlsAcceptor> {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), provider.clone());
            let verifier = match require_client_cert {
                true => verifier,
                false => verifier.allow_unauthenticated(),
            };
            let verifier = verifier.build().map_err(|e| setup(&e))?;
            let config = ServerConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| setup(&e))?
                .with_client_cert_verifier(verifier)
                .with_single_cert(chain.clone(), key.clone_key())
                .map_err(|e| match e {
                    rustls::Error::InconsistentKeys(_) => {
                        setup(&"the key is not the certificate's")
                    }
                    other => setup(&other),
                })?;
            Ok(TlsAcceptor::from(Arc::new(config)))
        };
        let clients = server(auth_clients)?;
        let link_server = server(true)?;
        let link_client =
            client_config(provider.clone(), &roots, chain.clone(), key).map_err(|e| setup(&e))?;
        Ok(Tls {
            clients,
            link_server,
            link_client: TlsConnector::from(Arc::new(link_client)),
        })
    }

    /// Completes the server side of the handshake on `port`, within its time limit.
    pub async fn accept(&self, port: Port, tcp: TcpStream) -> Accepted {
        let (acceptor, limit) = match port {
            Port::Clients => (&self.clients, CLIENT_HANDSHAKE_TIMEOUT),
            Port::Link => (&self.link_server, LINK_HANDSHAKE_TIMEOUT),
        };
        let handshake = async {
            match opens_with_tls(&tcp).await {
                Ok(Some(true)) => {}
                Ok(Some(false)) => return Accepted::PlainText(tcp),
                Ok(None) => return Accepted::Closed,
                Err(e) => return Accepted::Failed(e.to_string()),
            }
            match acceptor.accept(tcp).await {
                Ok(stream) => Accepted::Tls(Stream::Tls(Box::new(stream.into()))),
                Err(e) => Accepted::Failed(format!("TLS handshake failed: {e}")),
            }
        };
        match tokio::time::timeout(limit, handshake).await {
            Ok(accepted) => accepted,
            Err(_) => Accepted::Failed(format!("no TLS handshake within {} s", limit.as_secs())),
        }
    }

    /// The replica's side of the link's handshake with `upstream` (`host:port`): its
    /// certificate must be signed by the CA and name `host`.
    pub async fn connect(&self, tcp: TcpStream, upstream: &str) -> Result<Stream> {
        let host = host_of(upstream);
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| Error::Invalid(format!("{upstream}: {e}")))?;
        let handshake = self.link_client.connect(name, tcp);
        match tokio::time::timeout(LINK_HANDSHAKE_TIMEOUT, handshake).await {
            Ok(Ok(stream)) => Ok(Stream::Tls(Box::new(stream.into()))),
            Ok(Err(e)) => Err(Error::Tls(format!(
                "TLS handshake with {upstream} failed: {e}{}",
                hint(&e)
            ))),
            Err(_) => Err(Error::Timeout(format!("the TLS handshake with {upstream}"))),
        }
    }
}

/// A TLS failure behind an I/O error, in words: the peer's alert after the handshake
/// (TLS 1.3 refuses a client's certificate only then), or rustls' own error.
pub fn failure(e: &std::io::Error) -> Option<String> {
    let tls = e.get_ref()?.downcast_ref::<tokio_rustls::rustls::Error>()?;
    Some(match tls {
        tokio_rustls::rustls::Error::AlertReceived(alert) => format!(
            "the peer ended TLS ({alert:?}): does it trust this node's certificate (signed \
             by the deployment's --tls-ca)?"
        ),
        other => format!("TLS: {other}"),
    })
}

/// A likely cause of a failed handshake the error does not name.
fn hint(e: &std::io::Error) -> &'static str {
    use std::io::ErrorKind::*;
    match e.kind() {
        UnexpectedEof | ConnectionReset | BrokenPipe => {
            " (the upstream closed it: does it run without TLS, or refuse this node's \
             certificate?)"
        }
        InvalidData if e.to_string().contains("corrupt message") => {
            " (does the upstream run without TLS?)"
        }
        _ => "",
    }
}

/// The host of `host:port`, without the brackets of an IPv6 literal.
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Whether the peer's first byte opens a TLS handshake (waiting for it); `None` if the
/// peer closed without sending one.
async fn opens_with_tls(tcp: &TcpStream) -> std::io::Result<Option<bool>> {
    let mut first = [0u8; 1];
    let n = tcp.peek(&mut first).await?;
    Ok((n > 0).then_some(first[0] == TLS_HANDSHAKE_RECORD))
}

fn client_config(
    provider: Arc<CryptoProvider>,
    roots: &Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> std::result::Result<ClientConfig, tokio_rustls::rustls::Error> {
    ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(Arc::clone(roots))
        .with_client_auth_cert(chain, key)
}

/// Every certificate in a PEM file, or why there is none.
fn certificates(option: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let refuse = |reason: String| Error::Invalid(format!("{option} {}: {reason}", path.display()));
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| refuse(pem_error(&e)))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| refuse(pem_error(&e)))?;
    if certs.is_empty() {
        return Err(refuse(
            "no certificate in it (expected PEM: -----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(certs)
}

/// The CA's certificates, as the roots every peer is verified against.
fn roots(path: &Path) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in certificates("--tls-ca", path)? {
        roots.add(cert).map_err(|e| {
            Error::Invalid(format!(
                "--tls-ca {}: not a usable CA certificate: {e}",
                path.display()
            ))
        })?;
    }
    Ok(roots)
}

/// The node's private key, from a file others may not read.
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let pem = crate::auth::read_private("--tls-key", path)?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| Error::Invalid(format!("--tls-key {}: {}", path.display(), pem_error(&e))))
}

fn pem_error(e: &rustls_pki_types::pem::Error) -> String {
    use rustls_pki_types::pem::Error as Pem;
    match e {
        Pem::Io(e) => format!("cannot read it: {e}"),
        Pem::NoItemsFound => {
            "no private key in it (expected PEM: -----BEGIN PRIVATE KEY-----)".into()
        }
        other => format!("not valid PEM: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(cert: bool, key: bool, ca: bool, auth_clients: bool) -> TlsFiles {
        let path = |given: bool, name: &str| given.then(|| PathBuf::from(name));
        TlsFiles {
            cert: path(cert, "node.pem"),
            key: path(key, "node.key"),
            ca: path(ca, "ca.pem"),
            auth_clients,
        }
    }

    fn refusal(files: TlsFiles) -> String {
        files.load().expect_err("refused").to_string()
    }

    #[test]
    fn incomplete_options_are_refused_with_what_is_missing() {
        assert!(files(false, false, false, false)
            .load()
            .expect("no TLS")
            .is_none());
        let no_cert_or_key = refusal(files(false, false, true, false));
        assert!(
            no_cert_or_key
                .contains("needs its own certificate and key: add --tls-cert and --tls-key"),
            "{no_cert_or_key}"
        );
        assert!(refusal(files(true, false, true, false)).ends_with("add --tls-key"));
        let no_ca = refusal(files(true, true, false, false));
        assert!(
            no_ca.contains("all three") && no_ca.ends_with("add --tls-ca"),
            "{no_ca}"
        );
        let key_only = refusal(files(false, true, false, false));
        assert!(
            key_only.ends_with("add --tls-cert and --tls-ca"),
            "{key_only}"
        );
        assert!(refusal(files(false, false, false, true)).contains("--tls-auth-clients needs"));
        let missing = refusal(files(true, true, true, false));
        assert!(
            missing.contains("--tls-cert node.pem: cannot read it"),
            "{missing}"
        );
    }

    #[test]
    fn the_host_of_an_address() {
        assert_eq!(host_of("db1.example:8080"), "db1.example");
        assert_eq!(host_of("127.0.0.1:8080"), "127.0.0.1");
        assert_eq!(host_of("[::1]:8080"), "::1");
    }
}
