//! One pass over one object: who holds the bucket (the index) → read the bucket → decide (no
//! client) → record, write (S3) → one status write and the Events (Kubernetes).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use futures::FutureExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::{Context, MANAGER, holds_bucket, repairs, target};
use crate::api::{
    BucketCors, BucketCorsStatus, DeletionPolicy, FINALIZER, Holding, ManagementPolicy,
};
use crate::cors::{self, Plan};
use crate::decide::{self, Ownership, Write};
use crate::profiles;
use crate::reason::Reason;
use crate::s3::{BucketTarget, CorsStore, S3Error};
use crate::status::{self, Outcome};
use crate::verify;

/// Failures of the Kubernetes side of a pass; the S3 side ends in the status instead.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to write the status of {object}: {source}")]
    PatchStatus { object: String, source: kube::Error },
    #[error("failed to read Secret {namespace}/{name}: {source}")]
    ReadSecret {
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error("cleanup of {object} did not complete: {reason}: {message}")]
    Cleanup {
        object: String,
        reason: Reason,
        message: String,
    },
    #[error(transparent)]
    Finalizer(#[from] Box<finalizer::Error<Error>>),
    #[error("the pass over {object} panicked (a defect; it is retried on a backoff): {message}")]
    Panicked { object: String, message: String },
}

/// Why a pass stopped early: an outcome to report, or an API failure to retry.
pub enum Halt {
    Outcome(Outcome),
    Api(Error),
}

impl From<S3Error> for Halt {
    fn from(err: S3Error) -> Self {
        Halt::Outcome(Outcome::new(err.reason(), err.to_string()))
    }
}

/// What a pass found and did, for its status, Events and log.
struct Pass {
    outcome: Outcome,
    plan: Option<Plan>,
    /// Whether it wrote the bucket: a Put of so many rules, or a Delete.
    wrote: Option<Write>,
    /// The status to build the pass's own on: the last one written, with the adoption record
    /// when this pass made one that travels with it.
    base: Option<BucketCorsStatus>,
    /// The `Verified` condition's status, reason and message, when this pass verified.
    verified: Option<(&'static str, &'static str, String)>,
    /// The bucket the object holds, when it competes for it and holds it; none otherwise.
    holding: Option<Holding>,
}

impl Pass {
    /// A pass that stopped before it knew the object holds its bucket.
    fn stopped(outcome: Outcome, base: Option<BucketCorsStatus>) -> Self {
        Pass {
            outcome,
            plan: None,
            wrote: None,
            base,
            verified: None,
            holding: None,
        }
    }
}

pub async fn reconcile<S: CorsStore>(
    obj: Arc<BucketCors>,
    ctx: Arc<Context<S>>,
) -> Result<Action, Error> {
    let namespace = obj.namespace().unwrap_or_else(|| "default".into());
    // A pass waits for a slot: the namespaces with waiting passes share them fairly, some stay
    // free for namespaces running none (slots held by a store that hangs are not taken from
    // the others), and a namespace's passes go in the order they became due.
    let Some(_turn) = ctx.turn(&namespace).await else {
        // Stopping: the next leader or start takes it.
        return Ok(Action::await_change());
    };
    let api: Api<BucketCors> = Api::namespaced(ctx.client.clone(), &namespace);
    let object = ObjectRef::from(obj.as_ref()).to_string();
    let pass = finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            finalizer::Event::Apply(obj) => apply(&obj, &ctx).await,
            finalizer::Event::Cleanup(obj) => {
                let done = cleanup(&obj, &ctx).await;
                if done.is_ok() {
                    ctx.forget(&obj);
                }
                done
            }
        }
    });
    // A defect that panics on some input ends this pass, not the operator: kube's controller
    // would carry the panic to the task that runs every other object.
    match AssertUnwindSafe(pass).catch_unwind().await {
        Ok(done) => done.map_err(|e| Error::Finalizer(Box::new(e))),
        Err(panic) => {
            ctx.metrics.pass_panics.inc();
            Err(Error::Panicked {
                object,
                message: panic_message(panic.as_ref()),
            })
        }
    }
}

