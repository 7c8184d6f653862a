//! What one pass over an object does, decided without a cluster or a store: from the spec,
//! what the bucket holds, the status this operator last wrote and who holds the bucket, to
//! the write to make, the adoption record to keep and the outcome to report.

use std::hash::{DefaultHasher, Hash, Hasher};

use crate::admission;
use crate::api::{BucketCors, BucketCorsSpec, BucketCorsStatus, DeletionPolicy, ManagementPolicy};
use crate::api::{ObservedRule, PreviousConfiguration};
use crate::cors::{self, CorsRule, Plan};
use crate::profiles::Profile;
use crate::reason::Reason;
use crate::status::Outcome;

/// Who may write the bucket an object names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ownership {
    /// This object holds the bucket (or nothing else competes for it).
    Holds,
    /// Another object holds it; this one writes nothing while that one exists.
    Waits {
        /// The holder's name when it is in this object's namespace; of another namespace
        /// nothing is told.
        holder: Option<String>,
    },
    /// The operator does not count this object among those that could write the bucket (yet):
    /// it writes nothing.
    Unknown,
}

/// A write to the bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    Put(Vec<CorsRule>),
    Delete,
}

/// What the bucket held when this object first saw it as its holder, to keep in
/// `status.previousConfiguration`.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub previous: PreviousConfiguration,
    /// Whether the record must reach the API before the bucket is written: it holds rules
    /// that would be lost, or the object restores on delete (so "it had none" matters).
    /// Otherwise it travels with the pass's status.
    pub before_write: bool,
}

impl Record {
    /// Rules the bucket had that this object did not write (announced as Adopted).
    pub fn adopted(&self) -> usize {
        self.previous.rules.len()
    }
}

/// The last successful write of one object, kept by the operator between passes: a store
/// that did not keep it is not written again until the spec or its answer changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastWrite {
    /// The generation whose spec was written.
    pub generation: Option<i64>,
    /// The write was a delete.
    pub deleted: bool,
    /// [`fingerprint`] of what the store answered when the bucket was read back after the
    /// write, when that was not what was written (the write was not kept).
    pub unkept: Option<u64>,
    /// [`fingerprint`] of the configuration the store brought back by itself after that
    /// delete (its default), once a pass has seen it.
    pub store_default: Option<u64>,
}

impl LastWrite {
    /// A write (a delete when `deleted`) of generation `generation`.
    pub fn new(generation: Option<i64>, deleted: bool) -> Self {
        LastWrite {
            generation,
            deleted,
            unkept: None,
            store_default: None,
        }
    }

    /// This delete, with the configuration the store brought back after it (fingerprint
    /// `default`).
    pub fn with_store_default(self, default: u64) -> Self {
        LastWrite {
            store_default: Some(default),
            ..self
        }
    }

    /// This write, which the store answered with `answer` instead of keeping it.
    pub fn not_kept(self, answer: &[CorsRule]) -> Self {
        LastWrite {
            unkept: Some(fingerprint(answer)),
            ..self
        }
    }
}

/// What the bucket shows when read back right after a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadBack {
    /// What was written (after a delete on a store that brings its default back: any
    /// configuration, that default).
    Kept,
    /// What it held before the write: the write may not have reached every replica yet.
    Before,
    /// Something else: the store changed what it was given (dropped IDs, normalised values,
    /// lost rules).
    Altered,
}

/// How the store answered `after` to a read back of `write`, made over a bucket that held
/// `before`.
pub fn read_back(
    profile: &Profile,
    spec: &BucketCorsSpec,
    write: &Write,
    before: &[CorsRule],
    after: &[CorsRule],
) -> ReadBack {
    let default_came_back = matches!(write, Write::Delete) && profile.default_after_delete;
    if default_came_back || cors::diff(&spec.rules, after) == Plan::NoChange {
        ReadBack::Kept
    } else if fingerprint(after) == fingerprint(before) {
        ReadBack::Before
    } else {
        ReadBack::Altered
    }
}

