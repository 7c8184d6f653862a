//! Live verification: the expectations of a spec sent to the bucket as real preflights, and the
//! `Verified` condition that says what the store answered. Pure: the answers are passed in.

use crate::api::{BucketCorsSpec, BucketCorsStatus, Condition};
use crate::cors::Expectation;
use crate::s3::{PreflightAnswer, S3Error};
use crate::status::{MESSAGE_MAX, bounded};

/// The condition's type.
pub const VERIFIED: &str = "Verified";
/// At most this many expectations are sent per pass: a few requests per object per resync.
pub const MAX_SENT: usize = 5;
/// The object the preflights ask about when the spec names none.
pub const DEFAULT_KEY: &str = "index.html";

/// What to send for `spec`, when live verification is on and there is something to send: the
/// key and the first [`MAX_SENT`] expectations.
pub fn plan(spec: &BucketCorsSpec) -> Option<(&str, &[Expectation])> {
    let verify = spec.verify.as_ref().filter(|v| v.live)?;
    if spec.expectations.is_empty() {
        return None;
    }
    let sent = &spec.expectations[..spec.expectations.len().min(MAX_SENT)];
    Some((verify.key.as_deref().unwrap_or(DEFAULT_KEY), sent))
}

/// Whether the store let the preflight through: a 2xx answer with
/// `Access-Control-Allow-Origin` for the origin (or `*`).
pub fn store_allowed(answer: &PreflightAnswer, origin: &str) -> bool {
    (200..300).contains(&answer.status)
        && answer
            .header("access-control-allow-origin")
            .is_some_and(|o| o == "*" || o == origin)
}

/// The verdict on the answers to `sent` (in order), as (status, reason, message) of the
/// `Verified` condition: True when each was answered as declared, False naming each that was
/// not, Unknown when a request got no answer.
pub fn judge(
    sent: &[Expectation],
    answers: &[Result<PreflightAnswer, S3Error>],
    total: usize,
) -> (&'static str, &'static str, String) {
    let mut differ = Vec::new();
    let mut failed = Vec::new();
    for (index, (expectation, answer)) in sent.iter().zip(answers).enumerate() {
        let label = match &expectation.name {
            Some(name) => format!("spec.expectations[{index}] {name:?}"),
            None => format!("spec.expectations[{index}]"),
        };
        match answer {
            Err(err) => failed.push(format!("{label}: {err}")),
            Ok(answer) => {
                let allowed = store_allowed(answer, &expectation.origin);
                if allowed != expectation.allowed {
                    differ.push(format!(
                        "{label} ({} from {}): declared {}, the store answered {}{}",
                        expectation.method,
                        expectation.origin,
                        if expectation.allowed {
                            "allowed"
                        } else {
                            "refused"
                        },
                        answer.status,
                        answer
                            .header("access-control-allow-origin")
                            .map(|o| format!(" with Access-Control-Allow-Origin {o}"))
                            .unwrap_or_default()
                    ));
                }
            }
        }
    }
    let unsent = total.saturating_sub(sent.len());
    let tail = if unsent > 0 {
        format!("; {unsent} more expectation(s) were not sent (at most {MAX_SENT} are)")
    } else {
        String::new()
    };
    let (status, reason, message) = if !differ.is_empty() {
        (
            "False",
            "StoreDiffers",
            format!(
                "{} of {} preflight(s) were not answered as declared: {}{tail}",
                differ.len(),
                sent.len(),
                differ.join("; ")
            ),
        )
    } else if !failed.is_empty() {
        (
            "Unknown",
            "NoAnswer",
            format!("the store did not answer: {}{tail}", failed.join("; ")),
        )
    } else {
        (
            "True",
            "Verified",
            format!(
                "the store answered each of {} preflight(s) as declared{tail}",
                sent.len()
            ),
        )
    };
    (status, reason, bounded(&message, MESSAGE_MAX))
}

/// The verdict of a pass that ended `reason` without verifying: when it failed (a Conflict,
/// Drifted, an unavailable store...), a `Verified` condition already there no longer says how
/// the bucket answers now, so it becomes Unknown, `Stale`.
pub fn stale(
    status: &BucketCorsStatus,
    reason: crate::reason::Reason,
) -> Option<(&'static str, &'static str, String)> {
    let verified = status.conditions.iter().any(|c| c.type_ == VERIFIED);
    (verified && !reason.is_ready()).then(|| {
        (
            "Unknown",
            "Stale",
            format!("not verified since the last pass ended {reason}: the verdict before it may no longer hold"),
        )
    })
}