/// What a panic said, bounded.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let said = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    status::bounded(said, status::MESSAGE_MAX)
}

pub fn error_policy<S: CorsStore>(
    obj: Arc<BucketCors>,
    err: &Error,
    ctx: Arc<Context<S>>,
) -> Action {
    tracing::warn!(object = %ObjectRef::from(obj.as_ref()), error = %err, "reconcile failed");
    ctx.requeue(&ObjectRef::from(obj.as_ref()), None)
}

async fn apply<S: CorsStore>(obj: &BucketCors, ctx: &Context<S>) -> Result<Action, Error> {
    let started = Instant::now();
    let mut known = ctx.known_status(obj);
    let pass = converge(obj, ctx, &mut known).await?;
    report(obj, ctx, known.as_ref(), &pass).await?;
    let reason = pass.outcome.reason;
    ctx.metrics.pass(reason, started.elapsed().as_secs_f64());
    tracing::info!(
        object = %ObjectRef::from(obj),
        bucket = %obj.spec.bucket,
        plan = %pass.plan.as_ref().map_or_else(|| "none".to_owned(), ToString::to_string),
        reason = %reason,
        duration_ms = started.elapsed().as_millis() as u64,
        "reconciled"
    );
    Ok(ctx.requeue(&ObjectRef::from(obj), Some(reason)))
}

/// Reads the bucket, decides, records and writes. `known` is the status the API holds as far
/// as this operator knows; it moves when the pass records the bucket ahead of its write.
async fn converge<S: CorsStore>(
    obj: &BucketCors,
    ctx: &Context<S>,
    known: &mut Option<BucketCorsStatus>,
) -> Result<Pass, Error> {
    let spec = &obj.spec;
    // Grants and holders are known once every watch has listed.
    ctx.synced.wait().await;
    // A valid spec that meets its own expectations first, then a grant: a denied object makes
    // no S3 call and competes for no bucket.
    let access = decide::admitted(obj)
        .and_then(|()| decide::expected(spec))
        .and_then(|()| ctx.access(obj).map_err(|denial| denial.outcome()));
    let access = match access {
        Ok(access) => access,
        Err(outcome) => return Ok(Pass::stopped(outcome, known.clone())),
    };
    let target = match reach(obj, ctx, &access, known.as_ref()).await? {
        Ok(target) => target,
        Err(pass) => return Ok(pass),
    };
    let profile = profiles::named(target.profile);
    if let Some(outcome) = beyond_store(obj, profile) {
        return Ok(Pass::stopped(outcome, known.clone()));
    }
    let (ownership, holding) = match hold(obj, ctx, &access, &target, known.as_ref()) {
        Ok(held) => held,
        Err(outcome) => return Ok(Pass::stopped(outcome, known.clone())),
    };
    let observed = match ctx.store.get_cors(&target).await {
        Ok(observed) => observed,
        Err(err) => {
            let outcome = Halt::outcome(&err.advised_by(profile));
            let mut pass = Pass::stopped(outcome, known.clone());
            pass.holding = holding;
            return Ok(pass);
        }
    };
    let generation = obj.metadata.generation;
    let decision = decide::decide_on(
        profile,
        spec,
        generation,
        &observed,
        known.as_ref(),
        &ownership,
        ctx.last_write(obj).as_ref(),
        &now(),
    );
    let base = match keep_ahead(obj, ctx, known, &decision, holding.as_ref()).await {
        Ok(base) => base,
        Err(outcome) => return Ok(Pass::stopped(outcome, known.clone())),
    };
    if let Some(record) = decision.record.as_ref().filter(|r| r.adopted() > 0) {
        let note = format!(
            "the bucket had {} rule(s) this object did not write; they are kept in status.previousConfiguration",
            record.adopted()
        );
        publish(obj, ctx, EventType::Normal, "Adopted", &note).await;
    }
    if let Err(err) = write_bucket(ctx, &target, decision.write.as_ref()).await {
        // A failed write still carries the record made before it into the pass's status.
        return Ok(Pass {
            outcome: Halt::outcome(&err.advised_by(profile)),
            plan: decision.plan,
            wrote: None,
            base,
            verified: None,
            holding,
        });
    }
    let outcome = match &decision.write {
        Some(write) => {
            let wrote = (&target, write, observed.as_slice());
            settled(obj, ctx, profile, &decision, wrote, known.as_ref()).await
        }
        None => {
            ctx.set_last_write(obj, decision.last_write);
            decision.outcome.clone()
        }
    };
    // The bucket holds the spec's rules now: ask the store whether it applies them.
    let verified = if outcome.reason.is_ready() {
        verify_live(ctx, &target, spec).await
    } else {
        None
    };
    Ok(Pass {
        outcome,
        plan: decision.plan,
        wrote: decision.write,
        base,
        verified,
        holding,
    })
}

