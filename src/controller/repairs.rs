//! How often each object's bucket was put back after a change made outside Kubernetes:
//! repairs that repeat within a window mean another writer, told once per window.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Repairs of one object within this window...
pub const WINDOW: Duration = Duration::from_secs(3600);
/// ...that many times, and the object's Warning Event goes out.
pub const REPEATED: usize = 3;

/// A run of repairs to report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repeated {
    pub count: usize,
    /// From the first repair of the run to the last.
    pub within: Duration,
}

/// The recent repairs of each object, by a hash of its uid.
#[derive(Debug, Default)]
pub struct Repairs {
    times: HashMap<u64, Vec<Instant>>,
}

impl Repairs {
    /// Notes a repair of object `key` at `now`. Returns the run to report when this one makes
    /// [`REPEATED`] within [`WINDOW`]; counting then starts afresh.
    pub fn record(&mut self, key: u64, now: Instant) -> Option<Repeated> {
        let times = self.times.entry(key).or_default();
        times.retain(|at| now.saturating_duration_since(*at) < WINDOW);
        times.push(now);
        if times.len() < REPEATED {
            return None;
        }
        let repeated = Repeated {
            count: times.len(),
            within: now.saturating_duration_since(times[0]),
        };
        self.times.remove(&key);
        Some(repeated)
    }

    pub fn forget(&mut self, key: u64) {
        self.times.remove(&key);
    }

    /// Keeps only the objects `alive` says still exist.
    pub fn retain(&mut self, alive: impl Fn(&u64) -> bool) {
        self.times.retain(|key, _| alive(key));
        self.times.shrink_to_fit();
    }

    /// Objects with repairs kept.
    pub fn len(&self) -> usize {
        self.times.len()
    }
}

/// `within` as a person says it: "45s", "4m10s", "1h0m".
pub fn spoken(within: Duration) -> String {
    let seconds = within.as_secs();
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m{}s", seconds / 60, seconds % 60),
        _ => format!("{}h{}m", seconds / 3600, seconds % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_third_repair_within_the_window_is_reported_once() {
        let mut repairs = Repairs::default();
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        assert_eq!(repairs.record(1, at(0)), None);
        assert_eq!(repairs.record(1, at(60)), None);
        assert_eq!(
            repairs.record(1, at(250)),
            Some(Repeated {
                count: 3,
                within: Duration::from_secs(250)
            })
        );
        // Counting starts afresh.
        assert_eq!(repairs.record(1, at(300)), None);
        assert_eq!(repairs.len(), 1);
    }

    #[test]
    fn repairs_further_apart_than_the_window_are_not_a_fight() {
        let mut repairs = Repairs::default();
        let start = Instant::now();
        for i in 0..10 {
            let at = start + WINDOW / 2 * i;
            assert_eq!(repairs.record(7, at), None, "repair {i}");
        }
        // Each object counts alone.
        assert_eq!(repairs.record(8, start), None);
        repairs.retain(|key| *key == 8);
        assert_eq!(repairs.len(), 1);
        repairs.forget(8);
        assert_eq!(repairs.len(), 0);
    }

    #[test]
    fn durations_are_spoken_in_their_largest_units() {
        assert_eq!(spoken(Duration::from_secs(45)), "45s");
        assert_eq!(spoken(Duration::from_secs(250)), "4m10s");
        assert_eq!(spoken(Duration::from_secs(3700)), "1h1m");
    }
}
