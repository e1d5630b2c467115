//! Which backups to keep: a pure function of the backups' times, the clock and the rules, in
//! the spirit of restic's `forget`. A backup is kept when any rule keeps it.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::manifest::civil;

/// Retention rules. `0` disables a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetentionPolicy {
    /// Keep every backup younger than this many days.
    pub within_days: u32,
    /// Always keep the newest N backups, whatever their age.
    pub keep_last: u32,
    /// Keep the newest backup of each of the last N days that have one.
    pub keep_daily: u32,
    /// Keep the newest backup of each of the last N ISO-like weeks (Monday-based) that have one.
    pub keep_weekly: u32,
    /// Keep the newest backup of each of the last N months that have one.
    pub keep_monthly: u32,
}

const DAY: u64 = 86_400;

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Indices (into `times`) of the backups to keep. `times` may be in any order.
pub fn keep(times: &[SystemTime], now: SystemTime, policy: &RetentionPolicy) -> BTreeSet<usize> {
    let mut order: Vec<usize> = (0..times.len()).collect();
    // Newest first.
    order.sort_by(|&a, &b| times[b].cmp(&times[a]));
    let mut kept = BTreeSet::new();
    kept.extend(order.iter().take(policy.keep_last as usize).copied());
    if policy.within_days > 0 {
        let horizon = Duration::from_secs(u64::from(policy.within_days) * DAY);
        kept.extend(order.iter().copied().filter(|&i| {
            now.duration_since(times[i])
                .map_or(true, |age| age < horizon)
        }));
    }
    let mut bucketed = |n: u32, bucket: &dyn Fn(u64) -> i64| {
        let mut seen = BTreeSet::new();
        for &i in &order {
            if seen.len() >= n as usize {
                break;
            }
            // The first (newest) backup of each bucket represents it.
            if seen.insert(bucket(secs(times[i]) / DAY)) {
                kept.insert(i);
            }
        }
    };
    bucketed(policy.keep_daily, &|day| {
        i64::try_from(day).unwrap_or(i64::MAX)
    });
    // 1970-01-01 was a Thursday; shifting by 3 makes weeks start on Monday.
    bucketed(policy.keep_weekly, &|day| {
        i64::try_from((day + 3) / 7).unwrap_or(i64::MAX)
    });
    bucketed(policy.keep_monthly, &|day| {
        let (y, m, _) = civil(i64::try_from(day).unwrap_or(i64::MAX));
        y * 12 + i64::from(m)
    });
    kept
}

