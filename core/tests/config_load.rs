//! Config loading that succeeds, through the public API only: the shipped configs load,
//! `[server]` values and defaults, per-stage targets and shared upstreams, and `load_file`
//! naming the file in its errors.

use std::path::Path;
use tollgate_core::config::{load_file, load_str, DEFAULT_CONFIG};
use tollgate_core::gateway::{Protocol, Settings, Target};

const LISTENER: &str = "[[listeners]]\naddress = \"127.0.0.1\"\nport = 8080\n";

/// A config with the listener and `apis` (TOML text).
fn with_listener(apis: &str) -> String {
    format!("{LISTENER}{apis}")
}

#[test]
fn load_file_names_the_file() {
    let missing = Path::new("/nonexistent/tollgate/gateway.toml");
    let errors = load_file(missing).err().unwrap_or_default();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].file, "/nonexistent/tollgate/gateway.toml");
    assert_eq!((errors[0].line, errors[0].column), (1, 1));
    assert!(errors[0]
        .message
        .starts_with("cannot read the config file: "));
    assert!(errors[0]
        .to_string()
        .starts_with("/nonexistent/tollgate/gateway.toml:1:1: cannot read"));
}

#[test]
fn default_config_loads() {
    let g = match load_str("default.toml", DEFAULT_CONFIG) {
        Ok(g) => g,
        Err(e) => panic!("DEFAULT_CONFIG: {e:?}"),
    };
    assert_eq!(g.listeners, vec!["127.0.0.1:8080".parse().unwrap()]);
    assert!(g.upstreams.is_empty(), "the demo needs no backend");
    let names: Vec<(&str, Protocol)> = g.apis.iter().map(|a| (&*a.name, a.protocol)).collect();
    assert_eq!(names, [("pets", Protocol::Rest), ("hello", Protocol::Http)]);
    for api in &g.apis {
        for r in &api.routes {
            assert!(
                r.targets.iter().all(|t| matches!(t, Target::Mock(_))),
                "{}",
                r.key
            );
        }
    }
}

#[test]
fn example_configs_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tuning/examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "examples: {files:?}");
    for f in &files {
        if let Err(errors) = load_file(f) {
            let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            panic!("{}:\n{}", f.display(), shown.join("\n"));
        }
    }
}

#[test]
fn server_settings_and_defaults() {
    let g = match load_str(
        "s.toml",
        &format!(
            "[server]\nshards = 2\npin_cpus = false\nread_buffer_bytes = 32768\nmax_header_bytes = 8192\nmax_body_bytes = 1000\nheader_read_timeout_ms = 500\nidle_timeout_ms = 300\nclient_write_timeout_ms = 1000\nupstream_connect_timeout_ms = 200\nupstream_pool_size = 0\nupstream_idle_timeout_ms = 5000\nreceive_ring_buffers = 1000\nreceive_ring_buffer_bytes = 4096\n{LISTENER}"
        ),
    ) {
        Ok(g) => g,
        Err(e) => panic!("{e:?}"),
    };
    let s = &g.settings;
    assert_eq!(
        (s.shards, s.pin_cpus, s.read_buffer_bytes),
        (2, false, 32768)
    );
    assert_eq!(
        (s.max_header_bytes, s.max_body_bytes, s.upstream_pool_size),
        (8192, 1000, 0)
    );
    assert_eq!(s.header_read_timeout.as_millis(), 500);
    // Unset: the body read timeout follows the header read timeout.
    assert_eq!(s.body_read_timeout.as_millis(), 500);
    assert_eq!(s.idle_timeout.as_millis(), 300);
    assert_eq!(s.client_write_timeout.as_millis(), 1000);
    assert_eq!(s.upstream_connect_timeout.as_millis(), 200);
    assert_eq!(s.upstream_idle_timeout.as_millis(), 5000);
    // Rounded up to a power of two (the kernel's ring size).
    assert_eq!(
        (s.receive_ring_buffers, s.receive_ring_buffer_bytes),
        (1024, 4096)
    );

    let g = match load_str("d.toml", LISTENER) {
        Ok(g) => g,
        Err(e) => panic!("{e:?}"),
    };
    assert_eq!(g.settings, Settings::default());

    let g = match load_str(
        "b.toml",
        &format!("[server]\nheader_read_timeout_ms = 500\nbody_read_timeout_ms = 7000\n{LISTENER}"),
    ) {
        Ok(g) => g,
        Err(e) => panic!("{e:?}"),
    };
    assert_eq!(g.settings.header_read_timeout.as_millis(), 500);
    assert_eq!(g.settings.body_read_timeout.as_millis(), 7000);
    match load_str(
        "z.toml",
        &format!("[server]\nbody_read_timeout_ms = 0\n{LISTENER}"),
    ) {
        Ok(_) => panic!("body_read_timeout_ms = 0 accepted"),
        Err(e) => assert!(
            e.iter()
                .any(|e| e.to_string().contains("body_read_timeout_ms")),
            "{e:?}"
        ),
    }
}

