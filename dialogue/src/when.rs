//! German dates and times as callers say them: "nächsten Dienstag",
//! "übermorgen", "am dritten Dezember", "3.12.", "halb drei", "Viertel vor
//! fünf", "14 Uhr 30", "um zwei". Words come from [`super::text::tokens`];
//! relative days need today's date (an argument: no clock here).

use super::number::{cardinal, ordinal};
use chrono::{Datelike, Duration, NaiveDate, Weekday};

/// A time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Time {
    /// 0–23.
    pub hour: u8,
    /// 0–59.
    pub minute: u8,
}

impl Time {
    fn new(hour: u32, minute: u32) -> Option<Self> {
        (hour < 24 && minute < 60).then_some(Self {
            hour: hour as u8,
            minute: minute as u8,
        })
    }

    /// As a German speaker says it to a caller: "14 Uhr 30", "9 Uhr".
    pub fn speak(&self) -> String {
        if self.minute == 0 {
            format!("{} Uhr", self.hour)
        } else {
            format!("{} Uhr {}", self.hour, self.minute)
        }
    }
}

const WEEKDAYS: [(&str, Weekday); 8] = [
    ("montag", Weekday::Mon),
    ("dienstag", Weekday::Tue),
    ("mittwoch", Weekday::Wed),
    ("donnerstag", Weekday::Thu),
    ("freitag", Weekday::Fri),
    ("samstag", Weekday::Sat),
    ("sonnabend", Weekday::Sat),
    ("sonntag", Weekday::Sun),
];

/// Month names, folded (see [`super::text::fold`]).
pub const MONTHS: [&str; 12] = [
    "januar",
    "februar",
    "maerz",
    "april",
    "mai",
    "juni",
    "juli",
    "august",
    "september",
    "oktober",
    "november",
    "dezember",
];

/// German name of a weekday.
pub fn weekday_name(w: Weekday) -> &'static str {
    [
        "Montag",
        "Dienstag",
        "Mittwoch",
        "Donnerstag",
        "Freitag",
        "Samstag",
        "Sonntag",
    ][w.num_days_from_monday() as usize]
}

/// A date as said to a caller: "Dienstag, den 1. Dezember".
pub fn speak_date(d: NaiveDate) -> String {
    const NAMES: [&str; 12] = [
        "Januar",
        "Februar",
        "März",
        "April",
        "Mai",
        "Juni",
        "Juli",
        "August",
        "September",
        "Oktober",
        "November",
        "Dezember",
    ];
    format!(
        "{}, den {}. {}",
        weekday_name(d.weekday()),
        d.day(),
        NAMES[d.month0() as usize]
    )
}

fn weekday(word: &str) -> Option<Weekday> {
    let w = word.strip_suffix('s').unwrap_or(word);
    WEEKDAYS.iter().find(|(n, _)| *n == w).map(|&(_, d)| d)
}

fn month(word: &str) -> Option<u32> {
    if word == "jaenner" {
        return Some(1);
    }
    MONTHS.iter().position(|m| *m == word).map(|i| i as u32 + 1)
}

/// The earliest `day.month` on or after `today` (this year or next).
fn upcoming(today: NaiveDate, day: u32, month: u32) -> Option<NaiveDate> {
    let this = NaiveDate::from_ymd_opt(today.year(), month, day);
    match this {
        Some(d) if d >= today => Some(d),
        _ => NaiveDate::from_ymd_opt(today.year() + 1, month, day),
    }
}

/// "3.12.", "03.12.2026", "3.12" after "am": day, month, year.
fn numeric_date(word: &str, after_am: bool) -> Option<(u32, u32, Option<i32>)> {
    let trailing = word.ends_with('.');
    let mut parts = word.trim_end_matches('.').split('.');
    let day: u32 = parts.next()?.parse().ok()?;
    let month: u32 = parts.next()?.parse().ok()?;
    let year = match parts.next() {
        Some(y) => {
            let y: i32 = y.parse().ok()?;
            Some(if y < 100 { 2000 + y } else { y })
        }
        None => None,
    };
    if parts.next().is_some() || !(trailing || year.is_some() || after_am) {
        return None;
    }
    ((1..=31).contains(&day) && (1..=12).contains(&month)).then_some((day, month, year))
}

