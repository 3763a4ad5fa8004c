//! The target: parsing `http://host[:port]/path` (or `https://`), resolving the host, and the
//! safety guard that refuses anything but loopback unless `--allow-remote`.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use crate::Error;

/// A parsed `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `https://`: the connections use TLS (default port 443).
    pub https: bool,
    /// Host as written, IPv6 without brackets.
    pub host: String,
    pub port: u16,
    /// Path and query, always starting with `/`.
    pub path: String,
    /// Value for the `Host` header (`host` or `host:port`, IPv6 in brackets).
    pub host_header: String,
}

/// A resolved, checked target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub url: Url,
    /// The address connections go to; it is the one that was checked.
    pub addr: SocketAddr,
    /// The URL as given, for reports.
    pub display: String,
}

/// Parse an `http://` or `https://` URL (a missing scheme means `http`).
pub fn parse_url(input: &str) -> Result<Url, Error> {
    let s = input.trim();
    let (rest, https) = split_scheme(input, s)?;
    let default_port = if https { 443 } else { 80 };
    let rest = rest.split('#').next().unwrap_or("");
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    if authority.contains('@') {
        return Err(Error::new(format!(
            "{input}: user info in URLs is not supported"
        )));
    }
    let (host, port_str, bracketed) = split_authority(input, authority)?;
    check_host(input, host, bracketed)?;
    let port = match port_str {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(Error::new(format!("{input}: invalid port '{p}'"))),
        },
    };
    let path = if path.is_empty() {
        "/".to_string()
    } else if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    crate::scenario::check_path(&path).map_err(|e| Error::new(format!("{input}: {e}")))?;
    let shown_host = if bracketed {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let host_header = if port == default_port {
        shown_host
    } else {
        format!("{shown_host}:{port}")
    };
    Ok(Url {
        https,
        host: host.to_string(),
        port,
        path,
        host_header,
    })
}

/// `s` (the trimmed `input`) without its scheme, and whether it is `https://`.
fn split_scheme<'s>(input: &str, s: &'s str) -> Result<(&'s str, bool), Error> {
    let lower = s.to_ascii_lowercase();
    if lower.starts_with("http://") {
        Ok((&s[7..], false))
    } else if lower.starts_with("https://") {
        Ok((&s[8..], true))
    } else if lower.contains("://") {
        Err(Error::new(format!(
            "{input}: only http:// and https:// URLs are supported"
        )))
    } else {
        Ok((s, false))
    }
}

/// The host (IPv6 without brackets), the port as written if any, and whether the host was
/// in brackets.
fn split_authority<'a>(
    input: &str,
    authority: &'a str,
) -> Result<(&'a str, Option<&'a str>, bool), Error> {
    if let Some(after) = authority.strip_prefix('[') {
        let close = after
            .find(']')
            .ok_or_else(|| Error::new(format!("{input}: unterminated '[' in host")))?;
        let host = &after[..close];
        let tail = &after[close + 1..];
        let port = match tail.strip_prefix(':') {
            Some(p) => Some(p),
            None if tail.is_empty() => None,
            None => return Err(Error::new(format!("{input}: junk after ']' in host"))),
        };
        Ok((host, port, true))
    } else {
        Ok(match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p), false),
            None => (authority, None, false),
        })
    }
}

/// Refuses an empty host, an IPv6 host without brackets and a host with whitespace, control
/// characters or `/`.
fn check_host(input: &str, host: &str, bracketed: bool) -> Result<(), Error> {
    if host.is_empty() {
        return Err(Error::new(format!("{input}: missing host")));
    }
    if !bracketed && host.contains(':') {
        return Err(Error::new(format!(
            "{input}: IPv6 hosts must be in brackets"
        )));
    }
    if host
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b == b'/')
    {
        return Err(Error::new(format!("{input}: invalid character in host")));
    }
    Ok(())
}

/// Whether an address is in 127.0.0.0/8 or is ::1 (IPv4-mapped forms included).
pub fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// Resolve the URL's host and check every resolved address: without
/// `allow_remote`, all of them must be loopback. Connections go to the first
/// IPv4 address (else the first address).
pub fn resolve(input: &str, allow_remote: bool) -> Result<Target, Error> {
    let url = parse_url(input)?;
    let addrs: Vec<SocketAddr> = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| Error::new(format!("{}: cannot resolve host: {e}", url.host)))?
        .collect();
    check_addrs(&url.host, &addrs, allow_remote)?;
    let addr = addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| Error::new(format!("{}: host resolved to no address", url.host)))?;
    Ok(Target {
        url,
        addr,
        display: input.trim().to_string(),
    })
}