/// Indices (into `sizes`) of the backups that do not fit under `cap` bytes: `sizes` are the
/// kept backups' `(created, bytes)`. The newest are kept while they fit; from the first that
/// would take the total past the cap, it and every older one are dropped. The newest backup is
/// always kept, even alone over the cap (a backup larger than the cap is refused when it is
/// taken, not here).
pub fn over_cap(sizes: &[(SystemTime, u64)], cap: u64) -> BTreeSet<usize> {
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by(|&a, &b| sizes[b].0.cmp(&sizes[a].0));
    let mut total = 0u64;
    let mut full = false;
    let mut dropped = BTreeSet::new();
    for (rank, &i) in order.iter().enumerate() {
        total = total.saturating_add(sizes[i].1);
        full = full || (rank > 0 && total > cap);
        if full {
            dropped.insert(i);
        }
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_drops_the_oldest_and_keeps_the_newest() {
        let t = |d: f64| at(-d);
        // Oldest first in the slice: the order of the input does not matter.
        let sizes = [(t(3.0), 40), (t(2.0), 30), (t(1.0), 20), (t(0.0), 10)];
        assert_eq!(over_cap(&sizes, 100), BTreeSet::new());
        // Newest first: 10 + 20 + 30 = 60 fits exactly; 40 more does not.
        assert_eq!(over_cap(&sizes, 60), BTreeSet::from([0]));
        assert_eq!(over_cap(&sizes, 59), BTreeSet::from([0, 1]));
        // 10 + 20 fit in 35; 30 does not, and so neither does anything older (even 40 alone).
        assert_eq!(over_cap(&sizes, 35), BTreeSet::from([0, 1]));
        // The newest is kept even when it alone is over the cap.
        assert_eq!(over_cap(&sizes, 5), BTreeSet::from([0, 1, 2]));
        assert_eq!(over_cap(&[], 5), BTreeSet::new());
    }

    fn at(days: f64) -> SystemTime {
        // A fixed clock: 2026-11-23T12:00:00Z (a Monday) is day 20_780.5.
        UNIX_EPOCH + Duration::from_secs_f64((20_780.5 + days) * DAY as f64)
    }

    fn none() -> RetentionPolicy {
        RetentionPolicy {
            within_days: 0,
            keep_last: 0,
            keep_daily: 0,
            keep_weekly: 0,
            keep_monthly: 0,
        }
    }

    #[test]
    fn within_days_and_keep_last() {
        let now = at(0.0);
        let times = [at(-0.5), at(-3.0), at(-8.0), at(-30.0)];
        let policy = RetentionPolicy {
            within_days: 7,
            ..none()
        };
        assert_eq!(keep(&times, now, &policy), BTreeSet::from([0, 1]));
        // keep_last protects the newest even when all are old.
        let old = [at(-40.0), at(-50.0), at(-60.0)];
        let policy = RetentionPolicy {
            within_days: 7,
            keep_last: 2,
            ..none()
        };
        assert_eq!(keep(&old, now, &policy), BTreeSet::from([0, 1]));
    }

    #[test]
    fn daily_keeps_newest_of_each_day() {
        let now = at(0.0);
        // Two backups on each of the last four days (hours apart), oldest day first.
        let times: Vec<SystemTime> = (0..4)
            .flat_map(|d| [at(-f64::from(d) - 0.4), at(-f64::from(d) - 0.1)])
            .collect();
        let policy = RetentionPolicy {
            keep_daily: 3,
            ..none()
        };
        // Per day the later one (-0.1) is newest: indices 1, 3, 5 for days 0, 1, 2.
        assert_eq!(keep(&times, now, &policy), BTreeSet::from([1, 3, 5]));
    }

    #[test]
    fn weekly_and_monthly() {
        let now = at(0.0);
        let times: Vec<SystemTime> = (0..120).map(|d| at(-f64::from(d))).collect();
        let weekly = RetentionPolicy {
            keep_weekly: 4,
            ..none()
        };
        let kept = keep(&times, now, &weekly);
        assert_eq!(kept.len(), 4);
        // The newest backup of each week is its latest day: 0 for this week, then the
        // Sundays before it. 2026-11-23 is a Monday, so the previous Sundays are 1, 8, 15 days ago.
        assert_eq!(kept, BTreeSet::from([0, 1, 8, 15]));
        let monthly = RetentionPolicy {
            keep_monthly: 3,
            ..none()
        };
        // Today (Nov 23), Oct 31 (23 days ago), Sep 30 (54 days ago).
        assert_eq!(keep(&times, now, &monthly), BTreeSet::from([0, 23, 54]));
    }

    #[test]
    fn rules_combine_as_union() {
        let now = at(0.0);
        let times: Vec<SystemTime> = (0..10).map(|d| at(-f64::from(d) * 10.0)).collect();
        let policy = RetentionPolicy {
            within_days: 15,
            keep_last: 1,
            keep_monthly: 2,
            ..none()
        };
        // within 15 days: 0 (today), 1 (10 days ago); monthly: newest in Nov (0) and in
        // Oct (index 3, 30 days ago = Oct 24).
        assert_eq!(keep(&times, now, &policy), BTreeSet::from([0, 1, 3]));
        assert!(keep(&[], now, &policy).is_empty());
    }
}
