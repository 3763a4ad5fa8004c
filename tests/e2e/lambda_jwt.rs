//! JWT authorizers of an HTTP API end to end (guide L40425-40500, L43880-43910), with keys the
//! test makes (checked-in RSA keys in `fixtures/`, P-256 keys from rcgen) and tokens it signs: valid RS256 / ES256 tokens (claims and
//! scopes reach the function), expired, not yet valid, wrong issuer, wrong audience, bad
//! signature, missing scope, HMAC refused; keys from a file and from a JWKS URL fetched in the
//! background, with a rotated key picked up after a token names it.

use crate::client::{Client, Response};
use crate::harness::{Gateway, Server, TempDir};
use crate::lambda_server::{FunctionServer, Reply};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const ISSUER: &str = "https://issuer.test";

fn b64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut s = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..=c.len() {
            s.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    s
}

struct Key {
    alg: Algorithm,
    enc: EncodingKey,
    jwk: Value,
}

/// A checked-in test RSA key (`fixtures/`): `kid` is `a` or `b`.
fn rsa_key(kid: &'static str) -> Key {
    let (der, modulus): (&[u8], &str) = match kid {
        "a" => (
            include_bytes!("fixtures/jwt-rsa-a.der"),
            include_str!("fixtures/jwt-rsa-a.modulus"),
        ),
        _ => (
            include_bytes!("fixtures/jwt-rsa-b.der"),
            include_str!("fixtures/jwt-rsa-b.modulus"),
        ),
    };
    let hex = modulus.trim();
    let n: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect();
    Key {
        alg: Algorithm::RS256,
        enc: EncodingKey::from_rsa_der(der),
        jwk: json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64url(&n), "e": "AQAB"}),
    }
}

/// A fresh P-256 key (rcgen): PKCS#8 for signing, the uncompressed point for the JWK.
fn ec_key(kid: &'static str) -> Key {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key");
    let public = kp.public_key_raw();
    let point = &public[public.len() - 64..];
    Key {
        alg: Algorithm::ES256,
        enc: EncodingKey::from_ec_der(&kp.serialize_der()),
        jwk: json!({"kty": "EC", "kid": kid, "crv": "P-256", "x": b64url(&point[..32]), "y": b64url(&point[32..])}),
    }
}

fn jwks(keys: &[&Key]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}).to_string()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn claims(extra: Value) -> Value {
    let mut c = json!({"iss": ISSUER, "aud": "aud1", "sub": "user1", "iat": now(), "exp": now() + 600,
                       "scope": "pets/read pets/write"});
    if let (Some(c), Value::Object(e)) = (c.as_object_mut(), extra) {
        for (k, v) in e {
            if v.is_null() {
                c.remove(&k);
            } else {
                c.insert(k, v);
            }
        }
    }
    c
}

fn sign(key: &Key, kid: &str, claims: &Value) -> String {
    let mut h = Header::new(key.alg);
    h.kid = Some(kid.to_string());
    jsonwebtoken::encode(&h, claims, &key.enc).expect("sign")
}

struct Setup {
    fs: FunctionServer,
    gw: Gateway,
    served: Arc<Mutex<String>>,
    a: Key,
    b: Key,
    ec: Key,
    _dir: TempDir,
}

