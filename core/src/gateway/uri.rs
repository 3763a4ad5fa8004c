//! Integration URI templates: the backend path and query of an `http_proxy` target with its
//! `{param}` / `{greedy}` references resolved to parameter indexes at load time
//! (`PathTemplate`), and the `{name}` tokenizer the config checks share (`tokenize`).

/// The backend path + query of an `http_proxy` integration, with stage variables already
/// substituted; only `{param}` / `{greedy}` references remain.
#[derive(Clone, Debug, PartialEq)]
pub struct PathTemplate {
    /// The path as literal runs and parameter references (unused when `request_path` is set).
    path: Box<[Part]>,
    /// Send the client's path (after the stage prefix) instead of `path`: HTTP APIs whose
    /// integration URI has no path.
    request_path: bool,
    /// The template's own query string, if it has a non-empty one.
    query: Option<Box<[Part]>>,
}

/// One piece of a compiled template.
#[derive(Clone, Debug, PartialEq)]
enum Part {
    Text(Box<str>),
    /// Index into the route's parameters (`Router::param_names` order).
    Param(usize),
}

/// A piece of template text: a literal run or a `{name}` reference (`at`: offset of the `{`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Token<'a> {
    Text(&'a str),
    Param { name: &'a str, at: usize },
}

/// Splits template text into literal runs and `{name}` references; `Err((offset, reason))` on
/// an unbalanced or empty brace.
pub(crate) fn tokenize(text: &str) -> Result<Vec<Token<'_>>, (usize, String)> {
    let mut tokens = Vec::new();
    let mut pos = 0;
    while let Some(i) = text[pos..].find(['{', '}']) {
        let at = pos + i;
        if text[at..].starts_with('}') {
            return Err((at, "`}` without a matching `{`".to_string()));
        }
        let Some(len) = text[at + 1..].find(['{', '}']) else {
            return Err((at, "`{` is never closed".to_string()));
        };
        let end = at + 1 + len;
        if text[end..].starts_with('{') {
            return Err((at, "`{` is never closed".to_string()));
        }
        let name = &text[at + 1..end];
        if name.is_empty() {
            return Err((
                at,
                "empty `{}`: write `{name}` with a path parameter name".to_string(),
            ));
        }
        if at > pos {
            tokens.push(Token::Text(&text[pos..at]));
        }
        tokens.push(Token::Param { name, at });
        pos = end + 1;
    }
    if pos < text.len() {
        tokens.push(Token::Text(&text[pos..]));
    }
    Ok(tokens)
}

/// Why `name` (from a `{name}` in an integration URI) is not one of `params`.
pub(crate) fn unknown_param_reason(name: &str, params: &[&str]) -> String {
    if let Some(base) = name.strip_suffix('+') {
        if params.contains(&base) {
            return format!(
                "write `{{{base}}}` (without `+`) to use the greedy path parameter `{{{name}}}`"
            );
        }
    }
    if params.is_empty() {
        format!("`{{{name}}}` is not a path parameter of the route (it has none)")
    } else {
        let list: Vec<String> = params.iter().map(|p| format!("`{{{p}}}`")).collect();
        format!(
            "`{{{name}}}` is not a path parameter of the route (it has {})",
            list.join(", ")
        )
    }
}

impl PathTemplate {
    /// Compiles a backend path (`/pets/{petId}`) and optional query (`a=1&id={petId}`).
    /// `params` are the route's parameter names in `Router::param_names` order (a greedy
    /// `{proxy+}` is named `proxy` and referenced as `{proxy}`). With `request_path`, `path` is
    /// ignored and the client's path is sent (HTTP APIs whose URI has no path). An empty `path`
    /// means `/`. `Err` is a plain sentence.
    pub fn new(
        path: &str,
        query: Option<&str>,
        params: &[&str],
        request_path: bool,
    ) -> Result<PathTemplate, String> {
        let path = if path.is_empty() { "/" } else { path };
        let path = if request_path {
            Box::default()
        } else {
            compile_parts(path, params)?
        };
        let query = match query {
            Some(q) if !q.is_empty() => Some(compile_parts(q, params)?),
            _ => None,
        };
        Ok(PathTemplate {
            path,
            request_path,
            query,
        })
    }

    /// Appends the backend request target to `out`: the template path with `params`
    /// substituted (names resolved at compile time to indexes into `params`), then the query:
    /// the template's own query (if any) and the client's `query` (passed through verbatim),
    /// joined with `&`. For HTTP APIs whose URI has no path, `request_path` (the client path
    /// after the stage prefix, as received: repeated `/` kept) is used as the path, as API
    /// Gateway sends the full request path.
    pub fn write(
        &self,
        params: &[&str],
        request_path: &str,
        query: Option<&str>,
        out: &mut Vec<u8>,
    ) {
        if self.request_path {
            if request_path.is_empty() {
                out.push(b'/');
            } else {
                out.extend_from_slice(request_path.as_bytes());
            }
        } else {
            write_parts(&self.path, params, out);
        }
        let mut separator = b'?';
        if let Some(q) = &self.query {
            out.push(b'?');
            write_parts(q, params, out);
            separator = b'&';
        }
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            out.push(separator);
            out.extend_from_slice(q.as_bytes());
        }
    }
}

