//! A throwaway PKI for tests: one CA and one server certificate it signs.
//!
//! TLS is tested with verification on (`sslmode=verify-full`), never with
//! "accept anything", so the certificate must name the host the client dials:
//! the server certificate carries the SANs `localhost` and `127.0.0.1`.
//! Files are PEM, as PostgreSQL (`ssl_cert_file`, `ssl_key_file`), libpq
//! (`sslrootcert`) and rustls read them.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// Names the server certificate is valid for.
pub const SERVER_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

/// A CA and a server certificate signed by it, written to `ca.crt`,
/// `server.crt` and `server.key` in one directory.
pub struct TestPki {
    dir: PathBuf,
    ca_pem: String,
    server_cert_pem: String,
    server_key_pem: String,
}

impl TestPki {
    /// Generates the CA and server certificate and writes them to `dir`
    /// (created if missing). The key file is mode 0600: PostgreSQL refuses a
    /// key that its group or others can read.
    pub fn new(dir: &Path) -> TestPki {
        let mut ca_params = CertificateParams::default();
        // A name of its own: OpenSSL finds an issuer by name, so two test
        // CAs with one name fail as a bad signature, not an unknown issuer.
        let ca_name = format!("Portcullis test CA {:016x}", rand::random::<u64>());
        ca_params
            .distinguished_name
            .push(DnType::CommonName, ca_name);
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate().expect("ring generates an ECDSA key");
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA parameters are valid");

        let mut server_params = CertificateParams::new(SERVER_NAMES.map(String::from).to_vec())
            .expect("SERVER_NAMES are valid DNS names or IP addresses");
        server_params
            .distinguished_name
            .push(DnType::CommonName, SERVER_NAMES[0]);
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate().expect("ring generates an ECDSA key");
        let server_cert = server_params
            .signed_by(&server_key, &ca)
            .expect("the CA signs the server parameters");

        let pki = TestPki {
            dir: dir.to_path_buf(),
            ca_pem: ca.pem(),
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
        };
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        write_file(&pki.ca_cert_path(), &pki.ca_pem, 0o644);
        write_file(&pki.server_cert_path(), &pki.server_cert_pem, 0o644);
        write_file(&pki.server_key_path(), &pki.server_key_pem, 0o600);
        pki
    }

    /// The directory holding the three files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `ca.crt`: what a client trusts (libpq `sslrootcert`).
    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// `server.crt`: the leaf certificate alone (the CA is what clients trust).
    pub fn server_cert_path(&self) -> PathBuf {
        self.dir.join("server.crt")
    }

    /// `server.key`: PKCS#8 private key, mode 0600.
    pub fn server_key_path(&self) -> PathBuf {
        self.dir.join("server.key")
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub fn server_cert_pem(&self) -> &str {
        &self.server_cert_pem
    }

    pub fn server_key_pem(&self) -> &str {
        &self.server_key_pem
    }
}

/// Writes `contents` to a new file created with `mode`, so a key is never
/// readable by others, not even for a moment.
fn write_file(path: &Path, contents: &str, mode: u32) {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
    file.write_all(contents.as_bytes())
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}
