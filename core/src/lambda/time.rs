//! `$context.requestTime` (`04/Mar/2020:19:15:17 +0000`, CLF format in UTC) and
//! `$context.requestTimeEpoch` (milliseconds) from a wall-clock time the caller read.

use crate::civil::civil_from_days;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Milliseconds since the Unix epoch (0 for a clock before it).
pub fn epoch_ms(t: SystemTime) -> u64 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `dd/Mon/yyyy:HH:MM:SS +0000`.
pub fn clf(t: SystemTime) -> String {
    let secs = (epoch_ms(t) / 1000) as i64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{d:02}/{}/{y:04}:{:02}:{:02}:{:02} +0000",
        MONTHS[(m - 1) as usize],
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guide_examples() {
        // The guide's 1.0 example: requestTimeEpoch 1583349317135 ↔ 04/Mar/2020:19:15:17.
        let t = UNIX_EPOCH + Duration::from_millis(1_583_349_317_135);
        assert_eq!(clf(t), "04/Mar/2020:19:15:17 +0000");
        assert_eq!(epoch_ms(t), 1_583_349_317_135);
        let t = UNIX_EPOCH + Duration::from_millis(1_583_348_638_390);
        assert_eq!(clf(t), "04/Mar/2020:19:03:58 +0000");
        assert_eq!(clf(UNIX_EPOCH), "01/Jan/1970:00:00:00 +0000");
        // A leap day.
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(clf(t), "29/Feb/2000:00:00:00 +0000");
    }
}
