//! Events sent to functions: the `aws_proxy` payload 1.0 / 2.0 events and the Lambda
//! authorizer TOKEN / REQUEST events. A request's `aws_proxy` event is written as JSON
//! straight into a buffer (`write_proxy_v1` / `write_proxy_v2`, then `close_event` with the
//! body once read); `proxy_v1` / `proxy_v2` build the same events as `serde_json` maps (the
//! REQUEST 2.0 authorizer event starts from one; the tests check the two agree).
//!
//! Rules (guide L15885-15986, L40771-40845, L13913-14000, L39969-40073; DIGEST §2.2, §2.3, §4):
//! - 1.0: header names as sent; `headers` / `queryStringParameters` hold the *last* value
//!   (what AWS sends; the guide's two examples disagree), `multiValue*` every value in order;
//!   `pathParameters`, `stageVariables`, `queryStringParameters` are `null` when empty.
//! - 2.0: header names lowercased, duplicates joined with `,`; `Cookie` headers go to
//!   `cookies` (split at `;`) and not to `headers`; duplicate query parameters joined with
//!   `,`; empty maps are left out.
//! - Query values are percent-decoded (`rawQueryString` is as sent).

use super::{base64, time, Account, ContextVariable, IdentitySource};
use serde_json::{Map, Value};
use smallvec::SmallVec;
use std::borrow::Cow;
use std::net::IpAddr;
use std::time::SystemTime;

/// A JSON object.
type JsonMap = Map<String, Value>;

/// What an event is built from, borrowed from the request head and the route match.
#[derive(Clone, Copy, Debug)]
pub struct EventRequest<'a> {
    /// The method token as sent.
    pub method: &'a str,
    /// The path as sent (stage / base path included), without the query.
    pub raw_path: &'a str,
    /// The path without the stage or base path (what the route matched).
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a [httparse::Header<'a>],
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// The route key as written (`GET /pets/{id}`, `$default`).
    pub route_key: &'a str,
    pub param_names: &'a [Box<str>],
    pub params: &'a [&'a str],
    pub stage: &'a str,
    pub stage_variables: &'a [(Box<str>, Box<str>)],
    /// `apiId` (the API's name).
    pub api_id: &'a str,
    /// The region and account (`accountId`, method ARNs).
    pub account: &'a Account,
    pub request_id: &'a str,
    pub source_ip: IpAddr,
    pub time: SystemTime,
}

impl<'a> EventRequest<'a> {
    /// The first field named `name` (case-insensitive), as text.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// Every field named `name` joined with `,` (`None` when there is none).
    pub fn header_joined(&self, name: &str) -> Option<String> {
        self.header_joined_cow(name).map(Cow::into_owned)
    }

