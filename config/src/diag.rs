//! Positioned diagnostics: `PATH:LINE:COL: message`, every problem of a file at once.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem found in a configuration file.
///
/// `line` and `col` are 1-based; `col` counts characters (not bytes) from the start of the line,
/// so it matches what an editor shows for UTF-8 text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}:{col}: {message}", path.display())]
pub struct Diagnostic {
    pub path: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// Every problem found in one file, sorted by position. Displays one diagnostic per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// A single diagnostic not tied to a position inside the file (reported at 1:1).
    pub fn whole_file(path: &Path, message: impl Into<String>) -> Self {
        Diagnostics(vec![Diagnostic {
            path: path.to_path_buf(),
            line: 1,
            col: 1,
            message: message.into(),
        }])
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// 1-based (line, column) of byte offset `offset` in `src`; the column counts characters.
/// Offsets past the end or inside a character are clamped, never a panic.
pub(crate) fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let mut off = offset.min(src.len());
    while !src.is_char_boundary(off) {
        off -= 1;
    }
    let before = src.get(..off).unwrap_or("");
    let line = before.bytes().filter(|b| *b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before.get(line_start..).unwrap_or("").chars().count() + 1;
    (line, col)
}

/// Byte offsets of line starts, for O(log n) line lookups and O(line) columns.
pub(crate) struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub(crate) fn new(src: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(
            src.bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i + 1),
        );
        LineIndex { starts }
    }

    /// 1-based line of `offset`.
    pub(crate) fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|s| *s <= offset).max(1)
    }

    /// Same as [`line_col`]; the column is counted from the line start only.
    pub(crate) fn line_col(&self, src: &str, offset: usize) -> (usize, usize) {
        let mut off = offset.min(src.len());
        while !src.is_char_boundary(off) {
            off -= 1;
        }
        let line = self.line(off);
        let start = self.starts.get(line - 1).copied().unwrap_or(0);
        let col = src.get(start..off).unwrap_or("").chars().count() + 1;
        (line, col)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_chars() {
        let s = "ab\nčd = 1\n";
        assert_eq!(line_col(s, 0), (1, 1));
        assert_eq!(line_col(s, 3), (2, 1));
        // 'č' is two bytes; 'd' is the second character.
        assert_eq!(line_col(s, 5), (2, 2));
        // Inside a character and past the end: clamped.
        assert_eq!(line_col(s, 4), (2, 1));
        assert_eq!(line_col(s, 999), (3, 1));
    }

    #[test]
    fn line_index_agrees_with_line_col() {
        let s = "ab\nčd = 1\n\nx";
        let idx = LineIndex::new(s);
        for off in 0..=s.len() + 2 {
            assert_eq!(idx.line_col(s, off), line_col(s, off), "offset {off}");
        }
    }

    #[test]
    fn display() {
        let d = Diagnostics(vec![
            Diagnostic {
                path: "/etc/smss/smss.toml".into(),
                line: 3,
                col: 7,
                message: "boom".into(),
            },
            Diagnostic {
                path: "x.toml".into(),
                line: 1,
                col: 1,
                message: "bang".into(),
            },
        ]);
        assert_eq!(
            d.to_string(),
            "/etc/smss/smss.toml:3:7: boom\nx.toml:1:1: bang"
        );
    }
}
