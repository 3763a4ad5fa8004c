//! Quota periods on UTC boundaries: DAY, WEEK and MONTH with API Gateway's `offset`, and the
//! civil-date arithmetic they need (days since 1970-01-01 ↔ year/month/day, proleptic
//! Gregorian, leap years included), written by hand so no date crate is needed.
//!
//! `offset` is the day the period starts, as API Gateway's `QuotaSettings.offset` documents
//! it ("The day that a time period starts. For example, with a time period of WEEK, an offset
//! of 0 starts on Sunday, and an offset of 1 starts on Monday."): DAY takes only 0 (midnight
//! UTC), WEEK 0-6 (0 = Sunday, 1 = Monday, ... 6 = Saturday), MONTH 0-27 (the period starts on
//! day `offset + 1` of the month, so every month has that day).

const SECS_PER_DAY: i64 = 86_400;

/// `DAY | WEEK | MONTH`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeriodKind {
    Day,
    Week,
    Month,
}

impl PeriodKind {
    pub fn from_name(name: &str) -> Option<PeriodKind> {
        match name {
            "DAY" => Some(PeriodKind::Day),
            "WEEK" => Some(PeriodKind::Week),
            "MONTH" => Some(PeriodKind::Month),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PeriodKind::Day => "DAY",
            PeriodKind::Week => "WEEK",
            PeriodKind::Month => "MONTH",
        }
    }

    /// The largest `offset` allowed.
    pub fn max_offset(self) -> u8 {
        match self {
            PeriodKind::Day => 0,
            PeriodKind::Week => 6,
            PeriodKind::Month => 27,
        }
    }
}

/// A quota period: its kind and start-day offset (checked).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Period {
    kind: PeriodKind,
    offset: u8,
}

impl Period {
    /// The period, or the reason `offset` is not allowed for `kind`.
    pub fn new(kind: PeriodKind, offset: i64) -> Result<Period, String> {
        let max = kind.max_offset();
        match u8::try_from(offset) {
            Ok(o) if o <= max => Ok(Period { kind, offset: o }),
            _ if max == 0 => Err("`offset` must be 0 for a DAY quota".to_string()),
            _ => Err(format!(
                "`offset` must be between 0 and {max} for a {} quota ({})",
                kind.name(),
                match kind {
                    PeriodKind::Week => "the day the week starts: 0 = Sunday, 1 = Monday, ...",
                    _ => "the period starts on day offset + 1 of the month",
                }
            )),
        }
    }

    pub fn kind(&self) -> PeriodKind {
        self.kind
    }

    pub fn offset(&self) -> u8 {
        self.offset
    }

    /// The UTC day (days since 1970-01-01) the period holding `day` starts on.
    pub fn start_day(&self, day: i64) -> i64 {
        match self.kind {
            PeriodKind::Day => day,
            PeriodKind::Week => {
                // 1970-01-01 was a Thursday: weekday 4 with Sunday = 0.
                let weekday = (day + 4).rem_euclid(7);
                day - (weekday - i64::from(self.offset)).rem_euclid(7)
            }
            PeriodKind::Month => {
                let (y, m, d) = civil_from_days(day);
                let first = u32::from(self.offset) + 1;
                if d >= first {
                    days_from_civil(y, m, first)
                } else {
                    let (py, pm) = if m == 1 { (y - 1, 12) } else { (y, m - 1) };
                    days_from_civil(py, pm, first)
                }
            }
        }
    }

    /// The first day of the next period after the one starting on `start_day`.
    pub fn next_start_day(&self, start_day: i64) -> i64 {
        match self.kind {
            PeriodKind::Day => start_day + 1,
            PeriodKind::Week => start_day + 7,
            PeriodKind::Month => {
                let (y, m, d) = civil_from_days(start_day);
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                days_from_civil(ny, nm, d)
            }
        }
    }

    /// `[start, end)` of the period holding `unix_secs`, in seconds since the epoch (UTC).
    pub fn bounds(&self, unix_secs: i64) -> (i64, i64) {
        let start = self.start_day(unix_secs.div_euclid(SECS_PER_DAY));
        (
            start * SECS_PER_DAY,
            self.next_start_day(start) * SECS_PER_DAY,
        )
    }
}

