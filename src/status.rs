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
/// kstatus's "abnormal-true" condition: the last pass failed for a cause that may go away by
/// itself, and the object is retried. kstatus (Flux, `kubectl wait`-style tools) reads it as
/// InProgress.
pub const RECONCILING: &str = "Reconciling";
/// kstatus's "abnormal-true" condition: the outcome cannot change until someone changes
/// something (the spec, a grant, the bucket's other holder, the store). kstatus reads it as
/// Failed, so a Flux Kustomization that waits for the object fails at once.
pub const STALLED: &str = "Stalled";

/// What kstatus should conclude for an object whose latest outcome is `reason`, through the
/// conditions [`next_status`] sets beside Ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Nothing left to do (Ready, or ObserveOnly reporting what it found): no extra condition.
    Done,
    /// Retried until the cause goes away: `Reconciling=True`.
    Retrying,
    /// Waits for a change made by someone: `Stalled=True`.
    Stalled,
}

impl Progress {
    pub fn of(reason: Reason) -> Progress {
        match reason {
            // ObserveOnly did what it was asked: it looked and reported. The difference stays
            // in Ready (False, Drifted) for whoever wants to act on it.
            Reason::InSync | Reason::Applied | Reason::Drifted => Progress::Done,
            Reason::Unavailable
            | Reason::BucketNotFound
            | Reason::CredentialsNotFound
            | Reason::AccessDenied => Progress::Retrying,
            Reason::InvalidSpec
            | Reason::Conflict
            | Reason::Unsupported
            | Reason::Rejected
            | Reason::NotPersisted
            | Reason::NotPermitted
            | Reason::EndpointNotAllowed
            | Reason::ExpectationFailed => Progress::Stalled,
        }
    }

    fn condition(self) -> Option<&'static str> {
        match self {
            Progress::Done => None,
            Progress::Retrying => Some(RECONCILING),
            Progress::Stalled => Some(STALLED),
        }
    }
}

