//! A published message's identity and the wall-clock format every dialect shows it in.
//!
//! The hub has no clock: the milliseconds come from the driver (see [`crate::Hub::new`]).

use bytes::{BufMut, BytesMut};

/// A published message's identity: its number (shown as `msg-<16 hex digits>`) and
/// the wall-clock time it was accepted. Every dialect's copy of one message and the
/// publisher's answer show the same stamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// From the hub's seeded id generator.
    pub number: u64,
    /// Unix milliseconds when the hub accepted the message.
    pub unix_ms: u64,
}

impl Stamp {
    /// The message id as the wire shows it, e.g. `msg-1f3a…`.
    pub fn id(&self) -> String {
        format!("msg-{:016x}", self.number)
    }

    /// The creation time as RFC 3339 UTC with milliseconds.
    pub fn create_time(&self) -> String {
        format_timestamp(self.unix_ms)
    }

    pub(crate) fn put_id(&self, out: &mut BytesMut) {
        out.put_slice(self.id().as_bytes());
    }
}

/// Writes `n` in decimal at the end of `buf` and returns those digits.
pub(crate) fn put_u64(buf: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        // A digit is below 10: the cast cannot truncate.
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// Unix milliseconds as RFC 3339 UTC with milliseconds: `2023-11-14T22:13:20.000Z`.
/// The hub has no clock: the milliseconds come from the driver.
pub fn format_timestamp(unix_ms: u64) -> String {
    let mut out = BytesMut::with_capacity(24);
    put_timestamp(&mut out, unix_ms);
    String::from_utf8(out.to_vec()).expect("ASCII digits")
}

pub(crate) fn put_timestamp(out: &mut BytesMut, unix_ms: u64) {
    let (secs, millis) = (unix_ms / 1000, unix_ms % 1000);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    let two =
        |out: &mut BytesMut, n: u64| out.put_slice(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8]);
    let mut digits = [0u8; 20];
    let y = put_u64(&mut digits, year);
    for _ in y.len()..4 {
        out.put_u8(b'0');
    }
    out.put_slice(y);
    out.put_u8(b'-');
    two(out, month);
    out.put_u8(b'-');
    two(out, day);
    out.put_u8(b'T');
    two(out, rem / 3600);
    out.put_u8(b':');
    two(out, rem / 60 % 60);
    out.put_u8(b':');
    two(out, rem % 60);
    out.put_u8(b'.');
    out.put_u8(b'0' + (millis / 100) as u8);
    two(out, millis % 100);
    out.put_u8(b'Z');
}

/// The proleptic Gregorian date of a day count since 1970-01-01, by 400-year eras
/// (146,097 days each) counted from 0000-03-01, so the leap day ends each era's year.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = z / 146_097;
    let doe = z % 146_097; // day of era, 0..=146_096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the March-based year
    let mp = (5 * doy + 2) / 153; // month, March = 0
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc_with_millis() {
        assert_eq!(format_timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_timestamp(1_700_000_000_000),
            "2023-11-14T22:13:20.000Z"
        );
        assert_eq!(
            format_timestamp(951_782_400_007),
            "2000-02-29T00:00:00.007Z"
        );
        assert_eq!(
            format_timestamp(951_868_799_999),
            "2000-02-29T23:59:59.999Z"
        );
        assert_eq!(
            format_timestamp(4_107_542_400_000),
            "2100-03-01T00:00:00.000Z"
        );
        assert_eq!(
            format_timestamp(253_402_300_799_123),
            "9999-12-31T23:59:59.123Z"
        );
        assert_eq!(
            format_timestamp(1_672_531_199_500),
            "2022-12-31T23:59:59.500Z"
        );
    }

    #[test]
    fn every_day_follows_the_previous_one() {
        // Walks 1970..2400 day by day: month lengths and leap years (2000 yes, 2100
        // no) must come out of the era arithmetic.
        let mut prev = civil_from_days(0);
        assert_eq!(prev, (1970, 1, 1));
        for days in 1..(430 * 366) {
            let (y, m, d) = civil_from_days(days);
            let (py, pm, pd) = prev;
            let leap = py % 4 == 0 && (py % 100 != 0 || py % 400 == 0);
            let len = match pm {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            let expected = if pd < len {
                (py, pm, pd + 1)
            } else if pm < 12 {
                (py, pm + 1, 1)
            } else {
                (py + 1, 1, 1)
            };
            assert_eq!((y, m, d), expected, "day {days}");
            prev = (y, m, d);
        }
    }
}
