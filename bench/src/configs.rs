//! The configs every proxy runs with, generated with equivalent settings: the same number of
//! workers/threads/shards (one, or two in the `2-shards` scenario), upstream keep-alive (`UPSTREAM_KEEPALIVE` idle connections), no access logs, the same forwarded headers
//! (`X-Forwarded-For/-Proto/-Port`) and a request id on every response (tollgate's
//! `x-amzn-RequestId`), 60 s client keep-alive, room for the idle-connection scenario; and the
//! request mixes the load generators send.
//!
//! [`Setup`] carries what some scenarios add: how nginx and HAProxy write the gateway
//! scenario's 1,000 parameterised routes ([`NginxRoutes`], [`HaproxyRoutes`]), TLS on the
//! listener (`https`), tollgate's JSON access log (`access-log`) and its admin listener
//! (`scrape`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// How nginx writes the gateway scenario's routes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum NginxRoutes {
    /// One prefix `location /svc{i}/items/` per route (nginx's static location tree). The
    /// fastest in the smoke comparison (see `bench/README.md`); the default.
    #[default]
    Prefix,
    /// One regex location `^/(?<gw_svc>svc[0-9]+)/items/[^/]+$` and a `map $gw_svc` of the
    /// known services (a hash lookup); unknown services get 404.
    Map,
    /// One regex `location ~ ^/svc{i}/items/[^/]+$` per route, first match wins.
    Regex,
}

impl NginxRoutes {
    pub fn parse(s: &str) -> Option<NginxRoutes> {
        match s.trim().to_ascii_lowercase().as_str() {
            "prefix" => Some(NginxRoutes::Prefix),
            "map" => Some(NginxRoutes::Map),
            "regex" => Some(NginxRoutes::Regex),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            NginxRoutes::Prefix => "prefix",
            NginxRoutes::Map => "map",
            NginxRoutes::Regex => "regex",
        }
    }
}

/// How HAProxy writes the gateway scenario's routes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HaproxyRoutes {
    /// `use_backend %[path,map_beg(routes.map,be_404)]` with one `/svc{i}/items/ be_origin`
    /// line per route in a map file (a prefix tree lookup); the default.
    #[default]
    MapBeg,
    /// One `path_reg` ACL and one `use_backend` per route, first match wins.
    Regex,
}

impl HaproxyRoutes {
    pub fn parse(s: &str) -> Option<HaproxyRoutes> {
        match s.trim().to_ascii_lowercase().as_str() {
            "map" | "map_beg" | "map-beg" => Some(HaproxyRoutes::MapBeg),
            "regex" => Some(HaproxyRoutes::Regex),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            HaproxyRoutes::MapBeg => "map",
            HaproxyRoutes::Regex => "regex",
        }
    }
}

/// A certificate chain and its key, PEM files (the `https` scenario serves the same pair from
/// every proxy; HAProxy gets `both`, the two in one file, as its `crt` wants).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub both: PathBuf,
}

/// What a scenario adds to the equivalent configs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Setup {
    pub nginx_routes: NginxRoutes,
    pub haproxy_routes: HaproxyRoutes,
    /// TLS on the listener (every proxy).
    pub tls: Option<TlsFiles>,
    /// tollgate only: the stage writes a JSON access log (`format = "json"`) to this file.
    pub access_log: Option<PathBuf>,
    /// tollgate only: an `[admin]` listener (`/metrics`) on 127.0.0.1 at this port.
    pub admin_port: Option<u16>,
}

/// The file name of HAProxy's route map in its config directory.
pub const HAPROXY_MAP: &str = "routes.map";

/// Which routing table the proxies get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routes {
    /// One catch-all route to the origin.
    Single,
    /// `GET /svc{i}/items/{id}` for i in 0..count, everything else 404.
    Gateway { count: usize },
    /// The `gateway-keys` scenario's REST route, with the traffic limits (`keys`) or without
    /// ([`tollgate_traffic`]); tollgate only (nginx and HAProxy get the catch-all route).
    Traffic { keys: bool },
}

