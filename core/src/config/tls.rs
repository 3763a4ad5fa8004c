//! The TLS keys of the config → `gateway::tls::Tls`: each listener's `tls = { certificate,
//! key }`, each domain's `certificate`/`key`, `security_policy` and `mutual_tls = {
//! truststore }`. Files are read and parsed here (PEM), and a key must match its certificate,
//! so a missing file, a file without a certificate or key, or a mismatched pair is a config
//! error at the key, naming the file and the reason. Paths are used as written (relative ones
//! from the working directory).

use super::diagnostics::Diagnostics;
use super::model::{Config, Text, TlsFiles};
use super::validate;
use crate::gateway::tls::{DomainTls, Identity, SecurityPolicy, Tls};
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
    out
}

/// Reads a certificate chain and its key; checks that the key belongs to the certificate.
fn identity(files: &TlsFiles, d: &mut Diagnostics<'_>) -> Option<Identity> {
    let (Some(cert_file), Some(key_file)) = (&files.certificate, &files.key) else {
        return None;
    };
    let chain = certificates(cert_file, d)?;
    let key = match PrivateKeyDer::from_pem_file(&key_file.value) {
        Ok(k) => k,
        Err(e) => {
            d.error(
                key_file.span.clone(),
                format!(
                    "key file `{}`: {}",
                    key_file.value,
                    pem_reason(&e, "private key")
                ),
            );
            return None;
        }
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
