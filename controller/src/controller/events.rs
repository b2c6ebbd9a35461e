//! Events leave the reconcile path: once a round's writes succeeded, its Events are handed to
//! background tasks, as client-go's EventBroadcaster does, so a busy API server slows the Events,
//! not the next round. A few are sent at a time (a burst of builds would otherwise open hundreds
//! of requests at once); sending is best effort, as it always was.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder};
use strata_crds::MachineOSBuild;
use tokio::sync::{Notify, Semaphore};

use super::plan::PlannedEvent;

/// Events sent at the same time.
const IN_FLIGHT: usize = 4;

pub struct EventSink {
    recorder: Recorder,
    permits: Arc<Semaphore>,
    /// Events handed over and not yet sent, and a wake-up for [`EventSink::flush`].
    pending: Arc<(AtomicUsize, Notify)>,
}

impl EventSink {
    pub fn new(recorder: Recorder) -> Self {
        Self {
            recorder,
            permits: Arc::new(Semaphore::new(IN_FLIGHT)),
            pending: Arc::default(),
        }
    }

    /// Logs each transition now (the log keeps the order of rounds) and sends its Event about
    /// `regarding` in the background; one about a build goes to the build as well (what
    /// `build_ref` finds of it: `kubectl describe smosb` matches Events by the object's uid),
    /// naming `regarding` as its related object.
    pub fn send(
        &self,
        regarding: &ObjectReference,
        events: Vec<PlannedEvent>,
        build_ref: impl Fn(&str) -> Option<ObjectReference>,
    ) {
        for planned in events {
            let PlannedEvent {
                type_,
                reason,
                action,
                note,
                build,
            } = planned;
            if type_ == EventType::Warning {
                tracing::warn!(reason, action, %note, "transition");
            } else {
                tracing::info!(reason, action, %note, "transition");
            }
            let on_build = build.as_deref().and_then(&build_ref);
            let event = Event {
                type_,
                reason: reason.into(),
                note: Some(note.chars().take(1000).collect()),
                action: action.into(),
                secondary: build.map(|name| ObjectReference {
                    api_version: Some(MachineOSBuild::api_version(&()).into_owned()),
                    kind: Some(MachineOSBuild::kind(&()).into_owned()),
                    name: Some(name),
                    ..ObjectReference::default()
                }),
            };
            if let Some(build) = on_build {
                let about_build = Event {
                    type_: event.type_,
                    reason: event.reason.clone(),
                    note: event.note.clone(),
                    action: event.action.clone(),
                    secondary: Some(regarding.clone()),
                };
                self.publish(about_build, build);
            }
            self.publish(event, regarding.clone());
        }
    }

    /// Sends `event` about `regarding` in the background.
    fn publish(&self, event: Event, regarding: ObjectReference) {
        let recorder = self.recorder.clone();
        let permits = Arc::clone(&self.permits);
        let pending = Arc::clone(&self.pending);
        pending.0.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            // Closed only when the sink is gone: nothing to send to then.
            if let Ok(_permit) = permits.acquire_owned().await
                && let Err(err) = recorder.publish(&event, &regarding).await
            {
                tracing::warn!(%err, "cannot record an Event");
            }
            if pending.0.fetch_sub(1, Ordering::SeqCst) == 1 {
                pending.1.notify_waiters();
            }
        });
    }

    /// Waits until every Event handed over so far was sent (or failed).
    pub async fn flush(&self) {
        loop {
            let notified = self.pending.1.notified();
            tokio::pin!(notified);
            // Registered before the count is read: a last send ending in between still wakes us.
            notified.as_mut().enable();
            if self.pending.0.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}
