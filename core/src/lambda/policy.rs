//! A Lambda authorizer's output and what it decides for one request.
//!
//! Output (guide L14005-14072, L40082-40162): an IAM policy `{principalId, policyDocument:
//! {Statement: [{Effect, Action, Resource}]}, context, usageIdentifierKey}` or, for HTTP APIs
//! with simple responses, `{isAuthorized, context}`. 1.0 context values must be strings,
//! numbers or booleans and are stringified; 2.0 context values may be anything.
//!
//! Evaluation against the method ARN: a statement applies when one of its actions matches
//! `execute-api:Invoke` and one of its resources matches the ARN (`*` any run of characters,
//! `?` one character). A matching Deny wins over any Allow; no matching Allow is a deny too.
//! The same parsed output is cached and evaluated again for each request (it applies across
//! the methods of the API).

use super::PayloadVersion;
use serde_json::{Map, Value};

/// One policy statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    pub allow: bool,
    pub actions: Vec<String>,
    pub resources: Vec<String>,
}

/// A parsed authorizer output.
#[derive(Clone, Debug, PartialEq)]
pub struct AuthResult {
    pub principal_id: Option<String>,
    pub statements: Vec<Statement>,
    /// `isAuthorized` of a simple response (then `statements` is empty).
    pub simple: Option<bool>,
    /// `context`, stringified for payload 1.0.
    pub context: Map<String, Value>,
    /// `usageIdentifierKey`: the API key when the key source is AUTHORIZER.
    pub usage_identifier_key: Option<String>,
    /// A JWT authorizer's result: `context` holds the token's claims, this its scopes.
    pub jwt_scopes: Option<Vec<String>>,
}

/// What the output decides for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// A matching Deny statement (403, explicit deny text), or a simple `isAuthorized: false`.
    ExplicitDeny,
    /// No statement allows this method (403, "not authorized").
    NotAllowed,
}

/// The output is not a valid authorizer response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Invalid(pub &'static str);

/// Parses an authorizer's output. `simple`: the authorizer uses simple responses.
pub fn parse(json: &[u8], version: PayloadVersion, simple: bool) -> Result<AuthResult, Invalid> {
    let Value::Object(obj) =
        serde_json::from_slice(json).map_err(|_| Invalid("the output is not valid JSON"))?
    else {
        return Err(Invalid("the output is not an object"));
    };
    let context = match obj.get("context") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) if version == PayloadVersion::V2 => m.clone(),
        Some(Value::Object(m)) => {
            let mut out = Map::new();
            for (k, v) in m {
                let s = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    Value::Null => continue,
                    _ => return Err(Invalid("a context value is an object or array")),
                };
                out.insert(k.clone(), Value::String(s));
            }
            out
        }
        Some(_) => return Err(Invalid("context is not an object")),
    };
    if version == PayloadVersion::V1
        && obj.contains_key("context")
        && context.contains_key("claims")
    {
        return Err(Invalid("`claims` is reserved in the context"));
    }
    if simple {
        let Some(Value::Bool(ok)) = obj.get("isAuthorized") else {
            return Err(Invalid("isAuthorized is missing or not a boolean"));
        };
        return Ok(AuthResult {
            principal_id: None,
            statements: Vec::new(),
            simple: Some(*ok),
            context,
            usage_identifier_key: None,
            jwt_scopes: None,
        });
    }
    let principal_id = match obj.get("principalId") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        None | Some(Value::Null) => None,
        Some(_) => return Err(Invalid("principalId is not a string")),
    };
    let Some(Value::Object(doc)) = obj.get("policyDocument") else {
        return Err(Invalid("policyDocument is missing"));
    };
    let statements = match doc.get("Statement") {
        Some(Value::Array(a)) => a.iter().map(statement).collect::<Result<Vec<_>, _>>()?,
        Some(s @ Value::Object(_)) => vec![statement(s)?],
        _ => return Err(Invalid("policyDocument.Statement is missing")),
    };
    let usage_identifier_key = match obj.get("usageIdentifierKey") {
        Some(Value::String(s)) => Some(s.clone()),
        None | Some(Value::Null) => None,
        Some(_) => return Err(Invalid("usageIdentifierKey is not a string")),
    };
    Ok(AuthResult {
        principal_id,
        statements,
        simple: None,
        context,
        usage_identifier_key,
        jwt_scopes: None,
    })
}

