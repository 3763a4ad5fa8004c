//! The compiled route trie: API Gateway route keys (`GET /pets/{id}`, `ANY /{proxy+}`,
//! `$default`) compiled once per API and matched per request with borrowed path parameters.
//!
//! Nodes live in one `Vec` indexed by `u32`; literal children are found through an `AHashMap`,
//! so a match costs one hash lookup per path segment whatever the number of routes. Priority:
//! literal > `{param}` > `{greedy+}` with backtracking, exact method > `ANY`, then `$default`.
//! Empty path segments (`//`, a trailing `/`) are skipped during the walk, as API Gateway
//! ignores them.

use crate::method::Method;
use ahash::AHashMap;
use smallvec::SmallVec;

/// Which methods a route answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouteMethod {
    Any,
    One(Method),
}

/// One segment of a route path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Segment {
    Literal(String),
    /// `{name}`: exactly one non-empty segment.
    Param(String),
    /// `{name+}`: one or more segments; must be last.
    Greedy(String),
}

/// A parsed route key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RouteKey {
    /// `$default`: catches what no other route matched (HTTP APIs).
    Default,
    Route {
        method: RouteMethod,
        segments: Vec<Segment>,
    },
}

/// Why a route key is refused; `Display` is a plain sentence for `tollgate validate`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteKeyError {
    Invalid(String),
}

impl std::fmt::Display for RouteKeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteKeyError::Invalid(s) => f.write_str(s),
        }
    }
}

fn bad(msg: String) -> Result<RouteKey, RouteKeyError> {
    Err(RouteKeyError::Invalid(msg))
}

fn literal_char_ok(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_-.,:~@!$&'()*+=%".contains(c)
}

/// Parses `METHOD /path` (method: GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS or ANY) or `$default`.
pub fn parse_route_key(key: &str) -> Result<RouteKey, RouteKeyError> {
    if key == "$default" {
        return Ok(RouteKey::Default);
    }
    let Some((m, path)) = key.split_once(' ') else {
        return bad(format!(
            "route key `{key}` must be `METHOD /path` (e.g. `GET /pets/{{petId}}`) or `$default`"
        ));
    };
    let method = if m == "ANY" {
        RouteMethod::Any
    } else {
        match Method::from_route_key(m) {
            Some(x) => RouteMethod::One(x),
            None => {
                return bad(format!(
                    "unknown method `{m}` in route key: use GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS or ANY"
                ))
            }
        }
    };
    if !path.starts_with('/') {
        return bad(format!("route path `{path}` must start with `/`"));
    }
    if path.contains(['?', '#']) {
        return bad(format!(
            "route path `{path}` may not contain a query string or fragment"
        ));
    }
    let mut segments = Vec::new();
    if path != "/" {
        if path.ends_with('/') {
            return bad(format!("route path `{path}` may not end with `/`"));
        }
        let parts: Vec<&str> = path[1..].split('/').collect();
        let mut names: Vec<&str> = Vec::new();
        for (i, seg) in parts.iter().enumerate() {
            if seg.is_empty() {
                return bad(format!("route path `{path}` has an empty segment (`//`)"));
            }
            if let Some(inner) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                let (name, greedy) = match inner.strip_suffix('+') {
                    Some(n) => (n, true),
                    None => (inner, false),
                };
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return bad(format!(
                        "path parameter `{seg}` must be `{{name}}` or `{{name+}}` with a name of letters, digits and `_`"
                    ));
                }
                if names.contains(&name) {
                    return bad(format!("path parameter `{name}` appears twice in `{path}`"));
                }
                names.push(name);
                if greedy {
                    if i + 1 != parts.len() {
                        return bad(format!(
                            "greedy parameter `{seg}` must be the last segment of `{path}`"
                        ));
                    }
                    segments.push(Segment::Greedy(name.to_string()));
                } else {
                    segments.push(Segment::Param(name.to_string()));
                }
            } else if seg.contains(['{', '}']) {
                return bad(format!(
                    "segment `{seg}` mixes text and a parameter: a parameter must be a whole segment"
                ));
            } else if let Some(c) = seg.chars().find(|&c| !literal_char_ok(c)) {
                return bad(format!(
                    "character `{c}` is not allowed in route path `{path}`"
                ));
            } else {
                segments.push(Segment::Literal(seg.to_string()));
            }
        }
    }
    Ok(RouteKey::Route { method, segments })
}

