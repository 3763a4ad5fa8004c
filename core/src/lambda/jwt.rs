//! JWT authorizers of HTTP APIs (guide L40425-40500, L43880-43910; DIGEST §4.3): the JWKS
//! (public keys by `kid`), and a token's verification: signature (RSA: RS256/384/512,
//! PS256/384/512; EC: ES256/384; never HMAC, so a public key cannot be used as a shared
//! secret), `iss`, `aud` (or `client_id` when there is no `aud`), `exp` / `nbf` / `iat` with a
//! small clock skew, and the route's `authorization_scopes` against `scope` / `scp`.
//! Signatures are checked by the `jsonwebtoken` crate; the claims are checked here, against the
//! time the caller gives.

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

/// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
pub const LEEWAY_SECONDS: u64 = 30;
/// Largest JWKS document read (API Gateway: 150,000 bytes).
pub const MAX_JWKS_BYTES: usize = 150_000;

/// A JWT authorizer's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtConfig {
    pub issuer: Box<str>,
    pub audiences: Vec<Box<str>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Rsa,
    Ec,
}

/// The usable public keys of a JWKS.
#[derive(Clone, Default)]
pub struct Keys {
    keys: Vec<(Option<String>, Family, DecodingKey)>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&Option<String>> = self.keys.iter().map(|(k, _, _)| k).collect();
        write!(f, "Keys({kids:?})")
    }
}

impl Keys {
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Parses a JWKS document (`{"keys": [...]}`), keeping its RSA and EC keys. Fails when it is
/// not a JWKS or has no usable key.
pub fn parse_jwks(json: &[u8]) -> Result<Keys, String> {
    let set: JwkSet =
        serde_json::from_slice(json).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let family = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Family::Rsa,
            AlgorithmParameters::EllipticCurve(_) => Family::Ec,
            _ => continue,
        };
        if let Ok(key) = DecodingKey::from_jwk(jwk) {
            keys.push((jwk.common.key_id.clone(), family, key));
        }
    }
    if keys.is_empty() {
        return Err("the JWKS has no RSA or EC public key".to_string());
    }
    Ok(Keys { keys })
}

/// Why a token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JwtError {
    /// 401 with this `error_description`.
    Invalid(&'static str),
    /// The token's `kid` is not in the keys (a JWKS refresh may help): 401.
    UnknownKey,
    /// None of the route's scopes: 403.
    Scope,
}

impl JwtError {
    pub fn description(self) -> &'static str {
        match self {
            JwtError::Invalid(d) => d,
            JwtError::UnknownKey => "signing key not found",
            JwtError::Scope => "the token does not have the required scope",
        }
    }
}

/// A verified token: its claims (values as strings, as API Gateway passes them) and scopes.
#[derive(Clone, Debug, PartialEq)]
pub struct Verified {
    pub claims: Map<String, Value>,
    pub scopes: Vec<String>,
    /// `exp` (seconds since the epoch) plus the allowed clock skew: valid until then.
    pub valid_until: u64,
}

fn family_of(alg: Algorithm) -> Option<Family> {
    match alg {
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => Some(Family::Rsa),
        Algorithm::ES256 | Algorithm::ES384 => Some(Family::Ec),
        _ => None,
    }
}

fn numeric(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, JwtError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64().map(|f| f.max(0.0) as u64)),
        Some(_) => Err(JwtError::Invalid("the token has a malformed time claim")),
    }
}

/// Verifies `token` (bare or `Bearer <token>`) at `now` (seconds since the epoch) for a route
/// that requires one of `scopes` (none: any token).
pub fn verify(
    token: &str,
    keys: &Keys,
    cfg: &JwtConfig,
    scopes: &[Box<str>],
    now: u64,
) -> Result<Verified, JwtError> {
    let token = token.trim();
    let token = match token.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("bearer ") => token[7..].trim_start(),
        _ => token,
    };
    let header = jsonwebtoken::decode_header(token)
        .map_err(|_| JwtError::Invalid("the token is not a valid JWT"))?;
    let family = family_of(header.alg).ok_or(JwtError::Invalid(
        "the token's signing algorithm is not supported",
    ))?;
    let key = select_key(keys, header.kid.as_deref(), family)?;
    let mut v = Validation::new(header.alg);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, key, &v)
        .map_err(|_| JwtError::Invalid("the token signature is invalid"))?;
    let claims = data.claims;
    let valid_until = check_claims(&claims, cfg, now)?;
    let token_scopes = token_scopes(&claims);
    if !has_scope(scopes, &token_scopes) {
        return Err(JwtError::Scope);
    }
    let claims = claims
        .into_iter()
        .map(|(k, v)| {
            let s = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (k, Value::String(s))
        })
        .collect();
    Ok(Verified {
        claims,
        scopes: token_scopes,
        valid_until,
    })
}

