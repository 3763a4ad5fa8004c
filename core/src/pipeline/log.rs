//! Phase 7, log: after the response is sent (or the exchange failed), render the request's
//! access log line with its stage's compiled `$context` format. Pure: the caller supplies the
//! outcome ([`Outcome`]: status, lengths, latencies, integration result, the headers the
//! format needs) and the wall-clock start time, and writes the line wherever the stage's
//! destination says.

use super::Context;
use crate::civil::civil_from_days;
use crate::forward::push_decimal;
use crate::gateway::access_log::{AccessLog, Piece, Var};
use crate::gateway::responses::ResponseType;
use crate::lambda::policy::{AuthValue, AuthorizerName};

/// What happened to a request, filled by the connection loop as it goes.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// The status sent to the client (0: no response was sent).
    pub status: u16,
    /// Response body bytes (`None`: not known, such as a streamed chunked body).
    pub response_length: Option<u64>,
    /// Milliseconds from the complete request head to the end of the response.
    pub response_latency_ms: u64,
    /// The backend's response status.
    pub integration_status: Option<u16>,
    /// Milliseconds from the start of the backend exchange to its response head.
    pub integration_latency_ms: Option<u64>,
    /// Why the backend exchange failed.
    pub integration_error: Option<&'static str>,
    /// The gateway response sent instead of the backend's (its type and message).
    pub error: Option<(ResponseType, Option<&'static str>)>,
    /// Wall clock at the complete request head, in milliseconds since the Unix epoch.
    pub request_time_epoch_ms: u64,
    /// `Host` and `User-Agent` as sent, copied only when the stage's format uses them.
    pub host: Vec<u8>,
    pub user_agent: Vec<u8>,
}

impl Outcome {
    /// Ready for the next request on the connection (keeps the header copies' capacity).
    pub fn reset(&mut self) {
        let mut host = std::mem::take(&mut self.host);
        let mut user_agent = std::mem::take(&mut self.user_agent);
        host.clear();
        user_agent.clear();
        *self = Outcome {
            host,
            user_agent,
            ..Outcome::default()
        };
    }
}

/// The access log of the request's stage, if it has one.
pub fn access_log<'g>(ctx: &Context<'g>) -> Option<&'g AccessLog> {
    ctx.stage.and_then(|s| s.access_log.as_deref())
}

/// Appends the request's access log line (with its `\n`) to `out`; `false` (nothing
/// appended) when its stage has no access log.
pub fn log(ctx: &Context<'_>, outcome: &Outcome, out: &mut Vec<u8>) -> bool {
    let Some(log) = access_log(ctx) else {
        return false;
    };
    let json = log.format.json();
    for piece in log.format.pieces() {
        match piece {
            Piece::Text(t) => out.extend_from_slice(t.as_bytes()),
            Piece::Var(v) => value(v, ctx, outcome, json, out),
        }
    }
    out.push(b'\n');
    true
}