/// Path parameters of a match, in the order their segments appear in the route key.
pub type Params<'p> = SmallVec<[&'p str; 4]>;

/// A successful match: the value given to `add`, and the parameter values (borrowed from the path).
/// For a greedy parameter the value is the rest of the path without its leading `/`.
#[derive(Debug, PartialEq, Eq)]
pub struct Match<'p> {
    pub value: u32,
    pub params: Params<'p>,
}

const NONE: u32 = u32::MAX;
const ANY_SLOT: usize = 7;

#[derive(Clone, Debug)]
struct Node {
    literals: AHashMap<Box<str>, u32>,
    param: u32,
    /// Routes of a greedy child ending here (method table).
    greedy: [u32; 8],
    /// Routes ending exactly at this node.
    methods: [u32; 8],
}

impl Node {
    fn new() -> Node {
        Node {
            literals: AHashMap::new(),
            param: NONE,
            greedy: [NONE; 8],
            methods: [NONE; 8],
        }
    }
}

fn slot(m: RouteMethod) -> usize {
    match m {
        RouteMethod::Any => ANY_SLOT,
        RouteMethod::One(x) => x as usize,
    }
}

fn pick(table: &[u32; 8], method: Method) -> Option<u32> {
    // `ANY` covers the seven named methods only; others reach `$default` alone.
    if method == Method::Other {
        return None;
    }
    let exact = table[method as usize];
    if exact != NONE {
        return Some(exact);
    }
    (table[ANY_SLOT] != NONE).then_some(table[ANY_SLOT])
}

pub struct RouterBuilder {
    nodes: Vec<Node>,
    default: u32,
    names: AHashMap<u32, Box<[Box<str>]>>,
}

impl Default for RouterBuilder {
    fn default() -> Self {
        RouterBuilder {
            nodes: vec![Node::new()],
            default: NONE,
            names: AHashMap::new(),
        }
    }
}

impl RouterBuilder {
    pub fn new() -> Self {
        RouterBuilder::default()
    }

    /// Adds a route; `Err` (a sentence) on a duplicate route key (same method + same shape:
    /// `/pets/{a}` and `/pets/{b}` are duplicates).
    pub fn add(&mut self, key: &RouteKey, value: u32) -> Result<(), String> {
        let (method, segments) = match key {
            RouteKey::Default => {
                if self.default != NONE {
                    return Err("duplicate `$default` route".to_string());
                }
                self.default = value;
                self.names.insert(value, Box::new([]));
                return Ok(());
            }
            RouteKey::Route { method, segments } => (*method, segments),
        };
        let mut node = 0usize;
        let mut names = Vec::new();
        let mut greedy_end = false;
        for seg in segments {
            match seg {
                Segment::Literal(s) => {
                    let next = self.nodes.len() as u32;
                    let child = *self.nodes[node]
                        .literals
                        .entry(s.as_str().into())
                        .or_insert(next);
                    if child == next {
                        self.nodes.push(Node::new());
                    }
                    node = child as usize;
                }
                Segment::Param(n) => {
                    names.push(n.as_str().into());
                    if self.nodes[node].param == NONE {
                        self.nodes[node].param = self.nodes.len() as u32;
                        self.nodes.push(Node::new());
                    }
                    node = self.nodes[node].param as usize;
                }
                Segment::Greedy(n) => {
                    names.push(n.as_str().into());
                    greedy_end = true;
                }
            }
        }
        let s = slot(method);
        let table = if greedy_end {
            &mut self.nodes[node].greedy
        } else {
            &mut self.nodes[node].methods
        };
        if table[s] != NONE {
            return Err("duplicate route: another route has the same method and path".to_string());
        }
        table[s] = value;
        self.names.insert(value, names.into_boxed_slice());
        Ok(())
    }

