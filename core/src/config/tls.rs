//! The TLS keys of the config → `tls::Tls`: each listener's `tls = { certificate,
//! key }`, each domain's `certificate`/`key`, `security_policy` and `mutual_tls = {
//! truststore }`. Files are read and parsed here (PEM), and a key must match its certificate,
//! so a missing file, a file without a certificate or key, or a mismatched pair is a config
//! error at the key, naming the file and the reason. Paths are used as written (relative ones
//! from the working directory).

use super::diagnostics::Diagnostics;
use super::model::{Config, Text, TlsFiles};
use super::validate;
use crate::tls::{DomainTls, Identity, SecurityPolicy, Tls};
use rustls::crypto::ring::default_provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::net::{IpAddr, SocketAddr};

pub(crate) fn tls(cfg: &Config, d: &mut Diagnostics<'_>) -> Tls {
    let mut out = Tls::default();
    for l in &cfg.listeners {
        let Some(files) = &l.tls else { continue };
        let identity = identity(files, d);
        let addr = l.address.as_ref().and_then(|a| {
            let text = a.value.trim_start_matches('[').trim_end_matches(']');
            text.parse::<IpAddr>().ok()
        });
        let port = l.port.as_ref().and_then(|p| u16::try_from(p.value).ok());
        if let (Some(ip), Some(port), Some(id)) = (addr, port, identity) {
            out.listeners.push((SocketAddr::new(ip, port), id));
        }
    }
    for dom in &cfg.domains {
        let policy = match &dom.security_policy {
            Some(p) => match SecurityPolicy::parse(&p.value) {
                Ok(policy) => policy,
                Err(reason) => {
                    d.error(p.span.clone(), reason);
                    SecurityPolicy::default()
                }
            },
            None => SecurityPolicy::default(),
        };
        let Some(files) = &dom.tls else {
            if let Some(p) = &dom.security_policy {
                d.error(
                    p.span.clone(),
                    "a `security_policy` needs the domain's `certificate` and `key`",
                );
            }
            if let Some(span) = &dom.mutual_tls_span {
                d.error(
                    span.clone(),
                    "mutual TLS needs the domain's `certificate` and `key`",
                );
            }
            continue;
        };
        let identity = identity(files, d);
        let truststore = dom.truststore.as_ref().map(|t| truststore(t, d));
        let Some(name) = &dom.name else { continue };
        // A bad name is reported by the domain checks.
        let Ok(name) = validate::domain_name(&name.value) else {
            continue;
        };
        if let Some(identity) = identity {
            let truststore = match truststore {
                Some(None) => continue,
                Some(Some(t)) => Some(t),
                None => None,
            };
            out.domains.push(DomainTls {
                name: name.into(),
                identity,
                policy,
                truststore,
            });
        }
    }
    out.mutual_tls = out.domains.iter().any(|d| d.truststore.is_some());
    out
}

/// Reads a certificate chain and its key; checks that the key belongs to the certificate.
fn identity(files: &TlsFiles, d: &mut Diagnostics<'_>) -> Option<Identity> {
    // Each file is checked even when the other is missing, so every error shows at once.
    let chain = files.certificate.as_ref().and_then(|f| certificates(f, d));
    let key = files
        .key
        .as_ref()
        .and_then(|f| match PrivateKeyDer::from_pem_file(&f.value) {
            Ok(k) => Some(k),
            Err(e) => {
                d.error(
                    f.span.clone(),
                    format!("key file `{}`: {}", f.value, pem_reason(&e, "private key")),
                );
                None
            }
        });
    let (Some(cert_file), Some(key_file), Some(chain), Some(key)) =
        (&files.certificate, &files.key, chain, key)
    else {
        return None;
    };
    if let Err(e) = CertifiedKey::from_der(chain.clone(), key.clone_key(), &default_provider()) {
        d.error(
            key_file.span.clone(),
            format!(
                "key file `{}` does not fit certificate file `{}`: {e}",
                key_file.value, cert_file.value
            ),
        );
        return None;
    }
    Some(Identity {
        chain,
        key,
        certificate_file: cert_file.value.as_str().into(),
    })
}

/// Every certificate in the PEM file `file`; at least one.
fn certificates(file: &Text, d: &mut Diagnostics<'_>) -> Option<Vec<CertificateDer<'static>>> {
    let certs =
        CertificateDer::pem_file_iter(&file.value).and_then(|it| it.collect::<Result<Vec<_>, _>>());
    match certs {
        Ok(c) if !c.is_empty() => Some(c),
        Ok(_) => {
            d.error(
                file.span.clone(),
                format!(
                    "certificate file `{}` holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)",
                    file.value
                ),
            );
            None
        }
        Err(e) => {
            d.error(
                file.span.clone(),
                format!(
                    "certificate file `{}`: {}",
                    file.value,
                    pem_reason(&e, "certificate")
                ),
            );
            None
        }
    }
}

/// An https integration's `ca_file`: the certificates a backend is verified against.
pub(crate) fn ca_file(
    file: &Text,
    d: &mut Diagnostics<'_>,
) -> Option<Vec<CertificateDer<'static>>> {
    truststore(file, d)
}

