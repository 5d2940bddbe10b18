//! Certificates for the TLS tests, generated at run time with rcgen (no key is ever
//! committed): a CA per "deployment", and node certificates it signs, written as PEM files
//! into the test's temporary directory, keys readable by their owner only.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// A certificate authority, and where its certificate is.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    dir: PathBuf,
    /// Its certificate (PEM), for `--tls-ca`.
    pub cert: PathBuf,
}

/// A node's (or client's) certificate and key files.
pub struct Identity {
    /// The certificate (PEM), for `--tls-cert`.
    pub cert: String,
    /// The private key (PEM, mode 600), for `--tls-key`.
    pub key: String,
}

impl Identity {
    /// `--tls-cert CERT --tls-key KEY --tls-ca CA`.
    pub fn args<'a>(&'a self, ca: &'a Ca) -> Vec<&'a str> {
        let ca = ca.cert.to_str().expect("utf-8 path");
        vec![
            "--tls-cert",
            &self.cert,
            "--tls-key",
            &self.key,
            "--tls-ca",
            ca,
        ]
    }
}

impl Ca {
    /// A new CA named `name`, its files under `dir`.
    pub fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        let path = dir.join(format!("{name}.pem"));
        std::fs::write(&path, cert.pem()).expect("write the CA");
        Ca {
            issuer: Issuer::new(params, key),
            dir: dir.to_path_buf(),
            cert: path,
        }
    }

    /// A certificate for `names` (host names or IP addresses) signed by this CA, good for
    /// both ends of a connection, saved as `FILE.pem` and `FILE.key`.
    pub fn issue(&self, file: &str, names: &[&str]) -> Identity {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("params");
        params.distinguished_name.push(DnType::CommonName, file);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let cert_path = self.dir.join(format!("{file}.pem"));
        let key_path = self.dir.join(format!("{file}.key"));
        std::fs::write(&cert_path, cert.pem()).expect("write the certificate");
        std::fs::write(&key_path, key.serialize_pem()).expect("write the key");
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        Identity {
            cert: cert_path.display().to_string(),
            key: key_path.display().to_string(),
        }
    }

    /// The CA certificate's PEM text.
    pub fn pem(&self) -> Vec<u8> {
        std::fs::read(&self.cert).expect("read the CA")
    }

    /// A blocking TLS client to `port` on 127.0.0.1 that trusts this CA, presenting
    /// `identity` if given.
    pub fn connect(
        &self,
        port: u16,
        identity: Option<&Identity>,
    ) -> std::io::Result<StreamOwned<ClientConnection, std::net::TcpStream>> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&self.cert).expect("CA") {
            roots.add(cert.expect("CA cert")).expect("root");
        }
        let builder = ClientConfig::builder().with_root_certificates(roots);
        let config = match identity {
            Some(identity) => {
                let chain = CertificateDer::pem_file_iter(&identity.cert)
                    .expect("cert")
                    .map(|c| c.expect("cert"))
                    .collect();
                let key = PrivateKeyDer::from_pem_file(&identity.key).expect("key");
                builder
                    .with_client_auth_cert(chain, key)
                    .expect("client auth")
            }
            None => builder.with_no_client_auth(),
        };
        let name = ServerName::try_from("127.0.0.1").expect("name");
        let connection = ClientConnection::new(Arc::new(config), name).expect("client");
        let tcp = std::net::TcpStream::connect(("127.0.0.1", port))?;
        let mut stream = StreamOwned::new(connection, tcp);
        // Completes the handshake now, so a refusal shows here.
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(stream)
    }
}