/// The outcome of a pass that wrote `write` to `target` over a bucket that held `before`, once
/// the bucket was read back; what is remembered of the write, a repair and an unkept write
/// are noted on the way. `known` is the status from before the pass.
async fn settled<S: CorsStore>(
    obj: &BucketCors,
    ctx: &Context<S>,
    profile: &profiles::Profile,
    decision: &decide::Decision,
    (target, write, before): (&BucketTarget, &Write, &[cors::CorsRule]),
    known: Option<&BucketCorsStatus>,
) -> Outcome {
    let spec = &obj.spec;
    let (outcome, remembered) =
        read_back(ctx, target, profile, spec, decision, write, before).await;
    ctx.set_last_write(obj, remembered);
    if already_applied(obj, known) {
        repaired(obj, ctx, before).await;
    }
    if outcome.reason == Reason::NotPersisted {
        ctx.metrics.unkept_writes.inc();
    }
    outcome
}

/// Whether `obj` may write its bucket (`Full` objects compete for it; the others never write),
/// and the hold its status records while it does: from before its first write to the bucket.
/// The outcome to stop with when another object holds it.
fn hold<S: CorsStore>(
    obj: &BucketCors,
    ctx: &Context<S>,
    access: &target::Access,
    target: &BucketTarget,
    known: Option<&BucketCorsStatus>,
) -> Result<(Ownership, Option<Holding>), Outcome> {
    let spec = &obj.spec;
    if spec.management_policy != ManagementPolicy::Full {
        return Ok((Ownership::Holds, None));
    }
    let ownership = ctx.ownership(obj, access);
    decide::unheld(spec, &ownership)?;
    let bucket = target.key();
    // A holder whose mark another's outranks (it took the bucket back) marks anew, so that a
    // restart elects it again.
    let since = known
        .and_then(|s| s.holding.as_ref())
        .filter(|h| h.bucket == bucket && ctx.leads(obj, &bucket))
        .map_or_else(now, |h| h.since.clone());
    Ok((ownership, Some(Holding { bucket, since })))
}

/// Writes `write` to the bucket, if there is one to make.
async fn write_bucket<S: CorsStore>(
    ctx: &Context<S>,
    target: &BucketTarget,
    write: Option<&Write>,
) -> Result<(), S3Error> {
    match write {
        None => Ok(()),
        Some(Write::Put(rules)) => ctx.store.put_cors(target, rules).await,
        Some(Write::Delete) => ctx.store.delete_cors(target).await,
    }
}

/// The bucket with its credentials, or the pass that stops without them. Reading its own
/// Secret is what makes an object with its own identity compete for its bucket: one that cannot
/// be read hands the bucket over.
async fn reach<S: CorsStore>(
    obj: &BucketCors,
    ctx: &Context<S>,
    access: &target::Access,
    known: Option<&BucketCorsStatus>,
) -> Result<Result<BucketTarget, Pass>, Error> {
    let own = matches!(access, target::Access::Own { .. });
    match target::resolve(obj, ctx, access).await {
        Ok(target) => {
            if own {
                ctx.prove(obj, true);
            }
            Ok(Ok(target))
        }
        Err(Halt::Outcome(outcome)) => {
            let mut pass = Pass::stopped(outcome, known.cloned());
            if own {
                ctx.prove(obj, false);
                ctx.ownership(obj, access);
            } else {
                // Still competing (its store's own Secret is the administrator's to fix): a
                // hold it had stays recorded.
                pass.holding = known.and_then(|s| s.holding.clone());
            }
            Ok(Err(pass))
        }
        Err(Halt::Api(err)) => Err(err),
    }
}