#[test]
fn targets_are_compiled_per_stage_and_upstreams_shared() {
    let text = with_listener(
        r#"[[apis]]
name = "a"
protocol = "rest"
stages = [
  { name = "prod", variables = { backend = "127.0.0.1:9000", v = "2" } },
  { name = "beta", variables = { backend = "127.0.0.1:9001", v = "1" } },
  { name = "gamma", variables = { backend = "127.0.0.1:9000", v = "3" } },
]
  [[apis.routes]]
  key = "GET /items/{id}"
  integration = { type = "http_proxy", uri = "http://${stageVariables.backend}/v${stageVariables.v}/items/{id}", timeout_ms = 500 }
  [[apis.routes]]
  key = "GET /localhost"
  integration = { type = "http_proxy", uri = "http://localhost:9000" }
"#,
    );
    let g = match load_str("t.toml", &text) {
        Ok(g) => g,
        Err(e) => panic!("{e:?}"),
    };
    // 127.0.0.1:9000 (prod and gamma share it), 127.0.0.1:9001, localhost:9000.
    assert_eq!(g.upstreams.len(), 3, "{:?}", g.upstreams);
    assert_eq!(&*g.upstreams[0].host_header, "127.0.0.1:9000");
    assert_eq!(g.upstreams[0].addr, "127.0.0.1:9000".parse().unwrap());
    assert_eq!(&*g.upstreams[1].host_header, "127.0.0.1:9001");
    assert_eq!(&*g.upstreams[2].host_header, "localhost:9000");
    assert_eq!(g.upstreams[2].addr.port(), 9000);

    let route = &g.apis[0].routes[0];
    assert_eq!(route.targets.len(), 3);
    let written: Vec<(u32, String, u128)> = route
        .targets
        .iter()
        .map(|t| match t {
            Target::HttpProxy(p) => {
                let mut out = Vec::new();
                p.path.write(&["42"], "/items/42", Some("x=1"), &mut out);
                (
                    p.upstream,
                    String::from_utf8(out).unwrap(),
                    p.timeout.as_millis(),
                )
            }
            Target::Mock(_) | Target::Lambda(_) => panic!("not http_proxy"),
        })
        .collect();
    assert_eq!(
        written,
        [
            (0, "/v2/items/42?x=1".to_string(), 500),
            (1, "/v1/items/42?x=1".to_string(), 500),
            (0, "/v3/items/42?x=1".to_string(), 500),
        ]
    );
    // Default timeout; a REST URI without a path sends `/`.
    match &g.apis[0].routes[1].targets[0] {
        Target::HttpProxy(p) => {
            assert_eq!(p.timeout.as_millis(), 29_000);
            let mut out = Vec::new();
            p.path.write(&[], "/localhost", None, &mut out);
            assert_eq!(out, b"/");
        }
        Target::Mock(_) | Target::Lambda(_) => panic!("not http_proxy"),
    }
}