/// The outcome of a pass whose `decision` wrote, and what to remember of the write, once the
/// bucket read back `after`: what was decided when the store kept it; NotPersisted, naming
/// the difference, when it did not (`found` is Before once the store's propagation time has
/// passed, or Altered).
pub fn settle(
    spec: &BucketCorsSpec,
    decision: &Decision,
    found: ReadBack,
    after: &[CorsRule],
) -> (Outcome, Option<LastWrite>) {
    if found == ReadBack::Kept {
        let deleted = matches!(decision.write, Some(Write::Delete));
        let remembered = decision.last_write.map(|w| {
            if deleted && !after.is_empty() {
                w.with_store_default(fingerprint(after))
            } else {
                w
            }
        });
        return (decision.outcome.clone(), remembered);
    }
    (
        unkept_outcome(spec, after),
        decision.last_write.map(|w| w.not_kept(after)),
    )
}

/// NotPersisted: the store took a write of `spec`'s rules and answers `answer` instead. The
/// same words at the write and at every pass after it, so that the status and the Event do
/// not change while nothing does.
fn unkept_outcome(spec: &BucketCorsSpec, answer: &[CorsRule]) -> Outcome {
    Outcome::new(
        Reason::NotPersisted,
        format!(
            "the store took the write of these rules but answers otherwise ({}): it does not keep them as written; nothing more is written until the spec or what the bucket holds changes",
            cors::describe_drift(&spec.rules, answer)
        ),
    )
    .with_rule_count(answer.len())
}

/// What a pass does.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The difference between spec and bucket, when the bucket was compared.
    pub plan: Option<Plan>,
    pub write: Option<Write>,
    pub record: Option<Record>,
    /// The pass's outcome when it writes nothing, or when its write succeeds.
    pub outcome: Outcome,
    /// What the operator remembers of this object's last write once the pass succeeds: the
    /// new write, none after the bucket was found in sync, or the last one (with the store's
    /// default configuration, once a pass has seen it come back after this object's delete).
    pub last_write: Option<LastWrite>,
}

impl Decision {
    fn stop(outcome: Outcome, last_write: Option<&LastWrite>) -> Self {
        Decision {
            plan: None,
            write: None,
            record: None,
            outcome,
            last_write: last_write.copied(),
        }
    }
}

/// Why a pass stops before reading the bucket: the spec breaks an S3 rule, or another object
/// holds the bucket. No S3 call is made for either.
pub fn precheck(spec: &BucketCorsSpec, ownership: &Ownership) -> Result<(), Outcome> {
    valid(spec)?;
    expected(spec)?;
    unheld(spec, ownership)
}

/// InvalidSpec when the spec breaks an S3 rule.
pub fn valid(spec: &BucketCorsSpec) -> Result<(), Outcome> {
    admission::validate(spec).map_err(|errors| {
        let message = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        Outcome::new(Reason::InvalidSpec, message)
    })
}

/// The annotation that carries, in the operator's cache only, the verdict on an object whose
/// spec it refuses, once [`lighten`] has dropped its rules. The cache drops every annotation
/// the API server sends before, so no one else can set it.
pub const REFUSED: &str = "bucketcors.dev/refused";

/// InvalidSpec when `obj`'s spec breaks an S3 rule: [`valid`] on its spec, or the verdict the
/// cache kept in place of its rules.
pub fn admitted(obj: &BucketCors) -> Result<(), Outcome> {
    match obj
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REFUSED))
    {
        Some(verdict) => Err(Outcome::new(Reason::InvalidSpec, verdict.as_str())),
        None => valid(&obj.spec),
    }
}

/// `obj` as the operator keeps it when it refuses its spec: its rules, which no pass reads
/// then, give way to the verdict (a message of at most [`crate::status::MESSAGE_MAX`] bytes).
/// A spec the API server takes can hold more than a megabyte of rules.
pub fn lighten(obj: &mut BucketCors) {
    if let Err(refused) = valid(&obj.spec) {
        obj.spec.rules = Vec::new();
        obj.metadata
            .annotations
            .get_or_insert_default()
            .insert(REFUSED.to_owned(), refused.message);
    }
}