/// The status after `outcome`, given the `previous` one. `lastTransitionTime` is kept while a
/// condition keeps its status, and `lastSyncTime` moves only when the pass wrote to the bucket
/// or something else in the status changed, so an unchanged object needs no status write.
///
/// Beside Ready, at most one of `Reconciling` and `Stalled` is present, True, with the reason
/// and message of Ready (see [`Progress`]); the other is removed, as the kstatus convention
/// reads an absent abnormal-true condition as False.
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
    let condition = |type_: &str, status: &str| {
        let previous = previous.and_then(|s| s.conditions.iter().find(|c| c.type_ == type_));
        let last_transition_time = match previous {
            Some(c) if c.status == status => c.last_transition_time.clone(),
            _ => now.to_owned(),
        };
        Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: outcome.reason.as_str().to_owned(),
            message: outcome.message.clone(),
            last_transition_time,
            observed_generation: generation,
        }
    };
    let ours = [READY, RECONCILING, STALLED];
    let mut conditions = vec![condition(READY, ready_status)];
    conditions.extend(
        Progress::of(outcome.reason)
            .condition()
            .map(|type_| condition(type_, "True")),
    );
    // Conditions someone else set are kept, after ours.
    conditions.extend(previous.into_iter().flat_map(|s| {
        s.conditions
            .iter()
            .filter(|c| !ours.contains(&c.type_.as_str()))
            .cloned()
    }));

    let rule_count = outcome
        .rule_count
        .map(|n| i32::try_from(n).unwrap_or(i32::MAX))
        .or_else(|| previous.and_then(|s| s.rule_count));

    let mut next = BucketCorsStatus {
        observed_generation: generation,
        last_sync_time: previous.and_then(|s| s.last_sync_time.clone()),
        rule_count,
        previous_configuration: previous.and_then(|s| s.previous_configuration.clone()),
        holding: previous.and_then(|s| s.holding.clone()),
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

    /// kstatus's verdict on a custom resource, rule for rule as sigs.k8s.io/cli-utils
    /// `pkg/kstatus/status` computes it (`Compute`: `checkGenericProperties`, then "Resource is
    /// current" for a kind without built-in rules): deletion first, then a generation not yet
    /// observed, then the first condition `Reconciling=True` or `Stalled=True` in list order.
    fn kstatus(obj: &serde_json::Value) -> &'static str {
        if obj["metadata"]["deletionTimestamp"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
        {
            return "Terminating";
        }
        if let (Some(generation), Some(observed)) = (
            obj["metadata"]["generation"].as_i64(),
            obj["status"]["observedGeneration"].as_i64(),
        ) && generation != observed
        {
            return "InProgress";
        }
        for c in obj["status"]["conditions"].as_array().into_iter().flatten() {
            match (c["type"].as_str(), c["status"].as_str()) {
                (Some("Reconciling"), Some("True")) => return "InProgress",
                (Some("Stalled"), Some("True")) => return "Failed",
                _ => {}
            }
        }
        "Current"
    }

    fn object(generation: i64, status: &BucketCorsStatus) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "bucketcors.dev/v1alpha1",
            "kind": "BucketCors",
            "metadata": {"name": "site", "namespace": "web", "generation": generation},
            "status": status,
        })
    }

    #[test]
    fn kstatus_reads_every_outcome_as_the_table_says() {
        // What a Flux Kustomization with `wait: true` (kstatus) concludes for each reason.
        let table = [
            (Reason::InSync, "Current"),
            (Reason::Applied, "Current"),
            (Reason::Drifted, "Current"),
            (Reason::Unavailable, "InProgress"),
            (Reason::BucketNotFound, "InProgress"),
            (Reason::CredentialsNotFound, "InProgress"),
            (Reason::AccessDenied, "InProgress"),
            (Reason::InvalidSpec, "Failed"),
            (Reason::Conflict, "Failed"),
            (Reason::Unsupported, "Failed"),
            (Reason::Rejected, "Failed"),
            (Reason::NotPersisted, "Failed"),
            (Reason::NotPermitted, "Failed"),
            (Reason::EndpointNotAllowed, "Failed"),
            (Reason::ExpectationFailed, "Failed"),
        ];
        assert_eq!(
            table.len(),
            Reason::ALL.len(),
            "every reason is in the table"
        );
        for (reason, expected) in table {
            let status = next_status(None, &Outcome::new(reason, "why"), Some(3), T1);
            assert_eq!(kstatus(&object(3, &status)), expected, "{reason}");
            // A spec edit the operator has not seen yet is in progress, whatever came before.
            assert_eq!(kstatus(&object(4, &status)), "InProgress", "{reason}");
            // The extra condition carries Ready's reason and message.
            for c in &status.conditions[1..] {
                assert_eq!(
                    (c.status.as_str(), c.reason.as_str()),
                    ("True", reason.as_str())
                );
                assert_eq!(
                    (c.message.as_str(), c.observed_generation),
                    ("why", Some(3))
                );
            }
        }
        let mut deleted = object(
            3,
            &next_status(None, &Outcome::new(Reason::InSync, "ok"), Some(3), T1),
        );
        deleted["metadata"]["deletionTimestamp"] = "2026-11-21T10:00:00Z".into();
        assert_eq!(kstatus(&deleted), "Terminating");
    }

    #[test]
    fn stalled_and_reconciling_go_once_the_cause_does() {
        let stalled = next_status(None, &Outcome::new(Reason::InvalidSpec, "bad"), Some(1), T1);
        let types: Vec<_> = stalled
            .conditions
            .iter()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(types, [READY, STALLED]);
        let retrying = next_status(
            Some(&stalled),
            &Outcome::new(Reason::Unavailable, "down"),
            Some(2),
            T2,
        );
        let types: Vec<_> = retrying
            .conditions
            .iter()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(types, [READY, RECONCILING]);
        // Ready stayed False: its transition time stays; Reconciling is new.
        assert_eq!(retrying.conditions[0].last_transition_time, T1);
        assert_eq!(retrying.conditions[1].last_transition_time, T2);
        let fixed = next_status(
            Some(&retrying),
            &Outcome::new(Reason::Applied, "put"),
            Some(2),
            T2,
        );
        let types: Vec<_> = fixed.conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, [READY]);
        assert_eq!(kstatus(&object(2, &fixed)), "Current");
    }

    #[test]
    fn a_repeated_failure_changes_nothing_so_nothing_is_written() {
        for reason in [Reason::Unavailable, Reason::Rejected] {
            let first = next_status(None, &Outcome::new(reason, "same"), Some(1), T1);
            let again = next_status(Some(&first), &Outcome::new(reason, "same"), Some(1), T2);
            assert_eq!(first, again, "{reason}");
        }
    }
}