fn value(v: &Var, ctx: &Context<'_>, o: &Outcome, json: bool, out: &mut Vec<u8>) {
    let text = |out: &mut Vec<u8>, bytes: &[u8]| {
        if bytes.is_empty() {
            out.push(b'-');
        } else {
            escape(bytes, json, out);
        }
    };
    let num = |out: &mut Vec<u8>, n: Option<u64>| match n {
        Some(n) => push_decimal(out, n),
        None => out.push(b'-'),
    };
    match v {
        Var::RequestId | Var::ExtendedRequestId => out.extend_from_slice(&ctx.request_id),
        Var::ApiId => text(out, ctx.api.map_or(&b""[..], |a| a.name.as_bytes())),
        Var::Stage => text(out, ctx.stage_name().as_bytes()),
        Var::DomainName => text(out, host_name(&o.host)),
        Var::DomainPrefix => {
            let h = host_name(&o.host);
            let first = h.split(|&b| b == b'.').next().unwrap_or(h);
            text(out, first)
        }
        Var::HttpMethod => text(out, ctx.http_method()),
        Var::Path => text(out, ctx.path()),
        Var::ResourcePath => {
            let key = ctx.route_key().unwrap_or("");
            // `GET /pets/{id}` → `/pets/{id}`; `$default` has no resource path.
            text(out, key.split_once(' ').map_or("", |(_, p)| p).as_bytes())
        }
        Var::RouteKey => text(out, ctx.route_key().unwrap_or("").as_bytes()),
        Var::Protocol => out.extend_from_slice(if ctx.minor_version == 0 {
            b"HTTP/1.0"
        } else {
            b"HTTP/1.1"
        }),
        Var::Status => num(out, (o.status != 0).then_some(o.status as u64)),
        Var::ResponseLength => num(out, o.response_length),
        Var::RequestTime => clf_time_cached(o.request_time_epoch_ms / 1000, out),
        Var::RequestTimeEpoch => push_decimal(out, o.request_time_epoch_ms),
        Var::ResponseLatency => push_decimal(out, o.response_latency_ms),
        Var::IntegrationLatency => num(out, o.integration_latency_ms),
        Var::IntegrationStatus => num(out, o.integration_status.map(u64::from)),
        Var::IntegrationError => text(out, o.integration_error.unwrap_or("").as_bytes()),
        Var::SourceIp => push_ip(out, ctx.client.ip),
        Var::UserAgent => text(out, &o.user_agent),
        Var::ErrorMessage => text(out, error_message(o).as_bytes()),
        Var::ErrorMessageString => {
            let m = error_message(o);
            if m.is_empty() {
                out.push(b'-');
            } else {
                out.push(b'"');
                escape(m.as_bytes(), json, out);
                out.push(b'"');
            }
        }
        Var::ErrorResponseType => text(out, o.error.map_or("", |(t, _)| t.name()).as_bytes()),
        Var::ApiKeyId => text(out, ctx.api_key_name().unwrap_or("").as_bytes()),
        Var::PrincipalId => authorizer_value(ctx, AuthorizerName::PrincipalId, json, out),
        Var::Claim(c) => authorizer_value(ctx, AuthorizerName::Claim(c), json, out),
        Var::AuthorizerKey(k) => authorizer_value(ctx, AuthorizerName::Key(k), json, out),
        Var::Unavailable => out.push(b'-'),
    }
}

/// A `$context.authorizer.*` value of the request (`-` without an authorizer result or a
/// value). Text is escaped like any value; numbers and booleans are written as JSON, arrays
/// and objects as escaped compact JSON (one allocation, only for such values).
fn authorizer_value(ctx: &Context<'_>, name: AuthorizerName<'_>, json: bool, out: &mut Vec<u8>) {
    match ctx.authorizer.as_deref().and_then(|a| a.value(name)) {
        None => out.push(b'-'),
        Some(AuthValue::Text("")) => out.push(b'-'),
        Some(AuthValue::Text(t)) => escape(t.as_bytes(), json, out),
        Some(AuthValue::Json(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_)))) => {
            // Cannot fail: writing to a Vec.
            let _ = serde_json::to_writer(&mut *out, v);
        }
        Some(AuthValue::Json(v)) => {
            let compact = serde_json::to_vec(v).unwrap_or_default();
            escape(&compact, json, out);
        }
    }
}

fn error_message(o: &Outcome) -> &'static str {
    o.error
        .map_or("", |(t, m)| m.or(t.builtin().message).unwrap_or(""))
}

/// The host without its port (`[::1]:8080` → `[::1]`).
fn host_name(host: &[u8]) -> &[u8] {
    match host.iter().rposition(|&b| b == b':') {
        Some(i) if !host[i..].contains(&b']') => &host[..i],
        _ => host,
    }
}

/// An IP address as `Display` writes it; IPv4 without the formatting machinery.
fn push_ip(out: &mut Vec<u8>, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            push_decimal(out, a.into());
            out.push(b'.');
            push_decimal(out, b.into());
            out.push(b'.');
            push_decimal(out, c.into());
            out.push(b'.');
            push_decimal(out, d.into());
        }
        std::net::IpAddr::V6(_) => {
            use std::io::Write;
            let _ = write!(out, "{ip}");
        }
    }
}