/// ExpectationFailed when the rules of a valid spec break one of its `expectations`: the
/// configuration is not written (nor, with ObserveOnly, compared).
pub fn expected(spec: &BucketCorsSpec) -> Result<(), Outcome> {
    cors::check_expectations(&spec.rules, &spec.expectations).map_err(|failures| {
        let message = format!(
            "{} of {} expectation(s) failed; the rules were not written: {}",
            failures.len(),
            spec.expectations.len(),
            failures.join("; ")
        );
        Outcome::new(Reason::ExpectationFailed, message)
    })
}

/// Conflict when a `Full` object waits behind another holder of its bucket; Unavailable (it
/// is looked at again shortly) when the operator does not count it among the objects that
/// could write the bucket yet.
pub fn unheld(spec: &BucketCorsSpec, ownership: &Ownership) -> Result<(), Outcome> {
    match (spec.management_policy, ownership) {
        (ManagementPolicy::Full, Ownership::Waits { holder }) => {
            let holder = match holder {
                Some(name) => format!("BucketCors {name:?} of this namespace"),
                None => "another BucketCors".to_owned(),
            };
            Err(Outcome::new(
                Reason::Conflict,
                format!(
                    "bucket {:?} is managed by {holder}, which held it first; this object writes nothing while that one exists",
                    spec.bucket
                ),
            ))
        }
        (ManagementPolicy::Full, Ownership::Unknown) => Err(Outcome::new(
            Reason::Unavailable,
            "the operator does not know yet whether this object may write its bucket; nothing was written",
        )),
        _ => Ok(()),
    }
}

/// The pass over an object whose bucket, on a store with `profile`, holds `observed`.
/// `status` is the last status this operator wrote (or, after a restart, the one the API
/// holds); `last_write` this object's last successful write, if the operator remembers one.
#[allow(clippy::too_many_arguments)]
pub fn decide_on(
    profile: &Profile,
    spec: &BucketCorsSpec,
    generation: Option<i64>,
    observed: &[CorsRule],
    status: Option<&BucketCorsStatus>,
    ownership: &Ownership,
    last_write: Option<&LastWrite>,
    now: &str,
) -> Decision {
    if let Err(outcome) = precheck(spec, ownership) {
        return Decision::stop(outcome, last_write);
    }
    let plan = cors::diff(&spec.rules, observed);
    // "No rules" on a store that brings its default back after a delete is that default: the
    // configuration that came back after this object's delete is left alone (and told apart
    // from one written by hand later, which is deleted again).
    let store_default = (profile.default_after_delete
        && spec.management_policy == ManagementPolicy::Full
        && plan == Plan::Delete
        && last_write.is_some_and(|w| {
            w.deleted
                && w.generation == generation
                && w.store_default.is_none_or(|d| d == fingerprint(observed))
        }))
    .then(|| fingerprint(observed));
    let in_sync = || {
        Outcome::new(
            Reason::InSync,
            format!(
                "the bucket holds the {} rule(s) of the spec",
                observed.len()
            ),
        )
        .with_rule_count(observed.len())
    };
    let (write, outcome) = match (&plan, spec.management_policy) {
        (Plan::NoChange, _) => (None, in_sync()),
        _ if store_default.is_some() => (
            None,
            Outcome::new(
                Reason::InSync,
                format!(
                    "the bucket holds {}'s default configuration ({} rule(s)), which the store brings back after a delete; the spec asks for no rules of its own",
                    profile.name,
                    observed.len()
                ),
            )
            .with_rule_count(observed.len()),
        ),
        (_, ManagementPolicy::ObserveOnly) => (
            None,
            Outcome::new(Reason::Drifted, cors::describe_drift(&spec.rules, observed))
                .with_rule_count(observed.len()),
        ),
        (_, ManagementPolicy::Full) if unkept(last_write, generation, observed) => {
            (None, unkept_outcome(spec, observed))
        }
        (Plan::Put(rules), ManagementPolicy::Full) => (
            Some(Write::Put(rules.clone())),
            Outcome::new(
                Reason::Applied,
                format!("put {} rule(s) on the bucket", rules.len()),
            )
            .with_rule_count(rules.len()),
        ),
        (Plan::Delete, ManagementPolicy::Full) => (
            Some(Write::Delete),
            Outcome::new(Reason::Applied, "removed the bucket's CORS configuration")
                .with_rule_count(0),
        ),
    };
    // A holder records what the bucket held the first time it sees it, whether it writes or
    // not: `Restore` puts back what was there before the object existed.
    let recorded = status.is_some_and(|s| s.previous_configuration.is_some());
    let holds = spec.management_policy == ManagementPolicy::Full;
    let record = (holds && !recorded).then(|| Record {
        previous: PreviousConfiguration {
            rules: observed.iter().cloned().map(ObservedRule::from).collect(),
            recorded_at: now.to_owned(),
        },
        before_write: write.is_some()
            && (!observed.is_empty() || spec.deletion_policy == DeletionPolicy::Restore),
    });
    let last_write = match (&write, &plan, store_default) {
        (Some(write), _, _) => Some(LastWrite::new(generation, matches!(write, Write::Delete))),
        (None, Plan::NoChange, _) => None,
        (None, _, Some(default)) => last_write.map(|w| w.with_store_default(default)),
        (None, _, None) => last_write.copied(),
    };
    Decision {
        plan: Some(plan),
        write,
        record,
        outcome,
        last_write,
    }
}