/// The date in `words`, relative to `today`.
pub fn parse_date(words: &[String], today: NaiveDate) -> Option<NaiveDate> {
    let has = |w: &str| words.iter().any(|x| x == w);
    for (i, w) in words.iter().enumerate() {
        let prev = i.checked_sub(1).map(|p| words[p].as_str());
        let after_am = matches!(prev, Some("am" | "den" | "zum" | "ab"));
        if let Some((day, month, year)) = numeric_date(w, after_am) {
            return match year {
                // A year a caller can mean: a birth date, or an
                // appointment within the next ten years ("7.7.7777" is not).
                Some(y) if (today.year() - 120..=today.year() + 10).contains(&y) => {
                    NaiveDate::from_ymd_opt(y, month, day)
                }
                Some(_) => None,
                None => upcoming(today, day, month),
            };
        }
        // "dritten Dezember", "3. Dezember", "3 Dezember", "dritten zwölften"
        let day = ordinal(w).or_else(|| {
            w.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| cardinal(w))
                .flatten()
                .filter(|_| words.get(i + 1).and_then(|n| month(n)).is_some())
        });
        if let Some(day) = day.filter(|d| (1..=31).contains(d)) {
            if let Some(m) = words
                .get(i + 1)
                .and_then(|n| month(n).or_else(|| ordinal(n)))
            {
                if (1..=12).contains(&m) {
                    return upcoming(today, day, m);
                }
            }
            if after_am {
                // Day of month only: this month, or the next if it has passed.
                let (y, m) = (today.year(), today.month());
                return match NaiveDate::from_ymd_opt(y, m, day) {
                    Some(d) if d >= today => Some(d),
                    _ => {
                        let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                        NaiveDate::from_ymd_opt(y, m, day)
                    }
                };
            }
        }
        match w.as_str() {
            "heute" => return Some(today),
            "uebermorgen" => return Some(today + Duration::days(2)),
            "morgen" if prev != Some("guten") => return Some(today + Duration::days(1)),
            _ => {}
        }
        if let Some(wd) = weekday(w) {
            let ahead = (wd.num_days_from_monday() as i64
                - today.weekday().num_days_from_monday() as i64)
                .rem_euclid(7);
            if has("woche") && (has("naechste") || has("naechsten") || has("kommende")) {
                let monday = today - Duration::days(today.weekday().num_days_from_monday() as i64);
                return Some(monday + Duration::days(7 + wd.num_days_from_monday() as i64));
            }
            let ahead = if ahead == 0 && !has("heute") {
                7
            } else {
                ahead
            };
            return Some(today + Duration::days(ahead));
        }
        if w == "in" {
            if let (Some(n), Some(unit)) =
                (words.get(i + 1).and_then(|n| cardinal(n)), words.get(i + 2))
            {
                let days = match unit.as_str() {
                    "tag" | "tagen" => n as i64,
                    "woche" | "wochen" => 7 * n as i64,
                    _ => continue,
                };
                // Within two years, or not a date anyone books.
                return (days <= 730).then(|| today + Duration::days(days));
            }
        }
    }
    None
}

/// Words that look like "eins" but begin a noun phrase.
const ARTICLES: [&str; 6] = ["ein", "eine", "einen", "einem", "einer", "eines"];

fn hour_word(w: Option<&String>) -> Option<u32> {
    w.and_then(|w| cardinal(w)).filter(|h| (0..=24).contains(h))
}

/// The time of day in `words` (one clause: see [`super::text::clauses`]).
/// An hour from 1 to 6 is taken as the afternoon (office hours) unless the
/// caller says "morgens"/"früh"/"nachts"; "nachmittags"/"abends" move any
/// morning hour to the afternoon. "Vormittags" never makes "halb drei" a
/// time in the night: nobody means 2:30 a.m. by it, and whisper adds it
/// after complete answers ("… um halb drei. Am Vormittag").
pub fn parse_time(words: &[String]) -> Option<Time> {
    let (hour, minute, relative) = raw_time(words)?;
    let has = |set: &[&str]| words.iter().any(|w| set.contains(&w.as_str()));
    let mut hour = if relative && hour == 0 { 12 } else { hour % 24 };
    if has(&["nachmittags", "nachmittag", "abends", "abend"]) {
        if hour < 12 {
            hour += 12;
        }
    } else if (1..=6).contains(&hour) && !has(&["morgens", "frueh", "nachts"]) {
        hour += 12;
    }
    Time::new(hour, minute)
}

