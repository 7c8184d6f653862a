//! One pass over one object: validate (no client) → read the bucket → plan (no client) →
//! write (S3) → status and Events (Kubernetes).

use std::sync::Arc;
use std::time::Instant;

use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::{Context, MANAGER, target};
use crate::admission;
use crate::api::{
    BucketCors, BucketCorsStatus, DeletionPolicy, FINALIZER, ManagementPolicy,
    PreviousConfiguration,
};
use crate::cors::{self, Plan};
use crate::reason::Reason;
use crate::s3::{BucketTarget, CorsStore, S3Error};
use crate::status::{self, Outcome};

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

/// What a pass wrote to the bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Write {
    Put(usize),
    Delete,
}

struct Pass {
    outcome: Outcome,
    plan: Option<Plan>,
    wrote: Option<Write>,
    /// The bucket's configuration from before the first write, when this pass recorded it.
    recorded: Option<PreviousConfiguration>,
}

impl Pass {
    fn stopped(outcome: Outcome) -> Self {
        Pass {
            outcome,
            plan: None,
            wrote: None,
            recorded: None,
        }
    }
}

pub async fn reconcile<S: CorsStore>(
    obj: Arc<BucketCors>,
    ctx: Arc<Context<S>>,
) -> Result<Action, Error> {
    let namespace = obj.namespace().unwrap_or_else(|| "default".into());
    let api: Api<BucketCors> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            finalizer::Event::Apply(obj) => apply(&obj, &ctx).await,
            finalizer::Event::Cleanup(obj) => {
                let done = cleanup(&obj, &ctx).await;
                if done.is_ok() {
                    ctx.forget_record(&obj);
                }
                done
            }
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

pub fn error_policy<S: CorsStore>(
    obj: Arc<BucketCors>,
    err: &Error,
    ctx: Arc<Context<S>>,
) -> Action {
    tracing::warn!(object = %ObjectRef::from(obj.as_ref()), error = %err, "reconcile failed");
    ctx.backoff(&ObjectRef::from(obj.as_ref()))
}

async fn apply<S: CorsStore>(obj: &BucketCors, ctx: &Context<S>) -> Result<Action, Error> {
    let started = Instant::now();
    let pass = match converge(obj, ctx).await {
        Ok(pass) => pass,
        Err(Halt::Outcome(outcome)) => Pass::stopped(outcome),
        Err(Halt::Api(err)) => return Err(err),
    };
    report(obj, ctx, &pass).await?;
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
    let object = ObjectRef::from(obj);
    Ok(if reason == Reason::InvalidSpec {
        // Nothing changes until the spec does.
        Action::await_change()
    } else if reason.is_transient() {
        ctx.backoff(&object)
    } else {
        ctx.resync(&object)
    })
}

async fn converge<S: CorsStore>(obj: &BucketCors, ctx: &Context<S>) -> Result<Pass, Halt> {
    let spec = &obj.spec;
    if let Err(errors) = admission::validate(spec) {
        let message = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        return Err(Halt::Outcome(Outcome::new(Reason::InvalidSpec, message)));
    }
    if spec.management_policy == ManagementPolicy::Full
        && let Some(owner) = ctx.owner_other_than(obj).await
    {
        return Err(Halt::Outcome(Outcome::new(
            Reason::Conflict,
            conflict_message(obj, ctx, &owner),
        )));
    }
    let target = target::resolve(obj, ctx).await?;
    let observed = ctx.get_cors(&target).await?;
    let plan = cors::diff(&spec.rules, &observed);
    let mut recorded = None;
    if plan.writes() && spec.management_policy == ManagementPolicy::Full {
        recorded = record_previous(obj, ctx, &observed).await?;
    }
    let (outcome, wrote) = match (&plan, spec.management_policy) {
        (Plan::NoChange, _) => (
            Outcome::new(
                Reason::InSync,
                format!(
                    "the bucket holds the {} rule(s) of the spec",
                    observed.len()
                ),
            )
            .with_rule_count(observed.len()),
            None,
        ),
        (_, ManagementPolicy::ObserveOnly) => (
            Outcome::new(
                Reason::Drifted,
                cors::describe_drift(&spec.rules, &observed),
            )
            .with_rule_count(observed.len()),
            None,
        ),
        // A failed write still carries the record made before it into the pass's status.
        (Plan::Put(rules), ManagementPolicy::Full) => match ctx.put_cors(&target, rules).await {
            Ok(()) => (
                Outcome::new(
                    Reason::Applied,
                    format!("put {} rule(s) on the bucket", rules.len()),
                )
                .with_rule_count(rules.len()),
                Some(Write::Put(rules.len())),
            ),
            Err(err) => (Outcome::new(err.reason(), err.to_string()), None),
        },
        (Plan::Delete, ManagementPolicy::Full) => match ctx.delete_cors(&target).await {
            Ok(()) => (
                Outcome::new(Reason::Applied, "removed the bucket's CORS configuration")
                    .with_rule_count(0),
                Some(Write::Delete),
            ),
            Err(err) => (Outcome::new(err.reason(), err.to_string()), None),
        },
    };
    if wrote.is_some() && already_applied(obj) {
        ctx.metrics.drift_corrections.inc();
    }
    Ok(Pass {
        outcome,
        plan: Some(plan),
        wrote,
        recorded,
    })
}

/// Whether the object's current spec had already reached the bucket, so that a write now
/// undoes a change made outside Kubernetes.
fn already_applied(obj: &BucketCors) -> bool {
    obj.status.as_ref().and_then(|s| s.observed_generation) == obj.metadata.generation
        && obj.is_ready()
}

fn conflict_message<S>(
    obj: &BucketCors,
    ctx: &Context<S>,
    owner: &ObjectRef<BucketCors>,
) -> String {
    format!(
        "bucket {} is managed by BucketCors {}/{}, created first; this object writes nothing while that one exists",
        target::bucket_of(obj, ctx).key(),
        owner.namespace.as_deref().unwrap_or_default(),
        owner.name
    )
}

/// Before the first write from this object, keeps what the bucket held in the status (so that
/// it survives a restart and `deletionPolicy: Restore` can put it back) and says so. A bucket
/// with no configuration has nothing to lose: unless the object restores on delete, that is
/// recorded with the pass's own status, sparing an API write per new bucket.
async fn record_previous<S: CorsStore>(
    obj: &BucketCors,
    ctx: &Context<S>,
    observed: &[cors::CorsRule],
) -> Result<Option<PreviousConfiguration>, Halt> {
    if ctx.known_record(obj).is_some() {
        return Ok(None);
    }
    let previous = PreviousConfiguration {
        rules: observed.iter().cloned().map(Into::into).collect(),
        recorded_at: now(),
    };
    // With Restore, "the bucket had none" decides what deletion does, so it is recorded before
    // the write too: a crash between the write and the status must not lose it.
    let restore = obj.spec.deletion_policy == DeletionPolicy::Restore;
    if !observed.is_empty() || restore {
        let mut status = obj.status.clone().unwrap_or_default();
        status.previous_configuration = Some(previous.clone());
        patch_status(obj, ctx, &status).await.map_err(Halt::Api)?;
        ctx.remember_record(obj, &previous);
    }
    if !observed.is_empty() {
        let note = format!(
            "the bucket had {} rule(s) this object did not write; they are kept in status.previousConfiguration",
            observed.len()
        );
        publish(obj, ctx, EventType::Normal, "Adopted", &note).await;
    }
    Ok(Some(previous))
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
/// or was Ready) and is not waiting behind another holder. Cleanup that cannot act (the Secret
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
    if admission::validate(spec).is_err() {
        // Never written: nothing of this object's is on the bucket.
        return Ok(Action::await_change());
    }
    let holds = super::holds_bucket(obj) || ctx.known_record(obj).is_some();
    if !holds || ctx.owner_other_than(obj).await.is_some() {
        return Ok(Action::await_change());
    }
    let previous = ctx.known_record(obj);
    let restore = match (spec.deletion_policy, previous.as_ref()) {
        // Never wrote, so there is nothing to restore.
        (DeletionPolicy::Restore, None) => return Ok(Action::await_change()),
        (DeletionPolicy::Restore, Some(previous)) if !previous.rules.is_empty() => {
            Some(previous.cors_rules())
        }
        _ => None,
    };
    let restore = restore.as_ref();
    let done = match target::resolve(obj, ctx).await {
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
            report(obj, ctx, &Pass::stopped(outcome.clone())).await?;
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
            publish(obj, ctx, EventType::Warning, CLEANUP_SKIPPED, &note).await;
            Ok(Action::await_change())
        }
    }
}