/// Why the store `profile` describes cannot take `obj`'s rules, if it cannot: it has no bucket
/// CORS API, or documents a limit the rules break. Nothing is sent then.
fn beyond_store(obj: &BucketCors, profile: &profiles::Profile) -> Option<Outcome> {
    if let Some(advice) = profile.no_cors_api {
        return Some(Outcome::new(
            Reason::Unsupported,
            format!("the store is {}: {advice}; nothing was sent", profile.name),
        ));
    }
    let refused = target::refused(obj, profile);
    (!refused.is_empty()).then(|| {
        let message = refused
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        Outcome::new(Reason::InvalidSpec, message)
    })
}

/// The status the pass builds on: the known one with the adoption record and the hold. Before
/// a first write (or one that would lose rules), they reach the API first, and `known` moves
/// with them; until they do, nothing is written (the error is the pass's outcome).
async fn keep_ahead<S: CorsStore>(
    obj: &BucketCors,
    ctx: &Context<S>,
    known: &mut Option<BucketCorsStatus>,
    decision: &decide::Decision,
    holding: Option<&Holding>,
) -> Result<Option<BucketCorsStatus>, Outcome> {
    let unmarked = known.as_ref().and_then(|s| s.holding.as_ref()) != holding;
    let first = decision.record.as_ref().is_some_and(|r| r.before_write)
        || (decision.write.is_some() && unmarked);
    if decision.record.is_none() && !first {
        return Ok(known.clone());
    }
    let mut ahead = known.clone().unwrap_or_default();
    if let Some(record) = &decision.record {
        ahead.previous_configuration = Some(record.previous.clone());
    }
    ahead.holding = holding.cloned();
    if first {
        patch_status(obj, ctx, &ahead).await.map_err(|err| {
            Outcome::new(
                Reason::Unavailable,
                format!(
                    "the bucket was not written: this object's hold on it and its current configuration must first be kept in its status, and that failed: {err}"
                ),
            )
        })?;
        ctx.wrote_status(obj, &ahead);
        *known = Some(ahead.clone());
    }
    Ok(Some(ahead))
}

/// Asks the store, as a browser would, whether it applies the rules the bucket now holds: a
/// few unsigned preflights, once each, where the S3 calls went. None when the spec asks for no
/// live verification.
async fn verify_live<S: CorsStore>(
    ctx: &Context<S>,
    target: &BucketTarget,
    spec: &crate::api::BucketCorsSpec,
) -> Option<(&'static str, &'static str, String)> {
    let (key, sent) = verify::plan(spec)?;
    let mut answers = Vec::with_capacity(sent.len());
    for expectation in sent {
        let headers: Vec<&str> = expectation.headers.iter().map(String::as_str).collect();
        let answer = ctx
            .store
            .preflight(
                target,
                key,
                &expectation.origin,
                &expectation.method,
                &headers,
            )
            .await;
        answers.push(answer);
    }
    Some(verify::judge(sent, &answers, spec.expectations.len()))
}