fn strings(v: Option<&Value>, what: &'static str) -> Result<Vec<String>, Invalid> {
    match v {
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_str().map(str::to_string).ok_or(Invalid(what)))
            .collect(),
        _ => Err(Invalid(what)),
    }
}

fn statement(v: &Value) -> Result<Statement, Invalid> {
    let allow = match v.get("Effect").and_then(Value::as_str) {
        Some(e) if e.eq_ignore_ascii_case("allow") => true,
        Some(e) if e.eq_ignore_ascii_case("deny") => false,
        _ => return Err(Invalid("a statement's Effect is not Allow or Deny")),
    };
    Ok(Statement {
        allow,
        actions: strings(
            v.get("Action"),
            "a statement's Action is not a string or list",
        )?,
        resources: strings(
            v.get("Resource"),
            "a statement's Resource is not a string or list",
        )?,
    })
}

impl AuthResult {
    /// The decision for `method_arn`.
    pub fn decide(&self, method_arn: &str) -> Decision {
        if let Some(ok) = self.simple {
            return if ok {
                Decision::Allow
            } else {
                Decision::ExplicitDeny
            };
        }
        let applies = |s: &Statement| {
            s.actions
                .iter()
                .any(|a| glob(a.as_bytes(), b"execute-api:Invoke"))
                && s.resources
                    .iter()
                    .any(|r| glob(r.as_bytes(), method_arn.as_bytes()))
        };
        if self.statements.iter().any(|s| !s.allow && applies(s)) {
            Decision::ExplicitDeny
        } else if self.statements.iter().any(|s| s.allow && applies(s)) {
            Decision::Allow
        } else {
            Decision::NotAllowed
        }
    }

    /// The decision when it is the same for every method ARN, found without one: a simple
    /// response; a Deny of `Resource: "*"`; or, with no Deny statement for
    /// `execute-api:Invoke` at all, an Allow of `Resource: "*"`. `None`: the ARN is needed
    /// ([`Self::decide`]). Lets a cached hit skip building the ARN (the usual policy of a
    /// token authorizer allows `*`).
    pub fn decide_any(&self) -> Option<Decision> {
        if let Some(ok) = self.simple {
            return Some(if ok {
                Decision::Allow
            } else {
                Decision::ExplicitDeny
            });
        }
        let invoke = |s: &Statement| {
            s.actions
                .iter()
                .any(|a| glob(a.as_bytes(), b"execute-api:Invoke"))
        };
        let every_arn = |s: &Statement| {
            s.resources
                .iter()
                .any(|r| !r.is_empty() && r.bytes().all(|b| b == b'*'))
        };
        let mut denies = false;
        let mut allows_all = false;
        for st in &self.statements {
            if !invoke(st) {
                continue;
            }
            if !st.allow {
                if every_arn(st) {
                    return Some(Decision::ExplicitDeny);
                }
                denies = true;
            } else if every_arn(st) {
                allows_all = true;
            }
        }
        (allows_all && !denies).then_some(Decision::Allow)
    }
}

/// What `$context.authorizer.<rest>` names in an access log format or a gateway response
/// template (guide L21656-21700, L43474-43515): resolved once when the template is compiled;
/// the request's [`AuthResult`] is then looked up by [`AuthResult::value`] with no parsing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthorizerName<'a> {
    /// `principalId`.
    PrincipalId,
    /// `claims.NAME` or `claims['NAME']`: a JWT claim.
    Claim(&'a str),
    /// `NAME`: a key of a Lambda authorizer's `context` map.
    Key(&'a str),
    /// `usageIdentifierKey`: an API key value, which never appears in logs or responses.
    ApiKeyValue,
    /// A name API Gateway gives another meaning (`error`, `latency`, `status`, `requestId`,
    /// `integrationLatency`, `integrationStatus`: the authorizer call's own log fields, which
    /// tollgate does not record) or `claims` alone (documented to be null): no value.
    NoValue,
}

/// Names after `authorizer.` that are not context keys (access-log-only fields, L22055-22153).
const RESERVED: [&str; 7] = [
    "claims",
    "error",
    "integrationLatency",
    "integrationStatus",
    "latency",
    "requestId",
    "status",
];

/// What `rest` (the text after `$context.authorizer.`) names; `None` when it is empty or ends in
/// an empty part (`claims.`).
pub fn authorizer_name(rest: &str) -> Option<AuthorizerName<'_>> {
    if rest.is_empty() {
        return None;
    }
    if rest == "principalId" {
        return Some(AuthorizerName::PrincipalId);
    }
    if rest == "usageIdentifierKey" {
        return Some(AuthorizerName::ApiKeyValue);
    }
    if RESERVED.contains(&rest) {
        return Some(AuthorizerName::NoValue);
    }
    if let Some(claim) = rest.strip_prefix("claims.") {
        return (!claim.is_empty()).then_some(AuthorizerName::Claim(claim));
    }
    if let Some(quoted) = rest
        .strip_prefix("claims['")
        .and_then(|r| r.strip_suffix("']"))
    {
        return (!quoted.is_empty() && !quoted.contains('\''))
            .then_some(AuthorizerName::Claim(quoted));
    }
    Some(AuthorizerName::Key(rest))
}

