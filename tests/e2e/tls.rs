//! TLS at the edge, end to end, with certificates generated here (`rcgen`) and a rustls client:
//! HTTPS through to a plain origin (verified against our CA, ALPN `http/1.1`, a second
//! connection resumed with a ticket), SNI choosing among the domains' certificates (exact
//! before wildcard, unknown name → the listener's), a base path mapping over HTTPS, mutual TLS
//! (accepted; refused without a certificate and with another CA's; its domain not reachable
//! through another name's handshake), https backends, a plain-HTTP request and
//! garbage or truncated handshakes on the TLS port, and certificate errors in the config.

use crate::harness::{free_port, run_to_end, Gateway, TempDir};
use crate::origin::Origin;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, StreamOwned};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const IO: Duration = Duration::from_secs(10);

/// A certificate authority that signs leaf certificates.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("ca key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let cert = p.self_signed(&key).expect("ca cert");
        Ca { cert, key }
    }

    /// A leaf for `names` (DNS names; `127.0.0.1` also as an IP SAN), CN = first name.
    fn leaf(&self, names: &[&str]) -> (rcgen::Certificate, KeyPair) {
        let key = KeyPair::generate().expect("leaf key");
        let mut p = CertificateParams::new(
            names
                .iter()
                .filter(|n| n.parse::<std::net::IpAddr>().is_err())
                .map(|n| n.to_string())
                .collect::<Vec<_>>(),
        )
        .expect("leaf params");
        for n in names {
            if let Ok(ip) = n.parse() {
                p.subject_alt_names.push(SanType::IpAddress(ip));
            }
        }
        p.distinguished_name.push(DnType::CommonName, names[0]);
        p.distinguished_name
            .push(DnType::OrganizationName, "tollgate tests");
        let cert = p.signed_by(&key, &self.cert, &self.key).expect("leaf cert");
        (cert, key)
    }
}

/// Writes a leaf's certificate (with the CA after it) and key; returns (cert path, key path).
fn write_pair(
    dir: &TempDir,
    name: &str,
    ca: &Ca,
    leaf: &(rcgen::Certificate, KeyPair),
) -> (PathBuf, PathBuf) {
    let cert = dir.write(
        &format!("{name}.pem"),
        &format!("{}{}", leaf.0.pem(), ca.cert.pem()),
    );
    let key = dir.write(&format!("{name}.key"), &leaf.1.serialize_pem());
    (cert, key)
}

fn toml_path(p: &Path) -> String {
    p.display().to_string().replace('\\', "\\\\")
}

/// A client config that trusts `ca` (and presents `client` if given).
fn client_config(ca: &Ca, client: Option<&(rcgen::Certificate, KeyPair)>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert.der().clone()).expect("root");
    let b = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let mut cfg = match client {
        Some((cert, key)) => b
            .with_client_auth_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::try_from(key.serialize_der()).expect("key der"),
            )
            .expect("client auth"),
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// Accepts any server certificate (signatures still checked) and records the leaf: for
/// looking at which certificate was presented for names it was not issued for.
#[derive(Debug)]
struct Recorder {
    seen: Mutex<Vec<CertificateDer<'static>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(end_entity.clone().into_owned());
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn recording_config() -> (Arc<ClientConfig>, Arc<Recorder>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let rec = Arc::new(Recorder {
        seen: Mutex::new(Vec::new()),
        provider: provider.clone(),
    });
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(rec.clone())
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    (Arc::new(cfg), rec)
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

fn connect(addr: SocketAddr, cfg: &Arc<ClientConfig>, sni: &str) -> Tls {
    let tcp = TcpStream::connect_timeout(&addr, IO).expect("connect");
    tcp.set_read_timeout(Some(IO)).expect("timeout");
    tcp.set_write_timeout(Some(IO)).expect("timeout");
    let name = ServerName::try_from(sni.to_string()).expect("server name");
    let conn = ClientConnection::new(cfg.clone(), name).expect("client connection");
    StreamOwned::new(conn, tcp)
}

/// Sends a GET for `path` with `host` and reads one response: (status, head, body).
fn get(s: &mut Tls, host: &str, path: &str) -> std::io::Result<(u16, String, String)> {
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n")?;
    s.flush()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("closed after {} bytes", buf.len()),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status: u16 = head[9..12].parse().expect("status");
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk)?;
        assert!(n > 0, "early EOF in body");
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).to_string();
    Ok((status, head, body))
}