/// Upstream keep-alive connections kept per proxy (nginx `keepalive`, tollgate's pool).
pub const UPSTREAM_KEEPALIVE: usize = 256;

/// The route numbers the gateway scenario requests: spread over the table, so that
/// first-match-wins proxies (nginx regex locations, HAProxy ACLs) pay their average cost.
pub fn gateway_route_indexes(count: usize) -> Vec<usize> {
    let last = count.saturating_sub(1);
    let mut v = vec![0, last / 4, last / 2, last * 3 / 4, last];
    v.dedup();
    v
}

/// The request paths of the gateway scenario.
pub fn gateway_paths(count: usize) -> Vec<String> {
    gateway_route_indexes(count)
        .into_iter()
        .enumerate()
        .map(|(n, i)| format!("/svc{i}/items/{}", 1000 + n * 7919))
        .collect()
}

/// tollgate's TOML config (see tuning/CONFIG.md): `shards` shards, each pinned to a CPU.
pub fn tollgate(routes: Routes, listen: u16, origin: u16, shards: usize) -> String {
    tollgate_with(routes, listen, origin, shards, &Setup::default())
}

/// [`tollgate`] with a scenario's additions: TLS on the listener, an access log, `[admin]`.
pub fn tollgate_with(
    routes: Routes,
    listen: u16,
    origin: u16,
    shards: usize,
    setup: &Setup,
) -> String {
    if let Routes::Traffic { keys } = routes {
        return tollgate_traffic(keys, listen, origin);
    }
    let tls = setup.tls.as_ref().map_or_else(String::new, |t| {
        format!(
            "tls = {{ certificate = {:?}, key = {:?} }}\n",
            t.cert.display().to_string(),
            t.key.display().to_string()
        )
    });
    let admin = setup.admin_port.map_or_else(String::new, |p| {
        format!("[admin]\naddress = \"127.0.0.1\"\nport = {p}\n\n")
    });
    let log = setup.access_log.as_ref().map_or_else(String::new, |f| {
        format!(
            "  access_log = {{ destination = {:?}, format = \"json\" }}\n",
            f.display().to_string()
        )
    });
    let mut s = format!(
        "# generated by tollgate-bench\n[server]\nshards = {shards}\npin_cpus = true\n\
         upstream_pool_size = {UPSTREAM_KEEPALIVE}\n\n{admin}\
         [[listeners]]\naddress = \"127.0.0.1\"\nport = {listen}\n{tls}\n\
         [[apis]]\nname = \"bench\"\nprotocol = \"http\"\n\n  [[apis.stages]]\n  name = \"$default\"\n{log}"
    );
    let integration =
        format!("integration = {{ type = \"http_proxy\", uri = \"http://127.0.0.1:{origin}\" }}");
    match routes {
        Routes::Single | Routes::Traffic { .. } => {
            let _ = write!(
                s,
                "\n  [[apis.routes]]\n  key = \"$default\"\n  {integration}\n"
            );
        }
        Routes::Gateway { count } => {
            for i in 0..count {
                let _ = write!(
                    s,
                    "\n  [[apis.routes]]\n  key = \"GET /svc{i}/items/{{id}}\"\n  {integration}\n"
                );
            }
        }
    }
    s
}

/// The API key the keyed requests carry (20–128 letters and digits).
pub const TRAFFIC_KEY: &str = "bench0gold0key000000000000000001";

/// The limits (after `[server]`): the account throttle (needed so that the others may be that high), an
/// API key in a usage plan with a throttle and a quota on stage `prod`. Every limit is far above
/// what the bench or a load test sends.
const LIMITS: &str = r#"account_throttle = { rate = 1000000000.0, burst = 1000000000000 }