/// Hour, minute, and whether the hour was given relative ("halb drei").
fn raw_time(words: &[String]) -> Option<(u32, u32, bool)> {
    let at = |i: usize| words.get(i).map(String::as_str);
    for (i, w) in words.iter().enumerate() {
        // "14:30", "14.30 Uhr"
        if let Some((h, m)) = w.split_once(':').or_else(|| {
            (at(i + 1) == Some("uhr") && !w.ends_with('.') && w.matches('.').count() == 1)
                .then(|| w.split_once('.'))
                .flatten()
        }) {
            if let (Ok(h), Ok(m)) = (h.parse::<u32>(), m.parse::<u32>()) {
                if h < 24 && m < 60 {
                    return Some((h, m, false));
                }
            }
        }
        match w.as_str() {
            "halb" => {
                let h = hour_word(words.get(i + 1))?;
                let (h, base) = (h.checked_sub(1).unwrap_or(23), 30);
                // "fünf vor halb drei", "zehn nach halb drei"
                if let (Some(m), Some(dir)) = (
                    i.checked_sub(2).and_then(|p| cardinal(&words[p])),
                    at(i.wrapping_sub(1)),
                ) {
                    match dir {
                        "vor" if m < 30 => return Some((h, base - m, true)),
                        "nach" if m < 30 => return Some((h, base + m, true)),
                        _ => {}
                    }
                }
                return Some((h, base, true));
            }
            "viertel" | "dreiviertel" => {
                let quarter = w == "viertel";
                match at(i + 1) {
                    Some("nach") if quarter => {
                        return Some((hour_word(words.get(i + 2))?, 15, true))
                    }
                    Some("vor") if quarter => {
                        let h = hour_word(words.get(i + 2))?;
                        return Some((h.checked_sub(1).unwrap_or(23), 45, true));
                    }
                    _ => {
                        let h = hour_word(words.get(i + 1))?;
                        let m = if quarter { 15 } else { 45 };
                        return Some((h.checked_sub(1).unwrap_or(23), m, true));
                    }
                }
            }
            "uhr" => {
                let h = hour_word(i.checked_sub(1).and_then(|p| words.get(p)))?;
                // Minutes only from the number right after "Uhr" that reads
                // as minutes of an appointment ("vierzehn Uhr dreißig", "elf
                // Uhr fünfzehn"): "zehn Uhr ein…" is an article, not 10:01.
                let m = words
                    .get(i + 1)
                    .filter(|w| !ARTICLES.contains(&w.as_str()))
                    .and_then(|m| cardinal(m))
                    .filter(|m| *m < 60 && m % 5 == 0)
                    .unwrap_or(0);
                return Some((h, m, false));
            }
            "nach" | "vor" => {
                // "zehn nach drei", "fünf vor vier" (not "Viertel"/"halb": above)
                if let (Some(m), Some(h)) = (
                    i.checked_sub(1)
                        .filter(|&p| !ARTICLES.contains(&words[p].as_str()))
                        .and_then(|p| cardinal(&words[p]))
                        .filter(|m| *m < 30 && m % 5 == 0),
                    hour_word(words.get(i + 1)).filter(|_| at(i + 1) != Some("halb")),
                ) {
                    return Some(if w == "nach" {
                        (h, m, true)
                    } else {
                        (h.checked_sub(1).unwrap_or(23), 60 - m, true)
                    });
                }
            }
            "um" if !matches!(at(i + 1), Some("halb" | "viertel"))
                && at(i + 2) != Some("uhr")
                && !matches!(at(i + 2), Some("nach" | "vor")) =>
            {
                if let Some(h) = hour_word(words.get(i + 1)) {
                    return Some((h, 0, true));
                }
            }
            "mittag" | "mittags" if at(i.wrapping_sub(1)) == Some("um") => {
                return Some((12, 0, false))
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::tokens;

    /// Tuesday, 24 November 2026.
    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 24).unwrap()
    }

    fn date(s: &str) -> Option<String> {
        parse_date(&tokens(s), today()).map(|d| d.format("%Y-%m-%d").to_string())
    }

    fn time(s: &str) -> Option<(u8, u8)> {
        parse_time(&tokens(s)).map(|t| (t.hour, t.minute))
    }

    #[test]
    fn german_dates() {
        let cases = [
            ("heute", "2026-11-24"),
            ("Morgen bitte", "2026-11-25"),
            ("übermorgen", "2026-11-26"),
            ("Uebermorgen", "2026-11-26"),
            ("am Mittwoch", "2026-11-25"),
            ("nächsten Dienstag", "2026-12-01"),
            ("Dienstag", "2026-12-01"),
            ("am Freitag", "2026-11-27"),
            ("Montag", "2026-11-30"),
            ("nächste Woche Mittwoch", "2026-12-02"),
            ("am Donnerstag nächste Woche", "2026-12-03"),
            ("am dritten Dezember", "2026-12-03"),
            ("am 3. Dezember", "2026-12-03"),
            ("am 3 Dezember", "2026-12-03"),
            ("den einunddreißigsten Dezember", "2026-12-31"),
            ("am ersten Januar", "2027-01-01"),
            ("am zwanzigsten November", "2027-11-20"),
            ("3.12.", "2026-12-03"),
            ("am 3.12", "2026-12-03"),
            ("15.01.2027", "2027-01-15"),
            ("am 7.3.27", "2027-03-07"),
            ("am dritten zwölften", "2026-12-03"),
            ("am achtundzwanzigsten", "2026-11-28"),
            ("am zweiten", "2026-12-02"),
            ("in drei Tagen", "2026-11-27"),
            ("in zwei Wochen", "2026-12-08"),
            ("in einer Woche", "2026-12-01"),
            ("Samstags", "2026-11-28"),
        ];
        for (s, want) in cases {
            assert_eq!(date(s).as_deref(), Some(want), "{s}");
        }
        for s in [
            "guten Morgen",
            "am einunddreißigsten Februar",
            "32.12.",
            "ja gerne",
            "um 14.30 Uhr",
            "",
        ] {
            assert_eq!(date(s), None, "{s}");
        }
    }

    #[test]
    fn german_times() {
        let cases = [
            ("halb drei", (14, 30)),
            ("um halb drei", (14, 30)),
            ("halb zehn", (9, 30)),
            ("halb eins", (12, 30)),
            ("Viertel nach vier", (16, 15)),
            ("viertel vor fünf", (16, 45)),
            ("dreiviertel fünf", (16, 45)),
            ("viertel neun", (8, 15)),
            ("14 Uhr 30", (14, 30)),
            ("vierzehn Uhr dreißig", (14, 30)),
            ("14:30", (14, 30)),
            ("um 14.30 Uhr", (14, 30)),
            ("um zwei", (14, 0)),
            ("um 9", (9, 0)),
            ("um 10 Uhr", (10, 0)),
            ("neun Uhr morgens", (9, 0)),
            ("um sieben Uhr früh", (7, 0)),
            ("um drei Uhr nachmittags", (15, 0)),
            ("um acht Uhr abends", (20, 0)),
            ("zehn nach drei", (15, 10)),
            ("fünf vor vier", (15, 55)),
            ("fünf vor halb drei", (14, 25)),
            ("zehn nach halb elf", (10, 40)),
            ("um zwölf Uhr", (12, 0)),
            ("um Mittag", (12, 0)),
            ("um elf Uhr fünfzehn", (11, 15)),
            ("am dritten Dezember um halb drei", (14, 30)),
            ("Dienstag um 16 Uhr", (16, 0)),
            ("um 3 Uhr", (15, 0)),
            ("um drei Uhr nachts", (3, 0)),
            ("halb acht", (7, 30)),
            ("am Dienstag um halb drei am Vormittag", (14, 30)),
            ("um zehn Uhr ein Termin", (10, 0)),
            ("um zehn Uhr eins", (10, 0)),
            ("um zehn Uhr zwölf", (10, 0)),
            ("neun Uhr fünfundvierzig", (9, 45)),
            ("14 Uhr 30", (14, 30)),
            ("um sechs Uhr früh", (6, 0)),
            ("zwanzig nach vier", (16, 20)),
        ];
        for (s, want) in cases {
            assert_eq!(time(s), Some(want), "{s}");
        }
        // "Ein nach drei" is a clipped "Nein, …", not 15:01.
        for s in [
            "am Dienstag",
            "ja",
            "25 Uhr",
            "halb",
            "3.12.",
            "ein nach drei",
            "zwei vor vier",
        ] {
            assert_eq!(time(s), None, "{s}");
        }
    }

    #[test]
    fn spoken_forms() {
        let d = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        assert_eq!(speak_date(d), "Dienstag, den 1. Dezember");
        assert_eq!(
            Time {
                hour: 14,
                minute: 30
            }
            .speak(),
            "14 Uhr 30"
        );
        assert_eq!(Time { hour: 9, minute: 0 }.speak(), "9 Uhr");
    }
}