/// `status` with the `Verified` condition set to `verdict` (its transition time kept while its
/// status is the same), or removed when `enabled` is false. With no verdict (the pass could not
/// verify) an existing condition stays as it was.
pub fn apply(
    status: &mut BucketCorsStatus,
    verdict: Option<(&str, &str, String)>,
    enabled: bool,
    generation: Option<i64>,
    now: &str,
) {
    let at = status.conditions.iter().position(|c| c.type_ == VERIFIED);
    if !enabled {
        if let Some(at) = at {
            status.conditions.remove(at);
        }
        return;
    }
    let Some((state, reason, message)) = verdict else {
        return;
    };
    let last_transition_time = match at.map(|i| &status.conditions[i]) {
        Some(c) if c.status == state => c.last_transition_time.clone(),
        _ => now.to_owned(),
    };
    let condition = Condition {
        type_: VERIFIED.to_owned(),
        status: state.to_owned(),
        reason: reason.to_owned(),
        message,
        last_transition_time,
        observed_generation: generation,
    };
    match at {
        Some(i) => status.conditions[i] = condition,
        None => status.conditions.push(condition),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reason::Reason;
    use crate::s3::Operation;

    #[test]
    fn a_verdict_goes_stale_when_a_pass_fails_and_only_then() {
        let mut status = BucketCorsStatus::default();
        assert_eq!(
            stale(&status, Reason::Conflict),
            None,
            "nothing to go stale"
        );
        apply(
            &mut status,
            Some(("True", "Verified", "ok".into())),
            true,
            Some(1),
            "2026-12-07T10:00:00Z",
        );
        for reason in [Reason::Conflict, Reason::Drifted, Reason::Unavailable] {
            let (state, why, message) = stale(&status, reason).unwrap();
            assert_eq!((state, why), ("Unknown", "Stale"));
            assert!(message.contains(reason.as_str()), "{message}");
        }
        assert_eq!(stale(&status, Reason::InSync), None);
        assert_eq!(stale(&status, Reason::Applied), None);
        let verdict = stale(&status, Reason::Conflict);
        apply(&mut status, verdict, true, Some(1), "2026-12-07T10:05:00Z");
        let condition = &status.conditions[0];
        assert_eq!(
            (condition.status.as_str(), condition.reason.as_str()),
            ("Unknown", "Stale")
        );
        assert_eq!(condition.last_transition_time, "2026-12-07T10:05:00Z");
    }

    const APP: &str = "https://app.example.com";

    fn answer(status: u16, allow_origin: Option<&str>) -> Result<PreflightAnswer, S3Error> {
        Ok(PreflightAnswer {
            url: "http://store/b/index.html".into(),
            status,
            headers: allow_origin
                .map(|o| ("access-control-allow-origin".to_owned(), o.to_owned()))
                .into_iter()
                .collect(),
        })
    }

    #[test]
    fn answers_as_declared_verify_and_each_difference_is_named() {
        let sent = [
            Expectation::new(APP, "GET", true).name("app"),
            Expectation::new("https://evil.example", "GET", false),
        ];
        let (status, reason, message) =
            judge(&sent, &[answer(200, Some(APP)), answer(403, None)], 2);
        assert_eq!((status, reason), ("True", "Verified"), "{message}");
        // Garage without a global alias lets everyone in.
        let (status, reason, message) =
            judge(&sent, &[answer(200, Some("*")), answer(200, Some("*"))], 7);
        assert_eq!((status, reason), ("False", "StoreDiffers"));
        assert_eq!(
            message,
            "1 of 2 preflight(s) were not answered as declared: spec.expectations[1] (GET from https://evil.example): declared refused, the store answered 200 with Access-Control-Allow-Origin *; 5 more expectation(s) were not sent (at most 5 are)"
        );
        // A 200 without the origin allowed is a refusal to a browser.
        assert!(!store_allowed(&answer(200, None).unwrap(), APP));
        assert!(!store_allowed(
            &answer(200, Some("https://other")).unwrap(),
            APP
        ));
        let unreachable = Err(S3Error::Unavailable {
            operation: Operation::Preflight,
            bucket: "b".into(),
            message: "timed out".into(),
        });
        let (status, reason, _) = judge(&sent[..1], &[unreachable], 1);
        assert_eq!((status, reason), ("Unknown", "NoAnswer"));
    }

    #[test]
    fn the_condition_keeps_its_transition_time_and_goes_when_disabled() {
        let mut status = BucketCorsStatus::default();
        apply(
            &mut status,
            Some(("True", "Verified", "ok".into())),
            true,
            Some(1),
            "T1",
        );
        apply(
            &mut status,
            Some(("True", "Verified", "ok".into())),
            true,
            Some(2),
            "T2",
        );
        assert_eq!(status.conditions.len(), 1);
        assert_eq!(status.conditions[0].last_transition_time, "T1");
        assert_eq!(status.conditions[0].observed_generation, Some(2));
        apply(&mut status, None, true, Some(2), "T3");
        assert_eq!(status.conditions[0].status, "True");
        apply(
            &mut status,
            Some(("False", "StoreDiffers", "x".into())),
            true,
            Some(2),
            "T4",
        );
        assert_eq!(status.conditions[0].last_transition_time, "T4");
        apply(&mut status, None, false, Some(2), "T5");
        assert!(status.conditions.is_empty());
    }

    #[test]
    fn only_a_live_spec_with_expectations_sends_and_at_most_five() {
        let mut spec: BucketCorsSpec =
            serde_json::from_value(serde_json::json!({"bucket": "b", "rules": []})).unwrap();
        assert!(plan(&spec).is_none());
        spec.verify = Some(crate::api::Verify {
            live: true,
            key: None,
        });
        assert!(plan(&spec).is_none(), "no expectations, nothing to send");
        spec.expectations = (0..8).map(|_| Expectation::new(APP, "GET", true)).collect();
        let (key, sent) = plan(&spec).unwrap();
        assert_eq!((key, sent.len()), ("index.html", MAX_SENT));
        spec.verify.as_mut().unwrap().live = false;
        assert!(plan(&spec).is_none());
    }
}
