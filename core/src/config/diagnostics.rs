//! Positions and error collection: values tagged with their byte span in the config text, the
//! list of errors found so far, and the conversion of byte offsets to 1-based line/column.

use super::ConfigError;
use std::ops::Range;

/// A value and where it was written (byte offsets into the config text).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Spanned<T> {
    pub value: T,
    pub span: Range<usize>,
}

impl<T> Spanned<T> {
    pub fn new(value: T, span: Range<usize>) -> Self {
        Spanned { value, span }
    }
}

/// Every error found in one config text, each at a byte span.
pub(crate) struct Diagnostics<'t> {
    text: &'t str,
    errors: Vec<(Range<usize>, String)>,
}

impl<'t> Diagnostics<'t> {
    pub fn new(text: &'t str) -> Self {
        Diagnostics {
            text,
            errors: Vec::new(),
        }
    }

    pub fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.errors.push((span, message.into()));
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// The span of `value[range]` inside a string value written at `at`: exact when the string
    /// is written without escapes (`"..."` or `'...'`), else the start of the whole value.
    pub fn inside(&self, at: &Spanned<String>, range: Range<usize>) -> Range<usize> {
        let raw = self.text.get(at.span.clone()).unwrap_or("");
        let plain =
            raw.len() == at.value.len() + 2 && raw.get(1..raw.len() - 1) == Some(at.value.as_str());
        if plain {
            at.span.start + 1 + range.start..at.span.start + 1 + range.end
        } else {
            at.span.clone()
        }
    }

    /// The errors as `ConfigError`s in the order they appear in the text, duplicates dropped.
    pub fn into_errors(self, file: &str) -> Vec<ConfigError> {
        let mut errors = self.errors;
        errors.sort_by_key(|(span, _)| span.start);
        errors.dedup_by(|a, b| a.0.start == b.0.start && a.1 == b.1);
        let lines = LineIndex::new(self.text);
        errors
            .into_iter()
            .map(|(span, message)| {
                let (line, column) = lines.position(span.start);
                ConfigError {
                    file: file.to_string(),
                    line,
                    column,
                    message,
                }
            })
            .collect()
    }
}

/// Byte offset → 1-based line and column (columns count characters, not bytes).
struct LineIndex<'t> {
    text: &'t str,
    starts: Vec<usize>,
}

impl<'t> LineIndex<'t> {
    fn new(text: &'t str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, starts }
    }

    fn position(&self, offset: usize) -> (u32, u32) {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts[line - 1];
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (
            u32::try_from(line).unwrap_or(u32::MAX),
            u32::try_from(column + 1).unwrap_or(u32::MAX),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns() {
        let idx = LineIndex::new("ab\ncdé\n\nx");
        assert_eq!(idx.position(0), (1, 1));
        assert_eq!(idx.position(1), (1, 2));
        assert_eq!(idx.position(3), (2, 1));
        assert_eq!(idx.position(7), (2, 4)); // after the 2-byte é
        assert_eq!(idx.position(8), (3, 1));
        assert_eq!(idx.position(9), (4, 1));
        assert_eq!(idx.position(100), (4, 2));
    }

    #[test]
    fn spans_inside_plain_strings() {
        let text = r#"uri = "http://x/{a}""#;
        let d = Diagnostics::new(text);
        let at = Spanned::new("http://x/{a}".to_string(), 6..20);
        assert_eq!(d.inside(&at, 9..12), 16..19);
        let escaped = r#"uri = "http://x/\u007Ba}""#;
        let d = Diagnostics::new(escaped);
        let at = Spanned::new("http://x/{a}".to_string(), 6..escaped.len());
        assert_eq!(d.inside(&at, 9..12), at.span);
    }
}
