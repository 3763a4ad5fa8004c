//! TLS on top of the socket paths: rustls's sans-IO connections (`ServerConnection` for the
//! edge, `ClientConnection` for https backends) wrapped around the plain socket (`Plain`), so the lean
//! io_uring path (or the poll path) still moves the bytes underneath and the code above the
//! net contract does not change.
//!
//! - Edge (`Edge`, one per TLS listener per shard): a `rustls::server::Acceptor` reads the
//!   ClientHello; its SNI picks the `ServerConfig` of the custom domain that names it (exact
//!   before wildcard, `Tls::domain_for`), else the listener's own certificate. Each config
//!   carries the domain's security policy (versions and cipher suites), ALPN `http/1.1`, the
//!   mutual-TLS verifier of its truststore, and the process's session-ticket key (tickets are
//!   accepted by any shard). The handshake runs inside the first `read`/`readable` the
//!   connection's task makes, never in the accept loop.
//! - A first byte that cannot start a TLS record but starts an HTTP method gets a plain
//!   `400` ("plain HTTP request sent to a TLS port") and the connection closes.
//! - Reads use the caller's buffer for ciphertext (at most 16 KiB at a time, so the decrypted
//!   bytes always fit rustls's plaintext buffer), then decrypt into it: no read buffer of our
//!   own. Writes encrypt into one per-connection buffer `wbuf` and go out through the plain
//!   socket's `write_all`.
//! - The verified client certificate's fields (`ClientCert`) are parsed once after the
//!   handshake and kept on the connection.
//!
//! Cost on the TLS path, per request: rustls's decryption and encryption and two extra copies
//! of each byte (ciphertext into the caller's buffer, plaintext out of rustls; and plaintext
//! into rustls, ciphertext out of `wbuf`). Per connection: rustls's state (a few KiB) and
//! `wbuf`. A plain connection pays one more arm in `Conn`'s `match`. Measured
//! (bench/callgrind-tls.sh, bench/RESULTS.md "TLS cost"): a keep-alive request with a 1 KiB
//! answer costs ~7,850 instructions more than over plain HTTP, half of it AES-GCM; a full
//! handshake ~1.28 M, a resumed one ~1.13 M, 90 % of it `ring`. Between records nothing asks
//! rustls to process again (`plaintext_waiting`), and a response is sent with its caller's
//! timeout (no clock read).

use super::Plain;
use rustls::crypto::ring::{cipher_suite, default_provider};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::server::{Acceptor, ProducesTickets, WebPkiClientVerifier};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use std::io::{self, Read, Write};
use std::rc::Rc;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tollgate_core::tls::{ClientCert, Identity, SecurityPolicy, Tls, TlsSession};

/// Ciphertext read per step: decrypted, it always fits rustls's plaintext buffer.
const CIPHERTEXT_STEP: usize = 16 * 1024;
/// `wbuf` keeps at most this capacity between writes.
const WBUF_KEEP: usize = 32 * 1024;

/// The answer to a plain-HTTP request on a TLS port.
const PLAIN_HTTP_REFUSAL: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 47\r\nConnection: close\r\n\r\nThis port speaks HTTPS: plain HTTP was refused.";

/// The session-ticket key of the process: a ticket issued by one shard resumes on any other
/// (the kernel spreads a client's connections over the shards). Touched once per handshake.
fn ticketer() -> io::Result<Arc<dyn ProducesTickets>> {
    static TICKETER: OnceLock<Result<Arc<dyn ProducesTickets>, String>> = OnceLock::new();
    TICKETER
        .get_or_init(|| rustls::crypto::ring::Ticketer::new().map_err(|e| e.to_string()))
        .clone()
        .map_err(io::Error::other)
}