fn setup() -> Setup {
    let dir = TempDir::new("jwt");
    let a = rsa_key("a");
    let b = rsa_key("b");
    let ec = ec_key("ec");
    let file = dir.write("jwks.json", &jwks(&[&a, &ec]));
    let served = Arc::new(Mutex::new(jwks(&[&a])));
    let s = served.clone();
    let fs = FunctionServer::start(move |name, _| match name {
        "/keys/jwks.json" => Reply::json(&s.lock().unwrap_or_else(|e| e.into_inner())),
        _ => Reply::value(json!({"statusCode": 200, "body": "ok"})),
    });
    let apis = format!(
        r#"[[apis]]
name = "jw"
protocol = "http"
hosts = ["h.test"]
  [[apis.stages]]
  name = "$default"
  [[apis.authorizers]]
  name = "file"
  type = "jwt"
  issuer = "{ISSUER}"
  audiences = ["aud1", "aud2"]
  jwks_file = "{file}"
  [[apis.authorizers]]
  name = "url"
  type = "jwt"
  issuer = "{ISSUER}"
  audiences = ["aud1"]
  jwks_uri = "http://{addr}/keys/jwks.json"
  jwks_cooldown_ms = 200
  [[apis.routes]]
  key = "GET /f"
  authorizer = "file"
  integration = {{ type = "aws_proxy", uri = "{echo}" }}
  [[apis.routes]]
  key = "GET /v1"
  authorizer = "file"
  integration = {{ type = "aws_proxy", uri = "{echo}", payload_format_version = "1.0" }}
  [[apis.routes]]
  key = "GET /scoped"
  authorizer = "file"
  authorization_scopes = ["admin", "pets/read"]
  integration = {{ type = "mock", status = 200, body = "scoped" }}
  [[apis.routes]]
  key = "GET /admin"
  authorizer = "file"
  authorization_scopes = ["admin"]
  integration = {{ type = "mock", status = 200, body = "admin" }}
  [[apis.routes]]
  key = "GET /u"
  authorizer = "url"
  integration = {{ type = "mock", status = 200, body = "url" }}
"#,
        file = file.display(),
        addr = fs.addr,
        echo = fs.uri("echo"),
    );
    let gw = Gateway::start(&Server::default(), &apis);
    Setup {
        fs,
        gw,
        served,
        a,
        b,
        ec,
        _dir: dir,
    }
}

