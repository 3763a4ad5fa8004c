//! The operations keys: a stage's `access_log = { destination, format }` (format compiled
//! here, its errors pointed at the offending variable) and `[admin]` (the admin listener's
//! address, loopback unless written otherwise).

use super::decode;
use super::diagnostics::Diagnostics;
use super::model::{self, Config};
use crate::gateway::access_log::{self, AccessLog, Destination, Format};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The default admin port (Envoy's habit).
pub(crate) const ADMIN_PORT: u16 = 9901;

pub(crate) fn access_log(l: &model::AccessLog, d: &mut Diagnostics<'_>) -> Option<Box<AccessLog>> {
    let destination = l.destination.as_ref().and_then(|t| match t.value.as_str() {
        "stdout" => Some(Destination::Stdout),
        "" => {
            d.error(
                t.span.clone(),
                "`destination` must be \"stdout\" or a file path",
            );
            None
        }
        path => Some(Destination::File(path.into())),
    });
    let format = l
        .format
        .as_ref()
        .and_then(|t| match Format::compile(&t.value) {
            Ok(f) => Some(f),
            Err(e) => {
                let mut message = e.message;
                if let Some(name) = message
                    .strip_prefix("unknown access log variable `$context.")
                    .and_then(|r| r.strip_suffix('`'))
                {
                    let names: Vec<&str> = access_log::variable_names().collect();
                    if let Some(n) = decode::closest(name, &names) {
                        message.push_str(&format!(" (did you mean `$context.{n}`?)"));
                    }
                }
                d.error(d.inside(t, e.at), message);
                None
            }
        });
    if l.destination.is_none() && l.format.is_none() {
        d.error(
            l.span.clone(),
            "`access_log` needs `destination` and `format`",
        );
    }
    Some(Box::new(AccessLog {
        destination: destination?,
        format: format?,
        sink: 0,
    }))
}

pub(crate) fn admin(
    c: &Config,
    listeners: &[SocketAddr],
    d: &mut Diagnostics<'_>,
) -> Option<SocketAddr> {
    let a = c.admin.as_ref()?;
    let ip = match &a.address {
        None => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Some(t) => {
            let text = t.value.trim_start_matches('[').trim_end_matches(']');
            match text.parse::<IpAddr>() {
                Ok(ip) => ip,
                Err(_) => {
                    d.error(
                        t.span.clone(),
                        format!("`{}` is not an IP address: write an IPv4 or IPv6 literal such as 127.0.0.1", t.value),
                    );
                    return None;
                }
            }
        }
    };
    let port = match &a.port {
        None => ADMIN_PORT,
        Some(p) => match u16::try_from(p.value) {
            Ok(n) if n > 0 => n,
            _ => {
                d.error(p.span.clone(), "`port` must be between 1 and 65535");
                return None;
            }
        },
    };
    let addr = SocketAddr::new(ip, port);
    let clash = listeners.iter().any(|l| {
        l.port() == port && (l.ip() == ip || l.ip().is_unspecified() || ip.is_unspecified())
    });
    if clash {
        let at = a.port.as_ref().map_or(a.span.clone(), |p| p.span.clone());
        d.error(
            at,
            format!("the admin listener {addr} overlaps a [[listeners]] address"),
        );
        return None;
    }
    Some(addr)
}

#[cfg(test)]
mod tests {
    use crate::config::load_str;
    use crate::gateway::access_log::{destinations, Destination};

    fn config(stage_extra: &str, tail: &str) -> String {
        format!(
            "[[listeners]]\naddress = \"127.0.0.1\"\nport = 8080\n\n[[apis]]\nname = \"a\"\nprotocol = \"rest\"\n  [[apis.stages]]\n  name = \"prod\"\n{stage_extra}\n  [[apis.stages]]\n  name = \"beta\"\n  access_log = {{ destination = \"stdout\", format = \"clf\" }}\n  [[apis.routes]]\n  key = \"GET /x\"\n  integration = {{ type = \"mock\", status = 200 }}\n{tail}"
        )
    }

    fn errors(text: &str) -> Vec<String> {
        match load_str("t.toml", text) {
            Ok(_) => Vec::new(),
            Err(e) => e.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn access_logs_compile_with_shared_destinations() {
        let text = config(
            "  access_log = { destination = \"stdout\", format = \"$context.requestId $context.status\" }",
            "",
        );
        let mut gw = match load_str("t.toml", &text) {
            Ok(g) => g,
            Err(e) => panic!("{e:?}"),
        };
        assert_eq!(destinations(&mut gw), vec![Destination::Stdout]);
        let stages = &gw.apis[0].stages;
        assert_eq!(stages[0].access_log.as_ref().map(|l| l.sink), Some(0));
        assert_eq!(stages[1].access_log.as_ref().map(|l| l.sink), Some(0));
        assert_eq!(gw.settings.admin, None);
    }

    #[test]
    fn format_errors_point_at_the_variable() {
        let text = config(
            "  access_log = { destination = \"/tmp/a.log\", format = \"$context.requestId $context.stauts\" }",
            "",
        );
        let e = errors(&text);
        assert_eq!(e.len(), 1, "{e:?}");
        // Line 10; the variable starts after `  access_log = { destination = "/tmp/a.log", format = "$context.requestId `.
        assert!(
            e[0].starts_with("t.toml:10:75: unknown access log variable `$context.stauts` (did you mean `$context.status`?)"),
            "{e:?}"
        );
        let text = config(
            "  access_log = { destination = \"stdout\", format = \"$context.status\" }",
            "",
        );
        let e = errors(&text);
        assert!(e[0].contains("must contain `$context.requestId`"), "{e:?}");
        let text = config("  access_log = { format = \"json\", level = 1 }", "");
        let e = errors(&text);
        assert_eq!(e.len(), 2, "{e:?}");
    }

    #[test]
    fn admin_listener() {
        let gw = match load_str("t.toml", &config("", "[admin]\nport = 9902\n")) {
            Ok(g) => g,
            Err(e) => panic!("{e:?}"),
        };
        assert_eq!(
            gw.settings.admin,
            Some("127.0.0.1:9902".parse().expect("addr"))
        );
        let e = errors(&config("", "[admin]\naddress = \"0.0.0.0\"\nport = 8080\n"));
        assert!(e[0].contains("overlaps"), "{e:?}");
        let e = errors(&config("", "[admin]\naddress = \"nope\"\n"));
        assert!(e[0].starts_with("t.toml:18:11:"), "{e:?}");
        let e = errors(&config("", "[server]\ndrain_timeout_ms = 0\n"));
        assert!(e[0].contains("drain_timeout_ms"), "{e:?}");
    }
}
