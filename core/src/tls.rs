//! TLS as compiled from the config, as plain data: the certificate (chain and key, DER) of each
//! TLS listener; the custom domains that bring their own certificate, security policy and
//! mutual-TLS truststore; the `https://` backends' names and CAs; the fields of a client
//! certificate that reach the request's pipeline `Context`. A leaf module (it uses nothing
//! else of ours), so the proxy's socket layer reads it without reaching into the gateway.
//! Checked by `config` (keys match their certificates, truststores parse); the data plane
//! (`proxy/src/net/tls.rs`) builds its rustls state from it on each shard.

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;

/// A certificate chain (end entity first) and its private key.
#[derive(Debug)]
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// The certificate file as written (for messages).
    pub certificate_file: Box<str>,
}

impl Clone for Identity {
    fn clone(&self) -> Identity {
        Identity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            certificate_file: self.certificate_file.clone(),
        }
    }
}

/// API Gateway's security policy names, as far as rustls can honour them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SecurityPolicy {
    /// `TLS_1_2`: TLS 1.2 and TLS 1.3 with AEAD suites only (see tuning/CONFIG.md).
    #[default]
    Tls12,
}

impl SecurityPolicy {
    /// The policy named `name`, or the reason it is refused.
    pub fn parse(name: &str) -> Result<SecurityPolicy, String> {
        match name {
            "TLS_1_2" => Ok(SecurityPolicy::Tls12),
            "TLS_1_0" => Err(
                "security policy `TLS_1_0` is not offered: TLS 1.0/1.1 and CBC cipher suites are not implemented (rustls); use `TLS_1_2`"
                    .to_string(),
            ),
            other => Err(format!(
                "unknown security policy `{other}`, expected `TLS_1_2`"
            )),
        }
    }

    /// The name as written in the config.
    pub fn name(self) -> &'static str {
        match self {
            SecurityPolicy::Tls12 => "TLS_1_2",
        }
    }
}

/// A custom domain served over TLS with its own certificate.
#[derive(Clone, Debug)]
pub struct DomainTls {
    /// Lowercase, without trailing dot; `*.example.com` for a wildcard domain.
    pub name: Box<str>,
    pub identity: Identity,
    pub policy: SecurityPolicy,
    /// Mutual TLS: clients must present a certificate that chains to one of these.
    pub truststore: Option<Vec<CertificateDer<'static>>>,
}

/// An `https://` backend: verified against `ca` (the integration's `ca_file`) or, without
/// one, the web's root CAs; `server_name` (the URI's host) is sent as SNI and verified.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct BackendTls {
    pub server_name: Box<str>,
    pub ca: Option<Vec<CertificateDer<'static>>>,
}

/// Everything TLS about the edge.
#[derive(Clone, Debug, Default)]
pub struct Tls {
    /// Listeners that terminate TLS, with the certificate for clients whose SNI names no
    /// domain (or who send none).
    pub listeners: Vec<(SocketAddr, Identity)>,
    /// Domains with a certificate.
    pub domains: Vec<DomainTls>,
    /// Some domain has `mutual_tls` (requests are then checked, `mutual_tls_domain`).
    pub mutual_tls: bool,
}

impl Tls {
    /// The TLS certificate of the listener at `addr` (`None`: a plain listener).
    pub fn listener(&self, addr: SocketAddr) -> Option<&Identity> {
        self.listeners
            .iter()
            .find(|(a, _)| *a == addr)
            .map(|(_, id)| id)
    }

    /// The mutual-TLS domain that `host` (a request's `Host`, lowercase, without port or
    /// trailing dot) names, if any: such a request must come over a connection whose
    /// handshake was for that domain (and so verified a client certificate).
    pub fn mutual_tls_domain(&self, host: &str) -> Option<usize> {
        if !self.mutual_tls {
            return None;
        }
        self.domain_for(host)
            .filter(|&i| self.domains.get(i).is_some_and(|d| d.truststore.is_some()))
    }

    /// The domain whose certificate serves SNI name `sni` (ASCII, any case): an exact name
    /// before a wildcard; a wildcard `*.example.com` covers one label (`a.example.com`, not
    /// `example.com` nor `a.b.example.com`), as certificates do.
    pub fn domain_for(&self, sni: &str) -> Option<usize> {
        let sni = sni.trim_end_matches('.');
        if let Some(i) = self
            .domains
            .iter()
            .position(|d| d.name.eq_ignore_ascii_case(sni))
        {
            return Some(i);
        }
        let (_, parent) = sni.split_once('.')?;
        self.domains.iter().position(|d| {
            d.name
                .strip_prefix("*.")
                .is_some_and(|p| p.eq_ignore_ascii_case(parent))
        })
    }
}

/// What a TLS connection's handshake settled, kept with the connection and shared (`Rc`)
/// with each of its requests' `Context`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsSession {
    /// The index in `Tls::domains` whose certificate the SNI chose (`None`: the listener's).
    pub domain: Option<usize>,
    /// The verified client certificate (mutual TLS).
    pub client_cert: Option<ClientCert>,
}

/// The fields of a verified client certificate (mutual TLS) that API Gateway hands to
/// authorizers and integrations (`requestContext.identity.clientCert`) and access logs
/// (`$context.identity.clientCert.*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCert {
    /// The certificate, PEM (`clientCertPem`).
    pub pem: Box<str>,
    /// `subjectDN`, RFC 4514 style (`CN=client,O=Example`).
    pub subject_dn: Box<str>,
    /// `issuerDN`.
    pub issuer_dn: Box<str>,
    /// `serialNumber`, colon-separated hex bytes as API Gateway shows it.
    pub serial_number: Box<str>,
    /// `validity.notBefore` / `notAfter`, e.g. `May 28 12:30:02 2019 GMT`.
    pub not_before: Box<str>,
    pub not_after: Box<str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> Identity {
        Identity {
            chain: vec![CertificateDer::from(vec![1u8])],
            key: PrivateKeyDer::Pkcs8(vec![2u8].into()),
            certificate_file: "x.pem".into(),
        }
    }

    fn domain(name: &str) -> DomainTls {
        DomainTls {
            name: name.into(),
            identity: id(),
            policy: SecurityPolicy::Tls12,
            truststore: None,
        }
    }

    #[test]
    fn exact_names_win_over_wildcards_which_cover_one_label() {
        let tls = Tls {
            listeners: Vec::new(),
            mutual_tls: false,
            domains: vec![
                domain("*.example.com"),
                domain("api.example.com"),
                domain("other.org"),
            ],
        };
        assert_eq!(tls.domain_for("api.example.com"), Some(1));
        assert_eq!(tls.domain_for("API.Example.COM."), Some(1));
        assert_eq!(tls.domain_for("www.example.com"), Some(0));
        assert_eq!(tls.domain_for("example.com"), None);
        assert_eq!(tls.domain_for("a.b.example.com"), None);
        assert_eq!(tls.domain_for("other.org"), Some(2));
        assert_eq!(tls.domain_for("x.other.org"), None);
    }

    #[test]
    fn policies_by_api_gateway_name() {
        assert_eq!(SecurityPolicy::parse("TLS_1_2"), Ok(SecurityPolicy::Tls12));
        assert!(SecurityPolicy::parse("TLS_1_0")
            .unwrap_err()
            .contains("not offered"));
        assert!(SecurityPolicy::parse("tls_1_2")
            .unwrap_err()
            .contains("unknown"));
    }
}
