//! The status an outcome leads to. Pure: the time is passed in, so it is tested without a clock.

use crate::api::{BucketCorsStatus, Condition};
use crate::reason::Reason;

/// What one pass over an object concluded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub reason: Reason,
    pub message: String,
    /// Rules the bucket holds after the pass, when the pass found out.
    pub rule_count: Option<usize>,
}

/// Longest condition message, in bytes: every status write stays far below etcd's object
/// limit whatever a spec or a store says.
pub const MESSAGE_MAX: usize = 4096;

impl Outcome {
    /// The outcome with its message bounded (see [`bounded`]).
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Outcome {
            reason,
            message: bounded(&message.into(), MESSAGE_MAX),
            rule_count: None,
        }
    }

    pub fn with_rule_count(mut self, count: usize) -> Self {
        self.rule_count = Some(count);
        self
    }
}

/// `text` made fit for a condition message or an Event note: control characters (line breaks
/// from a store's answer, escapes) become spaces, and a text longer than `max_bytes` is cut on
/// a character boundary with a count of what was cut.
pub fn bounded(text: &str, max_bytes: usize) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.len() <= max_bytes {
        return clean;
    }
    // Room for the suffix, whose length depends on the count it reports.
    let suffix = |cut: usize| format!("… ({cut} more bytes)");
    let keep = clean.floor_char_boundary(max_bytes.saturating_sub(suffix(clean.len()).len()));
    format!("{}{}", &clean[..keep], suffix(clean.len() - keep))
}

pub const READY: &str = "Ready";