/// Reads the bucket back after `write`, made over a bucket that held `before`: again while it
/// still shows `before`, for at most the store's propagation time. Its answer, not the
/// bucket's history, tells whether the store kept the write.
async fn read_back<S: CorsStore>(
    ctx: &Context<S>,
    target: &BucketTarget,
    profile: &profiles::Profile,
    spec: &crate::api::BucketCorsSpec,
    decision: &decide::Decision,
    write: &Write,
    before: &[cors::CorsRule],
) -> (Outcome, Option<decide::LastWrite>) {
    let written = Instant::now();
    let mut pause = std::time::Duration::from_millis(250);
    loop {
        let after = match ctx.store.get_cors(target).await {
            Ok(after) => after,
            Err(err) => {
                // The write succeeded; the next pass reads the bucket again.
                tracing::warn!(bucket = %spec.bucket, error = %err, "could not read the bucket back after writing it");
                return (decision.outcome.clone(), decision.last_write);
            }
        };
        let found = decide::read_back(profile, spec, write, before, &after);
        let left = profile.propagation.saturating_sub(written.elapsed());
        if found != decide::ReadBack::Before || left.is_zero() {
            if found == decide::ReadBack::Before {
                tracing::warn!(bucket = %spec.bucket, waited_ms = written.elapsed().as_millis() as u64, "the bucket still reads as before the write once the store's propagation time has passed");
            }
            return decide::settle(spec, decision, found, &after);
        }
        tokio::time::sleep(pause.min(left)).await;
        pause = pause.saturating_mul(2);
    }
}

/// Counts a write that put back a configuration changed outside Kubernetes (the bucket held
/// `observed`), and warns once when such repairs repeat: something else keeps writing it.
async fn repaired<S: CorsStore>(obj: &BucketCors, ctx: &Context<S>, observed: &[cors::CorsRule]) {
    let how = if observed.is_empty() {
        "removed"
    } else {
        "changed"
    };
    ctx.metrics.drift_corrected(how);
    if let Some(repeated) = ctx.repaired(obj) {
        let note = format!(
            "the bucket's CORS configuration was changed outside this object and put back {} times in {}: something else writes to it (another tool, a script, a person); stop it, or make this object ObserveOnly",
            repeated.count,
            repairs::spoken(repeated.within)
        );
        tracing::warn!(object = %ObjectRef::from(obj), reason = DRIFT_REPEATED, "{note}");
        publish(obj, ctx, EventType::Warning, DRIFT_REPEATED, &note).await;
    }
}

/// The Event reason of repairs that repeat within [`repairs::WINDOW`].
pub const DRIFT_REPEATED: &str = "DriftRepeated";

impl Halt {
    fn outcome(err: &S3Error) -> Outcome {
        Outcome::new(err.reason(), err.to_string())
    }
}

/// Whether the object's current spec had already reached the bucket, so that a write now
/// undoes a change made outside Kubernetes.
fn already_applied(obj: &BucketCors, known: Option<&BucketCorsStatus>) -> bool {
    known.and_then(|s| s.observed_generation) == obj.metadata.generation
        && (reported(known, Reason::Applied) || reported(known, Reason::InSync))
}

/// Whether the Ready condition of `status` ends with `reason`.
fn reported(status: Option<&BucketCorsStatus>, reason: Reason) -> bool {
    status.is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == status::READY && c.reason == reason.as_str())
    })
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

async fn patch_status<S>(
    obj: &BucketCors,
    ctx: &Context<S>,
    status: &BucketCorsStatus,
) -> Result<(), Error> {
    let api: Api<BucketCors> =
        Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": BucketCors::api_version(&()),
        "kind": BucketCors::kind(&()),
        "status": status,
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map(drop)
    .map_err(|source| Error::PatchStatus {
        object: ObjectRef::from(obj).to_string(),
        source,
    })
}

