//! The shared secret of a deployment (`--auth-file`): read from a file only its owner may
//! read, never from the command line, never logged, and compared in constant time.
//! Clients prove it with `AUTH` on the client port; the two ends of a replication link
//! prove it to each other without sending it ([`Secret::prove`]: HMAC-SHA256 over a fresh
//! nonce from each side); a node without one accepts only loopback connections unless the
//! operator says `--insecure`.

use crate::error::{Error, Result};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The shortest secret accepted: a challenge–response hands an impostor something to
/// guess against offline, so the secret must be long (the README recommends a generated
/// one, `openssl rand -hex 32`).
pub const MIN_SECRET_LEN: usize = 16;

/// Bytes of each side's nonce in a link handshake.
pub const NONCE_LEN: usize = 32;

/// A fresh random nonce for one link handshake.
pub fn nonce() -> Vec<u8> {
    rand::random::<[u8; NONCE_LEN]>().to_vec()
}

/// The end of a replication link that proves it knows the secret. Each side's proof is
/// labelled with its side, so neither can be replayed as the other's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The node serving the stream.
    Upstream,
    /// The node that dialled it.
    Replica,
}

impl Side {
    fn label(self) -> &'static [u8] {
        match self {
            Side::Upstream => b"kv link upstream v1",
            Side::Replica => b"kv link replica v1",
        }
    }
}

/// The contents of a file holding a credential (`option` names it in errors): refused
/// unless it is a regular file with no group or other permission bits.
pub fn read_private(option: &str, path: &Path) -> Result<Vec<u8>> {
    let refuse = |reason: String| Error::Invalid(format!("{option} {}: {reason}", path.display()));
    let meta = std::fs::metadata(path).map_err(|e| refuse(format!("cannot read it: {e}")))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(refuse(format!(
            "others may read it (mode {mode:03o}); make it private with `chmod 600 {}`",
            path.display()
        )));
    }
    if !meta.is_file() {
        return Err(refuse("not a regular file".into()));
    }
    std::fs::read(path).map_err(|e| refuse(format!("cannot read it: {e}")))
}