    /// [`Self::header_joined`], borrowed from the request head when there is one such field
    /// and it is UTF-8 (the common case: no allocation).
    pub fn header_joined_cow(&self, name: &str) -> Option<Cow<'a, str>> {
        let mut fields = self
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name));
        let first = fields.next()?;
        if fields.next().is_none() {
            return Some(match std::str::from_utf8(first.value) {
                Ok(v) => Cow::Borrowed(v),
                Err(_) => Cow::Owned(lossy(first.value)),
            });
        }
        let mut out: Option<String> = None;
        for h in self.headers {
            if h.name.eq_ignore_ascii_case(name) {
                let s = out.get_or_insert_with(String::new);
                if !s.is_empty() {
                    s.push(',');
                }
                s.push_str(&String::from_utf8_lossy(h.value));
            }
        }
        out.map(Cow::Owned)
    }

    /// The route's resource path (`/pets/{id}`); for `$default`, the request path.
    pub fn resource(&self) -> &'a str {
        match self.route_key.split_once(' ') {
            Some((_, p)) => p,
            None => self.path,
        }
    }

    fn protocol(&self) -> &'static str {
        if self.minor_version == 0 {
            "HTTP/1.0"
        } else {
            "HTTP/1.1"
        }
    }

    fn user_agent(&self) -> Value {
        self.header("user-agent")
            .map_or(Value::Null, |v| Value::String(lossy(v)))
    }

    fn domain(&self) -> (String, String) {
        let host = self.header("host").map(lossy).unwrap_or_default();
        let prefix = host.split('.').next().unwrap_or("").to_string();
        (host, prefix)
    }

    /// `arn:aws:execute-api:{region}:{account}:{api}/{stage}/{METHOD}/{path}`: the method
    /// ARN (REST) / route ARN (HTTP API) that authorizer policies are matched against.
    /// Built with one allocation of the exact size (it is made for every request of a route
    /// with a Lambda authorizer, cached hits included).
    pub fn method_arn(&self) -> String {
        const PREFIX: &str = "arn:aws:execute-api:";
        let path = self.path.strip_prefix('/').unwrap_or(self.path);
        let parts = [
            PREFIX,
            &self.account.region,
            ":",
            &self.account.account_id,
            ":",
            self.api_id,
            "/",
            self.stage,
            "/",
            self.method,
            "/",
            path,
        ];
        let mut arn = String::with_capacity(parts.iter().map(|p| p.len()).sum());
        for p in parts {
            arn.push_str(p);
        }
        arn
    }

    /// Query parameters, percent-decoded, in order.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        let Some(q) = self.query else {
            return Vec::new();
        };
        q.split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect()
    }

    /// The value of an identity source; `None` when missing or empty.
    pub fn identity_value(&self, source: &IdentitySource) -> Option<String> {
        self.identity_value_cow(source).map(Cow::into_owned)
    }

    /// [`Self::identity_value`], borrowed from the request head where it can be (a header
    /// sent once, as UTF-8).
    pub fn identity_value_cow(&self, source: &IdentitySource) -> Option<Cow<'a, str>> {
        if let IdentitySource::Header(name) = source {
            return self.header_joined_cow(name).filter(|v| !v.is_empty());
        }
        self.identity_value_owned(source)
            .filter(|s| !s.is_empty())
            .map(Cow::Owned)
    }

    /// The identity sources that are not headers.
    fn identity_value_owned(&self, source: &IdentitySource) -> Option<String> {
        match source {
            IdentitySource::Header(name) => self.header_joined(name),
            IdentitySource::Query(name) => {
                let vals: Vec<String> = self
                    .query_pairs()
                    .into_iter()
                    .filter(|(k, _)| k == &**name)
                    .map(|(_, v)| v)
                    .collect();
                (!vals.is_empty()).then(|| vals.join(","))
            }
            IdentitySource::StageVariable(name) => self
                .stage_variables
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.to_string()),
            IdentitySource::Context(c) => Some(match c {
                ContextVariable::HttpMethod => self.method.to_string(),
                ContextVariable::Path => self.raw_path.to_string(),
                ContextVariable::RouteKey => self.route_key.to_string(),
                ContextVariable::Stage => self.stage.to_string(),
                ContextVariable::SourceIp => self.source_ip.to_string(),
                ContextVariable::UserAgent => self.header("user-agent").map(lossy)?,
            }),
        }
    }

    fn path_parameters(&self) -> Option<Map<String, Value>> {
        if self.params.is_empty() {
            return None;
        }
        Some(
            self.param_names
                .iter()
                .zip(self.params)
                .map(|(k, v)| (k.to_string(), Value::String(percent_decode(v))))
                .collect(),
        )
    }

    fn stage_variables_map(&self) -> Option<Map<String, Value>> {
        if self.stage_variables.is_empty() {
            return None;
        }
        Some(
            self.stage_variables
                .iter()
                .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                .collect(),
        )
    }

    /// 1.0 maps: (headers, multiValueHeaders).
    fn headers_v1(&self) -> (Map<String, Value>, Map<String, Value>) {
        let mut single = Map::new();
        let mut multi: Map<String, Value> = Map::new();
        for h in self.headers {
            let v = lossy(h.value);
            single.insert(h.name.to_string(), Value::String(v.clone()));
            match multi.get_mut(h.name) {
                Some(Value::Array(a)) => a.push(Value::String(v)),
                _ => {
                    multi.insert(h.name.to_string(), Value::Array(vec![Value::String(v)]));
                }
            }
        }
        (single, multi)
    }

    /// 1.0 maps: (queryStringParameters, multiValueQueryStringParameters).
    fn query_v1(&self) -> (Option<JsonMap>, Option<JsonMap>) {
        let pairs = self.query_pairs();
        if pairs.is_empty() {
            return (None, None);
        }
        let mut single = Map::new();
        let mut multi: Map<String, Value> = Map::new();
        for (k, v) in pairs {
            single.insert(k.clone(), Value::String(v.clone()));
            match multi.get_mut(&k) {
                Some(Value::Array(a)) => a.push(Value::String(v)),
                _ => {
                    multi.insert(k, Value::Array(vec![Value::String(v)]));
                }
            }
        }
        (Some(single), Some(multi))
    }

    /// 2.0 maps: (cookies, headers) with lowercased, comma-joined headers.
    fn headers_v2(&self) -> (Vec<Value>, Map<String, Value>) {
        let mut cookies = Vec::new();
        let mut headers: Map<String, Value> = Map::new();
        for h in self.headers {
            let v = lossy(h.value);
            if h.name.eq_ignore_ascii_case("cookie") {
                cookies.extend(
                    v.split(';')
                        .map(str::trim)
                        .filter(|c| !c.is_empty())
                        .map(|c| Value::String(c.to_string())),
                );
                continue;
            }
            let name = h.name.to_ascii_lowercase();
            match headers.get_mut(&name) {
                Some(Value::String(s)) => {
                    s.push(',');
                    s.push_str(&v);
                }
                _ => {
                    headers.insert(name, Value::String(v));
                }
            }
        }
        (cookies, headers)
    }

    fn query_v2(&self) -> Option<Map<String, Value>> {
        let pairs = self.query_pairs();
        if pairs.is_empty() {
            return None;
        }
        let mut out: Map<String, Value> = Map::new();
        for (k, v) in pairs {
            match out.get_mut(&k) {
                Some(Value::String(s)) => {
                    s.push(',');
                    s.push_str(&v);
                }
                _ => {
                    out.insert(k, Value::String(v));
                }
            }
        }
        Some(out)
    }

    /// 1.0 `requestContext` (without `authorizer`).
    fn request_context_v1(&self) -> Map<String, Value> {
        let (domain, prefix) = self.domain();
        let mut identity = Map::new();
        for k in [
            "accessKey",
            "accountId",
            "caller",
            "cognitoAuthenticationProvider",
            "cognitoAuthenticationType",
            "cognitoIdentityId",
            "cognitoIdentityPoolId",
            "principalOrgId",
        ] {
            identity.insert(k.into(), Value::Null);
        }
        identity.insert("sourceIp".into(), self.source_ip.to_string().into());
        identity.insert("user".into(), Value::Null);
        identity.insert("userAgent".into(), self.user_agent());
        identity.insert("userArn".into(), Value::Null);
        let mut rc = Map::new();
        rc.insert("accountId".into(), (*self.account.account_id).into());
        rc.insert("apiId".into(), self.api_id.into());
        rc.insert("domainName".into(), domain.into());
        rc.insert("domainPrefix".into(), prefix.into());
        rc.insert("extendedRequestId".into(), self.request_id.into());
        rc.insert("httpMethod".into(), self.method.into());
        rc.insert("identity".into(), Value::Object(identity));
        rc.insert("path".into(), self.raw_path.into());
        rc.insert("protocol".into(), self.protocol().into());
        rc.insert("requestId".into(), self.request_id.into());
        rc.insert("requestTime".into(), time::clf(self.time).into());
        rc.insert("requestTimeEpoch".into(), time::epoch_ms(self.time).into());
        rc.insert("resourceId".into(), Value::Null);
        rc.insert("resourcePath".into(), self.resource().into());
        rc.insert("stage".into(), self.stage.into());
        rc
    }

    /// 2.0 `requestContext` (without `authorizer`).
    fn request_context_v2(&self) -> Map<String, Value> {
        let (domain, prefix) = self.domain();
        let mut http = Map::new();
        http.insert("method".into(), self.method.into());
        http.insert("path".into(), self.raw_path.into());
        http.insert("protocol".into(), self.protocol().into());
        http.insert("sourceIp".into(), self.source_ip.to_string().into());
        http.insert("userAgent".into(), self.user_agent());
        let mut rc = Map::new();
        rc.insert("accountId".into(), (*self.account.account_id).into());
        rc.insert("apiId".into(), self.api_id.into());
        rc.insert("domainName".into(), domain.into());
        rc.insert("domainPrefix".into(), prefix.into());
        rc.insert("http".into(), Value::Object(http));
        rc.insert("requestId".into(), self.request_id.into());
        rc.insert("routeKey".into(), self.route_key.into());
        rc.insert("stage".into(), self.stage.into());
        rc.insert("time".into(), time::clf(self.time).into());
        rc.insert("timeEpoch".into(), time::epoch_ms(self.time).into());
        rc
    }

    /// The payload 1.0 event, without `body` / `isBase64Encoded` (see `finish`). `version`:
    /// add `"version": "1.0"` (HTTP APIs).
    pub fn proxy_v1(&self, version: bool) -> Map<String, Value> {
        let mut e = Map::new();
        if version {
            e.insert("version".into(), "1.0".into());
        }
        e.insert("resource".into(), self.resource().into());
        e.insert("path".into(), self.path.into());
        e.insert("httpMethod".into(), self.method.into());
        let (h, mh) = self.headers_v1();
        e.insert("headers".into(), Value::Object(h));
        e.insert("multiValueHeaders".into(), Value::Object(mh));
        let (q, mq) = self.query_v1();
        e.insert("queryStringParameters".into(), opt_map(q));
        e.insert("multiValueQueryStringParameters".into(), opt_map(mq));
        e.insert(
            "requestContext".into(),
            Value::Object(self.request_context_v1()),
        );
        e.insert("pathParameters".into(), opt_map(self.path_parameters()));
        e.insert("stageVariables".into(), opt_map(self.stage_variables_map()));
        e
    }

    /// The payload 2.0 event, without `body` / `isBase64Encoded` (see `finish`).
    pub fn proxy_v2(&self) -> Map<String, Value> {
        let mut e = Map::new();
        e.insert("version".into(), "2.0".into());
        e.insert("routeKey".into(), self.route_key.into());
        e.insert("rawPath".into(), self.raw_path.into());
        e.insert("rawQueryString".into(), self.query.unwrap_or("").into());
        let (cookies, headers) = self.headers_v2();
        if !cookies.is_empty() {
            e.insert("cookies".into(), Value::Array(cookies));
        }
        e.insert("headers".into(), Value::Object(headers));
        if let Some(q) = self.query_v2() {
            e.insert("queryStringParameters".into(), Value::Object(q));
        }
        e.insert(
            "requestContext".into(),
            Value::Object(self.request_context_v2()),
        );
        if let Some(p) = self.path_parameters() {
            e.insert("pathParameters".into(), Value::Object(p));
        }
        if let Some(s) = self.stage_variables_map() {
            e.insert("stageVariables".into(), Value::Object(s));
        }
        e
    }

    /// The TOKEN authorizer event (L13913-13924).
    pub fn token_authorizer(token: &str, method_arn: &str) -> Vec<u8> {
        let mut e = Map::new();
        e.insert("type".into(), "TOKEN".into());
        e.insert("authorizationToken".into(), token.into());
        e.insert("methodArn".into(), method_arn.into());
        to_vec(e)
    }

    /// The REQUEST authorizer event, payload 1.0 (REST L13941-14000; HTTP APIs add `version`,
    /// `identitySource` and `authorizationToken`, L40021-40073). `identity`: the identity
    /// source values (HTTP APIs only).
    pub fn request_authorizer_v1(
        &self,
        method_arn: &str,
        http_api: bool,
        identity: &[String],
    ) -> Vec<u8> {
        let mut e = Map::new();
        if http_api {
            e.insert("version".into(), "1.0".into());
        }
        e.insert("type".into(), "REQUEST".into());
        e.insert("methodArn".into(), method_arn.into());
        if http_api {
            let joined = identity.join(",");
            e.insert("identitySource".into(), joined.clone().into());
            e.insert("authorizationToken".into(), joined.into());
        }
        e.insert("resource".into(), self.resource().into());
        e.insert("path".into(), self.path.into());
        e.insert("httpMethod".into(), self.method.into());
        let (h, mh) = self.headers_v1();
        e.insert("headers".into(), Value::Object(h));
        e.insert("multiValueHeaders".into(), Value::Object(mh));
        let (q, mq) = self.query_v1();
        e.insert(
            "queryStringParameters".into(),
            Value::Object(q.unwrap_or_default()),
        );
        e.insert(
            "multiValueQueryStringParameters".into(),
            Value::Object(mq.unwrap_or_default()),
        );
        e.insert(
            "pathParameters".into(),
            Value::Object(self.path_parameters().unwrap_or_default()),
        );
        e.insert(
            "stageVariables".into(),
            Value::Object(self.stage_variables_map().unwrap_or_default()),
        );
        let mut identity_ctx = Map::new();
        identity_ctx.insert(
            "apiKey".into(),
            self.header("x-api-key")
                .map_or(Value::Null, |v| Value::String(lossy(v))),
        );
        identity_ctx.insert("sourceIp".into(), self.source_ip.to_string().into());
        identity_ctx.insert("userAgent".into(), self.user_agent());
        let mut rc = Map::new();
        rc.insert("path".into(), self.raw_path.into());
        rc.insert("accountId".into(), (*self.account.account_id).into());
        rc.insert("resourceId".into(), Value::Null);
        rc.insert("stage".into(), self.stage.into());
        rc.insert("requestId".into(), self.request_id.into());
        rc.insert("identity".into(), Value::Object(identity_ctx));
        rc.insert("resourcePath".into(), self.resource().into());
        rc.insert("httpMethod".into(), self.method.into());
        rc.insert("apiId".into(), self.api_id.into());
        e.insert("requestContext".into(), Value::Object(rc));
        to_vec(e)
    }

    /// The REQUEST authorizer event, payload 2.0 (HTTP APIs, L39969-40017).
    pub fn request_authorizer_v2(&self, route_arn: &str, identity: &[String]) -> Vec<u8> {
        let mut e = self.proxy_v2();
        e.insert("type".into(), "REQUEST".into());
        e.insert("routeArn".into(), route_arn.into());
        e.insert(
            "identitySource".into(),
            Value::Array(identity.iter().map(|s| Value::String(s.clone())).collect()),
        );
        to_vec(e)
    }
}