    pub fn build(self) -> Router {
        Router {
            nodes: self.nodes,
            default: self.default,
            names: self.names,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Router {
    nodes: Vec<Node>,
    default: u32,
    names: AHashMap<u32, Box<[Box<str>]>>,
}

impl Router {
    /// Finds the route for `method` and `path` (the path after any stage or base-path prefix,
    /// starting with `/`, without the query string). Priority as API Gateway documents it:
    /// literal segment > `{param}` > `{proxy+}` (backtracking when a deeper level fails), exact
    /// method > `ANY` at the same route, then `$default`.
    ///
    /// Empty segments are ignored, as API Gateway does: `/pets//1/`, `//pets/1` and `/pets/1`
    /// are the same route. The walk skips them in place (no normalised copy of the path), so
    /// parameter values are slices of `path`: a `{param}` is one non-empty segment; a greedy
    /// value runs from its first non-empty segment to the last one, with any repeated `/`
    /// inside it as received.
    pub fn find<'p>(&self, method: Method, path: &'p str) -> Option<Match<'p>> {
        let p = path.trim_end_matches('/');
        let mut params = Params::new();
        if let Some(v) = self.walk(0, p, method, &mut params) {
            return Some(Match { value: v, params });
        }
        (self.default != NONE).then(|| Match {
            value: self.default,
            params: Params::new(),
        })
    }

    /// Matches `rest` (the remaining path without trailing `/`; leading `/`s, i.e. empty
    /// segments, are skipped; empty = this node) below `node`.
    fn walk<'p>(
        &self,
        node: usize,
        rest: &'p str,
        method: Method,
        params: &mut Params<'p>,
    ) -> Option<u32> {
        let n = &self.nodes[node];
        let rest = rest.trim_start_matches('/');
        if rest.is_empty() {
            return pick(&n.methods, method);
        }
        let (seg, tail) = match memchr::memchr(b'/', rest.as_bytes()) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if let Some(&child) = n.literals.get(seg) {
            if let Some(v) = self.walk(child as usize, tail, method, params) {
                return Some(v);
            }
        }
        if n.param != NONE {
            params.push(seg);
            if let Some(v) = self.walk(n.param as usize, tail, method, params) {
                return Some(v);
            }
            params.pop();
        }
        if let Some(v) = pick(&n.greedy, method) {
            params.push(rest);
            return Some(v);
        }
        None
    }