/// Undoes what this object did to its bucket, as its deletion policy says. Only an object that
/// holds the bucket acts: one with a valid spec that took the bucket (recorded what was there,
/// or was Ready) and that the index names as its holder. Cleanup that cannot act (the Secret
/// or the bucket is gone, the store refuses) releases the finalizer and says so in a Warning
/// Event, so that a deletion, and its namespace's, always finishes; only a store that is
/// unavailable is retried, for at most `CLEANUP_PATIENCE`.
async fn cleanup<S: CorsStore>(obj: &BucketCors, ctx: &Context<S>) -> Result<Action, Error> {
    let spec = &obj.spec;
    if spec.deletion_policy == DeletionPolicy::Retain
        || spec.management_policy == ManagementPolicy::ObserveOnly
    {
        return Ok(Action::await_change());
    }
    if decide::admitted(obj).is_err() {
        // Never written: nothing of this object's is on the bucket.
        return Ok(Action::await_change());
    }
    ctx.synced.wait().await;
    let access = match ctx.access(obj) {
        Ok(access) => access,
        // Not granted (any more): nothing is sent, whatever the object did before.
        Err(denial) => {
            let note = format!(
                "deleted without touching the bucket: {}: {denial}",
                denial.outcome().reason
            );
            skipped(obj, ctx, &note).await;
            return Ok(Action::await_change());
        }
    };
    let known = ctx.known_status(obj);
    if !holds_bucket(known.as_ref()) || ctx.ownership(obj, &access) != Ownership::Holds {
        return Ok(Action::await_change());
    }
    let previous = known
        .as_ref()
        .and_then(|s| s.previous_configuration.clone());
    let restore = match (spec.deletion_policy, previous.as_ref()) {
        // It held the bucket but never saw it (every pass failed before reading it).
        (DeletionPolicy::Restore, None) => {
            let note = "deleted without restoring the bucket: this object never read it, so there is no record of what it held before";
            skipped(obj, ctx, note).await;
            return Ok(Action::await_change());
        }
        (DeletionPolicy::Restore, Some(previous)) if !previous.rules.is_empty() => {
            Some(previous.cors_rules())
        }
        _ => None,
    };
    let restore = restore.as_ref();
    let done = match target::resolve(obj, ctx, &access).await {
        Ok(target) => undo(ctx, &target, restore).await,
        Err(Halt::Outcome(outcome)) => Err(outcome),
        Err(Halt::Api(err)) => return Err(err),
    };
    let undoing = if restore.is_some() {
        "putting back the bucket's previous configuration"
    } else {
        "removing the bucket's CORS configuration"
    };
    match done {
        Ok(note) => {
            let reason = if restore.is_some() {
                "Restored"
            } else {
                "Deleted"
            };
            publish(obj, ctx, EventType::Normal, reason, &note).await;
            Ok(Action::await_change())
        }
        Err(outcome) if outcome.reason == Reason::Unavailable && !cleanup_overdue(obj) => {
            let mut pass = Pass::stopped(outcome.clone(), known.clone());
            pass.holding = known.as_ref().and_then(|s| s.holding.clone());
            report(obj, ctx, known.as_ref(), &pass).await?;
            Err(Error::Cleanup {
                object: ObjectRef::from(obj).to_string(),
                reason: outcome.reason,
                message: outcome.message,
            })
        }
        Err(outcome) => {
            let note = format!(
                "deleted without {undoing}: {}: {}",
                outcome.reason, outcome.message
            );
            skipped(obj, ctx, &note).await;
            Ok(Action::await_change())
        }
    }
}

/// The Event reason of a deletion whose policy could not be carried out.
pub const CLEANUP_SKIPPED: &str = "CleanupSkipped";

/// Says that `obj` was deleted without its deletion policy carried out, and why: logged as
/// well as published, since in a namespace being deleted (whose Secret may go first) the API
/// server refuses the Event.
async fn skipped<S>(obj: &BucketCors, ctx: &Context<S>, note: &str) {
    tracing::warn!(object = %ObjectRef::from(obj), reason = CLEANUP_SKIPPED, "{note}");
    publish(obj, ctx, EventType::Warning, CLEANUP_SKIPPED, note).await;
}
/// How long a deletion waits for an unavailable store before it lets the object go.
const CLEANUP_PATIENCE: std::time::Duration = std::time::Duration::from_secs(600);

/// Whether `obj` has waited for its cleanup for longer than `CLEANUP_PATIENCE`.
fn cleanup_overdue(obj: &BucketCors) -> bool {
    obj.metadata.deletion_timestamp.as_ref().is_some_and(|t| {
        let waited = k8s_openapi::jiff::Timestamp::now().as_second() - t.0.as_second();
        u64::try_from(waited).unwrap_or(0) > CLEANUP_PATIENCE.as_secs()
    })
}