/// The rustls provider for a security policy: API Gateway's `TLS_1_2` list less what rustls
/// does not implement (CBC suites); see tuning/CONFIG.md.
fn provider(policy: SecurityPolicy) -> CryptoProvider {
    match policy {
        SecurityPolicy::Tls12 => CryptoProvider {
            cipher_suites: vec![
                cipher_suite::TLS13_AES_128_GCM_SHA256,
                cipher_suite::TLS13_AES_256_GCM_SHA384,
                cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
                cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
                cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
                cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            ],
            ..default_provider()
        },
    }
}

fn server_config(
    id: &Identity,
    policy: SecurityPolicy,
    truststore: Option<&[CertificateDer<'static>]>,
) -> io::Result<Arc<ServerConfig>> {
    let provider = Arc::new(provider(policy));
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(io::Error::other)?;
    let builder = match truststore {
        Some(certs) => {
            let mut roots = RootCertStore::empty();
            for c in certs {
                roots.add(c.clone()).map_err(io::Error::other)?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(io::Error::other)?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder
        .with_single_cert(id.chain.clone(), id.key.clone_key())
        .map_err(|e| io::Error::other(format!("{}: {e}", id.certificate_file)))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg.ticketer = ticketer()?;
    Ok(Arc::new(cfg))
}

/// One TLS listener's server side on one shard.
pub struct Edge {
    /// For clients without SNI or with a name no domain has.
    default: Arc<ServerConfig>,
    /// One per `tls.domains` entry, same order.
    domains: Vec<Arc<ServerConfig>>,
    tls: Tls,
}

impl Edge {
    pub fn new(tls: &Tls, default: &Identity) -> io::Result<Edge> {
        let domains = tls
            .domains
            .iter()
            .map(|d| server_config(&d.identity, d.policy, d.truststore.as_deref()))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Edge {
            default: server_config(default, SecurityPolicy::default(), None)?,
            domains,
            tls: tls.clone(),
        })
    }

    /// The config for SNI name `sni`, and the index of its domain (`None`: the default).
    fn config_for(&self, sni: Option<&str>) -> (Arc<ServerConfig>, Option<usize>) {
        let domain = sni
            .and_then(|n| self.tls.domain_for(n))
            .filter(|&i| i < self.domains.len());
        let config = domain.map_or(&self.default, |i| &self.domains[i]);
        (config.clone(), domain)
    }
}

/// A backend's client side: verified against `ca_file` or the bundled web roots.
pub fn client_config(ca: Option<&[CertificateDer<'static>]>) -> io::Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(certs) => {
            for c in certs {
                roots.add(c.clone()).map_err(io::Error::other)?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let mut cfg =
        ClientConfig::builder_with_provider(Arc::new(provider(SecurityPolicy::default())))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(io::Error::other)?
            .with_root_certificates(roots)
            .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

enum State {
    /// Waiting for the ClientHello.
    Accepting(Box<Acceptor>, Rc<Edge>),
    Server(Box<ServerConnection>),
    Client(Box<ClientConnection>),
    /// A fatal error was met (and reported once).
    Failed,
}

pub struct Stream {
    plain: Plain,
    state: State,
    /// Ciphertext waiting to be sent.
    wbuf: Vec<u8>,
    /// Nothing read from the socket yet (for the plain-HTTP check).
    fresh: bool,
    /// Set once the server handshake is over.
    session: Option<Rc<TlsSession>>,
    /// The SNI's domain, until `session` is set.
    domain: Option<usize>,
}

/// Whether decrypted bytes (or the peer's close_notify) wait in `c`. `feed` runs
/// `process_new_packets` after every `read_tls` and that drains every complete record, so with
/// nothing queued to send, `wants_read` (no plaintext, no close_notify) answers without
/// processing again; otherwise (mid-handshake, an alert queued) rustls is asked.
fn plaintext_waiting<D>(c: &mut rustls::ConnectionCommon<D>) -> bool {
    if !c.wants_write() {
        return !c.wants_read();
    }
    c.process_new_packets()
        .is_ok_and(|s| s.plaintext_bytes_to_read() > 0 || s.peer_has_closed())
}

fn fatal(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("tls: {what}"))
}

impl Stream {
    pub fn accept(plain: Plain, edge: Rc<Edge>) -> Stream {
        Stream::with(plain, State::Accepting(Box::default(), edge))
    }

    fn with(plain: Plain, state: State) -> Stream {
        Stream {
            plain,
            state,
            wbuf: Vec::new(),
            fresh: true,
            session: None,
            domain: None,
        }
    }

    /// Opens the client side over `plain` and completes the handshake by `deadline`.
    pub async fn connect(
        plain: Plain,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
        deadline: Instant,
    ) -> io::Result<Stream> {
        let c = ClientConnection::new(config, name).map_err(fatal)?;
        let mut s = Stream::with(plain, State::Client(Box::new(c)));
        s.fresh = false;
        let mut scratch = vec![0u8; CIPHERTEXT_STEP];
        while s.handshaking() {
            s.flush(deadline).await?;
            if !s.fill(&mut scratch, deadline).await? {
                return Err(fatal(
                    "the backend closed the connection during the handshake",
                ));
            }
        }
        s.flush(deadline).await?;
        Ok(s)
    }

    pub(super) fn plain(&self) -> &Plain {
        &self.plain
    }

    pub fn session(&self) -> Option<Rc<TlsSession>> {
        self.session.clone()
    }

    fn handshaking(&self) -> bool {
        match &self.state {
            State::Accepting(..) => true,
            State::Server(c) => c.is_handshaking(),
            State::Client(c) => c.is_handshaking(),
            State::Failed => false,
        }
    }

    /// Decrypted bytes into `buf`: `Some(n)` (0 = clean close), `None` when none are ready.
    fn take_plaintext(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let r = match &mut self.state {
            State::Server(c) => c.reader().read(buf),
            State::Client(c) => c.reader().read(buf),
            State::Accepting(..) => return Ok(None),
            State::Failed => return Err(fatal("connection failed")),
        };
        match r {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether decrypted bytes (or the peer's close_notify) are waiting.
    fn has_plaintext(&mut self) -> bool {
        match &mut self.state {
            State::Server(c) => plaintext_waiting(c),
            State::Client(c) => plaintext_waiting(c),
            _ => false,
        }
    }

    /// Whether rustls has bytes queued to send.
    fn wants_write(&self) -> bool {
        match &self.state {
            State::Server(c) => c.wants_write(),
            State::Client(c) => c.wants_write(),
            _ => false,
        }
    }

    /// Moves what rustls has queued (handshake messages, alerts, records) into `wbuf`;
    /// whether `wbuf` has bytes to send.
    fn take_queued(&mut self) -> io::Result<bool> {
        let wbuf = &mut self.wbuf;
        match &mut self.state {
            State::Server(c) => {
                while c.wants_write() {
                    c.write_tls(wbuf)?;
                }
            }
            State::Client(c) => {
                while c.wants_write() {
                    c.write_tls(wbuf)?;
                }
            }
            _ => {}
        }
        Ok(!self.wbuf.is_empty())
    }

    /// Sends `wbuf` through the plain socket and empties it.
    async fn send_wbuf(&mut self, timeout: Duration) -> io::Result<()> {
        let r = self.plain.write_all(&self.wbuf, timeout).await;
        self.wbuf.clear();
        if self.wbuf.capacity() > WBUF_KEEP {
            self.wbuf.shrink_to(WBUF_KEEP / 2);
        }
        r
    }

    /// Sends what rustls has queued, by `deadline`.
    async fn flush(&mut self, deadline: Instant) -> io::Result<()> {
        if self.take_queued()? {
            let timeout = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            self.send_wbuf(timeout).await?;
        }
        Ok(())
    }

    /// Reads ciphertext (into `scratch`) and feeds it to rustls; `false` at EOF.
    async fn fill(&mut self, scratch: &mut [u8], deadline: Instant) -> io::Result<bool> {
        let step = scratch.len().min(CIPHERTEXT_STEP);
        let n = self.plain.read(&mut scratch[..step], deadline).await?;
        if self.fresh && n > 0 {
            self.fresh = false;
            if scratch[0] != 0x16 && scratch[0].is_ascii_uppercase() {
                self.state = State::Failed;
                let _ = self
                    .plain
                    .write_all(PLAIN_HTTP_REFUSAL, Duration::from_secs(1))
                    .await;
                let _ = self.plain.shutdown_write().await;
                return Err(fatal("plain HTTP request on a TLS port"));
            }
        }
        if n == 0 {
            // Let rustls see the EOF (an unclean one is reported by the next read).
            match &mut self.state {
                State::Server(c) => {
                    let _ = c.read_tls(&mut io::empty());
                }
                State::Client(c) => {
                    let _ = c.read_tls(&mut io::empty());
                }
                _ => {}
            }
            return Ok(false);
        }
        let mut rd = &scratch[..n];
        while !rd.is_empty() {
            if let Err(e) = self.feed(&mut rd) {
                self.state = State::Failed;
                let _ = self.flush_alert(deadline).await;
                return Err(e);
            }
        }
        self.after_handshake();
        Ok(true)
    }

    /// One step of feeding ciphertext from `rd`; an error leaves an alert in `wbuf`.
    fn feed(&mut self, rd: &mut &[u8]) -> io::Result<()> {
        match &mut self.state {
            State::Accepting(acceptor, edge) => {
                acceptor.read_tls(rd)?;
                match acceptor.accept() {
                    Ok(None) => Ok(()),
                    Ok(Some(accepted)) => {
                        let (config, domain) =
                            edge.config_for(accepted.client_hello().server_name());
                        self.domain = domain;
                        match accepted.into_connection(config) {
                            Ok(mut c) => {
                                let r = c.process_new_packets();
                                if let Err(e) = r {
                                    let _ = c.write_tls(&mut self.wbuf);
                                    return Err(fatal(e));
                                }
                                self.state = State::Server(Box::new(c));
                                Ok(())
                            }
                            Err((e, mut alert)) => {
                                let _ = alert.write_all(&mut self.wbuf);
                                Err(fatal(e))
                            }
                        }
                    }
                    Err((e, mut alert)) => {
                        let _ = alert.write_all(&mut self.wbuf);
                        Err(fatal(e))
                    }
                }
            }
            State::Server(c) => {
                c.read_tls(rd)?;
                if let Err(e) = c.process_new_packets() {
                    let _ = c.write_tls(&mut self.wbuf);
                    return Err(fatal(e));
                }
                Ok(())
            }
            State::Client(c) => {
                c.read_tls(rd)?;
                if let Err(e) = c.process_new_packets() {
                    let _ = c.write_tls(&mut self.wbuf);
                    return Err(fatal(e));
                }
                Ok(())
            }
            State::Failed => Err(fatal("connection failed")),
        }
    }

    async fn flush_alert(&mut self, deadline: Instant) -> io::Result<()> {
        if !self.wbuf.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            let r = self
                .plain
                .write_all(
                    &self.wbuf,
                    left.clamp(Duration::from_millis(1), Duration::from_secs(1)),
                )
                .await;
            self.wbuf.clear();
            r?;
        }
        Ok(())
    }

    /// Once the server handshake is over: the session (SNI domain, the client certificate's
    /// fields with mutual TLS).
    fn after_handshake(&mut self) {
        if self.session.is_some() {
            return;
        }
        let State::Server(c) = &self.state else {
            return;
        };
        if c.is_handshaking() {
            return;
        }
        self.session = Some(Rc::new(TlsSession {
            domain: self.domain,
            client_cert: c
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(|der| client_cert(der.as_ref())),
        }));
    }

    pub async fn read(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        loop {
            if let Some(n) = self.take_plaintext(buf)? {
                return Ok(n);
            }
            if self.wants_write() {
                self.flush(deadline).await?;
            }
            if buf.is_empty() {
                return Ok(0);
            }
            if !self.fill(buf, deadline).await? {
                // EOF: a clean close gives Ok(0) above; an unclean one an error.
                return match self.take_plaintext(buf)? {
                    Some(n) => Ok(n),
                    None => Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "tls: the peer closed without close_notify",
                    )),
                };
            }
            self.flush(deadline).await?;
        }
    }

    pub async fn readable(&mut self, deadline: Instant) -> io::Result<()> {
        if matches!(self.state, State::Failed) {
            return Err(fatal("connection failed"));
        }
        if self.has_plaintext() {
            return Ok(());
        }
        if self.wants_write() {
            self.flush(deadline).await?;
        }
        self.plain.readable(deadline).await
    }

    pub fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.has_plaintext() || !matches!(self.state, State::Server(_) | State::Client(_)) {
            return Poll::Ready(());
        }
        self.plain.poll_idle(cx)
    }

    pub async fn write_all(&mut self, buf: &[u8], timeout: Duration) -> io::Result<()> {
        let mut rest = buf;
        while !rest.is_empty() {
            let n = match &mut self.state {
                State::Server(c) => c.writer().write(rest)?,
                State::Client(c) => c.writer().write(rest)?,
                _ => return Err(fatal("no TLS session to write on")),
            };
            rest = &rest[n..];
            // One send per `writer().write` (all of `buf` up to rustls's 64 KiB limit), with
            // the caller's timeout as it is: no clock read here.
            if self.take_queued()? {
                self.send_wbuf(timeout).await?;
            }
            if n == 0 {
                return Err(fatal("rustls took no bytes"));
            }
        }
        Ok(())
    }

    pub async fn shutdown_write(&mut self) -> io::Result<()> {
        match &mut self.state {
            State::Server(c) => c.send_close_notify(),
            State::Client(c) => c.send_close_notify(),
            _ => {}
        }
        self.flush(Instant::now() + Duration::from_secs(1)).await?;
        self.plain.shutdown_write().await
    }
}

/// The fields API Gateway reports of a client certificate (DER), or `None` if it does not
/// parse (it was verified already, so that does not happen in practice).
pub fn client_cert(der: &[u8]) -> Option<ClientCert> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let v = cert.validity();
    Some(ClientCert {
        pem: pem(der).into(),
        subject_dn: cert.subject().to_string().into(),
        issuer_dn: cert.issuer().to_string().into(),
        serial_number: cert.raw_serial_as_string().into(),
        not_before: gmt(v.not_before.timestamp()).into(),
        not_after: gmt(v.not_after.timestamp()).into(),
    })
}

/// `May 28 12:30:02 2019 GMT` (the validity format API Gateway shows).
fn gmt(ts: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = ts.div_euclid(86_400);
    let secs = ts.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{} {day} {:02}:{:02}:{:02} {year} GMT",
        MONTHS[(month - 1) as usize],
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// DER → PEM (`-----BEGIN CERTIFICATE-----`, 64-column base64).
fn pem(der: &[u8]) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = Vec::with_capacity(der.len().div_ceil(3) * 4);
    for chunk in der.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(B64[(n >> (18 - 6 * i) & 63) as usize]);
            } else {
                b64.push(b'=');
            }
        }
    }
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[cfg(test)]
mod tests {
    //! Formatting of the client certificate's fields; then the TLS stream on both socket
    //! paths against a rustls peer on a std thread: 1 MB each way through small reads (records
    //! split across reads, plaintext left in rustls between reads), close_notify as EOF, and an
    //! https client handshake verified against a CA.

    use super::super::{Conn, Io, SocketPath};
    use super::*;
    use rcgen::{CertificateParams, KeyPair};
    use rustls::pki_types::PrivateKeyDer;
    use tollgate_core::tls::Identity;

    fn self_signed(name: &str) -> (rcgen::Certificate, KeyPair) {
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(vec![name.to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        (cert, key)
    }

    const BIG: usize = 1 << 20;

    fn byte(i: usize) -> u8 {
        (i % 251) as u8
    }

    #[test]
    fn streams_bytes_both_ways_on_both_socket_paths() {
        let (cert, key) = self_signed("localhost");
        let id = Identity {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::try_from(key.serialize_der()).expect("key"),
            certificate_file: "test.pem".into(),
        };
        for path in [SocketPath::Lean, SocketPath::Poll] {
            let tls = Tls::default();
            let mut roots = RootCertStore::empty();
            roots.add(cert.der().clone()).expect("root");
            let ccfg = Arc::new(
                ClientConfig::builder_with_provider(Arc::new(default_provider()))
                    .with_safe_default_protocol_versions()
                    .expect("versions")
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            );
            let id = id.clone();
            let echoed = glommio::LocalExecutorBuilder::default()
                .make()
                .expect("executor (ulimit -l?)")
                .run(async move {
                    let l = glommio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
                    let addr = l.local_addr().expect("addr");
                    let client = std::thread::spawn(move || {
                        let tcp = std::net::TcpStream::connect(addr).expect("connect");
                        tcp.set_read_timeout(Some(Duration::from_secs(20)))
                            .expect("t");
                        let name = ServerName::try_from("localhost").expect("name");
                        let c = ClientConnection::new(ccfg, name).expect("client");
                        let mut s = rustls::StreamOwned::new(c, tcp);
                        let data: Vec<u8> = (0..BIG).map(byte).collect();
                        s.write_all(&data).expect("send");
                        s.flush().expect("flush");
                        let mut back = Vec::new();
                        s.read_to_end(&mut back).expect("read to close_notify");
                        back
                    });
                    let stream = l.accept().await.expect("accept");
                    let plain = Conn::on(path, stream)
                        .expect("conn")
                        .into_plain()
                        .expect("plain");
                    let edge = Rc::new(Edge::new(&tls, &id).expect("edge"));
                    let mut c = Conn {
                        io: Io::Tls(Box::new(Stream::accept(plain, edge))),
                    };
                    let deadline = Instant::now() + Duration::from_secs(20);
                    // Small reads: 1000 bytes at a time out of 16 KiB records.
                    let mut buf = [0u8; 1000];
                    let mut got = 0usize;
                    while got < BIG {
                        c.readable(deadline).await.expect("readable");
                        let n = c.read(&mut buf, deadline).await.expect("read");
                        assert!(n > 0, "early EOF at {got}");
                        assert!(
                            buf[..n]
                                .iter()
                                .enumerate()
                                .all(|(i, b)| *b == byte(got + i)),
                            "bytes damaged at {got}"
                        );
                        got += n;
                    }
                    let out: Vec<u8> = (0..BIG).map(|i| byte(i + 7)).collect();
                    for chunk in out.chunks(64 * 1024) {
                        c.write_all(chunk, Duration::from_secs(20))
                            .await
                            .expect("write");
                    }
                    c.shutdown_write().await.expect("close_notify");
                    client.join().expect("client")
                });
            assert_eq!(echoed.len(), BIG, "{path:?}");
            assert!(
                echoed.iter().enumerate().all(|(i, b)| *b == byte(i + 7)),
                "{path:?}: response damaged"
            );
        }
    }

    #[test]
    fn an_https_client_verifies_the_backend_and_reads_its_close() {
        let (cert, key) = self_signed("backend.test");
        let (other, _) = self_signed("backend.test");
        let scfg = Arc::new(
            ServerConfig::builder_with_provider(Arc::new(default_provider()))
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_no_client_auth()
                .with_single_cert(
                    vec![cert.der().clone()],
                    PrivateKeyDer::try_from(key.serialize_der()).expect("key"),
                )
                .expect("server config"),
        );
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let server = std::thread::spawn(move || {
            // Two connections: the first (trusted) gets an answer, the second is refused by
            // the client.
            for tcp in l.incoming().take(2).flatten() {
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
                let Ok(c) = ServerConnection::new(scfg.clone()) else {
                    continue;
                };
                let mut s = rustls::StreamOwned::new(c, tcp);
                let mut req = [0u8; 4];
                if s.read_exact(&mut req).is_ok() {
                    let _ = s.write_all(b"pong");
                    s.conn.send_close_notify();
                    let _ = s.flush();
                }
            }
        });
        let good = client_config(Some(&[cert.der().clone()])).expect("config");
        let bad = client_config(Some(&[other.der().clone()])).expect("config");
        let (reply, refused) = glommio::LocalExecutorBuilder::default()
            .make()
            .expect("executor (ulimit -l?)")
            .run(async move {
                let name = ServerName::try_from("backend.test").expect("name");
                let t = Duration::from_secs(10);
                let mut c = super::super::connect_tls(addr, t, good, name.clone())
                    .await
                    .expect("handshake with the trusted backend");
                c.write_all(b"ping", t).await.expect("write");
                let mut buf = [0u8; 64];
                let deadline = Instant::now() + t;
                let mut reply = Vec::new();
                loop {
                    let n = c.read(&mut buf, deadline).await.expect("read");
                    if n == 0 {
                        break;
                    }
                    reply.extend_from_slice(&buf[..n]);
                }
                let refused = super::super::connect_tls(addr, t, bad, name).await.err();
                // Let the reactor send the alert and close the dropped sockets before the
                // executor ends (else the server thread waits for its read timeout).
                glommio::timer::sleep(Duration::from_millis(200)).await;
                (reply, refused)
            });
        server.join().expect("server");
        assert_eq!(reply, b"pong");
        let e = refused.expect("an untrusted certificate is refused");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
    }

    #[test]
    fn validity_dates_and_pem_are_formatted_as_api_gateway_shows_them() {
        assert_eq!(gmt(0), "Jan 1 00:00:00 1970 GMT");
        // 2019-05-28T12:30:02Z
        assert_eq!(gmt(1_559_046_602), "May 28 12:30:02 2019 GMT");
        // 2024-02-29T23:59:59Z (leap day)
        assert_eq!(gmt(1_709_251_199), "Feb 29 23:59:59 2024 GMT");
        let p = pem(b"Man");
        assert_eq!(
            p,
            "-----BEGIN CERTIFICATE-----\nTWFu\n-----END CERTIFICATE-----\n"
        );
        assert!(pem(b"Ma").contains("\nTWE=\n"));
        assert!(pem(b"M").contains("\nTQ==\n"));
        let long = pem(&[0u8; 60]);
        assert_eq!(long.lines().nth(1).map(str::len), Some(64));
    }

    #[test]
    fn client_certificate_fields_are_read_from_the_certificate() {
        use rcgen::{CertificateParams, DnType, KeyPair, SerialNumber};
        let ca_key = KeyPair::generate().expect("key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "Client CA");
        let ca = ca.self_signed(&ca_key).expect("ca");
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name.push(DnType::CommonName, "client-7");
        p.distinguished_name
            .push(DnType::OrganizationName, "Example");
        p.serial_number = Some(SerialNumber::from_slice(&[0x0a, 0x1b, 0xff]));
        p.not_before = rcgen::date_time_ymd(2019, 5, 28);
        p.not_after = rcgen::date_time_ymd(2031, 1, 2);
        let cert = p.signed_by(&key, &ca, &ca_key).expect("leaf");
        let c = client_cert(cert.der()).expect("parses");
        assert_eq!(&*c.subject_dn, "CN=client-7, O=Example");
        assert_eq!(&*c.issuer_dn, "CN=Client CA");
        assert_eq!(&*c.serial_number, "0a:1b:ff");
        assert_eq!(&*c.not_before, "May 28 00:00:00 2019 GMT");
        assert_eq!(&*c.not_after, "Jan 2 00:00:00 2031 GMT");
        assert_eq!(
            c.pem.trim_end(),
            cert.pem().replace("\r\n", "\n").trim_end()
        );
        assert!(client_cert(b"not a certificate").is_none());
    }
}