fn compile_parts(text: &str, params: &[&str]) -> Result<Box<[Part]>, String> {
    let tokens = tokenize(text).map_err(|(_, reason)| reason)?;
    let mut parts = Vec::with_capacity(tokens.len());
    for t in tokens {
        match t {
            Token::Text(s) => parts.push(Part::Text(s.into())),
            Token::Param { name, .. } => match params.iter().position(|p| *p == name) {
                Some(i) => parts.push(Part::Param(i)),
                None => return Err(unknown_param_reason(name, params)),
            },
        }
    }
    Ok(parts.into_boxed_slice())
}

fn write_parts(parts: &[Part], params: &[&str], out: &mut Vec<u8>) {
    for p in parts {
        match p {
            Part::Text(s) => out.extend_from_slice(s.as_bytes()),
            Part::Param(i) => {
                if let Some(v) = params.get(*i) {
                    out.extend_from_slice(v.as_bytes());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(
        path: &str,
        query: Option<&str>,
        params: &[&str],
        request_path: bool,
    ) -> PathTemplate {
        match PathTemplate::new(path, query, params, request_path) {
            Ok(t) => t,
            Err(e) => panic!("{path:?} {query:?}: {e}"),
        }
    }

    fn written(
        t: &PathTemplate,
        params: &[&str],
        request_path: &str,
        query: Option<&str>,
    ) -> String {
        let mut out = b"GET ".to_vec();
        t.write(params, request_path, query, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn template_substitutes_params() {
        let t = template("/pets/{petId}", None, &["petId"], false);
        assert_eq!(written(&t, &["7"], "/pets/7", None), "GET /pets/7");
        let t = template("/u/{a}/x/{b}/{a}.json", None, &["a", "b"], false);
        assert_eq!(
            written(&t, &["1", "two"], "/", None),
            "GET /u/1/x/two/1.json"
        );
        // Values are passed as received (still percent-encoded).
        assert_eq!(
            written(&t, &["a%2Fb", "c"], "/", None),
            "GET /u/a%2Fb/x/c/a%2Fb.json"
        );
        // Parameters in the template query too.
        let t = template("/search", Some("id={id}&v=1"), &["id"], false);
        assert_eq!(written(&t, &["9"], "/", None), "GET /search?id=9&v=1");
    }

    #[test]
    fn template_greedy_proxy() {
        let t = template("/petstore/{proxy}", None, &["proxy"], false);
        assert_eq!(
            written(&t, &["pets/1/toys"], "/pets/1/toys", None),
            "GET /petstore/pets/1/toys"
        );
        let t = template("/{proxy}", None, &["tenant", "proxy"], false);
        assert_eq!(
            written(&t, &["acme", "a/b"], "/acme/a/b", Some("x=1")),
            "GET /a/b?x=1"
        );
        assert_eq!(
            PathTemplate::new("/{proxy+}", None, &["proxy"], false),
            Err(
                "write `{proxy}` (without `+`) to use the greedy path parameter `{proxy+}`"
                    .to_string()
            )
        );
        assert_eq!(
            PathTemplate::new("/{proxy}", None, &["id"], false),
            Err("`{proxy}` is not a path parameter of the route (it has `{id}`)".to_string())
        );
    }

    #[test]
    fn template_query_merge() {
        let t = template("/a", Some("x=1"), &[], false);
        assert_eq!(written(&t, &[], "/a", Some("y=2&z")), "GET /a?x=1&y=2&z");
        assert_eq!(written(&t, &[], "/a", None), "GET /a?x=1");
        assert_eq!(written(&t, &[], "/a", Some("")), "GET /a?x=1");
        let t = template("/a", None, &[], false);
        assert_eq!(written(&t, &[], "/a", Some("y=2")), "GET /a?y=2");
        assert_eq!(written(&t, &[], "/a", Some("")), "GET /a");
        // A URI ending in `?` has no query of its own.
        let t = template("/a", Some(""), &[], false);
        assert_eq!(written(&t, &[], "/a", Some("y=2")), "GET /a?y=2");
    }

    #[test]
    fn template_full_request_path() {
        // HTTP API URI without a path: the client's path (after the stage) is sent.
        let t = template("", None, &[], true);
        assert_eq!(
            written(&t, &[], "/store/checkout", Some("a=1")),
            "GET /store/checkout?a=1"
        );
        let t = template("/", Some("src=gw"), &[], true);
        assert_eq!(written(&t, &[], "/x/y", Some("a=1")), "GET /x/y?src=gw&a=1");
        // REST API URI without a path: `/` as written.
        let t = template("", None, &[], false);
        assert_eq!(written(&t, &[], "/store/checkout", None), "GET /");
    }

    #[test]
    fn template_syntax_errors() {
        for (path, reason) in [
            ("/a/{id", "`{` is never closed"),
            ("/a/{i{d}", "`{` is never closed"),
            ("/a/id}", "`}` without a matching `{`"),
            (
                "/a/{}",
                "empty `{}`: write `{name}` with a path parameter name",
            ),
        ] {
            assert_eq!(
                PathTemplate::new(path, None, &["id"], false),
                Err(reason.to_string()),
                "{path}"
            );
        }
    }
}