/// A mutual-TLS truststore: certificates that parse as trust anchors.
fn truststore(file: &Text, d: &mut Diagnostics<'_>) -> Option<Vec<CertificateDer<'static>>> {
    let certs = certificates(file, d)?;
    let mut roots = rustls::RootCertStore::empty();
    for (i, c) in certs.iter().enumerate() {
        if let Err(e) = roots.add(c.clone()) {
            d.error(
                file.span.clone(),
                format!(
                    "`{}`: certificate {} is not usable as a trust anchor: {e}",
                    file.value,
                    i + 1
                ),
            );
            return None;
        }
    }
    Some(certs)
}

fn pem_reason(e: &rustls::pki_types::pem::Error, what: &str) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::Io(io) => format!("cannot read it: {io}"),
        Error::NoItemsFound => format!("holds no PEM {what}"),
        other => format!("not a valid PEM {what} file: {other}"),
    }
}

#[cfg(test)]
mod tests {
    //! The TLS keys' errors, each at its key and naming its file (matching pairs are loaded by
    //! the e2e tests, which generate real certificates).

    use crate::config::load_str;

    const API: &str = r#"
[[apis]]
name = "m"
protocol = "http"
  [[apis.stages]]
  name = "$default"
  [[apis.routes]]
  key = "$default"
  integration = { type = "mock" }
"#;

    /// Loads `text` (plus a mock API); the errors as `line:col: message`.
    fn errors(text: &str) -> Vec<String> {
        match load_str("t.toml", &format!("{text}{API}")) {
            Ok(_) => Vec::new(),
            Err(es) => es
                .iter()
                .map(|e| format!("{}:{}: {}", e.line, e.column, e.message))
                .collect(),
        }
    }

    fn temp(name: &str, text: &str) -> String {
        let dir = std::env::temp_dir().join(format!("tollgate-core-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p.display().to_string()
    }

    #[test]
    fn listener_files_that_do_not_load_are_errors_at_their_key() {
        let e = errors(
            "[[listeners]]\naddress = \"127.0.0.1\"\nport = 8443\ntls = { certificate = \"/nonexistent/c.pem\", key = \"/nonexistent/k.pem\" }\n",
        );
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with("4:23: certificate file `/nonexistent/c.pem`: cannot read it"),
            "{e:?}"
        );
        assert!(
            e[1].starts_with("4:51: key file `/nonexistent/k.pem`: cannot read it"),
            "{e:?}"
        );
        let not_pem = temp("not.pem", "hello\n");
        let e = errors(&format!(
            "[[listeners]]\naddress = \"127.0.0.1\"\nport = 8443\ntls = {{ certificate = \"{not_pem}\" }}\n"
        ));
        assert!(
            e.iter()
                .any(|m| m.contains("missing key `key` in a listener's `tls`")),
            "{e:?}"
        );
        assert!(
            e.iter().any(|m| m.contains("holds no PEM certificate")),
            "{e:?}"
        );
    }

    #[test]
    fn domain_tls_keys_are_checked() {
        let listener = "[[listeners]]\naddress = \"127.0.0.1\"\nport = 8443\n";
        let dom = |extra: &str| {
            errors(&format!(
                "{listener}[[domains]]\nname = \"a.example.com\"\n{extra}\n  [[domains.mappings]]\n  api = \"m\"\n  stage = \"$default\"\n"
            ))
        };
        let e = dom("security_policy = \"TLS_1_0\"");
        assert!(
            e.iter().any(|m| m.contains("`TLS_1_0` is not offered")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.contains("needs the domain's `certificate`")),
            "{e:?}"
        );
        let e = dom("security_policy = \"TLS_9\"");
        assert!(
            e.iter()
                .any(|m| m.contains("unknown security policy `TLS_9`")),
            "{e:?}"
        );
        let e = dom("mutual_tls = { truststore = \"/x.pem\" }");
        assert!(
            e.iter()
                .any(|m| m.contains("mutual TLS needs the domain's `certificate`")),
            "{e:?}"
        );
        let e = dom("key = \"/x.key\"");
        assert!(
            e.iter().any(|m| m.contains("needs its `certificate` too")),
            "{e:?}"
        );
        let e = dom("certificate = \"/nonexistent/d.pem\"\nkey = \"/nonexistent/d.key\"\nmutual_tls = { truststore = \"/nonexistent/t.pem\" }");
        assert!(
            e.iter()
                .any(|m| m.starts_with("6:15: certificate file `/nonexistent/d.pem`")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.contains("`/nonexistent/t.pem`: cannot read it")),
            "{e:?}"
        );
        assert!(dom("").is_empty(), "a domain without TLS keys stays valid");
    }

    #[test]
    fn ca_file_is_for_https_uris_only() {
        let text = "[[listeners]]\naddress = \"127.0.0.1\"\nport = 8443\n[[apis]]\nname = \"p\"\nprotocol = \"http\"\n  [[apis.stages]]\n  name = \"s\"\n  [[apis.routes]]\n  key = \"GET /x\"\n  integration = { type = \"http_proxy\", uri = \"http://127.0.0.1:9/\", ca_file = \"/nonexistent/ca.pem\" }\n";
        let e = errors(text);
        assert!(
            e.iter()
                .any(|m| m.contains("`/nonexistent/ca.pem`: cannot read it")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.contains("only for https:// integration URIs")),
            "{e:?}"
        );
        let ok = text
            .replace(", ca_file = \"/nonexistent/ca.pem\"", "")
            .replace("http://", "https://");
        assert!(
            errors(&ok).is_empty(),
            "https without ca_file: {:?}",
            errors(&ok)
        );
    }
}
