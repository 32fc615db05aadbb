//! Local days and months: the midnight that starts a day in the station's time zone, a day
//! typed into a form, and the bounds of a month. Every "from this day" and "this month" of
//! the program (the console's forms and figures, the schedules, the command line) is counted
//! from here.

use anyhow::Context;
use chrono::{DateTime, Datelike, NaiveDate, TimeZone};

/// The midnight that starts `day` in `tz`, as UTC ms (the earlier one where a clock change
/// makes two). Every "from this day" of the program is counted from here.
pub fn midnight_ms(tz: chrono_tz::Tz, day: NaiveDate) -> i64 {
    tz.from_local_datetime(&day.and_hms_opt(0, 0, 0).expect("midnight exists"))
        .earliest()
        .map_or(0, |t| t.timestamp_millis())
}

/// A day typed into a form as `YYYY-MM-DD` (blank: none), as its [`midnight_ms`].
pub fn parse_day_ms(tz: chrono_tz::Tz, typed: &str) -> Result<Option<i64>, chrono::ParseError> {
    let typed = typed.trim();
    if typed.is_empty() {
        return Ok(None);
    }
    Ok(Some(midnight_ms(tz, NaiveDate::parse_from_str(typed, "%Y-%m-%d")?)))
}

/// The first and the day after the last day of `month` (YYYY-MM), local, as UTC ms.
pub fn month_bounds(tz: chrono_tz::Tz, month: &str) -> anyhow::Result<(i64, i64)> {
    let first = NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d")
        .with_context(|| format!("{month:?} is not a month: write YYYY-MM, e.g. 2026-10"))?;
    let next = first.checked_add_months(chrono::Months::new(1)).context("month out of range")?;
    Ok((midnight_ms(tz, first), midnight_ms(tz, next)))
}

/// The month of `now_ms` in `tz`, as `YYYY-MM`.
pub fn current_month(tz: chrono_tz::Tz, now_ms: i64) -> String {
    DateTime::from_timestamp_millis(now_ms).unwrap_or_default().with_timezone(&tz).format("%Y-%m").to_string()
}

/// The month before the one `now_ms` is in (in `tz`), as `YYYY-MM`.
pub fn previous_month(tz: chrono_tz::Tz, now_ms: i64) -> String {
    let today = DateTime::from_timestamp_millis(now_ms).unwrap_or_default().with_timezone(&tz).date_naive();
    let first = today.with_day0(0).unwrap_or(today);
    first.checked_sub_months(chrono::Months::new(1)).unwrap_or(first).format("%Y-%m").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_month_runs_from_its_first_local_midnight_to_the_next_months() {
        let tz = chrono_tz::Asia::Shanghai;
        let (from, to) = month_bounds(tz, "2026-12").unwrap();
        assert_eq!(from, tz.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap().timestamp_millis());
        assert_eq!(to, tz.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap().timestamp_millis());
        assert!(month_bounds(tz, "2026-13").is_err());
    }

    #[test]
    fn the_current_and_previous_months_are_counted_in_the_local_time_zone() {
        let tz = chrono_tz::Asia::Shanghai;
        // 1 January 2027, 01:00 in Shanghai is still 31 December in UTC.
        let now = tz.with_ymd_and_hms(2027, 1, 1, 1, 0, 0).unwrap().timestamp_millis();
        assert_eq!(current_month(tz, now), "2027-01");
        assert_eq!(previous_month(tz, now), "2026-12");
    }

    #[test]
    fn a_blank_day_in_a_form_is_no_day() {
        let tz = chrono_tz::Asia::Shanghai;
        assert_eq!(parse_day_ms(tz, "  ").unwrap(), None);
        let day = NaiveDate::from_ymd_opt(2026, 12, 4).unwrap();
        assert_eq!(parse_day_ms(tz, "2026-12-04").unwrap(), Some(midnight_ms(tz, day)));
        assert!(parse_day_ms(tz, "04.12.2026").is_err());
    }
}