/// The status after `outcome`, given the `previous` one. `lastTransitionTime` is kept while the
/// Ready status stays the same, and `lastSyncTime` moves only when the pass wrote to the bucket
/// or something else in the status changed, so an unchanged object needs no status write.
pub fn next_status(
    previous: Option<&BucketCorsStatus>,
    outcome: &Outcome,
    generation: Option<i64>,
    now: &str,
) -> BucketCorsStatus {
    let ready_status = if outcome.reason.is_ready() {
        "True"
    } else {
        "False"
    };
    let previous_ready = previous.and_then(|s| s.conditions.iter().find(|c| c.type_ == READY));
    let last_transition_time = match previous_ready {
        Some(c) if c.status == ready_status => c.last_transition_time.clone(),
        _ => now.to_owned(),
    };
    let ready = Condition {
        type_: READY.to_owned(),
        status: ready_status.to_owned(),
        reason: outcome.reason.as_str().to_owned(),
        message: outcome.message.clone(),
        last_transition_time,
        observed_generation: generation,
    };
    let mut conditions: Vec<Condition> = previous
        .map(|s| {
            s.conditions
                .iter()
                .filter(|c| c.type_ != READY)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    conditions.insert(0, ready);

    let rule_count = outcome
        .rule_count
        .map(|n| i32::try_from(n).unwrap_or(i32::MAX))
        .or_else(|| previous.and_then(|s| s.rule_count));

    let mut next = BucketCorsStatus {
        observed_generation: generation,
        last_sync_time: previous.and_then(|s| s.last_sync_time.clone()),
        rule_count,
        previous_configuration: previous.and_then(|s| s.previous_configuration.clone()),
        conditions,
    };
    let wrote = outcome.reason == Reason::Applied;
    if wrote || previous != Some(&next) {
        next.last_sync_time = Some(now.to_owned());
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_texts_fit_and_say_how_much_was_cut() {
        assert_eq!(bounded("short", 100), "short");
        assert_eq!(bounded("line\nbreak\ttab\u{7}", 100), "line break tab ");
        let long = "é".repeat(5000);
        let cut = bounded(&long, MESSAGE_MAX);
        assert!(cut.len() <= MESSAGE_MAX, "{}", cut.len());
        assert!(cut.ends_with(" more bytes)"), "{cut}");
        let kept = cut.chars().take_while(|c| *c == 'é').count() * 2;
        assert!(
            cut.contains(&format!("… ({} more bytes)", 10_000 - kept)),
            "{cut}"
        );
        // Every message of an outcome is bounded, whatever made it.
        let outcome = Outcome::new(Reason::InvalidSpec, "x".repeat(2_000_000));
        assert!(outcome.message.len() <= MESSAGE_MAX);
    }

    const T1: &str = "2026-11-21T10:00:00Z";
    const T2: &str = "2026-11-21T10:05:00Z";

    fn ready(status: &BucketCorsStatus) -> &Condition {
        status.conditions.iter().find(|c| c.type_ == READY).unwrap()
    }

    #[test]
    fn first_outcome_sets_everything() {
        let s = next_status(
            None,
            &Outcome::new(Reason::Applied, "put 2 rule(s)").with_rule_count(2),
            Some(1),
            T1,
        );
        assert_eq!(s.observed_generation, Some(1));
        assert_eq!(s.rule_count, Some(2));
        assert_eq!(s.last_sync_time.as_deref(), Some(T1));
        let c = ready(&s);
        assert_eq!(
            (
                c.status.as_str(),
                c.reason.as_str(),
                c.last_transition_time.as_str()
            ),
            ("True", "Applied", T1)
        );
        assert_eq!(c.observed_generation, Some(1));
    }

    #[test]
    fn an_unchanged_outcome_changes_nothing() {
        let insync = Outcome::new(Reason::InSync, "the bucket matches").with_rule_count(2);
        let first = next_status(None, &insync, Some(1), T1);
        let second = next_status(Some(&first), &insync, Some(1), T2);
        assert_eq!(first, second);
    }

    #[test]
    fn transition_time_is_kept_while_ready_keeps_its_status() {
        let applied = next_status(None, &Outcome::new(Reason::Applied, "put"), Some(1), T1);
        let insync = next_status(
            Some(&applied),
            &Outcome::new(Reason::InSync, "ok"),
            Some(1),
            T2,
        );
        assert_eq!(ready(&insync).reason, "InSync");
        assert_eq!(ready(&insync).last_transition_time, T1);
        assert_eq!(insync.last_sync_time.as_deref(), Some(T2));
    }

    #[test]
    fn transition_time_moves_when_ready_flips() {
        let applied = next_status(None, &Outcome::new(Reason::Applied, "put"), Some(1), T1);
        let down = next_status(
            Some(&applied),
            &Outcome::new(Reason::Unavailable, "timeout"),
            Some(1),
            T2,
        );
        assert_eq!(ready(&down).status, "False");
        assert_eq!(ready(&down).last_transition_time, T2);
    }

    #[test]
    fn every_write_moves_the_sync_time() {
        let applied = Outcome::new(Reason::Applied, "put 1 rule(s)").with_rule_count(1);
        let first = next_status(None, &applied, Some(1), T1);
        let second = next_status(Some(&first), &applied, Some(1), T2);
        assert_eq!(second.last_sync_time.as_deref(), Some(T2));
    }

    #[test]
    fn a_failure_keeps_the_last_known_rule_count() {
        let ok = next_status(
            None,
            &Outcome::new(Reason::InSync, "ok").with_rule_count(3),
            Some(1),
            T1,
        );
        let failed = next_status(
            Some(&ok),
            &Outcome::new(Reason::Unavailable, "down"),
            Some(1),
            T2,
        );
        assert_eq!(failed.rule_count, Some(3));
    }

    #[test]
    fn other_condition_types_are_kept() {
        let mut previous = next_status(None, &Outcome::new(Reason::InSync, "ok"), Some(1), T1);
        previous.conditions.push(Condition {
            type_: "Other".into(),
            status: "True".into(),
            reason: "X".into(),
            message: String::new(),
            last_transition_time: T1.into(),
            observed_generation: None,
        });
        let next = next_status(
            Some(&previous),
            &Outcome::new(Reason::Applied, "put"),
            Some(2),
            T2,
        );
        assert_eq!(next.conditions.len(), 2);
        assert_eq!(next.conditions[1].type_, "Other");
    }
}