    /// Parameter names of the route added with `value`, in the same order as `Match::params`.
    pub fn param_names(&self, value: u32) -> &[Box<str>] {
        self.names.get(&value).map_or(&[], |b| b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(keys: &[&str]) -> Router {
        let mut b = RouterBuilder::new();
        for (i, k) in keys.iter().enumerate() {
            let key = parse_route_key(k).expect("valid key");
            b.add(&key, i as u32).expect("no duplicate");
        }
        b.build()
    }

    #[test]
    fn matching_table() {
        let guide = [
            "GET /pets/dog/1",
            "GET /pets/dog/{id}",
            "GET /pets/{proxy+}",
            "ANY /{proxy+}",
            "$default",
        ];
        let other = [
            "GET /a/{x}/c",
            "GET /a/b/d",
            "GET /",
            "GET /pets",
            "ANY /pets",
            "GET /u/{a}/v/{b}",
            "POST /orders/{id}/items",
        ];
        // (routes, method, path, expected route key index, params)
        #[allow(clippy::type_complexity)]
        let rows: &[(&[&str], Method, &str, Option<usize>, &[&str])] = &[
            (&guide, Method::Get, "/pets/dog/1", Some(0), &[]),
            (&guide, Method::Get, "/pets/dog/2", Some(1), &["2"]),
            (&guide, Method::Get, "/pets/cat/1", Some(2), &["cat/1"]),
            (&guide, Method::Post, "/test/5", Some(3), &["test/5"]),
            (
                &guide,
                Method::Post,
                "/pets/dog/1",
                Some(3),
                &["pets/dog/1"],
            ),
            (&guide, Method::Get, "/", Some(4), &[]),
            (&guide, Method::Other, "/x", Some(4), &[]),
            (&other, Method::Get, "/a/b/c", Some(0), &["b"]),
            (&other, Method::Get, "/a/b/d", Some(1), &[]),
            (&other, Method::Get, "/a/z/d", None, &[]),
            (&other, Method::Get, "/", Some(2), &[]),
            (&other, Method::Get, "/pets", Some(3), &[]),
            (&other, Method::Get, "/pets/", Some(3), &[]),
            (&other, Method::Delete, "/pets", Some(4), &[]),
            (&other, Method::Post, "/", None, &[]),
            (&other, Method::Get, "/u/1/v/2", Some(5), &["1", "2"]),
            (&other, Method::Post, "/orders/7/items", Some(6), &["7"]),
            (&other, Method::Get, "/orders/7/items", None, &[]),
            (&other, Method::Get, "/nothing", None, &[]),
            (&other, Method::Get, "/a//c", None, &[]),
        ];
        for (routes, method, path, want, params) in rows {
            let r = router(routes);
            let got = r.find(*method, path);
            match (want, got) {
                (None, None) => {}
                (Some(w), Some(m)) => {
                    assert_eq!(m.value as usize, *w, "{method:?} {path} in {routes:?}");
                    assert_eq!(m.params.as_slice(), *params, "{method:?} {path}");
                }
                (w, g) => panic!("{method:?} {path}: want {w:?}, got {g:?}"),
            }
        }
    }

    #[test]
    fn empty_segments_are_ignored() {
        let routes = [
            "GET /pets",
            "GET /pets/{id}",
            "ANY /files/{proxy+}",
            "GET /",
            "GET /a/{x}/c",
        ];
        let r = router(&routes);
        // (path, expected route index, params): parameter values are slices of the path.
        #[allow(clippy::type_complexity)]
        let rows: &[(&str, Option<u32>, &[&str])] = &[
            ("/pets", Some(0), &[]),
            ("/pets/", Some(0), &[]),
            ("//pets", Some(0), &[]),
            ("/pets//", Some(0), &[]),
            ("///pets///1//", Some(1), &["1"]),
            ("/pets/1/", Some(1), &["1"]),
            ("/files/a/b", Some(2), &["a/b"]),
            ("/files//a//b/", Some(2), &["a//b"]),
            ("//files///a", Some(2), &["a"]),
            ("/files/a/b//", Some(2), &["a/b"]),
            // A greedy parameter needs a non-empty segment.
            ("/files//", None, &[]),
            ("/", Some(3), &[]),
            ("//", Some(3), &[]),
            ("///", Some(3), &[]),
            // An empty segment is not a `{param}` value: `/a//c` has two segments.
            ("/a//c", None, &[]),
            ("/a//b//c", Some(4), &["b"]),
        ];
        for (path, want, params) in rows {
            let got = r.find(Method::Get, path);
            match (want, got) {
                (None, None) => {}
                (Some(w), Some(m)) => {
                    assert_eq!(m.value, *w, "{path}");
                    assert_eq!(m.params.as_slice(), *params, "{path}");
                }
                (w, g) => panic!("{path}: want {w:?}, got {g:?}"),
            }
        }
        // `$default` still takes what no route matched, empty segments or not.
        let r = router(&["GET /pets", "$default"]);
        let m = r.find(Method::Get, "//x//").expect("$default");
        assert_eq!((m.value, m.params.len()), (1, 0));
        assert_eq!(r.find(Method::Get, "//pets//").map(|m| m.value), Some(0));
    }

    #[test]
    fn greedy_needs_a_segment_and_param_names_line_up() {
        let r = router(&["ANY /{proxy+}", "GET /x/{a}/{rest+}"]);
        assert!(r.find(Method::Get, "/").is_none());
        let m = r.find(Method::Get, "/x/1/2/3").expect("match");
        assert_eq!(m.value, 1);
        assert_eq!(m.params.as_slice(), &["1", "2/3"]);
        let names: Vec<&str> = r.param_names(1).iter().map(|s| &**s).collect();
        assert_eq!(names, ["a", "rest"]);
    }

    #[test]
    fn duplicates_refused() {
        let mut b = RouterBuilder::new();
        let k = |s| parse_route_key(s).expect("valid");
        b.add(&k("GET /pets/{a}"), 0).expect("first");
        assert!(b.add(&k("GET /pets/{b}"), 1).is_err());
        b.add(&k("ANY /pets/{b}"), 2).expect("ANY differs");
        b.add(&k("$default"), 3).expect("default");
        assert!(b.add(&k("$default"), 4).is_err());
    }

    #[test]
    fn route_key_refusals() {
        let rows = [
            ("GET/pets", "must be `METHOD /path`"),
            ("FETCH /pets", "unknown method `FETCH`"),
            ("get /pets", "unknown method `get`"),
            ("GET pets", "must start with `/`"),
            ("GET /pets?x=1", "query string"),
            ("GET /pets/", "may not end with `/`"),
            ("GET /a//b", "empty segment"),
            ("GET /res{p}", "mixes text and a parameter"),
            ("GET /{proxy+}/child", "must be the last segment"),
            ("GET /{a}/{a}", "appears twice"),
            ("GET /{a-b}", "letters, digits"),
            ("GET /a b", "not allowed"),
        ];
        for (key, want) in rows {
            let err = parse_route_key(key).expect_err(key).to_string();
            assert!(err.contains(want), "{key}: {err}");
        }
        assert_eq!(parse_route_key("$default"), Ok(RouteKey::Default));
    }
}
