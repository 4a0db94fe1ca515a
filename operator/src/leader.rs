//! Leader election over a `coordination.k8s.io/v1` Lease, so that two replicas of the
//! operator are safe: only the holder reconciles. kube-runtime 5 has none, so this is the
//! client-go algorithm in small: a pure [`decide`] over the Lease as read, and an async loop
//! that writes with optimistic concurrency (`replace` with the read `resourceVersion`; a 409
//! means another replica won the race).
//!
//! A holder that cannot renew before its lease would expire gives up leadership
//! ([`Elector::run`] resolves), and the process exits so that no two replicas ever act at once.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;

/// What this replica should do with the Lease it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Take it: it is free, expired, or held by nobody.
    Acquire,
    /// Renew it: we hold it.
    Renew,
    /// Someone else holds it until the given time.
    Follow {
        /// The current holder.
        holder: String,
    },
}

/// Decides from the Lease's spec (`None`: no Lease yet), our identity and the time.
pub fn decide(lease: Option<&LeaseSpec>, me: &str, now: Timestamp) -> Decision {
    let Some(spec) = lease else {
        return Decision::Acquire;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder.is_empty() {
        return Decision::Acquire;
    }
    if holder == me {
        return Decision::Renew;
    }
    let renewed = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0);
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(0)));
    match renewed {
        Some(t) if t + duration > now => Decision::Follow {
            holder: holder.to_owned(),
        },
        _ => Decision::Acquire,
    }
}

/// The Lease spec after `decision` (`Follow` leaves it unchanged).
pub fn next_spec(
    old: Option<&LeaseSpec>,
    decision: &Decision,
    me: &str,
    duration: Duration,
    now: Timestamp,
) -> LeaseSpec {
    let mut spec = old.cloned().unwrap_or_default();
    match decision {
        Decision::Follow { .. } => {}
        Decision::Renew => spec.renew_time = Some(MicroTime(now)),
        Decision::Acquire => {
            let changed = spec.holder_identity.as_deref().is_some_and(|h| h != me);
            spec.holder_identity = Some(me.to_owned());
            spec.acquire_time = Some(MicroTime(now));
            spec.renew_time = Some(MicroTime(now));
            spec.lease_duration_seconds = Some(duration.as_secs().try_into().unwrap_or(i32::MAX));
            if changed {
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
        }
    }
    spec
}

/// Timing of the election (client-go's defaults: 15 s lease, renew every 5 s... here a little
/// faster so a failover takes under 15 s).
#[derive(Debug, Clone)]
pub struct Elector {
    /// The Lease API in the operator's namespace.
    pub api: Api<Lease>,
    /// Name of the Lease.
    pub name: String,
    /// Our identity (the pod name, plus a random suffix outside a pod).
    pub me: String,
    /// How long a lease stays valid without renewal.
    pub lease_duration: Duration,
    /// How often the holder renews and a follower retries.
    pub retry: Duration,
}

impl Elector {
    /// Tries to take or renew the Lease once. `Ok(true)`: we lead until the lease expires.
    pub async fn try_once(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let current = self.api.get_opt(&self.name).await?;
        let spec = current.as_ref().and_then(|l| l.spec.as_ref());
        let decision = decide(spec, &self.me, now);
        if let Decision::Follow { holder } = &decision {
            tracing::debug!(lease = %self.name, %holder, "following");
            return Ok(false);
        }
        let next = next_spec(spec, &decision, &self.me, self.lease_duration, now);
        let result = match current {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..Default::default()
                    },
                    spec: Some(next),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            Some(mut lease) => {
                lease.spec = Some(next);
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match result {
            Ok(_) => {
                if decision == Decision::Acquire {
                    tracing::info!(lease = %self.name, me = %self.me, "acquired leadership");
                }
                Ok(true)
            }
            // Another replica wrote first (409 on replace, 409 on create).
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Hands the Lease back if we hold it (client-go's `ReleaseOnCancel`), so a standby takes
    /// over at once instead of after the lease duration. Call after [`Elector::run`] stopped.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.me.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await?;
        tracing::info!(lease = %self.name, "released leadership");
        Ok(())
    }

    /// Campaigns until elected, then renews; `leading` follows. Resolves when leadership is
    /// lost (not renewed within the lease duration); never returns while leading.
    pub async fn run(self, leading: watch::Sender<bool>) {
        let mut last_renewed: Option<tokio::time::Instant> = None;
        loop {
            match self.try_once().await {
                Ok(true) => {
                    last_renewed = Some(tokio::time::Instant::now());
                    leading.send_replace(true);
                }
                Ok(false) if last_renewed.is_some() => {
                    tracing::error!(lease = %self.name, "leadership taken by another replica");
                    leading.send_replace(false);
                    return;
                }
                Ok(false) => {}
                Err(err) => tracing::warn!(lease = %self.name, error = %err, "lease update failed"),
            }
            if let Some(t) = last_renewed {
                // Give up before the lease could expire in others' eyes.
                if t.elapsed() + self.retry >= self.lease_duration {
                    tracing::error!(lease = %self.name, "could not renew the lease in time");
                    leading.send_replace(false);
                    return;
                }
            }
            tokio::time::sleep(self.retry).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).expect("valid time")
    }

    fn held(by: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(by.into()),
            renew_time: Some(MicroTime(at(renewed))),
            acquire_time: Some(MicroTime(at(0))),
            lease_duration_seconds: Some(15),
            lease_transitions: Some(0),
            ..Default::default()
        }
    }

    #[test]
    fn a_missing_or_empty_lease_is_taken() {
        assert_eq!(decide(None, "a", at(0)), Decision::Acquire);
        assert_eq!(
            decide(Some(&LeaseSpec::default()), "a", at(0)),
            Decision::Acquire
        );
    }

    #[test]
    fn the_holder_renews_and_others_follow_until_expiry() {
        let l = held("a", 10);
        assert_eq!(decide(Some(&l), "a", at(100)), Decision::Renew);
        assert_eq!(
            decide(Some(&l), "b", at(24)),
            Decision::Follow { holder: "a".into() }
        );
        assert_eq!(decide(Some(&l), "b", at(25)), Decision::Acquire);
    }

    #[test]
    fn taking_over_counts_a_transition_and_renewing_does_not() {
        let l = held("a", 10);
        let taken = next_spec(
            Some(&l),
            &Decision::Acquire,
            "b",
            Duration::from_secs(15),
            at(30),
        );
        assert_eq!(taken.holder_identity.as_deref(), Some("b"));
        assert_eq!(taken.lease_transitions, Some(1));
        assert_eq!(taken.acquire_time, Some(MicroTime(at(30))));
        let renewed = next_spec(
            Some(&taken),
            &Decision::Renew,
            "b",
            Duration::from_secs(15),
            at(35),
        );
        assert_eq!(renewed.lease_transitions, Some(1));
        assert_eq!(renewed.acquire_time, Some(MicroTime(at(30))));
        assert_eq!(renewed.renew_time, Some(MicroTime(at(35))));
        let first = next_spec(
            None,
            &Decision::Acquire,
            "a",
            Duration::from_secs(15),
            at(0),
        );
        assert_eq!(first.lease_transitions, None);
        assert_eq!(first.lease_duration_seconds, Some(15));
    }
}