/// The loopback guard, on already-resolved addresses.
pub fn check_addrs(host: &str, addrs: &[SocketAddr], allow_remote: bool) -> Result<(), Error> {
    if allow_remote {
        return Ok(());
    }
    if let Some(bad) = addrs.iter().find(|a| !is_loopback(a.ip())) {
        return Err(Error::new(format!(
            "refusing to send load to {} (resolved from '{host}'): not a loopback address; \
             benchmarks here must only target 127.0.0.0/8, ::1 or localhost \
             (pass --allow-remote to override)",
            bad.ip()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u = parse_url("http://127.0.0.1:8080/a/b?x=1").unwrap();
        assert_eq!(u.host, "127.0.0.1");
        assert_eq!(u.port, 8080);
        assert_eq!(u.path, "/a/b?x=1");
        assert_eq!(u.host_header, "127.0.0.1:8080");

        let u = parse_url("HTTP://localhost").unwrap();
        assert_eq!(
            (u.port, u.path.as_str(), u.host_header.as_str()),
            (80, "/", "localhost")
        );

        let u = parse_url("http://[::1]:9000?q").unwrap();
        assert_eq!(u.host, "::1");
        assert_eq!(u.path, "/?q");
        assert_eq!(u.host_header, "[::1]:9000");

        let u = parse_url("127.0.0.1:81/p#frag").unwrap();
        assert_eq!((u.port, u.path.as_str()), (81, "/p"));
        assert!(!u.https);

        let u = parse_url("https://localhost/x").unwrap();
        assert!(u.https);
        assert_eq!((u.port, u.host_header.as_str()), (443, "localhost"));
        let u = parse_url("HTTPS://127.0.0.1:8443").unwrap();
        assert!(u.https);
        assert_eq!((u.port, u.host_header.as_str()), (8443, "127.0.0.1:8443"));
        let u = parse_url("http://127.0.0.1:443/").unwrap();
        assert_eq!(u.host_header, "127.0.0.1:443");
    }

    #[test]
    fn rejects_bad_urls() {
        for bad in [
            "https://:443/",
            "ftp://127.0.0.1/",
            "http://:80/",
            "http://127.0.0.1:0/",
            "http://127.0.0.1:99999/",
            "http://u@127.0.0.1/",
            "http://[::1/",
            "http://::1/",
            "http://127.0.0.1/a b",
        ] {
            assert!(parse_url(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn loopback_classification() {
        for ok in ["127.0.0.1", "127.255.1.2", "::1", "::ffff:127.0.0.1"] {
            assert!(is_loopback(ok.parse().unwrap()), "{ok}");
        }
        for bad in [
            "10.0.0.1",
            "192.168.1.1",
            "0.0.0.0",
            "::",
            "8.8.8.8",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_loopback(bad.parse().unwrap()), "{bad}");
        }
    }

    #[test]
    fn refuses_non_loopback_targets() {
        let err = resolve("http://10.1.2.3:8080/", false).unwrap_err();
        assert!(err.0.contains("not a loopback address"), "{err}");
        assert!(err.0.contains("--allow-remote"), "{err}");
        assert!(!err.0.contains('\n'));
        let err = resolve("http://[2001:db8::1]/", false).unwrap_err();
        assert!(err.0.contains("2001:db8::1"), "{err}");
        // Allowed explicitly: resolution only, no traffic.
        let t = resolve("http://10.1.2.3:8080/", true).unwrap();
        assert_eq!(t.addr, "10.1.2.3:8080".parse().unwrap());
    }

    #[test]
    fn accepts_loopback_targets() {
        assert_eq!(
            resolve("http://127.0.0.1:1/", false).unwrap().addr,
            "127.0.0.1:1".parse().unwrap()
        );
        assert!(resolve("http://[::1]:1/", false)
            .unwrap()
            .addr
            .ip()
            .is_loopback());
        assert!(resolve("http://localhost:1/", false)
            .unwrap()
            .addr
            .ip()
            .is_loopback());
    }

    #[test]
    fn mixed_resolution_is_refused() {
        let addrs: Vec<SocketAddr> = vec![
            "127.0.0.1:80".parse().unwrap(),
            "10.0.0.1:80".parse().unwrap(),
        ];
        assert!(check_addrs("mixed", &addrs, false).is_err());
        assert!(check_addrs("mixed", &addrs, true).is_ok());
    }
}