/// A `$context.authorizer.*` value of one request, borrowed from its [`AuthResult`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AuthValue<'a> {
    /// Text as is (principalId, string claims and context values, 1.0's stringified values).
    Text(&'a str),
    /// A number, boolean, array or object (2.0 contexts keep JSON types): written as JSON.
    Json(&'a Value),
}

impl AuthResult {
    /// The value `name` reads for this result (`None`: nothing, rendered as `-` in logs and as
    /// empty text in gateway responses). Claims are a JWT authorizer's; context keys a Lambda
    /// authorizer's (a JWT result has no context map, a Lambda result no claims).
    pub fn value(&self, name: AuthorizerName<'_>) -> Option<AuthValue<'_>> {
        let jwt = self.jwt_scopes.is_some();
        let v = match name {
            AuthorizerName::PrincipalId => {
                return self.principal_id.as_deref().map(AuthValue::Text)
            }
            AuthorizerName::Claim(c) if jwt => self.context.get(c)?,
            AuthorizerName::Key(k) if !jwt => self.context.get(k)?,
            _ => return None,
        };
        match v {
            Value::Null => None,
            Value::String(s) => Some(AuthValue::Text(s)),
            other => Some(AuthValue::Json(other)),
        }
    }
}

/// IAM-style wildcard match: `*` any run (empty included), `?` exactly one byte.
pub fn glob(pattern: &[u8], text: &[u8]) -> bool {
    // A pattern matches its own text (`Action: "execute-api:Invoke"`): one compare.
    if pattern == text {
        return true;
    }
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            // A `*` that ends the pattern matches whatever text is left (`Resource: "*"`
            // and `arn:...:api/*` decide without walking the ARN).
            if pattern[p + 1..].iter().all(|&c| c == b'*') {
                return true;
            }
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:execute-api:local:000000000000:pets/prod/GET/pets/42";

    fn policy(statements: &str) -> AuthResult {
        let json = format!(
            r#"{{"principalId":"user|a1","policyDocument":{{"Version":"2012-10-17","Statement":{statements}}},"context":{{"s":"x","n":1,"b":true}}}}"#
        );
        parse(json.as_bytes(), PayloadVersion::V1, false).expect("valid policy")
    }

    #[test]
    fn glob_wildcards() {
        assert!(glob(b"*", b""));
        assert!(glob(b"a*c", b"abbbc"));
        assert!(glob(b"a*c", b"ac"));
        assert!(!glob(b"a*c", b"acb"));
        assert!(glob(b"a?c", b"abc"));
        assert!(!glob(b"a?c", b"ac"));
        assert!(glob(b"*/GET/*", b"x/prod/GET/pets/1"));
        assert!(!glob(b"*/POST/*", b"x/prod/GET/pets/1"));
        assert!(glob(b"execute-api:*", b"execute-api:Invoke"));
        assert!(glob(b"**a", b"bba"));
        // Trailing stars (the early return) and stars before a literal tail.
        assert!(glob(b"arn:*", b"arn:aws:execute-api"));
        assert!(glob(b"arn:**", b"arn:"));
        assert!(!glob(b"arn:*", b"ar"));
        assert!(!glob(b"arn:*", b"xrn:aws"));
        assert!(glob(b"a*b*", b"axxbyy"));
        assert!(!glob(b"a*b*", b"axxcyy"));
        assert!(glob(b"*", b"anything/at/all"));
        assert!(glob(b"a?*", b"a?*"));
        assert!(!glob(b"execute-api:Invoke", b"execute-api:Invoke2"));
    }

    #[test]
    fn allow_deny_and_explicit_deny_wins() {
        let allow = policy(
            r#"[{"Action":"execute-api:Invoke","Effect":"Allow","Resource":"arn:aws:execute-api:local:000000000000:pets/prod/GET/*"}]"#,
        );
        assert_eq!(allow.principal_id.as_deref(), Some("user|a1"));
        assert_eq!(allow.decide(ARN), Decision::Allow);
        assert_eq!(
            allow.decide("arn:aws:execute-api:local:000000000000:pets/prod/POST/pets"),
            Decision::NotAllowed
        );
        // 1.0 context values are stringified.
        assert_eq!(allow.context["n"], Value::String("1".into()));
        assert_eq!(allow.context["b"], Value::String("true".into()));
        let both = policy(
            r#"[{"Action":"execute-api:Invoke","Effect":"Allow","Resource":"*"},
                {"Action":["execute-api:Invoke"],"Effect":"Deny","Resource":["*/prod/GET/pets/4?"]}]"#,
        );
        assert_eq!(both.decide(ARN), Decision::ExplicitDeny);
        assert_eq!(
            both.decide("arn:aws:execute-api:local:000000000000:pets/prod/GET/pets/420"),
            Decision::Allow
        );
        // A statement about another action does not apply.
        let other =
            policy(r#"{"Action":"execute-api:InvalidateCache","Effect":"Allow","Resource":"*"}"#);
        assert_eq!(other.decide(ARN), Decision::NotAllowed);
    }

    #[test]
    fn usage_identifier_key() {
        let r = parse(
            br#"{"principalId":"p","policyDocument":{"Statement":[]},"usageIdentifierKey":"k-123"}"#,
            PayloadVersion::V1,
            false,
        )
        .expect("valid");
        assert_eq!(r.usage_identifier_key.as_deref(), Some("k-123"));
        assert_eq!(r.decide(ARN), Decision::NotAllowed, "no statement allows");
        assert!(parse(
            br#"{"principalId":"p","policyDocument":{"Statement":[]},"usageIdentifierKey":7}"#,
            PayloadVersion::V1,
            false
        )
        .is_err());
    }

    #[test]
    fn simple_responses_and_refusals() {
        let yes = parse(
            br#"{"isAuthorized":true,"context":{"list":[1,2]}}"#,
            PayloadVersion::V2,
            true,
        )
        .expect("valid");
        assert_eq!(yes.decide(ARN), Decision::Allow);
        assert_eq!(yes.context["list"], serde_json::json!([1, 2]));
        let no = parse(br#"{"isAuthorized":false}"#, PayloadVersion::V2, true).expect("valid");
        assert_eq!(no.decide(ARN), Decision::ExplicitDeny);
        for bad in [
            &br#"not json"#[..],
            br#"[]"#,
            br#"{"principalId":"x"}"#,
            br#"{"principalId":"x","policyDocument":{"Statement":[{"Effect":"Maybe","Action":"*","Resource":"*"}]}}"#,
            br#"{"principalId":"x","policyDocument":{"Statement":[]},"context":{"o":{"a":1}}}"#,
            br#"{"principalId":"x","policyDocument":{"Statement":[]},"context":{"claims":"c"}}"#,
        ] {
            assert!(parse(bad, PayloadVersion::V1, false).is_err(), "{bad:?}");
        }
        assert!(parse(br#"{"isAuthorized":"yes"}"#, PayloadVersion::V2, true).is_err());
    }

    #[test]
    fn authorizer_names() {
        use AuthorizerName as N;
        assert_eq!(authorizer_name("principalId"), Some(N::PrincipalId));
        assert_eq!(authorizer_name("claims.sub"), Some(N::Claim("sub")));
        assert_eq!(authorizer_name("claims.a.b"), Some(N::Claim("a.b")));
        assert_eq!(
            authorizer_name("claims['custom:role']"),
            Some(N::Claim("custom:role"))
        );
        assert_eq!(authorizer_name("tenant"), Some(N::Key("tenant")));
        assert_eq!(authorizer_name("usageIdentifierKey"), Some(N::ApiKeyValue));
        for reserved in ["claims", "error", "latency", "status", "requestId"] {
            assert_eq!(authorizer_name(reserved), Some(N::NoValue), "{reserved}");
        }
        assert_eq!(authorizer_name(""), None);
        assert_eq!(authorizer_name("claims."), None);
        assert_eq!(authorizer_name("claims['']"), None);
    }

    #[test]
    fn values_of_lambda_and_jwt_results() {
        use AuthorizerName as N;
        let v1 = policy(r#"[{"Effect":"Allow","Action":"*","Resource":"*"}]"#);
        assert_eq!(v1.value(N::PrincipalId), Some(AuthValue::Text("user|a1")));
        // 1.0 context values were stringified.
        assert_eq!(v1.value(N::Key("n")), Some(AuthValue::Text("1")));
        assert_eq!(v1.value(N::Key("b")), Some(AuthValue::Text("true")));
        assert_eq!(v1.value(N::Key("missing")), None);
        // A Lambda authorizer has no claims.
        assert_eq!(v1.value(N::Claim("s")), None);
        assert_eq!(v1.value(N::NoValue), None);
        // 2.0 context values keep their types.
        let v2 = parse(
            br#"{"isAuthorized":true,"context":{"n":5,"l":[1,"x"],"s":"t","z":null}}"#,
            PayloadVersion::V2,
            true,
        )
        .expect("valid");
        assert_eq!(
            v2.value(N::Key("n")),
            Some(AuthValue::Json(&serde_json::json!(5)))
        );
        assert_eq!(
            v2.value(N::Key("l")),
            Some(AuthValue::Json(&serde_json::json!([1, "x"])))
        );
        assert_eq!(v2.value(N::Key("s")), Some(AuthValue::Text("t")));
        assert_eq!(v2.value(N::Key("z")), None);
        assert_eq!(v2.value(N::PrincipalId), None);
        // A JWT result: claims, and no context keys.
        let mut claims = Map::new();
        claims.insert("sub".into(), Value::String("u-1".into()));
        claims.insert("custom:role".into(), Value::String("admin".into()));
        let jwt = AuthResult {
            principal_id: Some("u-1".into()),
            statements: Vec::new(),
            simple: Some(true),
            context: claims,
            usage_identifier_key: None,
            jwt_scopes: Some(vec!["read".into()]),
        };
        assert_eq!(jwt.value(N::Claim("sub")), Some(AuthValue::Text("u-1")));
        assert_eq!(
            jwt.value(N::Claim("custom:role")),
            Some(AuthValue::Text("admin"))
        );
        assert_eq!(jwt.value(N::Key("sub")), None);
    }

    #[test]
    fn decisions_without_an_arn_agree_with_decide() {
        let cases = [
            (
                r#"[{"Effect":"Allow","Action":"execute-api:Invoke","Resource":"*"}]"#,
                Some(Decision::Allow),
            ),
            (
                r#"[{"Effect":"Allow","Action":"*","Resource":["arn:x","**"]}]"#,
                Some(Decision::Allow),
            ),
            (
                r#"[{"Effect":"Deny","Action":"execute-api:*","Resource":"*"},{"Effect":"Allow","Action":"*","Resource":"*"}]"#,
                Some(Decision::ExplicitDeny),
            ),
            // A Deny of some ARNs: the ARN decides.
            (
                r#"[{"Effect":"Allow","Action":"*","Resource":"*"},{"Effect":"Deny","Action":"*","Resource":"arn:*/POST/*"}]"#,
                None,
            ),
            // An Allow of some ARNs only.
            (
                r#"[{"Effect":"Allow","Action":"*","Resource":"arn:aws:execute-api:*:*:pets/prod/GET/*"}]"#,
                None,
            ),
            // Statements for other actions do not count.
            (
                r#"[{"Effect":"Allow","Action":"execute-api:InvalidateCache","Resource":"*"}]"#,
                None,
            ),
            (
                r#"[{"Effect":"Allow","Action":"*","Resource":"*"},{"Effect":"Deny","Action":"s3:*","Resource":"arn:*"}]"#,
                Some(Decision::Allow),
            ),
            (r#"[]"#, None),
        ];
        for (statements, expected) in cases {
            let p = policy(statements);
            assert_eq!(p.decide_any(), expected, "{statements}");
            if let Some(d) = expected {
                for arn in [
                    ARN,
                    "arn:aws:execute-api:local:000000000000:pets/prod/POST/pets",
                    "",
                ] {
                    assert_eq!(p.decide(arn), d, "{statements} {arn}");
                }
            }
        }
        let yes = parse(br#"{"isAuthorized":true}"#, PayloadVersion::V2, true).expect("valid");
        assert_eq!(yes.decide_any(), Some(Decision::Allow));
        let no = parse(br#"{"isAuthorized":false}"#, PayloadVersion::V2, true).expect("valid");
        assert_eq!(no.decide_any(), Some(Decision::ExplicitDeny));
    }
}
