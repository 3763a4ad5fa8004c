//! TLS for the load generator (`--tls` or an `https://` URL): the rustls client config the
//! run shares (one cipher suite and one key exchange group so every server under test does
//! the same cryptographic work; session resumption on with `--resume`, off otherwise;
//! certificates verified against `--tls-ca`, or not at all on loopback), and [`TlsConn`], one
//! connection's session driven over the engine's non-blocking socket.
//!
//! The engine keeps plain HTTP/1.1 on its own path: a connection without TLS never enters this
//! module (one `Option` check per socket operation).

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
pub use rustls::ClientConfig;
use rustls::{ClientConnection, DigitallySignedStruct, HandshakeKind, SignatureScheme};

use crate::conn::Socket;
use crate::Error;

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// Resume sessions (TLS 1.3 tickets, TLS 1.2 tickets or ids) on new connections.
    pub resume: bool,
    /// Verify the server's certificate against these CA certificates (PEM); None: accept any
    /// certificate (the handshake's signature is still checked).
    pub ca_file: Option<PathBuf>,
}

/// The cipher suite every handshake offers (and so every server picks).
pub const CIPHER_SUITE: &str = "TLS13_AES_128_GCM_SHA256";
/// The key exchange group every handshake offers.
pub const KX_GROUP: &str = "X25519";

/// The shared client side of a run: the rustls config and the name the certificate is checked
/// against (an IP address sends no SNI, as rustls does for IP names).
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    resume: bool,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("name", &self.name)
            .field("resume", &self.resumes())
            .finish()
    }
}

impl PartialEq for TlsClient {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.config, &other.config) && self.name == other.name
    }
}

fn provider() -> CryptoProvider {
    let base = ring::default_provider();
    CryptoProvider {
        cipher_suites: vec![ring::cipher_suite::TLS13_AES_128_GCM_SHA256],
        kx_groups: vec![ring::kx_group::X25519],
        ..base
    }
}

impl TlsClient {
    /// The client config for `host` (the URL's host) with `opts`.
    pub fn new(host: &str, opts: &TlsOptions) -> Result<TlsClient, Error> {
        let provider = Arc::new(provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| Error::new(format!("TLS setup: {e}")))?;
        let mut config = match &opts.ca_file {
            Some(path) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in read_certs(path)? {
                    roots
                        .add(cert)
                        .map_err(|e| Error::new(format!("--tls-ca {}: {e}", path.display())))?;
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.resumption = if opts.resume {
            Resumption::in_memory_sessions(4)
        } else {
            Resumption::disabled()
        };
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| Error::new(format!("{host}: not a TLS server name: {e}")))?;
        Ok(TlsClient {
            config: Arc::new(config),
            name,
            resume: opts.resume,
        })
    }

    pub fn resumes(&self) -> bool {
        self.resume
    }

    /// The config of one connection slot: with `--resume`, its own session store (one client
    /// per connection, resuming its own tickets: a store shared by all connections keeps only
    /// a few tickets per server, and concurrent connections would find none); else the shared
    /// config.
    pub fn slot_config(&self) -> Arc<ClientConfig> {
        if self.resume {
            let mut c = (*self.config).clone();
            c.resumption = Resumption::in_memory_sessions(4);
            Arc::new(c)
        } else {
            self.config.clone()
        }
    }

    /// A new session for one connection of a slot (`config` from [`TlsClient::slot_config`]).
    pub fn connect(&self, config: &Arc<ClientConfig>) -> io::Result<TlsConn> {
        let conn =
            ClientConnection::new(config.clone(), self.name.clone()).map_err(io::Error::other)?;
        Ok(TlsConn {
            conn,
            eof: false,
            counted: false,
        })
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| Error::new(format!("--tls-ca {}: {e}", path.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| Error::new(format!("--tls-ca {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::new(format!(
            "--tls-ca {}: no PEM certificate in it",
            path.display()
        )));
    }
    Ok(certs)
}

/// Accepts any server certificate (loopback benchmarks without `--tls-ca`), but checks the
/// handshake signatures as a verifying client would, so the work per handshake is the same.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `Read`/`Write` over the engine's non-blocking socket, for rustls's `read_tls`/`write_tls`.
struct SockIo<'a>(&'a Socket);

impl Read for SockIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for SockIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How a completed handshake went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    Full,
    Resumed,
}