/// JSON written straight into a buffer: the `aws_proxy` events (no `serde_json::Value` tree
/// per request). Object keys are written once each, in an order of their own (JSON objects
/// are unordered); the content is what `proxy_v1` / `proxy_v2` build, which the tests check.
impl<'a> EventRequest<'a> {
    /// The payload 1.0 event into `out`, left open inside `requestContext` (written last):
    /// [`close_event`] adds the authorizer, the body and the closing braces.
    pub fn write_proxy_v1(&self, version: bool, out: &mut Vec<u8>) {
        out.push(b'{');
        if version {
            out.extend_from_slice(br#""version":"1.0","#);
        }
        field(out, "resource", self.resource());
        field(out, "path", self.path);
        field(out, "httpMethod", self.method);
        self.write_headers_v1(out);
        self.write_query_v1(out);
        self.write_path_parameters(out, true);
        self.write_stage_variables(out, true);
        self.write_request_context_v1(out);
    }

    /// The payload 2.0 event into `out`, left open inside `requestContext` (see
    /// [`Self::write_proxy_v1`]).
    pub fn write_proxy_v2(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(br#"{"version":"2.0","#);
        field(out, "routeKey", self.route_key);
        field(out, "rawPath", self.raw_path);
        field(out, "rawQueryString", self.query.unwrap_or(""));
        self.write_cookies_v2(out);
        self.write_headers_v2(out);
        self.write_query_v2(out);
        self.write_path_parameters(out, false);
        self.write_stage_variables(out, false);
        self.write_request_context_v2(out);
    }

    /// 1.0: `headers` (the last value of each name) and `multiValueHeaders` (every value).
    fn write_headers_v1(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(br#""headers":{"#);
        let mut first = true;
        for (i, h) in self.headers.iter().enumerate() {
            if self.headers[..i].iter().any(|e| e.name == h.name) {
                continue;
            }
            let last = self.headers[i..]
                .iter()
                .rev()
                .find(|e| e.name == h.name)
                .map_or(h.value, |e| e.value);
            comma(out, &mut first);
            string(out, h.name);
            out.push(b':');
            bytes(out, last);
        }
        out.extend_from_slice(br#"},"multiValueHeaders":{"#);
        let mut first = true;
        for (i, h) in self.headers.iter().enumerate() {
            if self.headers[..i].iter().any(|e| e.name == h.name) {
                continue;
            }
            comma(out, &mut first);
            string(out, h.name);
            out.extend_from_slice(b":[");
            let mut one = true;
            for e in self.headers[i..].iter().filter(|e| e.name == h.name) {
                comma(out, &mut one);
                bytes(out, e.value);
            }
            out.push(b']');
        }
        out.extend_from_slice(b"},");
    }

    /// 1.0: `queryStringParameters` and `multiValueQueryStringParameters` (`null` when none).
    fn write_query_v1(&self, out: &mut Vec<u8>) {
        let pairs = self.query_pairs_cow();
        if pairs.is_empty() {
            out.extend_from_slice(
                br#""queryStringParameters":null,"multiValueQueryStringParameters":null,"#,
            );
        } else {
            out.extend_from_slice(br#""queryStringParameters":{"#);
            let mut first = true;
            for (i, (k, _)) in pairs.iter().enumerate() {
                if pairs[..i].iter().any(|(e, _)| e == k) {
                    continue;
                }
                let last = pairs[i..]
                    .iter()
                    .rev()
                    .find(|(e, _)| e == k)
                    .map(|(_, v)| v);
                comma(out, &mut first);
                string(out, k);
                out.push(b':');
                string(out, last.map_or("", |v| &**v));
            }
            out.extend_from_slice(br#"},"multiValueQueryStringParameters":{"#);
            let mut first = true;
            for (i, (k, _)) in pairs.iter().enumerate() {
                if pairs[..i].iter().any(|(e, _)| e == k) {
                    continue;
                }
                comma(out, &mut first);
                string(out, k);
                out.extend_from_slice(b":[");
                let mut one = true;
                for (_, v) in pairs[i..].iter().filter(|(e, _)| e == k) {
                    comma(out, &mut one);
                    string(out, v);
                }
                out.push(b']');
            }
            out.extend_from_slice(b"},");
        }
    }

    /// 1.0: `requestContext`, left open after `stage`.
    fn write_request_context_v1(&self, out: &mut Vec<u8>) {
        let (domain, prefix) = self.domain_cow();
        out.extend_from_slice(br#""requestContext":{"#);
        field(out, "accountId", &self.account.account_id);
        field(out, "apiId", self.api_id);
        field(out, "domainName", &domain);
        field(out, "domainPrefix", &domain[..prefix]);
        field(out, "extendedRequestId", self.request_id);
        field(out, "httpMethod", self.method);
        out.extend_from_slice(
            br#""identity":{"accessKey":null,"accountId":null,"caller":null,"cognitoAuthenticationProvider":null,"cognitoAuthenticationType":null,"cognitoIdentityId":null,"cognitoIdentityPoolId":null,"principalOrgId":null,"user":null,"userArn":null,"sourceIp":"#,
        );
        self.write_source_ip(out);
        out.extend_from_slice(br#","userAgent":"#);
        self.write_user_agent(out);
        out.extend_from_slice(b"},");
        field(out, "path", self.raw_path);
        field(out, "protocol", self.protocol());
        field(out, "requestId", self.request_id);
        field(out, "requestTime", &time::clf(self.time));
        out.extend_from_slice(br#""requestTimeEpoch":"#);
        crate::forward::push_decimal(out, time::epoch_ms(self.time));
        out.extend_from_slice(br#","resourceId":null,"#);
        field(out, "resourcePath", self.resource());
        string(out, "stage");
        out.push(b':');
        string(out, self.stage);
    }

    /// 2.0: `cookies` from every `Cookie` header, left out when there are none.
    fn write_cookies_v2(&self, out: &mut Vec<u8>) {
        let is_cookie = |h: &httparse::Header<'_>| h.name.eq_ignore_ascii_case("cookie");
        if self.headers.iter().any(is_cookie) {
            let mut first = true;
            for h in self.headers.iter().filter(|h| is_cookie(h)) {
                let v = String::from_utf8_lossy(h.value);
                for c in v.split(';').map(str::trim).filter(|c| !c.is_empty()) {
                    if first {
                        out.extend_from_slice(br#""cookies":["#);
                    }
                    comma(out, &mut first);
                    string(out, c);
                }
            }
            if !first {
                out.extend_from_slice(b"],");
            }
        }
    }

    /// 2.0: `headers`, lower-cased names, repeated values joined with commas, no cookies.
    fn write_headers_v2(&self, out: &mut Vec<u8>) {
        let is_cookie = |h: &httparse::Header<'_>| h.name.eq_ignore_ascii_case("cookie");
        out.extend_from_slice(br#""headers":{"#);
        let mut first = true;
        for (i, h) in self.headers.iter().enumerate() {
            if is_cookie(h)
                || self.headers[..i]
                    .iter()
                    .any(|e| e.name.eq_ignore_ascii_case(h.name))
            {
                continue;
            }
            comma(out, &mut first);
            string(out, &h.name.to_ascii_lowercase());
            out.push(b':');
            let same: SmallVec<[&[u8]; 4]> = self.headers[i..]
                .iter()
                .filter(|e| e.name.eq_ignore_ascii_case(h.name))
                .map(|e| e.value)
                .collect();
            if let [one] = same[..] {
                bytes(out, one);
            } else {
                let joined: Vec<u8> = same.join(&b","[..]);
                bytes(out, &joined);
            }
        }
        out.extend_from_slice(b"},");
    }

    /// 2.0: `queryStringParameters`, repeated values joined with commas, left out when none.
    fn write_query_v2(&self, out: &mut Vec<u8>) {
        let pairs = self.query_pairs_cow();
        if !pairs.is_empty() {
            out.extend_from_slice(br#""queryStringParameters":{"#);
            let mut first = true;
            for (i, (k, _)) in pairs.iter().enumerate() {
                if pairs[..i].iter().any(|(e, _)| e == k) {
                    continue;
                }
                comma(out, &mut first);
                string(out, k);
                out.push(b':');
                let same: SmallVec<[&str; 4]> = pairs[i..]
                    .iter()
                    .filter(|(e, _)| e == k)
                    .map(|(_, v)| &**v)
                    .collect();
                string(out, &same.join(","));
            }
            out.extend_from_slice(b"},");
        }
    }

    /// 2.0: `requestContext`, left open after `timeEpoch`.
    fn write_request_context_v2(&self, out: &mut Vec<u8>) {
        let (domain, prefix) = self.domain_cow();
        out.extend_from_slice(br#""requestContext":{"#);
        field(out, "accountId", &self.account.account_id);
        field(out, "apiId", self.api_id);
        field(out, "domainName", &domain);
        field(out, "domainPrefix", &domain[..prefix]);
        out.extend_from_slice(br#""http":{"#);
        field(out, "method", self.method);
        field(out, "path", self.raw_path);
        field(out, "protocol", self.protocol());
        out.extend_from_slice(br#""sourceIp":"#);
        self.write_source_ip(out);
        out.extend_from_slice(br#","userAgent":"#);
        self.write_user_agent(out);
        out.extend_from_slice(b"},");
        field(out, "requestId", self.request_id);
        field(out, "routeKey", self.route_key);
        field(out, "stage", self.stage);
        field(out, "time", &time::clf(self.time));
        out.extend_from_slice(br#""timeEpoch":"#);
        crate::forward::push_decimal(out, time::epoch_ms(self.time));
    }

    /// `pathParameters` (percent-decoded); empty: `null` (1.0) or left out (2.0).
    fn write_path_parameters(&self, out: &mut Vec<u8>, null: bool) {
        if self.params.is_empty() {
            if null {
                out.extend_from_slice(br#""pathParameters":null,"#);
            }
            return;
        }
        out.extend_from_slice(br#""pathParameters":{"#);
        let mut first = true;
        for (k, v) in self.param_names.iter().zip(self.params) {
            comma(out, &mut first);
            string(out, k);
            out.push(b':');
            string(out, &percent_decode_cow(v));
        }
        out.extend_from_slice(b"},");
    }

    /// `stageVariables`; none: `null` (1.0) or left out (2.0).
    fn write_stage_variables(&self, out: &mut Vec<u8>, null: bool) {
        if self.stage_variables.is_empty() {
            if null {
                out.extend_from_slice(br#""stageVariables":null,"#);
            }
            return;
        }
        out.extend_from_slice(br#""stageVariables":{"#);
        let mut first = true;
        for (k, v) in self.stage_variables {
            comma(out, &mut first);
            string(out, k);
            out.push(b':');
            string(out, v);
        }
        out.extend_from_slice(b"},");
    }

    fn write_source_ip(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        out.push(b'"');
        // An address is ASCII digits, dots, colons and hex: nothing to escape.
        let _ = write!(out, "{}", self.source_ip);
        out.push(b'"');
    }

    fn write_user_agent(&self, out: &mut Vec<u8>) {
        match self.header("user-agent") {
            Some(v) => bytes(out, v),
            None => out.extend_from_slice(b"null"),
        }
    }

    /// The `Host` header (lossy text) and the length of its first label.
    fn domain_cow(&self) -> (Cow<'a, str>, usize) {
        let host = self
            .header("host")
            .map_or(Cow::Borrowed(""), String::from_utf8_lossy);
        let prefix = host.split('.').next().map_or(0, str::len);
        (host, prefix)
    }

    /// Query parameters, percent-decoded (borrowed when nothing is escaped), in order.
    fn query_pairs_cow(&self) -> SmallVec<[(Cow<'a, str>, Cow<'a, str>); 8]> {
        let Some(q) = self.query else {
            return SmallVec::new();
        };
        q.split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (percent_decode_cow(k), percent_decode_cow(v))
            })
            .collect()
    }
}

/// Ends an event written by `write_proxy_v1` / `write_proxy_v2`: closes `requestContext`
/// (after `authorizer`, a JSON object written by the caller, if any) and adds `body` and
/// `isBase64Encoded` as [`finish`] does.
pub fn close_event(out: &mut Vec<u8>, body: &[u8], binary: bool) {
    out.extend_from_slice(br#"},"body":"#);
    let encoded = if body.is_empty() {
        out.extend_from_slice(b"null");
        false
    } else if binary {
        string(out, &base64::encode(body));
        true
    } else {
        match std::str::from_utf8(body) {
            Ok(s) => {
                string(out, s);
                false
            }
            // Not text: it cannot travel as a JSON string unchanged.
            Err(_) => {
                string(out, &base64::encode(body));
                true
            }
        }
    };
    out.extend_from_slice(if encoded {
        br#","isBase64Encoded":true}"#
    } else {
        br#","isBase64Encoded":false}"#
    });
}

/// `"name":"value",`.
fn field(out: &mut Vec<u8>, name: &str, value: &str) {
    string(out, name);
    out.push(b':');
    string(out, value);
    out.push(b',');
}

/// A `,` before every item but the first.
fn comma(out: &mut Vec<u8>, first: &mut bool) {
    if !std::mem::take(first) {
        out.push(b',');
    }
}

/// `s` as a JSON string (quoted, escaped).
pub(crate) fn string(out: &mut Vec<u8>, s: &str) {
    // Cannot fail: a string into a Vec.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Header bytes as a JSON string (invalid UTF-8 replaced, as `lossy`).
fn bytes(out: &mut Vec<u8>, v: &[u8]) {
    string(out, &String::from_utf8_lossy(v));
}

/// [`percent_decode`], borrowed when there is nothing to decode.
fn percent_decode_cow(s: &str) -> Cow<'_, str> {
    if s.as_bytes().contains(&b'%') {
        Cow::Owned(percent_decode(s))
    } else {
        Cow::Borrowed(s)
    }
}

/// Adds `body` and `isBase64Encoded` to an event and serializes it. `binary`: send the body
/// base64-encoded. An empty body is `null`.
pub fn finish(mut event: Map<String, Value>, body: &[u8], binary: bool) -> Vec<u8> {
    let (body, encoded) = if body.is_empty() {
        (Value::Null, false)
    } else if binary {
        (Value::String(base64::encode(body)), true)
    } else {
        match std::str::from_utf8(body) {
            Ok(s) => (Value::String(s.to_string()), false),
            // Not text: it cannot travel as a JSON string unchanged.
            Err(_) => (Value::String(base64::encode(body)), true),
        }
    };
    event.insert("body".into(), body);
    event.insert("isBase64Encoded".into(), Value::Bool(encoded));
    to_vec(event)
}

fn to_vec(e: Map<String, Value>) -> Vec<u8> {
    // A map of strings, numbers and nested maps always serializes.
    serde_json::to_vec(&Value::Object(e)).unwrap_or_default()
}

fn opt_map(m: Option<Map<String, Value>>) -> Value {
    m.map_or(Value::Null, Value::Object)
}

pub(crate) fn lossy(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}

/// `%XX` decoded (invalid escapes kept as written; invalid UTF-8 replaced).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    if !b.contains(&b'%') {
        return s.to_string();
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `content_type` (a `Content-Type` or one entry of `Accept`) is one of the API's
/// `binary_media_types` (`type/subtype`, `type/*`, `*/*`; case-insensitive, parameters ignored).
pub fn is_binary_type(content_type: &[u8], binary_media_types: &[Box<str>]) -> bool {
    let mt = content_type
        .split(|&b| b == b';')
        .next()
        .unwrap_or(b"")
        .trim_ascii();
    if mt.is_empty() {
        return false;
    }
    binary_media_types.iter().any(|t| {
        let t = t.as_bytes();
        if t == b"*/*" {
            return true;
        }
        if let Some(prefix) = t.strip_suffix(b"/*") {
            return mt.len() > prefix.len()
                && mt[..prefix.len()].eq_ignore_ascii_case(prefix)
                && mt[prefix.len()] == b'/';
        }
        mt.eq_ignore_ascii_case(t)
    })
}

/// Whether an `Accept` header value lists a binary media type (`*/*` in the request does not
/// count unless the API lists `*/*`).
pub fn accepts_binary(accept: &[u8], binary_media_types: &[Box<str>]) -> bool {
    accept
        .split(|&b| b == b',')
        .any(|entry| is_binary_type(entry, binary_media_types))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::net::Ipv4Addr;
    use std::time::{Duration, UNIX_EPOCH};

    const HEADERS: [httparse::Header<'static>; 6] = [
        httparse::Header {
            name: "Host",
            value: b"id.execute-api.example.com",
        },
        httparse::Header {
            name: "header1",
            value: b"value1",
        },
        httparse::Header {
            name: "Header2",
            value: b"value1",
        },
        httparse::Header {
            name: "Header2",
            value: b"value2",
        },
        httparse::Header {
            name: "Cookie",
            value: b"cookie1; cookie2",
        },
        httparse::Header {
            name: "User-Agent",
            value: b"agent",
        },
    ];

    fn with_request(f: impl FnOnce(&EventRequest<'_>)) {
        let names: [Box<str>; 1] = ["id".into()];
        let vars: [(Box<str>, Box<str>); 1] = [("stageVariable1".into(), "value1".into())];
        let params = ["a%20b"];
        let account = Account {
            region: "us-east-1".into(),
            account_id: "123456789012".into(),
        };
        let r = EventRequest {
            method: "POST",
            raw_path: "/prod/my/a%20b",
            path: "/my/a%20b",
            query: Some("parameter1=value1&parameter1=value2&parameter2=va%2Fl&flag"),
            headers: &HEADERS,
            minor_version: 1,
            route_key: "POST /my/{id}",
            param_names: &names,
            params: &params,
            stage: "prod",
            stage_variables: &vars,
            api_id: "api-id",
            account: &account,
            request_id: "rid",
            source_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            time: UNIX_EPOCH + Duration::from_millis(1_583_349_317_135),
        };
        f(&r);
    }

    #[test]
    fn v1_event() {
        with_request(|r| {
            let e = Value::Object(r.proxy_v1(false));
            assert_eq!(e["resource"], "/my/{id}");
            assert_eq!(e["path"], "/my/a%20b");
            assert_eq!(e["httpMethod"], "POST");
            assert_eq!(e["headers"]["Header2"], "value2");
            assert_eq!(
                e["multiValueHeaders"]["Header2"],
                json!(["value1", "value2"])
            );
            assert_eq!(e["headers"]["Cookie"], "cookie1; cookie2");
            assert_eq!(
                e["queryStringParameters"],
                json!({"parameter1": "value2", "parameter2": "va/l", "flag": ""})
            );
            assert_eq!(
                e["multiValueQueryStringParameters"]["parameter1"],
                json!(["value1", "value2"])
            );
            assert_eq!(e["pathParameters"], json!({"id": "a b"}));
            assert_eq!(e["stageVariables"], json!({"stageVariable1": "value1"}));
            let rc = &e["requestContext"];
            assert_eq!(rc["requestTime"], "04/Mar/2020:19:15:17 +0000");
            assert_eq!(rc["requestTimeEpoch"], 1_583_349_317_135u64);
            assert_eq!(rc["domainName"], "id.execute-api.example.com");
            assert_eq!(rc["domainPrefix"], "id");
            assert_eq!(rc["identity"]["sourceIp"], "192.0.2.1");
            assert_eq!(rc["path"], "/prod/my/a%20b");
            assert_eq!(rc["accountId"], "123456789012");
            assert!(e.get("version").is_none());
            assert_eq!(Value::Object(r.proxy_v1(true))["version"], "1.0");
            let done: Value =
                serde_json::from_slice(&finish(r.proxy_v1(false), b"hi", false)).expect("json");
            assert_eq!(
                (done["body"].clone(), done["isBase64Encoded"].clone()),
                (json!("hi"), json!(false))
            );
            let done: Value =
                serde_json::from_slice(&finish(r.proxy_v1(false), b"hi", true)).expect("json");
            assert_eq!(
                (done["body"].clone(), done["isBase64Encoded"].clone()),
                (json!("aGk="), json!(true))
            );
            // Bytes that are not UTF-8 cannot travel as text.
            let done: Value =
                serde_json::from_slice(&finish(r.proxy_v1(false), &[0xff, 0xfe], false))
                    .expect("json");
            assert_eq!(done["isBase64Encoded"], true);
            let done: Value =
                serde_json::from_slice(&finish(r.proxy_v1(false), b"", true)).expect("json");
            assert_eq!(done["body"], Value::Null);
        });
    }

    #[test]
    fn v2_event() {
        with_request(|r| {
            let e = Value::Object(r.proxy_v2());
            assert_eq!(e["version"], "2.0");
            assert_eq!(e["routeKey"], "POST /my/{id}");
            assert_eq!(e["rawPath"], "/prod/my/a%20b");
            assert_eq!(
                e["rawQueryString"],
                "parameter1=value1&parameter1=value2&parameter2=va%2Fl&flag"
            );
            assert_eq!(e["cookies"], json!(["cookie1", "cookie2"]));
            assert_eq!(
                e["headers"],
                json!({"host": "id.execute-api.example.com", "header1": "value1",
                       "header2": "value1,value2", "user-agent": "agent"})
            );
            assert_eq!(e["queryStringParameters"]["parameter1"], "value1,value2");
            assert_eq!(
                e["requestContext"]["http"],
                json!({"method": "POST", "path": "/prod/my/a%20b", "protocol": "HTTP/1.1",
                       "sourceIp": "192.0.2.1", "userAgent": "agent"})
            );
            assert_eq!(e["requestContext"]["time"], "04/Mar/2020:19:15:17 +0000");
            assert_eq!(e["requestContext"]["routeKey"], "POST /my/{id}");
            assert_eq!(e["requestContext"]["accountId"], "123456789012");
        });
    }

    #[test]
    fn identity_values_borrow_a_header_sent_once() {
        with_request(|r| {
            let h = |n: &str| r.identity_value_cow(&IdentitySource::Header(n.into()));
            // One UTF-8 field: borrowed from the head.
            assert!(matches!(h("HEADER1"), Some(Cow::Borrowed("value1"))));
            // Two fields: joined, owned.
            match h("header2") {
                Some(Cow::Owned(v)) => assert_eq!(v, "value1,value2"),
                other => panic!("header2: {other:?}"),
            }
            assert_eq!(h("absent"), None);
            assert_eq!(
                r.identity_value_cow(&IdentitySource::Context(ContextVariable::Stage)),
                Some(Cow::Owned("prod".to_string()))
            );
        });
        let bad = [
            httparse::Header {
                name: "x-token",
                value: b"a\xffb",
            },
            httparse::Header {
                name: "x-empty",
                value: b"",
            },
        ];
        with_request(|r| {
            let r = EventRequest {
                headers: &bad,
                ..*r
            };
            let h = |n: &str| r.identity_value_cow(&IdentitySource::Header(n.into()));
            // Invalid UTF-8 is replaced as before; an empty value counts as missing.
            assert_eq!(h("x-token").as_deref(), Some("a\u{fffd}b"));
            assert_eq!(h("x-empty"), None);
            assert_eq!(
                r.identity_value(&IdentitySource::Header("x-token".into())),
                Some("a\u{fffd}b".to_string())
            );
        });
    }

    #[test]
    fn identity_sources_and_authorizer_events() {
        with_request(|r| {
            let v = |s: IdentitySource| r.identity_value(&s);
            assert_eq!(
                v(IdentitySource::Header("header2".into())).as_deref(),
                Some("value1,value2")
            );
            assert_eq!(v(IdentitySource::Header("absent".into())), None);
            assert_eq!(
                v(IdentitySource::Query("parameter1".into())).as_deref(),
                Some("value1,value2")
            );
            // Query names are case-sensitive; an empty value counts as missing.
            assert_eq!(v(IdentitySource::Query("Parameter1".into())), None);
            assert_eq!(v(IdentitySource::Query("flag".into())), None);
            assert_eq!(
                v(IdentitySource::StageVariable("stageVariable1".into())).as_deref(),
                Some("value1")
            );
            assert_eq!(
                v(IdentitySource::Context(ContextVariable::SourceIp)).as_deref(),
                Some("192.0.2.1")
            );
            assert_eq!(
                v(IdentitySource::Context(ContextVariable::RouteKey)).as_deref(),
                Some("POST /my/{id}")
            );
            let arn = r.method_arn();
            assert_eq!(
                arn,
                "arn:aws:execute-api:us-east-1:123456789012:api-id/prod/POST/my/a%20b"
            );
            let t: Value =
                serde_json::from_slice(&EventRequest::token_authorizer("tok", &arn)).expect("json");
            assert_eq!(
                t,
                json!({"type": "TOKEN", "authorizationToken": "tok", "methodArn": arn})
            );
            let ids = ["u".to_string(), "1".to_string()];
            let e: Value =
                serde_json::from_slice(&r.request_authorizer_v1(&arn, true, &ids)).expect("json");
            assert_eq!(e["identitySource"], "u,1");
            assert_eq!(e["authorizationToken"], "u,1");
            assert_eq!(e["version"], "1.0");
            assert_eq!(e["requestContext"]["identity"]["apiKey"], Value::Null);
            let e: Value =
                serde_json::from_slice(&r.request_authorizer_v2(&arn, &ids)).expect("json");
            assert_eq!(e["identitySource"], json!(["u", "1"]));
            assert_eq!(e["routeArn"], arn.as_str());
            assert_eq!(e["type"], "REQUEST");
        });
    }

    #[test]
    fn media_types() {
        let types: Vec<Box<str>> = vec!["image/png".into(), "application/*".into()];
        assert!(is_binary_type(b"image/png", &types));
        assert!(is_binary_type(b"Image/PNG; charset=x", &types));
        assert!(is_binary_type(b"application/octet-stream", &types));
        assert!(!is_binary_type(b"image/jpeg", &types));
        assert!(!is_binary_type(b"applicationx/y", &types));
        assert!(!is_binary_type(b"", &types));
        assert!(accepts_binary(b"text/html, image/png;q=0.9", &types));
        assert!(!accepts_binary(b"*/*", &types));
        assert!(is_binary_type(b"text/plain", &["*/*".into()]));
        assert_eq!(percent_decode("a%2Fb%zz%4"), "a/b%zz%4");
    }

    /// The events written straight as JSON are the value-tree events, for varied requests.
    #[test]
    fn written_events_equal_the_value_events() {
        let odd: [httparse::Header<'static>; 9] = [
            httparse::Header {
                name: "host",
                value: b"plain",
            },
            httparse::Header {
                name: "X-Dup",
                value: b"1",
            },
            httparse::Header {
                name: "x-dup",
                value: b"2",
            },
            httparse::Header {
                name: "X-Dup",
                value: b"3",
            },
            httparse::Header {
                name: "cookie",
                value: b"a=1;; b=2 ",
            },
            httparse::Header {
                name: "COOKIE",
                value: b"c=\"q\"",
            },
            httparse::Header {
                name: "x-bin",
                value: b"a\xffb\x01\"\\",
            },
            httparse::Header {
                name: "x-empty",
                value: b"",
            },
            httparse::Header {
                name: "x-ctl",
                value: b"tab\there",
            },
        ];
        let queries = [
            None,
            Some(""),
            Some("a=1&a=2&b&&c=%41%zz&a=3&%62=x&q=%22%5C"),
            Some("only"),
        ];
        with_request(|base| {
            for headers in [&HEADERS[..], &odd[..], &[][..]] {
                for query in queries {
                    for (params, vars) in [(true, true), (false, false)] {
                        let r = EventRequest {
                            headers,
                            query,
                            params: if params { base.params } else { &[] },
                            param_names: if params { base.param_names } else { &[] },
                            stage_variables: if vars { base.stage_variables } else { &[] },
                            ..*base
                        };
                        for (body, binary) in [
                            (&b""[..], false),
                            (b"hi \"x\"", false),
                            (b"\xff", false),
                            (b"ab", true),
                        ] {
                            let what = format!("{headers:?} {query:?} {params} {body:?} {binary}");
                            for version in [false, true] {
                                let mut out = Vec::new();
                                r.write_proxy_v1(version, &mut out);
                                // The caller adds the authorizer inside requestContext.
                                out.extend_from_slice(
                                    br#","authorizer":{"claims":null,"scopes":null}"#,
                                );
                                close_event(&mut out, body, binary);
                                let written: Value =
                                    serde_json::from_slice(&out).unwrap_or_else(|e| {
                                        panic!("{e}: {}", String::from_utf8_lossy(&out))
                                    });
                                let mut e = r.proxy_v1(version);
                                if let Some(Value::Object(rc)) = e.get_mut("requestContext") {
                                    rc.insert(
                                        "authorizer".into(),
                                        json!({"claims": null, "scopes": null}),
                                    );
                                }
                                let built: Value =
                                    serde_json::from_slice(&finish(e, body, binary)).expect("json");
                                assert_eq!(written, built, "1.0 {what}");
                            }
                            let mut out = Vec::new();
                            r.write_proxy_v2(&mut out);
                            close_event(&mut out, body, binary);
                            let written: Value = serde_json::from_slice(&out).unwrap_or_else(|e| {
                                panic!("{e}: {}", String::from_utf8_lossy(&out))
                            });
                            let built: Value =
                                serde_json::from_slice(&finish(r.proxy_v2(), body, binary))
                                    .expect("json");
                            assert_eq!(written, built, "2.0 {what}");
                        }
                    }
                }
            }
        });
    }
}