fn get(c: &mut Client, path: &str, auth: Option<&str>) -> Response {
    let mut raw = format!("GET {path} HTTP/1.1\r\nHost: h.test\r\n");
    if let Some(a) = auth {
        raw.push_str(&format!("Authorization: {a}\r\n"));
    }
    raw.push_str("\r\n");
    c.request(raw.as_bytes())
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

/// Asserts a 401 whose `www-authenticate` gives `description`.
fn assert_invalid(r: &Response, description: &str) {
    r.assert_gateway_error(401, r#"{"message":"Unauthorized"}"#);
    assert_eq!(
        r.header("www-authenticate"),
        Some(
            format!(r#"Bearer scope="" error="invalid_token" error_description="{description}""#)
                .as_str()
        ),
        "{:?}",
        r.headers
    );
}

#[test]
fn valid_tokens_pass_claims_and_scopes() {
    let s = setup();
    let mut c = Client::connect(s.gw.addr);
    let t = sign(&s.a, "a", &claims(json!({})));
    let r = get(&mut c, "/f", Some(&bearer(&t)));
    assert_eq!(r.status, 200, "{} {:?}", r.body_str(), r.headers);
    let auth = &s.fs.last("echo")["requestContext"]["authorizer"]["jwt"];
    assert_eq!(auth["claims"]["sub"], "user1");
    assert_eq!(auth["claims"]["iss"], ISSUER);
    assert_eq!(auth["claims"]["exp"], (now() + 600).to_string().as_str());
    assert_eq!(auth["scopes"], json!(["pets/read", "pets/write"]));
    // Payload 1.0: `authorizer.claims` / `authorizer.scopes`.
    assert_eq!(get(&mut c, "/v1", Some(&bearer(&t))).status, 200);
    assert_eq!(
        s.fs.last("echo")["requestContext"]["authorizer"]["claims"]["sub"],
        "user1"
    );
    // The bare token works too; ES256; `client_id` when there is no `aud`; an `aud` list.
    assert_eq!(get(&mut c, "/f", Some(&t)).status, 200);
    let t = sign(&s.ec, "ec", &claims(json!({})));
    assert_eq!(get(&mut c, "/f", Some(&bearer(&t))).status, 200);
    let t = sign(
        &s.a,
        "a",
        &claims(json!({"aud": null, "client_id": "aud2"})),
    );
    assert_eq!(get(&mut c, "/f", Some(&bearer(&t))).status, 200);
    let t = sign(&s.a, "a", &claims(json!({"aud": ["other", "aud2"]})));
    assert_eq!(get(&mut c, "/f", Some(&bearer(&t))).status, 200);
    // One of the route's scopes is enough.
    let t = sign(&s.a, "a", &claims(json!({})));
    let r = get(&mut c, "/scoped", Some(&bearer(&t)));
    assert_eq!((r.status, r.body_str().as_str()), (200, "scoped"));
}

#[test]
fn invalid_tokens_are_refused_with_www_authenticate() {
    let s = setup();
    let mut c = Client::connect(s.gw.addr);
    let signed = |extra: Value| bearer(&sign(&s.a, "a", &claims(extra)));
    assert_invalid(
        &get(&mut c, "/f", Some(&signed(json!({"exp": now() - 120})))),
        "the token has expired",
    );
    assert_invalid(
        &get(&mut c, "/f", Some(&signed(json!({"nbf": now() + 120})))),
        "the token is not valid yet",
    );
    assert_invalid(
        &get(
            &mut c,
            "/f",
            Some(&signed(json!({"iss": "https://evil.test"}))),
        ),
        "the token does not have a valid issuer",
    );
    assert_invalid(
        &get(&mut c, "/f", Some(&signed(json!({"aud": "aud3"})))),
        "the token does not have a valid audience",
    );
    assert_invalid(
        &get(&mut c, "/f", Some(&signed(json!({"aud": null})))),
        "the token does not have a valid audience",
    );
    // Signed by another key under `a`'s kid.
    let forged = bearer(&sign(&s.b, "a", &claims(json!({}))));
    assert_invalid(
        &get(&mut c, "/f", Some(&forged)),
        "the token signature is invalid",
    );
    // A kid the keys do not have.
    let unknown = bearer(&sign(&s.b, "b", &claims(json!({}))));
    assert_invalid(&get(&mut c, "/f", Some(&unknown)), "signing key not found");
    // HMAC tokens are never accepted.
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(json!({})),
        &EncodingKey::from_secret(b"secret"),
    )
    .expect("sign");
    assert_invalid(
        &get(&mut c, "/f", Some(&bearer(&hs))),
        "the token's signing algorithm is not supported",
    );
    assert_invalid(
        &get(&mut c, "/f", Some("Bearer not.a.jwt")),
        "the token is not a valid JWT",
    );
    // No token: 401, no verification at all.
    get(&mut c, "/f", None).assert_gateway_error(401, r#"{"message":"Unauthorized"}"#);
    // Missing scope: 403.
    let r = get(&mut c, "/admin", Some(&signed(json!({}))));
    r.assert_gateway_error(403, r#"{"message":"Forbidden"}"#);
    assert!(
        r.header("www-authenticate")
            .is_some_and(|h| h.contains(r#"error="insufficient_scope""#)),
        "{:?}",
        r.headers
    );
    assert_eq!(
        s.fs.count("echo"),
        0,
        "no refused token reached the function"
    );
}

/// Polls `path` with `token` until it answers `status` (at most 5 s).
fn wait_status(c: &mut Client, path: &str, token: &str, status: u16) -> bool {
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        if get(c, path, Some(token)).status == status {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn jwks_from_a_url_and_a_rotated_key() {
    let s = setup();
    let mut c = Client::connect(s.gw.addr);
    let ta = bearer(&sign(&s.a, "a", &claims(json!({"aud": "aud1"}))));
    assert!(
        wait_status(&mut c, "/u", &ta, 200),
        "the JWKS was fetched at start"
    );
    let fetches = s.fs.count("/keys/jwks.json");
    // Key b is not published yet: refused, and a burst of such tokens asks for few fetches:
    // at most one per `jwks_cooldown_ms` (200 ms) while the burst lasts, plus one (the
    // burst's duration is measured, so a slow, loaded machine does not fail the test).
    let tb = bearer(&sign(&s.b, "b", &claims(json!({"aud": "aud1"}))));
    let burst = Instant::now();
    for _ in 0..20 {
        assert_invalid(&get(&mut c, "/u", Some(&tb)), "signing key not found");
    }
    let allowed = 2 + burst.elapsed().as_millis() / 200;
    std::thread::sleep(Duration::from_millis(450));
    let after_burst = s.fs.count("/keys/jwks.json");
    assert!(
        (after_burst - fetches) as u128 <= allowed,
        "{} fetches for one burst of unknown kids (at most {allowed})",
        after_burst - fetches
    );
    // The issuer rotates: b is published. The next unknown-kid token triggers a refresh.
    *s.served.lock().unwrap_or_else(|e| e.into_inner()) = jwks(&[&s.a, &s.b]);
    assert!(
        wait_status(&mut c, "/u", &tb, 200),
        "the rotated key was picked up"
    );
    assert_eq!(get(&mut c, "/u", Some(&ta)).status, 200);
}