/// Keeps a line a line: control bytes are escaped; in JSON formats also `"`, `\` and
/// non-ASCII bytes (as `\u00XX`, so the line stays valid JSON whatever the client sent).
fn escape(bytes: &[u8], json: bool, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // Bytes that are copied as they are: printable ASCII, minus `"` and `\` in JSON, plus
    // non-ASCII outside JSON.
    const fn plain(json: bool) -> [bool; 256] {
        let mut t = [false; 256];
        let mut b = 0;
        while b < 256 {
            t[b] = match b as u8 {
                b'"' | b'\\' => !json,
                0x20..=0x7e => true,
                0x80..=0xff => !json,
                _ => false,
            };
            b += 1;
        }
        t
    }
    static PLAIN: [[bool; 256]; 2] = [plain(false), plain(true)];
    let plain = &PLAIN[json as usize];
    // Fast path: a clean value (nearly always) is copied in one go.
    if bytes.iter().all(|&b| plain[b as usize]) {
        out.extend_from_slice(bytes);
        return;
    }
    out.reserve(bytes.len());
    for &b in bytes {
        if plain[b as usize] {
            out.push(b);
            continue;
        }
        match b {
            // Only JSON escapes these.
            b'"' | b'\\' => {
                out.push(b'\\');
                out.push(b);
            }
            _ => {
                out.extend_from_slice(if json { b"\\u00" } else { b"\\x" });
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 15) as usize]);
            }
        }
    }
}

/// [`clf_time`] through a per-thread cache of the last second's text: requests in the same
/// second (nearly all of them under load) copy it instead of formatting a date.
fn clf_time_cached(secs: u64, out: &mut Vec<u8>) {
    use std::cell::Cell;
    const LEN: usize = 26;
    thread_local! {
        static LAST: Cell<(u64, [u8; LEN])> = const { Cell::new((u64::MAX, [0; LEN])) };
    }
    let (at, text) = LAST.get();
    if at == secs {
        out.extend_from_slice(&text);
        return;
    }
    let start = out.len();
    clf_time(secs, out);
    // Years of four digits (every year from 1000 to 9999) have this length.
    if let Ok(text) = <[u8; LEN]>::try_from(&out[start..]) {
        LAST.set((secs, text));
    }
}

/// `dd/MMM/yyyy:HH:mm:ss +0000` (CLF, UTC) for `secs` since the Unix epoch.
fn clf_time(secs: u64, out: &mut Vec<u8>) {
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let t = secs % 86_400;
    let two = |out: &mut Vec<u8>, n: u64| {
        out.push(b'0' + (n / 10 % 10) as u8);
        out.push(b'0' + (n % 10) as u8);
    };
    two(out, d as u64);
    out.push(b'/');
    out.extend_from_slice(MONTHS[(m - 1) as usize]);
    out.push(b'/');
    push_decimal(out, y as u64);
    out.push(b':');
    two(out, t / 3600);
    out.push(b':');
    two(out, t / 60 % 60);
    out.push(b':');
    two(out, t % 60);
    out.extend_from_slice(b" +0000");
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{with_head, ID};
    use super::*;
    use crate::lambda::policy::AuthResult;

    fn clf(secs: u64) -> String {
        let mut out = Vec::new();
        clf_time(secs, &mut out);
        String::from_utf8(out).expect("ascii")
    }

    #[test]
    fn clf_times() {
        assert_eq!(clf(0), "01/Jan/1970:00:00:00 +0000");
        // 2000-02-29 (leap day) 12:34:56
        assert_eq!(clf(951_827_696), "29/Feb/2000:12:34:56 +0000");
        // 2026-11-30 07:05:08
        assert_eq!(clf(1_796_022_308), "30/Nov/2026:07:05:08 +0000");
    }

    #[test]
    fn cached_clf_times_match() {
        for secs in [
            0,
            1_796_022_308,
            1_796_022_308,
            1_796_022_309,
            951_827_696,
            0,
        ] {
            let mut out = b"x".to_vec();
            clf_time_cached(secs, &mut out);
            assert_eq!(&out[1..], clf(secs).as_bytes(), "{secs}");
        }
        // A five-digit year is not cached but still right.
        let far = 253_402_300_800; // 10000-01-01
        let mut out = Vec::new();
        clf_time_cached(far, &mut out);
        clf_time_cached(far, &mut out);
        assert_eq!(out, [clf(far).as_bytes(), clf(far).as_bytes()].concat());
    }

    #[test]
    fn ips_render_as_display_does() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.200.3.255",
            "::1",
            "2001:db8::7",
            "::ffff:1.2.3.4",
        ] {
            let ip: std::net::IpAddr = ip.parse().expect("ip");
            let mut out = Vec::new();
            push_ip(&mut out, ip);
            assert_eq!(out, ip.to_string().as_bytes());
        }
    }

    #[test]
    fn escapes() {
        let mut out = Vec::new();
        escape(b"a\"b\\c\nd\xc3\xa9", true, &mut out);
        assert_eq!(out, b"a\\\"b\\\\c\\u000ad\\u00c3\\u00a9");
        out.clear();
        escape(b"a\"b\nc", false, &mut out);
        assert_eq!(out, b"a\"b\\x0ac");
        // Clean values (the fast path), and an escape after a clean prefix.
        for json in [true, false] {
            out.clear();
            escape(b"GET /pets/{id}", json, &mut out);
            assert_eq!(out, b"GET /pets/{id}");
            out.clear();
            escape(b"abc\x7f", json, &mut out);
            assert_eq!(
                out,
                if json {
                    &b"abc\\u007f"[..]
                } else {
                    b"abc\\x7f"
                }
            );
        }
        out.clear();
        escape(b"ab\xc3\xa9\"", false, &mut out);
        assert_eq!(out, b"ab\xc3\xa9\"");
    }

    const LOGGED: &str = r#"