/// The Event reason of a deletion whose policy could not be carried out.
pub const CLEANUP_SKIPPED: &str = "CleanupSkipped";
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
            .put_cors(target, rules)
            .await
            .map(|()| format!("put back the {} rule(s) the bucket had before", rules.len())),
        None => ctx
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

/// Writes the status when it changed and publishes the Events a pass deserves.
async fn report<S: CorsStore>(
    obj: &BucketCors,
    ctx: &Context<S>,
    pass: &Pass,
) -> Result<(), Error> {
    // Server-side apply removes what this manager stops sending: every status write carries
    // the adoption record, even when the cached object does not show it yet.
    let mut previous = obj.status.clone();
    if let Some(recorded) = pass.recorded.clone().or_else(|| ctx.known_record(obj)) {
        previous.get_or_insert_default().previous_configuration = Some(recorded);
    }
    let next = status::next_status(
        previous.as_ref(),
        &pass.outcome,
        obj.metadata.generation,
        &now(),
    );
    let changed = obj.status.as_ref() != Some(&next);
    if changed {
        patch_status(obj, ctx, &next).await?;
    }
    match &next.previous_configuration {
        Some(record) if !ctx.cache_shows_record(obj) => ctx.remember_record(obj, record),
        _ => ctx.forget_record(obj),
    }

    let outcome = &pass.outcome;
    match pass.wrote {
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
