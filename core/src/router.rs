//! The compiled route trie: API Gateway route keys (`GET /pets/{id}`, `ANY /{proxy+}`,
//! `$default`) compiled once per API and matched per request with borrowed path parameters.
//!
//! CONTRACT (filled in by the router work; signatures are fixed, other modules rely on them):
//! - `parse_route_key` parses a route key and says why it is bad.
//! - `RouterBuilder::add` refuses duplicates and greedy-not-last; `build` gives an immutable,
//!   `Clone + Send` `Router`.
//! - `Router::find` never allocates (params live in a `SmallVec` inline up to 4) and its cost is
//!   proportional to the path's segment count, not to the number of routes.

use crate::method::Method;
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
    Route { method: RouteMethod, segments: Vec<Segment> },
}

/// Why a route key is refused; `Display` is a plain sentence for `tollgate validate`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteKeyError {
    /// Placeholder variant list; the router work defines the real ones.
    Invalid(String),
}

impl std::fmt::Display for RouteKeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteKeyError::Invalid(s) => f.write_str(s),
        }
    }
}

/// Parses `METHOD /path` (method: GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS or ANY) or `$default`.
pub fn parse_route_key(key: &str) -> Result<RouteKey, RouteKeyError> {
    let _ = key;
    todo!("router work")
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

#[derive(Default)]
pub struct RouterBuilder {}

impl RouterBuilder {
    pub fn new() -> Self {
        RouterBuilder::default()
    }

    /// Adds a route; `Err` (a sentence) on a duplicate route key (same method + same shape:
    /// `/pets/{a}` and `/pets/{b}` are duplicates).
    pub fn add(&mut self, key: &RouteKey, value: u32) -> Result<(), String> {
        let _ = (key, value);
        todo!("router work")
    }

    pub fn build(self) -> Router {
        todo!("router work")
    }
}

#[derive(Clone, Debug)]
pub struct Router {}

impl Router {
    /// Finds the route for `method` and `path` (the path after any stage or base-path prefix,
    /// starting with `/`, without the query string). Priority as API Gateway documents it:
    /// literal segment > `{param}` > `{proxy+}` (backtracking when a deeper level fails), exact
    /// method > `ANY` at the same route, then `$default`. A trailing `/` is ignored.
    pub fn find<'p>(&self, method: Method, path: &'p str) -> Option<Match<'p>> {
        let _ = (method, path);
        todo!("router work")
    }

    /// Parameter names of the route added with `value`, in the same order as `Match::params`.
    pub fn param_names(&self, value: u32) -> &[Box<str>] {
        let _ = value;
        todo!("router work")
    }
}