[[api_keys]]
name = "bench"
value = "bench0gold0key000000000000000001"

[[api_keys]]
name = "other"
value = "bench0gold0key000000000000000002"

[[usage_plans]]
name = "gold"
throttle = { rate = 500000000.0, burst = 500000000000 }
quota = { limit = 1000000000000, period = "MONTH" }
keys = ["bench", "other"]
  [[usage_plans.stages]]
  api = "bench"
  stage = "prod"
"#;

/// The traffic-control comparison's tollgate config (`traffic config keys|plain`,
/// `bench/callgrind-keys.sh`, the `gateway-keys` scenario): one shard, listener, one REST API with stage `prod` and route `GET /items/{id}` to the
/// origin; with `keys`, the route needs an API key and the stage has a throttle (plus
/// [`LIMITS`]).
pub fn tollgate_traffic(keys: bool, listen: u16, origin: u16) -> String {
    let mut s = String::from("[server]\nshards = 1\n");
    if keys {
        s.push_str(LIMITS);
    }
    s.push_str(&format!(
        "\n[[listeners]]\naddress = \"127.0.0.1\"\nport = {listen}\n\n\
         [[apis]]\nname = \"bench\"\nprotocol = \"rest\"\n\n  [[apis.stages]]\n  name = \"prod\"\n"
    ));
    if keys {
        s.push_str("  throttle = { rate = 900000000.0, burst = 900000000000 }\n");
    }
    s.push_str(&format!(
        "\n  [[apis.routes]]\n  key = \"GET /items/{{id}}\"\n  api_key_required = {keys}\n  \
         integration = {{ type = \"http_proxy\", uri = \"http://127.0.0.1:{origin}\" }}\n"
    ));
    s
}

/// The path the `gateway-keys` scenario requests (route `GET /items/{id}` on stage `prod`).
pub const TRAFFIC_PATH: &str = "/prod/items/8a7b6c5d";

/// The tollgate-load scenario of `gateway-keys`: [`TRAFFIC_PATH`] with the `x-api-key`
/// header, sent as is to both configs (the plain one ignores the header).
pub fn traffic_load_scenario() -> String {
    format!(
        "# generated by tollgate-bench\n[headers]\nx-api-key = \"{TRAFFIC_KEY}\"\n\n\
         [[request]]\nmethod = \"GET\"\npath = \"{TRAFFIC_PATH}\"\n"
    )
}