/// One connection's TLS session.
pub struct TlsConn {
    conn: ClientConnection,
    /// The peer closed the TCP stream.
    eof: bool,
    /// The handshake's outcome was reported.
    counted: bool,
}

impl TlsConn {
    /// Sends what rustls holds (handshake messages, encrypted requests) until it is all out or
    /// the socket is full (`Ok`; the rest goes on the next writable edge, see
    /// [`TlsConn::wants_write`]).
    pub fn flush(&mut self, sock: &Socket) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut SockIo(sock)) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Encrypted bytes are waiting for the socket.
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Takes plaintext (buffered by rustls until the handshake is done, up to its limit) and
    /// sends what it can. Returns how much plaintext was taken; `WouldBlock` when none could be
    /// (the caller keeps it and offers it again when the handshake is done or the socket
    /// drains).
    pub fn write(&mut self, sock: &Socket, buf: &[u8]) -> io::Result<usize> {
        let n = self.conn.writer().write(buf)?;
        self.flush(sock)?;
        if n == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    /// Reads plaintext into `buf`: Ok(0) at the end of the stream, `WouldBlock` once the socket
    /// is drained (the engine's sockets are edge-triggered: call until then). `handshake` is
    /// set once, when the handshake completes.
    pub fn read(
        &mut self,
        sock: &Socket,
        buf: &mut [u8],
        handshake: &mut Option<Handshake>,
    ) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // Closed without close_notify: the engine treats it as any end of stream.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if self.eof {
                return Ok(0);
            }
            match self.conn.read_tls(&mut SockIo(sock)) {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(e) => return Err(e),
            }
            self.conn
                .process_new_packets()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            if !self.counted && !self.conn.is_handshaking() {
                self.counted = true;
                *handshake = Some(match self.conn.handshake_kind() {
                    Some(HandshakeKind::Resumed) => Handshake::Resumed,
                    _ => Handshake::Full,
                });
            }
            // Handshake replies, and requests that waited for the handshake.
            self.flush(sock)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_configs() {
        let no = TlsOptions {
            resume: false,
            ca_file: None,
        };
        let c = TlsClient::new("127.0.0.1", &no).expect("config");
        assert!(!c.resumes());
        assert!(matches!(c.name, ServerName::IpAddress(_)));
        let yes = TlsClient::new(
            "localhost",
            &TlsOptions {
                resume: true,
                ..no.clone()
            },
        )
        .expect("config");
        assert!(yes.resumes());
        // A store per connection slot with --resume; one shared config without.
        assert!(!Arc::ptr_eq(&yes.slot_config(), &yes.slot_config()));
        assert!(Arc::ptr_eq(&c.slot_config(), &c.slot_config()));
        assert!(matches!(yes.name, ServerName::DnsName(_)));
        assert_eq!(yes.config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        // One suite and one group, whatever the server prefers.
        let p = provider();
        assert_eq!(p.cipher_suites.len(), 1);
        assert_eq!(format!("{:?}", p.cipher_suites[0].suite()), CIPHER_SUITE);
        assert_eq!(format!("{:?}", p.kx_groups[0].name()), KX_GROUP);
        let err = TlsClient::new(
            "127.0.0.1",
            &TlsOptions {
                resume: false,
                ca_file: Some("/nonexistent/ca.pem".into()),
            },
        )
        .unwrap_err();
        assert!(err.0.contains("--tls-ca /nonexistent/ca.pem"), "{err}");
    }
}