/// The API used by every test: REST `svc`, stage `prod`, everything proxied to `origin`.
fn api(origin: SocketAddr) -> String {
    format!(
        r#"[[apis]]
name = "svc"
protocol = "rest"
  [[apis.stages]]
  name = "prod"
  [[apis.routes]]
  key = "ANY /{{proxy+}}"
  integration = {{ type = "http_proxy", uri = "http://{origin}/{{proxy}}" }}
"#
    )
}

/// Starts a gateway with one TLS listener (`default` certificate) and `domains` (TOML).
fn start(dir: TempDir, default: &(PathBuf, PathBuf), apis: &str, domains: &str) -> Gateway {
    let port = free_port();
    let text = format!(
        "[server]\nshards = 1\npin_cpus = false\nidle_timeout_ms = 30000\n\n[[listeners]]\naddress = \"127.0.0.1\"\nport = {port}\ntls = {{ certificate = \"{}\", key = \"{}\" }}\n\n{apis}\n{domains}",
        toml_path(&default.0),
        toml_path(&default.1)
    );
    let path = dir.write("gateway.toml", &text);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    Gateway::spawn(
        &[std::ffi::OsStr::new("--config"), path.as_os_str()],
        addr,
        Some(dir),
    )
}

#[test]
fn https_reaches_a_plain_origin_and_resumes_with_a_ticket() {
    let origin = Origin::start();
    let dir = TempDir::new("tls-basic");
    let ca = Ca::new("edge ca");
    let default = write_pair(&dir, "default", &ca, &ca.leaf(&["localhost", "127.0.0.1"]));
    let gw = start(dir, &default, &api(origin.addr), "");
    let cfg = client_config(&ca, None);

    let mut s = connect(gw.addr, &cfg, "localhost");
    let (status, head, body) = get(&mut s, "localhost", "/prod/hello?x=1").expect("request");
    assert_eq!(status, 200, "{head}{body}");
    assert_eq!(s.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    // Keep-alive over TLS: a second request on the same connection.
    let (status, _, _) = get(&mut s, "localhost", "/prod/again").expect("second request");
    assert_eq!(status, 200);
    assert_eq!(
        s.conn.handshake_kind(),
        Some(rustls::HandshakeKind::Full),
        "first connection: full handshake"
    );
    let seen = origin.wait_for(IO, |l| l.len() >= 2);
    assert_eq!(seen[0].target, "/hello?x=1");
    assert_eq!(seen[0].header("x-forwarded-proto"), Some("https"));
    assert_eq!(seen[1].target, "/again");
    drop(s);

    // The same client again: the ticket from the first connection resumes the session.
    let mut s = connect(gw.addr, &cfg, "localhost");
    let (status, _, _) = get(&mut s, "localhost", "/prod/resumed").expect("resumed request");
    assert_eq!(status, 200);
    assert_eq!(
        s.conn.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
}

#[test]
fn sni_picks_the_domain_certificate_exact_before_wildcard_and_maps_base_paths() {
    let origin = Origin::start();
    let dir = TempDir::new("tls-sni");
    let ca = Ca::new("edge ca");
    let default_leaf = ca.leaf(&["default.test"]);
    let exact_leaf = ca.leaf(&["api.example.test"]);
    let wild_leaf = ca.leaf(&["*.example.test"]);
    let default = write_pair(&dir, "default", &ca, &default_leaf);
    let exact = write_pair(&dir, "exact", &ca, &exact_leaf);
    let wild = write_pair(&dir, "wild", &ca, &wild_leaf);
    let domains = format!(
        r#"[[domains]]
name = "*.example.test"
certificate = "{}"
key = "{}"
  [[domains.mappings]]
  path = "w"
  api = "svc"
  stage = "prod"

[[domains]]
name = "api.example.test"
certificate = "{}"
key = "{}"
security_policy = "TLS_1_2"
  [[domains.mappings]]
  path = "v1"
  api = "svc"
  stage = "prod"
"#,
        toml_path(&wild.0),
        toml_path(&wild.1),
        toml_path(&exact.0),
        toml_path(&exact.1)
    );
    let gw = start(dir, &default, &api(origin.addr), &domains);
    let (cfg, rec) = recording_config();
    let presented = |sni: &str| {
        rec.seen.lock().unwrap_or_else(|e| e.into_inner()).clear();
        let mut s = connect(gw.addr, &cfg, sni);
        // Drive the handshake.
        s.conn.complete_io(&mut s.sock).expect("handshake");
        let seen = rec.seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
        (seen.last().cloned(), s)
    };
    let (cert, mut s) = presented("api.example.test");
    assert_eq!(cert.as_ref(), Some(exact_leaf.0.der()), "exact name");
    // Base path mapping over HTTPS: /v1/x → stage prod, path /x.
    let (status, head, body) = get(&mut s, "api.example.test", "/v1/pets").expect("mapped");
    assert_eq!(status, 200, "{head}{body}");
    let seen = origin.wait_for(IO, |l| !l.is_empty());
    assert_eq!(seen[0].target, "/pets");

    let (cert, _) = presented("www.example.test");
    assert_eq!(cert.as_ref(), Some(wild_leaf.0.der()), "wildcard");
    let (cert, _) = presented("a.b.example.test");
    assert_eq!(
        cert.as_ref(),
        Some(default_leaf.0.der()),
        "two labels: no wildcard"
    );
    let (cert, _) = presented("unknown.test");
    assert_eq!(cert.as_ref(), Some(default_leaf.0.der()), "unknown name");
}

fn mtls_gateway(origin: &Origin, ca: &Ca, client_ca: &Ca) -> Gateway {
    let dir = TempDir::new("tls-mtls");
    let default = write_pair(&dir, "default", ca, &ca.leaf(&["localhost"]));
    let domain = write_pair(&dir, "mtls", ca, &ca.leaf(&["mtls.example.test"]));
    let truststore = dir.write("clients.pem", &client_ca.cert.pem());
    let domains = format!(
        r#"[[domains]]
name = "mtls.example.test"
certificate = "{}"
key = "{}"
mutual_tls = {{ truststore = "{}" }}
  [[domains.mappings]]
  api = "svc"
  stage = "prod"
"#,
        toml_path(&domain.0),
        toml_path(&domain.1),
        toml_path(&truststore)
    );
    start(dir, &default, &api(origin.addr), &domains)
}

#[test]
fn mutual_tls_accepts_trusted_clients_and_refuses_others_in_the_handshake() {
    let origin = Origin::start();
    let ca = Ca::new("edge ca");
    let client_ca = Ca::new("client ca");
    let other_ca = Ca::new("other ca");
    let gw = mtls_gateway(&origin, &ca, &client_ca);

    let good = client_ca.leaf(&["client-one"]);
    let mut s = connect(
        gw.addr,
        &client_config(&ca, Some(&good)),
        "mtls.example.test",
    );
    let (status, head, body) = get(&mut s, "mtls.example.test", "/ok").expect("trusted client");
    assert_eq!(status, 200, "{head}{body}");
    assert_eq!(origin.wait_for(IO, |l| !l.is_empty()).len(), 1);

    // Without a certificate, and with one from another CA: the handshake fails, nothing is
    // proxied.
    let stranger = other_ca.leaf(&["client-two"]);
    for (client, alert) in [
        (None, "CertificateRequired"),
        (Some(&stranger), "UnknownCA"),
    ] {
        let mut s = connect(gw.addr, &client_config(&ca, client), "mtls.example.test");
        let r = get(&mut s, "mtls.example.test", "/refused");
        let e = r.expect_err("refused in the handshake");
        // TLS 1.3: the client's side of the handshake is done before the server's verdict,
        // so the request may meet the closed socket before the alert is read.
        let closed = matches!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
        );
        assert!(e.to_string().contains(alert) || closed, "{e}");
    }
    // The same listener still serves other names without client certificates.
    let mut s = connect(gw.addr, &client_config(&ca, None), "localhost");
    let (status, _, _) = get(&mut s, "localhost", "/prod/plain").expect("no mTLS on the default");
    assert_eq!(status, 200);
    // ... but not the mutual-TLS domain through another name's handshake: 403, not proxied.
    let (status, head, body) = get(&mut s, "mtls.example.test", "/bypass").expect("answered");
    assert_eq!(status, 403, "{head}{body}");
    assert!(body.contains("Forbidden"), "{body}");
    let seen = origin.wait_for(IO, |l| l.len() >= 2);
    assert!(
        seen.iter()
            .all(|s| s.target != "/refused" && s.target != "/bypass"),
        "{seen:?}"
    );
}

#[test]
fn plain_http_and_broken_handshakes_are_refused_and_the_shard_keeps_serving() {
    let origin = Origin::start();
    let dir = TempDir::new("tls-garbage");
    let ca = Ca::new("edge ca");
    let default = write_pair(&dir, "default", &ca, &ca.leaf(&["localhost"]));
    let gw = start(dir, &default, &api(origin.addr), "");

    // Plain HTTP on the TLS port: a plain 400, then the connection closes.
    let mut tcp = TcpStream::connect(gw.addr).expect("connect");
    tcp.set_read_timeout(Some(IO)).expect("timeout");
    tcp.write_all(b"GET /prod/x HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("write");
    let mut got = Vec::new();
    tcp.read_to_end(&mut got).expect("read until close");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
    assert!(text.contains("HTTPS"), "{text}");

    // Garbage that looks like a TLS record, a truncated ClientHello, and a peer that sends
    // nothing and leaves: each connection ends, none takes the shard down.
    let mut garbage = vec![0x16, 0x03, 0x01, 0x00, 0x40];
    garbage.extend((0..64u8).map(|i| i.wrapping_mul(37)));
    let truncated = [
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    for bytes in [&garbage[..], &truncated[..], &[][..]] {
        let mut tcp = TcpStream::connect(gw.addr).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        tcp.write_all(bytes).expect("write");
        let _ = tcp.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        let r = tcp.read_to_end(&mut sink);
        // An alert at most, then the close.
        assert!(r.is_ok() && sink.len() < 64, "{r:?} {sink:?}");
    }

    let mut s = connect(gw.addr, &client_config(&ca, None), "localhost");
    let (status, _, _) = get(&mut s, "localhost", "/prod/still").expect("still serving");
    assert_eq!(status, 200);
    assert!(origin.seen().iter().all(|s| s.target != "/x"));
}

#[test]
fn missing_or_mismatched_certificates_are_config_errors_naming_the_file() {
    let dir = TempDir::new("tls-config");
    let ca = Ca::new("edge ca");
    let a = write_pair(&dir, "a", &ca, &ca.leaf(&["a.test"]));
    let b = write_pair(&dir, "b", &ca, &ca.leaf(&["b.test"]));
    let missing = dir.path.join("missing.pem");
    let cases = [
        (missing.clone(), a.1.clone(), "missing.pem", "cannot read"),
        (a.0.clone(), b.1.clone(), "b.key", "does not fit"),
        (a.1.clone(), a.1.clone(), "a.key", "no PEM certificate"),
    ];
    for (i, (cert, key, file, reason)) in cases.iter().enumerate() {
        let text = format!(
            "[[listeners]]\naddress = \"127.0.0.1\"\nport = {}\ntls = {{ certificate = \"{}\", key = \"{}\" }}\n\n[[apis]]\nname = \"m\"\nprotocol = \"http\"\n  [[apis.stages]]\n  name = \"$default\"\n  [[apis.routes]]\n  key = \"$default\"\n  integration = {{ type = \"mock\" }}\n",
            free_port(),
            toml_path(cert),
            toml_path(key)
        );
        let path = dir.write(&format!("bad{i}.toml"), &text);
        let (code, out) = run_to_end(&[Path::new("validate"), &path]);
        assert_eq!(code, Some(1), "{out}");
        assert!(
            out.contains(file) && out.contains(reason),
            "{file} / {reason}: {out}"
        );
        assert!(out.contains(&format!("bad{i}.toml:4:")), "position: {out}");
    }
}

/// An https origin on `localhost`: answers every GET with `target|sni`, keep-alive; counts its
/// connections. Each connection thread ends when the peer closes or after 20 s.
struct TlsOrigin {
    port: u16,
    connections: Arc<std::sync::atomic::AtomicUsize>,
}

fn tls_origin(leaf: &(rcgen::Certificate, KeyPair)) -> TlsOrigin {
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.0.der().clone()],
        PrivateKeyDer::try_from(leaf.1.serialize_der()).expect("key"),
    )
    .expect("origin config");
    let cfg = Arc::new(cfg);
    let l = std::net::TcpListener::bind(("localhost", 0)).expect("bind localhost");
    let port = l.local_addr().expect("addr").port();
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = connections.clone();
    std::thread::spawn(move || {
        for tcp in l.incoming().take(16).flatten() {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let cfg = cfg.clone();
            std::thread::spawn(move || {
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(20)));
                let Ok(conn) = rustls::ServerConnection::new(cfg) else {
                    return;
                };
                let mut s = StreamOwned::new(conn, tcp);
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_string();
                        buf.drain(..i + 4);
                        let target = head.split(' ').nth(1).unwrap_or("").to_string();
                        let sni = s.conn.server_name().unwrap_or("-").to_string();
                        let body = format!("{target}|{sni}");
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if s.write_all(resp.as_bytes())
                            .and_then(|_| s.flush())
                            .is_err()
                        {
                            return;
                        }
                    }
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    TlsOrigin { port, connections }
}

#[test]
fn https_backends_are_verified_with_sni_and_pooled() {
    let dir = TempDir::new("tls-backend");
    let edge_ca = Ca::new("edge ca");
    let backend_ca = Ca::new("backend ca");
    let other_ca = Ca::new("other ca");
    let origin = tls_origin(&backend_ca.leaf(&["localhost"]));
    let ca_file = dir.write("backend-ca.pem", &backend_ca.cert.pem());
    let wrong_ca = dir.write("other-ca.pem", &other_ca.cert.pem());
    let default = write_pair(&dir, "default", &edge_ca, &edge_ca.leaf(&["localhost"]));
    let apis = format!(
        r#"[[apis]]
name = "svc"
protocol = "rest"
  [[apis.stages]]
  name = "prod"
  [[apis.routes]]
  key = "GET /good/{{proxy+}}"
  integration = {{ type = "http_proxy", uri = "https://localhost:{port}/{{proxy}}", ca_file = "{ca}" }}
  [[apis.routes]]
  key = "GET /untrusted/{{proxy+}}"
  integration = {{ type = "http_proxy", uri = "https://localhost:{port}/{{proxy}}", ca_file = "{wrong}" }}
"#,
        port = origin.port,
        ca = toml_path(&ca_file),
        wrong = toml_path(&wrong_ca)
    );
    let gw = start(dir, &default, &apis, "");
    let mut s = connect(gw.addr, &client_config(&edge_ca, None), "localhost");
    for i in 0..3 {
        let (status, head, body) =
            get(&mut s, "localhost", &format!("/prod/good/n{i}")).expect("via https");
        assert_eq!(status, 200, "{head}{body}");
        assert_eq!(
            body,
            format!("/n{i}|localhost"),
            "path and SNI the backend saw"
        );
    }
    assert_eq!(
        origin.connections.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one pooled backend connection for three requests"
    );
    // A backend whose certificate does not chain to `ca_file`: the handshake fails at once,
    // answered as an integration failure (504, API Gateway's INTEGRATION_FAILURE), not after
    // the 29 s integration timeout.
    let t = std::time::Instant::now();
    let (status, head, _) = get(&mut s, "localhost", "/prod/untrusted/x").expect("answered");
    assert_eq!(status, 504, "{head}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(
        origin.connections.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "the untrusted backend was reached (and refused)"
    );
}
