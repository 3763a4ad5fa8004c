//! `tollgate validate`: the shipped examples and a config in the documented format pass; bad
//! configs exit 1 with one `file:line:col: reason` line per error, pointing at the culprit.

use crate::harness::{config_text, rest_proxy_api, run_to_end, Server, TempDir};
use std::path::{Path, PathBuf};

/// `(line, column, reason)` of every `file:line:col: reason` line about `file` in `output`.
fn positions(output: &str, file: &Path) -> Vec<(u32, u32, String)> {
    let prefix = format!("{}:", file.display());
    output
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let mut parts = rest.splitn(3, ':');
            let line = parts.next()?.trim().parse().ok()?;
            let col = parts.next()?.trim().parse().ok()?;
            let reason = parts.next()?.trim().to_string();
            Some((line, col, reason))
        })
        .collect()
}

/// 1-based number of the line of `text` containing `marker`.
fn line_of(text: &str, marker: &str) -> u32 {
    text.lines()
        .position(|l| l.contains(marker))
        .map(|i| i as u32 + 1)
        .unwrap_or_else(|| panic!("{marker:?} not in config"))
}

fn validate(files: &[&Path]) -> (Option<i32>, String) {
    let mut args: Vec<&Path> = vec![Path::new("validate")];
    args.extend_from_slice(files);
    run_to_end(&args)
}

#[test]
fn example_configs_validate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tuning/examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.toml examples in {}", dir.display());
    let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    let (code, out) = validate(&refs);
    assert_eq!(code, Some(0), "tollgate validate {files:?}:\n{out}");
}

/// The config format as documented for this project (every key the tests rely on).
const DOCUMENTED: &str = r#"[server]
shards = 1
pin_cpus = false
max_body_bytes = 10485760          # 413 above
header_read_timeout_ms = 10000
idle_timeout_ms = 60000
upstream_pool_size = 64
[[listeners]]
address = "127.0.0.1"
port = 18080
[[apis]]
name = "svc"
protocol = "rest"                  # or "http"
  [[apis.stages]]
  name = "prod"                    # "$default" only for http APIs (no path prefix)
  variables = { backend = "127.0.0.1:9000" }
  [[apis.routes]]
  key = "ANY /{proxy+}"            # GET /pets/{id}, $default (http only), ...
  integration = { type = "http_proxy", uri = "http://${stageVariables.backend}/{proxy}", timeout_ms = 29000 }
  [[apis.routes]]
  key = "GET /mock"
  integration = { type = "mock", status = 200, headers = { "content-type" = "text/plain" }, body = "hi" }
"#;

#[test]
fn documented_format_and_test_configs_validate() {
    let dir = TempDir::new("validate-ok");
    let documented = dir.write("documented.toml", DOCUMENTED);
    let harness = dir.write(
        "harness.toml",
        &config_text(
            &Server::default().with("idle_timeout_ms", "300"),
            18081,
            &rest_proxy_api(([127, 0, 0, 1], 9000).into(), 500, ""),
        ),
    );
    for f in [&documented, &harness] {
        let (code, out) = validate(&[f]);
        assert_eq!(code, Some(0), "tollgate validate {}:\n{out}", f.display());
    }
}

const UNKNOWN_KEY: &str = r#"[server]
shards = 1
pin_cpus = false
idle_timeout = 5000
[[listeners]]
address = "127.0.0.1"
port = 18080
[[apis]]
name = "svc"
protocol = "http"
  [[apis.stages]]
  name = "$default"
  [[apis.routes]]
  key = "GET /mock"
  integration = { type = "mock", status = 200, body = "hi" }
"#;

const BAD_ROUTE_KEY: &str = r#"[server]
shards = 1
[[listeners]]
address = "127.0.0.1"
port = 18080
[[apis]]
name = "svc"
protocol = "rest"
  [[apis.stages]]
  name = "prod"
  [[apis.routes]]
  key = "GET /ok"
  integration = { type = "mock", status = 200, body = "hi" }
  [[apis.routes]]
  key = "FETCH pets/{id"
  integration = { type = "mock", status = 200, body = "hi" }
"#;

#[test]
fn bad_configs_exit_1_with_positions() {
    let dir = TempDir::new("validate-bad");
    let unknown = dir.write("unknown-key.toml", UNKNOWN_KEY);
    let bad_route = dir.write("bad-route.toml", BAD_ROUTE_KEY);

    for (file, text, marker) in [
        (&unknown, UNKNOWN_KEY, "idle_timeout = 5000"),
        (&bad_route, BAD_ROUTE_KEY, "FETCH pets"),
    ] {
        let (code, out) = validate(&[file]);
        assert_eq!(
            code,
            Some(1),
            "tollgate validate {}:\n{out}",
            file.display()
        );
        let found = positions(&out, file);
        assert!(
            !found.is_empty(),
            "no `{}:line:col: reason` line in:\n{out}",
            file.display()
        );
        let want = line_of(text, marker);
        assert!(
            found
                .iter()
                .any(|(l, c, r)| *l == want && *c >= 1 && !r.is_empty()),
            "expected an error at line {want} ({marker:?}) of {}, got {found:?}; output:\n{out}",
            file.display()
        );

        // Serving a bad config refuses to start, with the same report.
        let (code, out) = run_to_end(&[Path::new("--config"), file]);
        assert_ne!(
            code,
            Some(0),
            "tollgate --config {} started:\n{out}",
            file.display()
        );
        assert!(
            !positions(&out, file).is_empty(),
            "tollgate --config {}: no positioned error in:\n{out}",
            file.display()
        );
    }

    // A good and a bad file together: still exit 1.
    let good = dir.write("good.toml", DOCUMENTED);
    let (code, out) = validate(&[&good, &bad_route]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        positions(&out, &good).is_empty(),
        "good file reported: {out}"
    );
}

#[test]
fn validate_reports_every_error_in_a_file() {
    let dir = TempDir::new("validate-every");
    // Both mistakes in one file: an unknown key and a bad route key.
    let text = BAD_ROUTE_KEY.replace("shards = 1\n", "shards = 1\nshard_count = 2\n");
    let file = dir.write("two-errors.toml", &text);
    let (code, out) = validate(&[&file]);
    assert_eq!(code, Some(1), "{out}");
    let found = positions(&out, &file);
    for marker in ["shard_count", "FETCH pets"] {
        let want = line_of(&text, marker);
        assert!(
            found.iter().any(|(l, _, _)| *l == want),
            "no error reported at line {want} ({marker:?}); got {found:?}; output:\n{out}"
        );
    }
}