/// Days since 1970-01-01 of the civil date `y-m-d` (m 1-12, d 1-31).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date `(year, month 1-12, day 1-31)` of day `z` since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    // d in 1..=31 and m in 1..=12 by construction.
    (y, m as u32, d as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i64, m: u32, d: u32) -> i64 {
        days_from_civil(y, m, d)
    }

    fn secs(y: i64, m: u32, d: u32, h: i64, min: i64, s: i64) -> i64 {
        day(y, m, d) * SECS_PER_DAY + h * 3600 + min * 60 + s
    }

    #[test]
    fn civil_dates_round_trip() {
        assert_eq!(day(1970, 1, 1), 0);
        assert_eq!(day(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        for z in -800_000..800_000 {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(day(y, m, d), z);
        }
    }

    #[test]
    fn day_periods_start_at_midnight_utc() {
        let p = Period::new(PeriodKind::Day, 0).unwrap();
        let t = secs(2026, 11, 30, 23, 59, 59);
        assert_eq!(
            p.bounds(t),
            (secs(2026, 11, 30, 0, 0, 0), secs(2026, 12, 1, 0, 0, 0))
        );
        assert_eq!(p.bounds(t + 1).0, secs(2026, 12, 1, 0, 0, 0));
        assert!(Period::new(PeriodKind::Day, 1).is_err());
    }

    #[test]
    fn week_offsets_name_the_first_day() {
        // 2026-11-29 is a Sunday, 2026-11-30 a Monday.
        let sunday = Period::new(PeriodKind::Week, 0).unwrap();
        let monday = Period::new(PeriodKind::Week, 1).unwrap();
        let t = secs(2026, 11, 30, 12, 0, 0);
        assert_eq!(
            sunday.bounds(t),
            (secs(2026, 11, 29, 0, 0, 0), secs(2026, 12, 6, 0, 0, 0))
        );
        assert_eq!(
            monday.bounds(t),
            (secs(2026, 11, 30, 0, 0, 0), secs(2026, 12, 7, 0, 0, 0))
        );
        // The last second of Sunday is still the previous Monday week.
        assert_eq!(
            monday.bounds(secs(2026, 11, 29, 23, 59, 59)).0,
            secs(2026, 11, 23, 0, 0, 0)
        );
        let saturday = Period::new(PeriodKind::Week, 6).unwrap();
        assert_eq!(saturday.bounds(t).0, secs(2026, 11, 28, 0, 0, 0));
        assert!(Period::new(PeriodKind::Week, 7).is_err());
        assert!(Period::new(PeriodKind::Week, -1).is_err());
    }

    #[test]
    fn months_have_their_lengths_and_leap_years() {
        let p = Period::new(PeriodKind::Month, 0).unwrap();
        assert_eq!(
            p.bounds(secs(2024, 2, 29, 23, 0, 0)),
            (secs(2024, 2, 1, 0, 0, 0), secs(2024, 3, 1, 0, 0, 0))
        );
        assert_eq!(
            p.bounds(secs(2023, 2, 28, 0, 0, 0)).1,
            secs(2023, 3, 1, 0, 0, 0)
        );
        assert_eq!(
            p.bounds(secs(2026, 12, 31, 23, 59, 59)).1,
            secs(2027, 1, 1, 0, 0, 0)
        );
        assert_eq!(
            p.bounds(secs(2026, 4, 30, 1, 0, 0)).1,
            secs(2026, 5, 1, 0, 0, 0)
        );
        // 1900 is not a leap year, 2000 is.
        assert_eq!(day(1900, 3, 1) - day(1900, 2, 1), 28);
        assert_eq!(day(2000, 3, 1) - day(2000, 2, 1), 29);
    }

    #[test]
    fn month_offsets_move_the_first_day() {
        let p = Period::new(PeriodKind::Month, 27).unwrap();
        // Starts on the 28th: the 27th of March belongs to the period from February 28th.
        assert_eq!(
            p.bounds(secs(2025, 3, 27, 0, 0, 0)),
            (secs(2025, 2, 28, 0, 0, 0), secs(2025, 3, 28, 0, 0, 0))
        );
        assert_eq!(
            p.bounds(secs(2025, 3, 28, 0, 0, 0)).0,
            secs(2025, 3, 28, 0, 0, 0)
        );
        // Across the year end.
        let p = Period::new(PeriodKind::Month, 14).unwrap();
        assert_eq!(
            p.bounds(secs(2027, 1, 3, 0, 0, 0)),
            (secs(2026, 12, 15, 0, 0, 0), secs(2027, 1, 15, 0, 0, 0))
        );
        assert!(Period::new(PeriodKind::Month, 28).is_err());
    }
}