[[listeners]]
address = "127.0.0.1"
port = 8080

[[apis]]
name = "shop"
protocol = "rest"
  [[apis.stages]]
  name = "prod"
  access_log = { destination = "/tmp/x.log", format = 'id=$context.requestId rk="$context.routeKey" rp=$context.resourcePath st=$context.status len=$context.responseLength il=$context.integrationLatency is=$context.integrationStatus ie=$context.integration.error rt=$context.error.responseType em=$context.error.message dn=$context.domainName dp=$context.domainPrefix ua=$context.identity.userAgent ip=$context.identity.sourceIp p=$context.path m=$context.httpMethod pr=$context.protocol k=$context.identity.apiKeyId t=[$context.requestTime] e=$context.requestTimeEpoch' }
  [[apis.stages]]
  name = "quiet"
  [[apis.stages]]
  name = "json"
  access_log = { destination = "stdout", format = "json" }
  [[apis.routes]]
  key = "GET /pets/{id}"
  integration = { type = "mock", status = 200, body = "ok" }
"#;

    fn line(raw: &[u8], o: &Outcome) -> Option<String> {
        let gw = match crate::config::load_str("<log tests>", LOGGED) {
            Ok(g) => g,
            Err(e) => panic!("config: {e:?}"),
        };
        let mut out = Vec::new();
        let mut logged = false;
        with_head(raw, |head, ctx| {
            let _ = super::super::dispatch(&gw, head, ctx);
            logged = log(ctx, o, &mut out);
        });
        logged.then(|| String::from_utf8(out).expect("utf-8 line"))
    }

    #[test]
    fn renders_a_line_per_request() {
        let mut o = Outcome {
            status: 502,
            response_length: Some(36),
            response_latency_ms: 12,
            integration_latency_ms: Some(7),
            integration_status: None,
            integration_error: Some("connection refused"),
            error: Some((ResponseType::IntegrationFailure, None)),
            request_time_epoch_ms: 1_796_022_308_123,
            ..Outcome::default()
        };
        o.host.extend_from_slice(b"api.example.com:8080");
        o.user_agent.extend_from_slice(b"curl/8 \"x\"");
        let l = line(
            b"GET /prod/pets/7?q=1 HTTP/1.1\r\nhost: api.example.com:8080\r\n\r\n",
            &o,
        )
        .expect("prod logs");
        let id = std::str::from_utf8(&ID).expect("ascii");
        assert_eq!(
            l,
            format!(
                "id={id} rk=\"GET /pets/{{id}}\" rp=/pets/{{id}} st=502 len=36 il=7 is=- ie=connection refused rt=INTEGRATION_FAILURE em=Internal server error dn=api.example.com dp=api ua=curl/8 \"x\" ip=192.0.2.9 p=/prod/pets/7 m=GET pr=HTTP/1.1 k=- t=[30/Nov/2026:07:05:08 +0000] e=1796022308123\n"
            )
        );
        // A stage without an access log logs nothing.
        assert_eq!(
            line(b"GET /quiet/pets/7 HTTP/1.1\r\nhost: a\r\n\r\n", &o),
            None
        );
        // JSON: values escaped, unknown route → `-`.
        let l = line(b"GET /json/nothing%22 HTTP/1.0\r\nhost: a\r\n\r\n", &o).expect("json");
        assert!(l.contains("\"routeKey\":\"-\""), "{l}");
        assert!(l.contains("\"protocol\":\"HTTP/1.0\""), "{l}");
        assert!(l.contains("\"status\":\"502\""), "{l}");
        assert!(l.starts_with(&format!("{{ \"requestId\":\"{id}\"")), "{l}");
    }

    const AUTH_LOGGED: &str = r#"