/// The key that signed a token with `kid` in `family`: the one named, or the only key when
/// the token names none.
fn select_key<'k>(
    keys: &'k Keys,
    kid: Option<&str>,
    family: Family,
) -> Result<&'k DecodingKey, JwtError> {
    let key = match kid {
        Some(kid) => keys
            .keys
            .iter()
            .find(|(k, f, _)| k.as_deref() == Some(kid) && *f == family),
        None if keys.keys.len() == 1 => keys.keys.first().filter(|(_, f, _)| *f == family),
        None => None,
    };
    key.map(|(_, _, key)| key).ok_or(JwtError::UnknownKey)
}

/// The registered claims a verified signature does not settle: issuer, audience (or
/// `client_id`), expiry, not-before and issued-at, each with the leeway. Returns until when
/// the token is valid (its `exp` plus the leeway).
fn check_claims(claims: &Map<String, Value>, cfg: &JwtConfig, now: u64) -> Result<u64, JwtError> {
    match claims.get("iss").and_then(Value::as_str) {
        Some(iss) if iss == &*cfg.issuer => {}
        _ => return Err(JwtError::Invalid("the token does not have a valid issuer")),
    }
    let audience_ok = |v: &Value| match v {
        Value::String(s) => cfg.audiences.iter().any(|a| **a == **s),
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .any(|s| cfg.audiences.iter().any(|a| **a == *s)),
        _ => false,
    };
    let aud_ok = match claims.get("aud") {
        Some(aud) => audience_ok(aud),
        None => claims.get("client_id").is_some_and(audience_ok),
    };
    if !aud_ok {
        return Err(JwtError::Invalid(
            "the token does not have a valid audience",
        ));
    }
    let valid_until = match numeric(claims, "exp")? {
        Some(exp) if exp.saturating_add(LEEWAY_SECONDS) > now => exp.saturating_add(LEEWAY_SECONDS),
        Some(_) => return Err(JwtError::Invalid("the token has expired")),
        None => return Err(JwtError::Invalid("the token has no expiry")),
    };
    if numeric(claims, "nbf")?.is_some_and(|nbf| nbf > now + LEEWAY_SECONDS) {
        return Err(JwtError::Invalid("the token is not valid yet"));
    }
    if numeric(claims, "iat")?.is_some_and(|iat| iat > now + LEEWAY_SECONDS) {
        return Err(JwtError::Invalid("the token was issued in the future"));
    }
    Ok(valid_until)
}

/// The token's scopes: `scope` (space-separated) or `scp` (a list or a string).
fn token_scopes(claims: &Map<String, Value>) -> Vec<String> {
    match claims.get("scope").or_else(|| claims.get("scp")) {
        Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// A route requiring `required` scopes (none: any token) accepts a token with `token_scopes`.
pub fn has_scope(required: &[Box<str>], token_scopes: &[String]) -> bool {
    required.is_empty()
        || required
            .iter()
            .any(|s| token_scopes.iter().any(|t| **s == **t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_keeps_rsa_and_ec_keys_only() {
        let jwks = br#"{"keys":[
            {"kty":"oct","kid":"h","k":"c2VjcmV0"},
            {"kty":"EC","kid":"e","crv":"P-256",
             "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
        let keys = parse_jwks(jwks).expect("one EC key");
        assert_eq!(keys.len(), 1);
        assert!(parse_jwks(br#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#).is_err());
        assert!(parse_jwks(b"[]").is_err());
        assert!(parse_jwks(b"not json").is_err());
    }

    #[test]
    fn malformed_tokens() {
        let cfg = JwtConfig {
            issuer: "i".into(),
            audiences: vec!["a".into()],
        };
        let keys = Keys::default();
        for t in ["", "Bearer ", "a.b", "Bearer x.y.z"] {
            assert_eq!(
                verify(t, &keys, &cfg, &[], 0),
                Err(JwtError::Invalid("the token is not a valid JWT")),
                "{t}"
            );
        }
        // A well-formed header naming a key that is not there.
        let header = "eyJhbGciOiJSUzI1NiIsImtpZCI6InoifQ"; // {"alg":"RS256","kid":"z"}
        let t = format!("{header}.e30.c2ln");
        assert_eq!(verify(&t, &keys, &cfg, &[], 0), Err(JwtError::UnknownKey));
    }
}