/// Whether the last write, of this same spec, was not kept and the store still answers what
/// it answered then: writing again would change nothing.
fn unkept(last_write: Option<&LastWrite>, generation: Option<i64>, observed: &[CorsRule]) -> bool {
    last_write
        .is_some_and(|w| w.generation == generation && w.unkept == Some(fingerprint(observed)))
}

/// A digest of a bucket's rules, kept instead of the rules themselves.
pub fn fingerprint(rules: &[CorsRule]) -> u64 {
    let mut hasher = DefaultHasher::new();
    for rule in rules {
        rule.id.hash(&mut hasher);
        rule.allowed_origins.hash(&mut hasher);
        rule.allowed_methods.hash(&mut hasher);
        rule.allowed_headers.hash(&mut hasher);
        rule.expose_headers.hash(&mut hasher);
        rule.max_age_seconds.hash(&mut hasher);
    }
    rules.len().hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiles;
    use serde_json::json;

    const NOW: &str = "2026-12-02T10:00:00Z";

    fn spec(rules: serde_json::Value) -> BucketCorsSpec {
        serde_json::from_value(json!({"bucket": "bucket-b", "rules": rules})).unwrap()
    }

    fn ours() -> serde_json::Value {
        json!([{"id": "app", "allowedOrigins": ["https://app.example.com"], "allowedMethods": ["GET"]}])
    }

    fn theirs() -> Vec<CorsRule> {
        vec![CorsRule::new(["https://other.example.com"], ["PUT"])]
    }

    fn recorded() -> BucketCorsStatus {
        BucketCorsStatus {
            previous_configuration: Some(PreviousConfiguration::default()),
            ..Default::default()
        }
    }

    fn waits() -> Ownership {
        Ownership::Waits {
            holder: Some("first".into()),
        }
    }

    #[test]
    fn a_refused_object_is_kept_without_its_rules_and_still_refused_the_same() {
        let origins: Vec<String> = (0..40)
            .map(|k| format!("https://{k}.{}.example.com", "a".repeat(280)))
            .collect();
        let rules = vec![json!({"allowedOrigins": origins, "allowedMethods": ["GET"]}); 100];
        let mut obj = BucketCors::new("max", spec(json!(rules)));
        let verdict = valid(&obj.spec).unwrap_err();
        assert!(
            verdict.message.starts_with("spec.rules: serialize to"),
            "{}",
            verdict.message
        );
        lighten(&mut obj);
        assert!(obj.spec.rules.is_empty());
        assert_eq!(admitted(&obj), Err(verdict));

        // A valid object is kept whole.
        let mut fine = BucketCors::new("fine", spec(ours()));
        let before = fine.clone();
        lighten(&mut fine);
        assert_eq!(fine, before);
        assert_eq!(admitted(&fine), Ok(()));
    }

    #[test]
    fn a_first_write_over_rules_records_them_before_writing() {
        let s = spec(ours());
        let d = decide_on(
            &profiles::AWS,
            &s,
            Some(1),
            &theirs(),
            None,
            &Ownership::Holds,
            None,
            NOW,
        );
        assert!(
            matches!(d.write, Some(Write::Put(ref r)) if r == &s.rules),
            "{d:?}"
        );
        let record = d.record.expect("a record");
        assert!(record.before_write);
        assert_eq!(record.adopted(), 1);
        assert_eq!(record.previous.cors_rules(), theirs());
        assert_eq!(record.previous.recorded_at, NOW);
        assert_eq!(d.outcome.reason, Reason::Applied);
    }

    #[test]
    fn an_empty_bucket_is_recorded_with_the_outcome_unless_it_is_restored_later() {
        let mut s = spec(ours());
        let d = decide_on(
            &profiles::AWS,
            &s,
            Some(1),
            &[],
            None,
            &Ownership::Holds,
            None,
            NOW,
        );
        assert!(!d.record.unwrap().before_write);
        s.deletion_policy = DeletionPolicy::Restore;
        let d = decide_on(
            &profiles::AWS,
            &s,
            Some(1),
            &[],
            None,
            &Ownership::Holds,
            None,
            NOW,
        );
        assert!(d.record.unwrap().before_write);
    }

    #[test]
    fn a_record_once_made_is_never_made_again() {
        let s = spec(ours());
        let status = recorded();
        let d = decide_on(
            &profiles::AWS,
            &s,
            Some(2),
            &theirs(),
            Some(&status),
            &Ownership::Holds,
            None,
            NOW,
        );
        assert!(d.write.is_some());
        assert_eq!(d.record, None);
    }

    #[test]
    fn a_holder_records_what_it_first_sees_even_when_it_writes_nothing() {
        let s = spec(ours());
        let in_sync = s.rules.clone();
        let d = decide_on(
            &profiles::AWS,
            &s,
            Some(1),
            &in_sync,
            None,
            &Ownership::Holds,
            None,
            NOW,
        );
        assert_eq!(d.write, None);
        let record = d.record.expect("recorded at first sight");
        assert_eq!(record.previous.cors_rules(), in_sync);
        assert!(!record.before_write, "it travels with the pass's status");
        assert_eq!(d.outcome.reason, Reason::InSync);
        assert_eq!(d.outcome.rule_count, Some(1));

        let mut observe = spec(ours());
        observe.management_policy = ManagementPolicy::ObserveOnly;
        let d = decide_on(
            &profiles::AWS,
            &observe,
            Some(1),
            &theirs(),
            None,
            &Ownership::Holds,
            None,
            NOW,
        );
        assert_eq!((d.write, d.record), (None, None));
        assert_eq!(d.outcome.reason, Reason::Drifted);
    }

    #[test]
    fn a_waiting_object_reads_nothing_and_writes_nothing() {
        let s = spec(ours());
        let outcome = precheck(&s, &waits()).unwrap_err();
        assert_eq!(outcome.reason, Reason::Conflict);
        assert!(
            outcome.message.contains("\"bucket-b\""),
            "{}",
            outcome.message
        );
        assert!(
            outcome.message.contains("\"first\" of this namespace"),
            "{}",
            outcome.message
        );
        let elsewhere = precheck(&s, &Ownership::Waits { holder: None }).unwrap_err();
        assert!(
            elsewhere.message.contains("another BucketCors"),
            "{}",
            elsewhere.message
        );
        let d = decide_on(
            &profiles::AWS,
            &s,
            Some(1),
            &theirs(),
            None,
            &waits(),
            None,
            NOW,
        );
        assert_eq!((d.plan, d.write, d.record), (None, None, None));
        // Observing does not compete for a bucket.
        let mut observe = spec(ours());
        observe.management_policy = ManagementPolicy::ObserveOnly;
        assert!(precheck(&observe, &waits()).is_ok());
    }

    #[test]
    fn an_object_the_index_does_not_count_writes_nothing_and_looks_again_soon() {
        let s = spec(ours());
        let outcome = precheck(&s, &Ownership::Unknown).unwrap_err();
        assert_eq!(outcome.reason, Reason::Unavailable);
        assert!(outcome.reason.is_transient());
        let d = decide_on(
            &profiles::AWS,
            &s,
            Some(1),
            &theirs(),
            None,
            &Ownership::Unknown,
            None,
            NOW,
        );
        assert_eq!((d.plan, d.write, d.record), (None, None, None));
    }

    #[test]
    fn a_spec_that_breaks_its_expectations_writes_nothing_even_observing() {
        for policy in [ManagementPolicy::Full, ManagementPolicy::ObserveOnly] {
            let mut s = spec(ours());
            s.management_policy = policy;
            s.expectations = vec![
                cors::Expectation::new("https://app.example.com", "GET", true),
                cors::Expectation::new("https://app.example.com", "PUT", true).name("upload"),
            ];
            let outcome = expected(&s).unwrap_err();
            assert_eq!(outcome.reason, Reason::ExpectationFailed);
            assert!(
                outcome.message.starts_with(
                    r#"1 of 2 expectation(s) failed; the rules were not written: spec.expectations[1] "upload""#
                ),
                "{}",
                outcome.message
            );
            assert!(
                outcome
                    .message
                    .contains(r#"rule 1 (id "app"): method PUT is not in allowedMethods [GET]"#),
                "{}",
                outcome.message
            );
            let d = decide_on(
                &profiles::AWS,
                &s,
                Some(1),
                &theirs(),
                None,
                &Ownership::Holds,
                None,
                NOW,
            );
            assert_eq!((d.plan, d.write, d.record), (None, None, None));
            assert_eq!(d.outcome, outcome);
        }
        // An invalid spec is InvalidSpec first, whatever its expectations say.
        let mut s = spec(json!([{"allowedOrigins": ["*"], "allowedMethods": ["PATCH"]}]));
        s.expectations = vec![cors::Expectation::new("https://a.example", "GET", true)];
        let outcome = precheck(&s, &Ownership::Holds).unwrap_err();
        assert_eq!(outcome.reason, Reason::InvalidSpec);
    }

    #[test]
    fn an_invalid_spec_stops_before_anything_else() {
        let s = spec(
            json!([{"allowedOrigins": ["https://a.example.com"], "allowedMethods": ["PATCH"]}]),
        );
        let outcome = precheck(&s, &Ownership::Holds).unwrap_err();
        assert_eq!(outcome.reason, Reason::InvalidSpec);
        assert!(outcome.message.contains("PATCH"), "{}", outcome.message);
    }

    #[test]
    fn an_empty_spec_deletes_what_the_bucket_holds() {
        let s = spec(json!([]));
        let d = decide_on(
            &profiles::AWS,
            &s,
            Some(1),
            &theirs(),
            None,
            &Ownership::Holds,
            None,
            NOW,
        );
        assert_eq!(d.write, Some(Write::Delete));
        assert!(d.record.unwrap().before_write);
    }

    #[test]
    fn a_write_that_did_not_stick_is_not_made_again_until_something_changes() {
        let s = spec(ours());
        // What a store that drops IDs reads back after the first write.
        let dropped: Vec<CorsRule> = s
            .rules
            .iter()
            .cloned()
            .map(|mut r| {
                r.id = None;
                r
            })
            .collect();
        let last = LastWrite::new(Some(1), false).not_kept(&dropped);
        let status = recorded();
        let d = decide_on(
            &profiles::AWS,
            &s,
            Some(1),
            &dropped,
            Some(&status),
            &Ownership::Holds,
            Some(&last),
            NOW,
        );
        assert_eq!(d.write, None);
        assert_eq!(d.outcome.reason, Reason::NotPersisted);
        assert!(!d.outcome.reason.is_ready());
        // The bucket changed since: write.
        let d = decide_on(
            &profiles::AWS,
            &s,
            Some(1),
            &theirs(),
            Some(&status),
            &Ownership::Holds,
            Some(&last),
            NOW,
        );
        assert!(d.write.is_some());
        // The spec changed since: write.
        let d = decide_on(
            &profiles::AWS,
            &s,
            Some(2),
            &dropped,
            Some(&status),
            &Ownership::Holds,
            Some(&last),
            NOW,
        );
        assert!(d.write.is_some());
    }

    #[test]
    fn no_rules_on_a_store_that_brings_its_default_back_is_that_default() {
        let s = spec(json!([]));
        let default = vec![CorsRule::new(["*"], ["GET"])];
        let on = |profile, observed: &[CorsRule], last: Option<&LastWrite>| {
            decide_on(
                profile,
                &s,
                Some(1),
                observed,
                Some(&recorded()),
                &Ownership::Holds,
                last,
                NOW,
            )
        };
        // Before any delete: a configuration is deleted, whatever the store.
        assert_eq!(
            on(&profiles::WASABI, &theirs(), None).write,
            Some(Write::Delete)
        );
        // What came back after this object's delete is the store's default: left alone.
        let deleted = LastWrite::new(Some(1), true);
        let d = on(&profiles::WASABI, &default, Some(&deleted));
        assert_eq!(d.write, None);
        assert_eq!(d.outcome.reason, Reason::InSync);
        let known = deleted.with_store_default(fingerprint(&default));
        assert_eq!(d.last_write, Some(known));
        assert!(
            d.outcome.message.contains("Wasabi's default"),
            "{}",
            d.outcome.message
        );
        // Once known, the default keeps being left alone; anything else is deleted again.
        assert_eq!(on(&profiles::WASABI, &default, Some(&known)).write, None);
        assert_eq!(
            on(&profiles::WASABI, &theirs(), Some(&known)).write,
            Some(Write::Delete),
            "even the rules the first delete removed, written back by hand"
        );
        // A store without a default deletes again (then reports NotPersisted if that too
        // comes back unchanged).
        assert_eq!(
            on(&profiles::AWS, &default, Some(&deleted)).write,
            Some(Write::Delete)
        );
        // A delete of an older generation, or a write that was a put, says nothing of a default.
        let older = LastWrite::new(Some(0), true);
        assert_eq!(
            on(&profiles::WASABI, &default, Some(&older)).write,
            Some(Write::Delete)
        );
        let put = LastWrite::new(Some(1), false);
        assert_eq!(
            on(&profiles::WASABI, &default, Some(&put)).write,
            Some(Write::Delete)
        );
    }

    fn wrote(s: &BucketCorsSpec, before: &[CorsRule]) -> Decision {
        decide_on(
            &profiles::AWS,
            s,
            Some(1),
            before,
            Some(&recorded()),
            &Ownership::Holds,
            None,
            NOW,
        )
    }

    #[test]
    fn a_write_read_back_as_written_is_kept_whatever_the_bucket_held_before() {
        let s = spec(ours());
        for before in [Vec::new(), theirs()] {
            let d = wrote(&s, &before);
            let write = d.write.clone().expect("a write");
            let found = read_back(&profiles::AWS, &s, &write, &before, &s.rules);
            assert_eq!(found, ReadBack::Kept);
            let (outcome, remembered) = settle(&s, &d, found, &s.rules);
            assert_eq!(outcome.reason, Reason::Applied);
            assert_eq!(remembered, Some(LastWrite::new(Some(1), false)));
            // Deleted by hand afterwards: the next pass writes again.
            let again = decide_on(
                &profiles::AWS,
                &s,
                Some(1),
                &before,
                Some(&recorded()),
                &Ownership::Holds,
                remembered.as_ref(),
                NOW,
            );
            assert!(again.write.is_some(), "{again:?}");
        }
    }

    #[test]
    fn a_write_read_back_as_something_else_is_not_persisted_and_names_the_difference() {
        let s = spec(ours());
        let dropped = vec![CorsRule::new(["https://app.example.com"], ["GET"])];
        let d = wrote(&s, &[]);
        let write = d.write.clone().unwrap();
        let found = read_back(&profiles::AWS, &s, &write, &[], &dropped);
        assert_eq!(found, ReadBack::Altered);
        let (outcome, remembered) = settle(&s, &d, found, &dropped);
        assert_eq!(outcome.reason, Reason::NotPersisted);
        assert!(
            outcome.message.contains("differs in id"),
            "{}",
            outcome.message
        );
        let last = remembered.unwrap();
        assert_eq!(last.unkept, Some(fingerprint(&dropped)));
        // The next pass, finding the same answer, writes nothing and says the same.
        let next = decide_on(
            &profiles::AWS,
            &s,
            Some(1),
            &dropped,
            Some(&recorded()),
            &Ownership::Holds,
            Some(&last),
            NOW,
        );
        assert_eq!(next.write, None);
        assert_eq!(next.outcome, outcome);
    }

    #[test]
    fn a_write_read_back_as_before_is_not_yet_visible_then_not_persisted() {
        let s = spec(ours());
        let d = wrote(&s, &theirs());
        let write = d.write.clone().unwrap();
        let found = read_back(&profiles::AWS, &s, &write, &theirs(), &theirs());
        assert_eq!(found, ReadBack::Before);
        let (outcome, remembered) = settle(&s, &d, found, &theirs());
        assert_eq!(outcome.reason, Reason::NotPersisted);
        assert!(
            outcome.message.contains("rule 0 differs"),
            "{}",
            outcome.message
        );
        assert_eq!(remembered.unwrap().unkept, Some(fingerprint(&theirs())));
    }

    #[test]
    fn a_delete_on_a_store_with_a_default_keeps_that_default_in_memory() {
        let s = spec(json!([]));
        let default = vec![CorsRule::new(["*"], ["GET"])];
        let d = wrote(&s, &theirs());
        assert_eq!(d.write, Some(Write::Delete));
        let found = read_back(&profiles::WASABI, &s, &Write::Delete, &theirs(), &default);
        assert_eq!(found, ReadBack::Kept);
        let (outcome, remembered) = settle(&s, &d, found, &default);
        assert_eq!(outcome.reason, Reason::Applied);
        assert_eq!(
            remembered.unwrap().store_default,
            Some(fingerprint(&default))
        );
        // Elsewhere the same answer is a delete the store did not keep.
        assert_eq!(
            read_back(&profiles::AWS, &s, &Write::Delete, &theirs(), &default),
            ReadBack::Altered
        );
    }

    #[test]
    fn fingerprints_tell_rules_apart_by_order_and_content() {
        let a = CorsRule::new(["https://a.example.com"], ["GET"]);
        let b = CorsRule::new(["https://b.example.com"], ["GET"]);
        assert_eq!(
            fingerprint(&[a.clone(), b.clone()]),
            fingerprint(&[a.clone(), b.clone()])
        );
        assert_ne!(
            fingerprint(&[a.clone(), b.clone()]),
            fingerprint(&[b.clone(), a.clone()])
        );
        assert_ne!(
            fingerprint(std::slice::from_ref(&a)),
            fingerprint(&[a.clone().id("x")])
        );
        assert_ne!(fingerprint(&[]), fingerprint(&[a]));
    }
}