/// Puts `restore` back on the bucket, or removes its configuration when there is none to put.
async fn undo<S: CorsStore>(
    ctx: &Context<S>,
    target: &BucketTarget,
    restore: Option<&Vec<cors::CorsRule>>,
) -> Result<String, Outcome> {
    let result = match restore {
        Some(rules) => ctx
            .store
            .put_cors(target, rules)
            .await
            .map(|()| format!("put back the {} rule(s) the bucket had before", rules.len())),
        None => ctx
            .store
            .delete_cors(target)
            .await
            .map(|()| "removed the bucket's CORS configuration".to_owned()),
    };
    match result {
        // Nothing left to clean when the bucket itself is gone.
        Err(S3Error::BucketNotFound { .. }) => Ok("the bucket no longer exists".to_owned()),
        other => other.map_err(|err| Outcome::new(err.reason(), err.to_string())),
    }
}

/// Writes the pass's status when it differs from the one the API holds (`known`), and
/// publishes the Events the pass deserves. The one status write of a pass.
async fn report<S: CorsStore>(
    obj: &BucketCors,
    ctx: &Context<S>,
    known: Option<&BucketCorsStatus>,
    pass: &Pass,
) -> Result<(), Error> {
    let now = now();
    let mut next = status::next_status(
        pass.base.as_ref(),
        &pass.outcome,
        obj.metadata.generation,
        &now,
    );
    next.holding = pass.holding.clone();
    let verdict = pass
        .verified
        .clone()
        .or_else(|| verify::stale(&next, pass.outcome.reason));
    verify::apply(
        &mut next,
        verdict,
        verify::plan(&obj.spec).is_some(),
        obj.metadata.generation,
        &now,
    );
    let changed = known != Some(&next);
    if changed {
        patch_status(obj, ctx, &next).await?;
        ctx.wrote_status(obj, &next);
    }

    let outcome = &pass.outcome;
    // A write the store did not keep is announced as its failure, not as a write.
    let wrote = pass.wrote.as_ref().filter(|_| outcome.reason.is_ready());
    match wrote {
        Some(Write::Put(_)) => {
            publish(
                obj,
                ctx,
                EventType::Normal,
                Reason::Applied.as_str(),
                &outcome.message,
            )
            .await
        }
        Some(Write::Delete) => {
            publish(obj, ctx, EventType::Normal, "Deleted", &outcome.message).await
        }
        // A failure is announced when it starts or changes, not on every retry.
        None if !outcome.reason.is_ready() && changed => {
            publish(
                obj,
                ctx,
                EventType::Warning,
                outcome.reason.as_str(),
                &outcome.message,
            )
            .await
        }
        None => {}
    }
    Ok(())
}

async fn publish<S>(
    obj: &BucketCors,
    ctx: &Context<S>,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    // Events are best effort: a failure to record one must not fail the pass.
    if let Err(err) = ctx.events.publish(obj, type_, reason, note).await {
        tracing::warn!(object = %ObjectRef::from(obj), error = %err, "failed to publish event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::{SignedDuration, Timestamp};

    fn object() -> BucketCors {
        let spec = serde_json::from_value(json!({"bucket": "b", "rules": []})).unwrap();
        BucketCors::new("x", spec)
    }

    fn deleted_ago(seconds: i64) -> BucketCors {
        let mut obj = object();
        obj.metadata.deletion_timestamp =
            Some(Time(Timestamp::now() - SignedDuration::from_secs(seconds)));
        obj
    }

    #[test]
    fn an_unavailable_store_holds_a_deletion_for_ten_minutes_at_most() {
        assert!(!cleanup_overdue(&object()));
        assert!(!cleanup_overdue(&deleted_ago(60)));
        assert!(!cleanup_overdue(&deleted_ago(599)));
        assert!(cleanup_overdue(&deleted_ago(601)));
    }
}
