//! The quota state file's format (pure encode/decode; the file I/O, the flush timer and the
//! atomic rename are the proxy's).
//!
//! Counters are keyed by stable identity only: usage plan name, API key name and the first
//! second (UTC) of the period, never by a config generation or an index, so an edited config
//! keeps the counts of the plans and keys it did not change. Text, one counter a line:
//!
//! ```text
//! tollgate-quota-state 1
//! gold<TAB>alice<TAB>1764547200<TAB>1234
//! crc32 0a1b2c3d
//! ```
//!
//! Names are percent-escaped (`%`, tab, line breaks, other control characters). The last line
//! is the CRC-32 (IEEE) of every byte before it, so a truncated or altered file is refused
//! instead of silently resetting or inflating counts.

use std::fmt::Write as _;

const MAGIC: &str = "tollgate-quota-state 1\n";
const CHECKSUM_PREFIX: &str = "crc32 ";

/// One quota counter as persisted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub plan: String,
    pub key: String,
    /// First second (UTC, since the epoch) of the period the count belongs to.
    pub period_start: i64,
    /// Requests counted (granted) in that period.
    pub used: u64,
}

/// Why a state file was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateError {
    /// Not a tollgate quota state file (or another version).
    NotAStateFile,
    /// The checksum line is missing (truncated file).
    MissingChecksum,
    /// The content does not match its checksum.
    ChecksumMismatch { expected: u32, found: u32 },
    /// A line that does not parse (1-based line number).
    BadLine(usize),
}

impl std::fmt::Display for StateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateError::NotAStateFile => {
                write!(f, "not a tollgate quota state file (version 1)")
            }
            StateError::MissingChecksum => {
                write!(f, "the checksum line is missing: the file is truncated")
            }
            StateError::ChecksumMismatch { expected, found } => write!(
                f,
                "checksum mismatch (file says {expected:08x}, content is {found:08x}): the file is corrupt"
            ),
            StateError::BadLine(n) => write!(f, "line {n} is not `plan<TAB>key<TAB>period_start<TAB>used`"),
        }
    }
}

impl std::error::Error for StateError {}

/// The file content for `entries` (in the order given).
pub fn encode(entries: &[Entry]) -> String {
    let mut out = String::with_capacity(MAGIC.len() + entries.len() * 48 + 16);
    out.push_str(MAGIC);
    for e in entries {
        escape(&e.plan, &mut out);
        out.push('\t');
        escape(&e.key, &mut out);
        let _ = writeln!(out, "\t{}\t{}", e.period_start, e.used);
    }
    let crc = crc32(out.as_bytes());
    let _ = writeln!(out, "{CHECKSUM_PREFIX}{crc:08x}");
    out
}

/// The counters in `text`, or why it is refused.
pub fn decode(text: &str) -> Result<Vec<Entry>, StateError> {
    if !text.starts_with(MAGIC) {
        return Err(StateError::NotAStateFile);
    }
    let body_end = text
        .trim_end_matches('\n')
        .rfind('\n')
        .map(|i| i + 1)
        .ok_or(StateError::MissingChecksum)?;
    let (body, last) = text.split_at(body_end);
    let expected = last
        .strip_suffix('\n')
        .unwrap_or(last)
        .strip_prefix(CHECKSUM_PREFIX)
        .filter(|h| h.len() == 8)
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or(StateError::MissingChecksum)?;
    let found = crc32(body.as_bytes());
    if found != expected {
        return Err(StateError::ChecksumMismatch { expected, found });
    }
    let mut entries = Vec::new();
    for (i, line) in body[MAGIC.len()..].lines().enumerate() {
        let bad = || StateError::BadLine(i + 2);
        let mut fields = line.split('\t');
        let (Some(plan), Some(key), Some(start), Some(used), None) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            return Err(bad());
        };
        entries.push(Entry {
            plan: unescape(plan).ok_or_else(bad)?,
            key: unescape(key).ok_or_else(bad)?,
            period_start: start.parse().map_err(|_| bad())?,
            used: used.parse().map_err(|_| bad())?,
        });
    }
    Ok(entries)
}

fn escape(s: &str, out: &mut String) {
    for c in s.chars() {
        if c == '%' || c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "%{b:02X}");
            }
        } else {
            out.push(c);
        }
    }
}

fn unescape(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Entry> {
        vec![
            Entry {
                plan: "gold".into(),
                key: "alice".into(),
                period_start: 1_764_547_200,
                used: 1_234,
            },
            Entry {
                plan: "odd\tname %".into(),
                key: "bob\nsmith é".into(),
                period_start: -86_400,
                used: 0,
            },
        ]
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn round_trip() {
        let text = encode(&sample());
        assert!(text.starts_with(MAGIC));
        assert_eq!(text.lines().count(), 4);
        assert_eq!(decode(&text), Ok(sample()));
        assert_eq!(decode(&encode(&[])), Ok(Vec::new()));
    }

    #[test]
    fn corrupt_input_is_refused() {
        let text = encode(&sample());
        // One digit changed.
        let altered = text.replacen("1234", "9234", 1);
        assert!(matches!(
            decode(&altered),
            Err(StateError::ChecksumMismatch { .. })
        ));
        // Truncated before the checksum line.
        let cut = &text[..text.find(CHECKSUM_PREFIX).unwrap_or(0)];
        assert!(decode(cut).is_err());
        assert_eq!(decode(&text[..10]), Err(StateError::NotAStateFile));
        assert_eq!(decode("something else"), Err(StateError::NotAStateFile));
        // A well-formed checksum over a malformed line still reports the line.
        let mut body = String::from(MAGIC);
        body.push_str("gold\talice\tnot-a-number\t3\n");
        let crc = crc32(body.as_bytes());
        body.push_str(&format!("crc32 {crc:08x}\n"));
        assert_eq!(decode(&body), Err(StateError::BadLine(2)));
    }
}
