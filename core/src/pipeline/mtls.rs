//! Part of phase 2 (authorize), mutual TLS: a request whose `Host` names a custom domain with
//! `mutual_tls` must come over a connection whose TLS handshake was for that domain, and so
//! verified a client certificate from its truststore. Without this, a client could ask for
//! another name in its SNI (or use a plain listener) and reach the domain's APIs with no
//! certificate. Refused as API Gateway refuses an mTLS failure: 403 (ACCESS_DENIED,
//! "Forbidden"). Costs nothing unless some domain has `mutual_tls`.

use super::{Context, Failure};
use crate::gateway::Gateway;
use crate::http::request::RequestHead;

pub fn mutual_tls(
    gw: &Gateway,
    head: &RequestHead<'_, '_>,
    ctx: &Context<'_>,
) -> Result<(), Failure> {
    if !gw.tls.mutual_tls {
        return Ok(());
    }
    let Some(host) = head.host.and_then(host_name) else {
        return Ok(());
    };
    match gw.tls.mutual_tls_domain(host) {
        None => Ok(()),
        Some(i) => {
            let verified = ctx
                .tls
                .as_ref()
                .is_some_and(|s| s.domain == Some(i) && s.client_cert.is_some());
            if verified {
                Ok(())
            } else {
                Err(Failure::MutualTlsRequired)
            }
        }
    }
}

/// `Host` without port (a bracketed IPv6 literal is no domain name: `None`).
fn host_name(raw: &[u8]) -> Option<&str> {
    let raw = raw.trim_ascii();
    if raw.starts_with(b"[") {
        return None;
    }
    let host = match memchr::memchr(b':', raw) {
        Some(i) => &raw[..i],
        None => raw,
    };
    std::str::from_utf8(host).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_lose_their_port() {
        assert_eq!(host_name(b"Api.Example.com:443"), Some("Api.Example.com"));
        assert_eq!(host_name(b" a.b "), Some("a.b"));
        assert_eq!(host_name(b"[::1]:443"), None);
    }
}