/// A deployment's shared secret. Its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// Reads the secret from `path`: one line (a final newline is dropped), at least
    /// [`MIN_SECRET_LEN`] characters, in a file with no group or other permission bits.
    pub fn load(path: &Path) -> Result<Secret> {
        let text = read_private("--auth-file", path)?;
        Self::parse(&text)
            .map_err(|reason| Error::Invalid(format!("--auth-file {}: {reason}", path.display())))
    }

    /// The secret in a file's contents, or why they are not one.
    fn parse(text: &[u8]) -> std::result::Result<Secret, String> {
        let line = text.strip_suffix(b"\n").unwrap_or(text);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.contains(&b'\n') {
            return Err("it must hold the secret on one line, and nothing else".into());
        }
        if line.len() < MIN_SECRET_LEN {
            return Err(format!(
                "the secret is shorter than {MIN_SECRET_LEN} characters; generate one with \
                 `openssl rand -hex 32`"
            ));
        }
        Ok(Secret(line.to_vec()))
    }

    /// `side`'s proof, over both nonces of a handshake, that it knows the secret.
    pub fn prove(&self, side: Side, replica_nonce: &[u8], upstream_nonce: &[u8]) -> Vec<u8> {
        match self.mac(side, replica_nonce, upstream_nonce) {
            Some(mac) => mac.finalize().into_bytes().to_vec(),
            // HMAC takes a key of any length; an empty proof never verifies.
            None => Vec::new(),
        }
    }

    /// Whether `proof` is `side`'s proof over these nonces (compared in constant time).
    pub fn verify(
        &self,
        side: Side,
        replica_nonce: &[u8],
        upstream_nonce: &[u8],
        proof: &[u8],
    ) -> bool {
        self.mac(side, replica_nonce, upstream_nonce)
            .is_some_and(|mac| mac.verify_slice(proof).is_ok())
    }

    fn mac(&self, side: Side, replica_nonce: &[u8], upstream_nonce: &[u8]) -> Option<Hmac<Sha256>> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).ok()?;
        mac.update(side.label());
        for nonce in [replica_nonce, upstream_nonce] {
            mac.update(&(nonce.len() as u64).to_be_bytes());
            mac.update(nonce);
        }
        Some(mac)
    }

    /// Whether `candidate` is the secret, in time that does not depend on where they
    /// differ.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let mut differ = u8::from(self.0.len() != candidate.len());
        for (i, byte) in self.0.iter().enumerate() {
            differ |= byte ^ candidate.get(i).copied().unwrap_or(!byte);
        }
        differ == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(dir: &Path, text: &[u8], mode: u32) -> std::path::PathBuf {
        let path = dir.join("secret");
        let mut file = std::fs::File::create(&path).expect("create");
        file.write_all(text).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }

    #[test]
    fn a_private_file_with_a_long_line_is_a_secret() {
        let dir = tempfile::TempDir::new().expect("tempdir");
        let secret = Secret::load(&file(dir.path(), b"0123456789abcdef\n", 0o600)).expect("load");
        assert!(secret.matches(b"0123456789abcdef"));
        assert!(!secret.matches(b"0123456789abcdeF"));
        assert!(!secret.matches(b"0123456789abcde"));
        assert!(!secret.matches(b"0123456789abcdef0"));
        assert!(!secret.matches(b""));
        assert_eq!(format!("{secret:?}"), "Secret(..)");
        let crlf = Secret::load(&file(dir.path(), b"0123456789abcdef\r\n", 0o400)).expect("load");
        assert!(crlf.matches(b"0123456789abcdef"));
    }

    #[test]
    fn a_proof_verifies_only_for_its_side_nonces_and_secret() {
        let secret = Secret(b"0123456789abcdef".to_vec());
        let other = Secret(b"0123456789abcdeX".to_vec());
        let (r, u) = (nonce(), nonce());
        assert_ne!(r, u, "fresh nonces");
        let proof = secret.prove(Side::Upstream, &r, &u);
        assert_eq!(proof.len(), 32);
        assert!(secret.verify(Side::Upstream, &r, &u, &proof));
        assert!(
            !secret.verify(Side::Replica, &r, &u, &proof),
            "not the other side's"
        );
        assert!(
            !secret.verify(Side::Upstream, &u, &r, &proof),
            "nonces in order"
        );
        assert!(
            !secret.verify(Side::Upstream, &r, &nonce(), &proof),
            "a fresh nonce"
        );
        assert!(
            !other.verify(Side::Upstream, &r, &u, &proof),
            "another secret"
        );
        assert!(!secret.verify(Side::Upstream, &r, &u, &[]));
    }

    #[test]
    fn open_short_or_many_line_files_are_refused() {
        let dir = tempfile::TempDir::new().expect("tempdir");
        let cases: [(&[u8], u32, &str); 5] = [
            (b"0123456789abcdef\n", 0o644, "chmod 600"),
            (b"0123456789abcdef\n", 0o620, "mode 620"),
            (b"short\n", 0o600, "shorter than 16"),
            (b"0123456789abcdef\nmore\n", 0o600, "one line"),
            (b"", 0o600, "shorter than 16"),
        ];
        for (text, mode, expected) in cases {
            let err = Secret::load(&file(dir.path(), text, mode)).expect_err("refused");
            let message = err.to_string();
            assert!(message.contains(expected), "{message}");
            assert!(message.contains("--auth-file"), "{message}");
            assert!(!message.contains("0123456789abcdef"), "{message}");
        }
        let missing = Secret::load(&dir.path().join("none")).expect_err("missing");
        assert!(missing.to_string().contains("cannot read it"), "{missing}");
    }
}