/// nginx's config: master + `workers` workers, everything under `dir`; the gateway routes
/// written as `setup.nginx_routes` says, TLS on the listener with `setup.tls`.
pub fn nginx(
    routes: Routes,
    listen: u16,
    origin: u16,
    dir: &Path,
    nofile: u64,
    workers: usize,
    setup: &Setup,
) -> String {
    let d = dir.display();
    let (ssl, tls) = nginx_tls(setup);
    let worker_connections = nofile.saturating_sub(64).clamp(1024, 65536);
    let mut s = format!(
        r#"# generated by tollgate-bench
worker_processes {workers};
worker_rlimit_nofile {nofile};
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log error;
pcre_jit on;

events {{
    worker_connections {worker_connections};
    accept_mutex off;
}}

http {{
    access_log off;
    server_tokens off;
    client_body_temp_path {d}/nginx-body;
    proxy_temp_path {d}/nginx-proxy;
    fastcgi_temp_path {d}/nginx-fastcgi;
    uwsgi_temp_path {d}/nginx-uwsgi;
    scgi_temp_path {d}/nginx-scgi;
    keepalive_timeout 60s;
    keepalive_requests 1000000000;

    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_set_header X-Forwarded-Port $server_port;
    proxy_buffer_size 16k;
    proxy_buffers 8 16k;
    proxy_max_temp_file_size 0;

    upstream origin {{
        server 127.0.0.1:{origin};
        keepalive {UPSTREAM_KEEPALIVE};
        keepalive_requests 1000000000;
        keepalive_timeout 60s;
    }}

    server {{
        listen 127.0.0.1:{listen}{ssl} backlog=4096;
{tls}        add_header x-amzn-RequestId $request_id always;
"#
    );
    nginx_locations(&mut s, routes, setup.nginx_routes);
    s.push_str("    }\n");
    nginx_map(&mut s, routes, setup.nginx_routes);
    s.push_str("}\n");
    s
}

/// The `ssl` listen flag and the TLS directives of nginx's server (both empty without TLS).
fn nginx_tls(setup: &Setup) -> (&'static str, String) {
    match &setup.tls {
        // Tickets on (nginx's default, spelled out) and a session cache: resumption works
        // both ways; clients that resume nothing pay a full handshake.
        Some(t) => (
            " ssl",
            format!(
                "        ssl_certificate {};\n        ssl_certificate_key {};\n        \
                 ssl_protocols TLSv1.2 TLSv1.3;\n        ssl_session_tickets on;\n        \
                 ssl_session_cache shared:bench:10m;\n",
                t.cert.display(),
                t.key.display()
            ),
        ),
        None => ("", String::new()),
    }
}

/// nginx's `location` blocks for `routes`, the gateway's in the given style.
fn nginx_locations(s: &mut String, routes: Routes, style: NginxRoutes) {
    match routes {
        Routes::Single | Routes::Traffic { .. } => {
            s.push_str("        location / { proxy_pass http://origin; }\n")
        }
        Routes::Gateway { count } => match style {
            NginxRoutes::Regex => {
                for i in 0..count {
                    let _ = writeln!(
                        s,
                        "        location ~ ^/svc{i}/items/[^/]+$ {{ proxy_pass http://origin; }}"
                    );
                }
                s.push_str("        location / { return 404; }\n");
            }
            NginxRoutes::Prefix => {
                for i in 0..count {
                    let _ = writeln!(
                        s,
                        "        location /svc{i}/items/ {{ proxy_pass http://origin; }}"
                    );
                }
                s.push_str("        location / { return 404; }\n");
            }
            NginxRoutes::Map => {
                s.push_str(
                    "        location ~ ^/(?<gw_svc>svc[0-9]+)/items/[^/]+$ {\n            \
                     if ($gw_known = 0) { return 404; }\n            proxy_pass http://origin;\n        }\n\
                     \x20       location / { return 404; }\n",
                );
            }
        },
    }
}

/// With the gateway routes in the `map` style: the `map` of the known services (at `http`
/// level, after the server: `map` blocks may come anywhere in `http`).
fn nginx_map(s: &mut String, routes: Routes, style: NginxRoutes) {
    if let (Routes::Gateway { count }, NginxRoutes::Map) = (routes, style) {
        s.push_str("\n    map_hash_max_size 65536;\n    map_hash_bucket_size 64;\n");
        s.push_str("    map $gw_svc $gw_known {\n        default 0;\n");
        for i in 0..count {
            let _ = writeln!(s, "        svc{i} 1;");
        }
        s.push_str("    }\n");
    }
}

/// HAProxy's config: one process with `threads` threads (`nbthread`); the gateway routes as
/// `setup.haproxy_routes` says (with `MapBeg` the map file is [`haproxy_route_map`], to be
/// written as `dir/`[`HAPROXY_MAP`]), TLS on the bind line with `setup.tls`.
pub fn haproxy(
    routes: Routes,
    listen: u16,
    origin: u16,
    nofile: u64,
    threads: usize,
    dir: &Path,
    setup: &Setup,
) -> String {
    let (ssl, proto) = match &setup.tls {
        Some(t) => (
            format!(" ssl crt {} alpn http/1.1", t.both.display()),
            "https",
        ),
        None => (String::new(), "http"),
    };
    // Idle client connections take one descriptor each; the upstream side is a small pool.
    // HAProxy wants 2 descriptors per maxconn and, by default (strict-limits), refuses to
    // start when it cannot raise the limit that far; `no strict-limits` makes that a warning.
    let maxconn = nofile.saturating_sub(256).clamp(1000, 100_000);
    let mut s = format!(
        r#"# generated by tollgate-bench
global
    nbthread {threads}
    maxconn {maxconn}
    no strict-limits

defaults
    mode http
    timeout connect 3s
    timeout client 60s
    timeout server 30s
    timeout http-request 10s
    timeout http-keep-alive 60s
    option forwardfor
    http-reuse always
    unique-id-format %{{+X}}o%ci%cp%fi%fp%Ts%rt%pid

frontend fe
    bind 127.0.0.1:{listen}{ssl}
    maxconn {maxconn}
    http-request set-header X-Forwarded-Proto {proto}
    http-request set-header X-Forwarded-Port %[dst_port]
    http-response set-header x-amzn-RequestId %[unique-id]
"#
    );
    match routes {
        Routes::Single | Routes::Traffic { .. } => s.push_str("    default_backend be_origin\n"),
        Routes::Gateway { count } => match setup.haproxy_routes {
            HaproxyRoutes::Regex => {
                for i in 0..count {
                    let _ = writeln!(s, "    acl r{i} path_reg '^/svc{i}/items/[^/]+$'");
                }
                for i in 0..count {
                    let _ = writeln!(s, "    use_backend be_origin if r{i}");
                }
                s.push_str("    default_backend be_404\n");
            }
            HaproxyRoutes::MapBeg => {
                let _ = writeln!(
                    s,
                    "    use_backend %[path,map_beg({},be_404)]",
                    dir.join(HAPROXY_MAP).display()
                );
            }
        },
    }
    let _ = write!(
        s,
        "\nbackend be_origin\n    server origin 127.0.0.1:{origin}\n\n\
         backend be_404\n    http-request return status 404 content-type text/plain string \"Not Found\"\n"
    );
    s
}

/// HAProxy's route map for `map_beg`: one `/svc{i}/items/ be_origin` line per route.
pub fn haproxy_route_map(count: usize) -> String {
    let mut s = String::from("# generated by tollgate-bench: path prefix -> backend\n");
    for i in 0..count {
        let _ = writeln!(s, "/svc{i}/items/ be_origin");
    }
    s
}

/// A tollgate-load scenario file requesting `paths` in turn (equal weights).
pub fn load_scenario(paths: &[String]) -> String {
    let mut s = String::from("# generated by tollgate-bench\n");
    for p in paths {
        let _ = write!(s, "\n[[request]]\nmethod = \"GET\"\npath = \"{p}\"\n");
    }
    s
}

/// A wrk Lua script cycling through `paths` (requests pre-formatted in `init`).
pub fn wrk_lua(paths: &[String]) -> String {
    let list: Vec<String> = paths.iter().map(|p| format!("\"{p}\"")).collect();
    format!(
        "-- generated by tollgate-bench\nlocal paths = {{ {} }}\nlocal reqs = {{}}\nlocal i = 0\n\
         init = function(args)\n  for _, p in ipairs(paths) do reqs[#reqs + 1] = wrk.format(\"GET\", p) end\nend\n\
         request = function()\n  i = i % #reqs + 1\n  return reqs[i]\nend\n",
        list.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_paths_spread_over_the_table() {
        assert_eq!(gateway_route_indexes(1000), vec![0, 249, 499, 749, 999]);
        assert_eq!(gateway_paths(1000)[0], "/svc0/items/1000");
        assert_eq!(gateway_route_indexes(1), vec![0]);
    }

    #[test]
    fn configs_have_the_equivalent_settings() {
        let t = tollgate(Routes::Gateway { count: 3 }, 1, 2, 1);
        assert!(t.contains("shards = 1\n"));
        assert!(t.contains("upstream_pool_size = 256\n"));
        assert!(tollgate(Routes::Single, 1, 2, 2).contains("shards = 2\n"));
        assert_eq!(t.matches("[[apis.routes]]").count(), 3);
        assert!(t.contains("key = \"GET /svc2/items/{id}\""));
        assert!(t.contains("uri = \"http://127.0.0.1:2\""));
        let n = nginx(
            Routes::Single,
            1,
            2,
            Path::new("/tmp/x"),
            65536,
            1,
            &Setup::default(),
        );
        for needle in [
            "worker_processes 1;",
            "keepalive 256;",
            "proxy_http_version 1.1;",
            "proxy_set_header Connection \"\";",
            "access_log off;",
        ] {
            assert!(n.contains(needle), "{needle}");
        }
        let regex = Setup {
            haproxy_routes: HaproxyRoutes::Regex,
            ..Setup::default()
        };
        let h = haproxy(
            Routes::Gateway { count: 2 },
            1,
            2,
            65536,
            1,
            Path::new("/d"),
            &regex,
        );
        for needle in [
            "nbthread 1",
            "http-reuse always",
            "use_backend be_origin if r1",
        ] {
            assert!(h.contains(needle), "{needle}");
        }
        assert!(!h.contains("\n    log "));
        assert!(nginx(
            Routes::Single,
            1,
            2,
            Path::new("/tmp/x"),
            65536,
            2,
            &Setup::default()
        )
        .contains("worker_processes 2;"));
        assert!(haproxy(
            Routes::Single,
            1,
            2,
            65536,
            2,
            Path::new("/d"),
            &Setup::default()
        )
        .contains("nbthread 2\n"));
    }

    /// Counts the lines of `text` that start (after indentation) with `prefix`.
    fn lines_starting(text: &str, prefix: &str) -> usize {
        text.lines()
            .filter(|l| l.trim_start().starts_with(prefix))
            .count()
    }

    #[test]
    fn nginx_gateway_route_styles() {
        let dir = Path::new("/tmp/x");
        let with = |r| Setup {
            nginx_routes: r,
            ..Setup::default()
        };
        let gw = Routes::Gateway { count: 3 };
        let prefix = nginx(gw, 1, 2, dir, 65536, 1, &with(NginxRoutes::Prefix));
        assert_eq!(lines_starting(&prefix, "location /svc"), 3, "{prefix}");
        assert!(prefix.contains("location /svc2/items/ { proxy_pass http://origin; }"));
        assert!(!prefix.contains("location ~"));
        assert!(prefix.contains("location / { return 404; }"));
        let regex = nginx(gw, 1, 2, dir, 65536, 1, &with(NginxRoutes::Regex));
        assert_eq!(lines_starting(&regex, "location ~ ^/svc"), 3);
        assert!(regex.contains("location ~ ^/svc1/items/[^/]+$ { proxy_pass http://origin; }"));
        let map = nginx(gw, 1, 2, dir, 65536, 1, &with(NginxRoutes::Map));
        assert_eq!(lines_starting(&map, "location ~"), 1, "{map}");
        assert!(map.contains("location ~ ^/(?<gw_svc>svc[0-9]+)/items/[^/]+$ {"));
        assert!(map.contains("if ($gw_known = 0) { return 404; }"));
        assert!(map.contains("map $gw_svc $gw_known {\n        default 0;\n        svc0 1;\n        svc1 1;\n        svc2 1;\n    }"), "{map}");
        // The map sits in `http`, after the server block, and braces balance.
        let server_end = map.find("\n    }\n").expect("server block ends");
        assert!(map.find("map $gw_svc").expect("map") > server_end);
        assert_eq!(map.matches('{').count(), map.matches('}').count());
        assert_eq!(prefix.matches('{').count(), prefix.matches('}').count());
        assert_eq!(NginxRoutes::default(), NginxRoutes::Prefix);
        for r in [NginxRoutes::Prefix, NginxRoutes::Map, NginxRoutes::Regex] {
            assert_eq!(NginxRoutes::parse(r.name()), Some(r));
        }
        assert_eq!(NginxRoutes::parse("bogus"), None);
    }

    #[test]
    fn haproxy_gateway_route_styles() {
        let gw = Routes::Gateway { count: 3 };
        let h = haproxy(gw, 1, 2, 65536, 1, Path::new("/d"), &Setup::default());
        assert!(
            h.contains("    use_backend %[path,map_beg(/d/routes.map,be_404)]\n"),
            "{h}"
        );
        assert!(!h.contains("path_reg") && !h.contains("default_backend be_404"));
        assert!(h.contains("backend be_404\n") && h.contains("backend be_origin\n"));
        let m = haproxy_route_map(3);
        let entries: Vec<&str> = m.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            entries,
            [
                "/svc0/items/ be_origin",
                "/svc1/items/ be_origin",
                "/svc2/items/ be_origin"
            ]
        );
        assert_eq!(HaproxyRoutes::parse("map_beg"), Some(HaproxyRoutes::MapBeg));
        assert_eq!(HaproxyRoutes::parse("regex"), Some(HaproxyRoutes::Regex));
        assert_eq!(HaproxyRoutes::parse("x"), None);
    }

    #[test]
    fn tls_access_log_and_admin() {
        let files = TlsFiles {
            cert: "/c/cert.pem".into(),
            key: "/c/key.pem".into(),
            both: "/c/both.pem".into(),
        };
        let tls = Setup {
            tls: Some(files),
            ..Setup::default()
        };
        let t = tollgate_with(Routes::Single, 7, 2, 1, &tls);
        assert!(
            t.contains("port = 7\ntls = { certificate = \"/c/cert.pem\", key = \"/c/key.pem\" }\n"),
            "{t}"
        );
        assert!(!tollgate(Routes::Single, 7, 2, 1).contains("tls ="));
        let n = nginx(Routes::Single, 7, 2, Path::new("/x"), 65536, 1, &tls);
        assert!(n.contains("listen 127.0.0.1:7 ssl backlog=4096;"), "{n}");
        assert!(
            n.contains("ssl_certificate /c/cert.pem;")
                && n.contains("ssl_certificate_key /c/key.pem;")
        );
        assert!(n.contains("ssl_session_tickets on;"));
        let h = haproxy(Routes::Single, 7, 2, 65536, 1, Path::new("/x"), &tls);
        assert!(
            h.contains("bind 127.0.0.1:7 ssl crt /c/both.pem alpn http/1.1\n"),
            "{h}"
        );
        assert!(h.contains("X-Forwarded-Proto https"));
        let plain = haproxy(
            Routes::Single,
            7,
            2,
            65536,
            1,
            Path::new("/x"),
            &Setup::default(),
        );
        assert!(plain.contains("bind 127.0.0.1:7\n") && plain.contains("X-Forwarded-Proto http\n"));

        let logged = Setup {
            access_log: Some("/l/access.log".into()),
            admin_port: Some(9),
            ..Setup::default()
        };
        let t = tollgate_with(Routes::Single, 7, 2, 1, &logged);
        assert!(
            t.contains("  name = \"$default\"\n  access_log = { destination = \"/l/access.log\", format = \"json\" }\n"),
            "{t}"
        );
        assert!(t.contains("[admin]\naddress = \"127.0.0.1\"\nport = 9\n"));
        // The [admin] table comes before the listeners (a top-level table, not inside one).
        assert!(t.find("[admin]") < t.find("[[listeners]]"));
    }

    #[test]
    fn request_mixes() {
        let paths = vec!["/a".to_string(), "/b".to_string()];
        assert_eq!(load_scenario(&paths).matches("[[request]]").count(), 2);
        assert!(wrk_lua(&paths).contains("\"/a\", \"/b\""));
    }
}