[[listeners]]
address = "127.0.0.1"
port = 8080

[[api_keys]]
name = "alice"
value = "alice0123456789abcdefghij"

[[apis]]
name = "shop"
protocol = "rest"
  [[apis.stages]]
  name = "clf"
  access_log = { destination = "stdout", format = "$context.requestId p=$context.authorizer.principalId t=$context.authorizer.tenant n=$context.authorizer.n l=$context.authorizer.l c=$context.authorizer.claims.sub r=$context.authorizer.claims['custom:role'] k=$context.identity.apiKeyId" }
  [[apis.stages]]
  name = "json"
  access_log = { destination = "stdout", format = '{"p":"$context.authorizer.principalId","t":"$context.authorizer.tenant","l":"$context.authorizer.l","k":"$context.identity.apiKeyId","r":"$context.requestId"}' }
  [[apis.routes]]
  key = "GET /pets/{id}"
  integration = { type = "mock", status = 200, body = "ok" }
"#;

    fn auth_line(raw: &[u8], auth: Option<AuthResult>, key: bool) -> String {
        let gw = match crate::config::load_str("<log tests>", AUTH_LOGGED) {
            Ok(g) => g,
            Err(e) => panic!("config: {e:?}"),
        };
        let mut out = Vec::new();
        with_head(raw, |head, ctx| {
            let _ = super::super::dispatch(&gw, head, ctx);
            ctx.authorizer = auth.map(std::rc::Rc::new);
            ctx.api_key = key.then_some(0);
            assert!(log(ctx, &Outcome::default(), &mut out));
        });
        String::from_utf8(out).expect("utf-8 line")
    }

    #[test]
    fn renders_authorizer_values_and_the_api_key_name() {
        use crate::lambda::PayloadVersion;
        let lambda = crate::lambda::policy::parse(
            br#"{"isAuthorized":true,"context":{"tenant":"t \"1\"","n":7,"l":["a",true]}}"#,
            PayloadVersion::V2,
            true,
        )
        .expect("valid");
        let lambda = AuthResult {
            principal_id: Some("user-9".into()),
            ..lambda
        };
        let id = std::str::from_utf8(&ID).expect("ascii");
        let raw = b"GET /clf/pets/1 HTTP/1.1\r\nhost: a\r\n\r\n";
        assert_eq!(
            auth_line(raw, Some(lambda.clone()), true),
            format!("{id} p=user-9 t=t \"1\" n=7 l=[\"a\",true] c=- r=- k=alice\n")
        );
        // Without an authorizer result or a key: `-` everywhere.
        assert_eq!(
            auth_line(raw, None, false),
            format!("{id} p=- t=- n=- l=- c=- r=- k=-\n")
        );
        // A JWT result: claims, no context keys.
        let mut claims = serde_json::Map::new();
        claims.insert("sub".into(), "u-1".into());
        claims.insert("custom:role".into(), "admin".into());
        claims.insert("tenant".into(), "not a context key".into());
        let jwt = AuthResult {
            principal_id: Some("u-1".into()),
            statements: Vec::new(),
            simple: Some(true),
            context: claims,
            usage_identifier_key: None,
            jwt_scopes: Some(Vec::new()),
        };
        assert_eq!(
            auth_line(raw, Some(jwt), false),
            format!("{id} p=u-1 t=- n=- l=- c=u-1 r=admin k=-\n")
        );
        // JSON formats escape the values (the line stays valid JSON).
        let l = auth_line(
            b"GET /json/pets/1 HTTP/1.1\r\nhost: a\r\n\r\n",
            Some(lambda),
            true,
        );
        let v: serde_json::Value = serde_json::from_str(&l).expect("valid JSON line");
        assert_eq!(v["p"], "user-9");
        assert_eq!(v["t"], "t \"1\"");
        assert_eq!(v["l"], r#"["a",true]"#);
        assert_eq!(v["k"], "alice");
    }

    #[test]
    fn host_names() {
        assert_eq!(host_name(b"api.example.com:8080"), b"api.example.com");
        assert_eq!(host_name(b"[::1]:80"), b"[::1]");
        assert_eq!(host_name(b"[::1]"), b"[::1]");
        assert_eq!(host_name(b"a"), b"a");
    }
}
