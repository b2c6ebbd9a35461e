//! Watches whose events are stamped when the bench receives them (for latencies seen from
//! outside, as a user would see them).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use kube::api::Api;
use kube::runtime::watcher;
use tokio::sync::mpsc;

/// An object seen by a watch, stamped on arrival.
pub struct Seen<K> {
    pub at: Instant,
    pub object: K,
}

/// A running watch: objects added or modified after it started (those listed at its start are
/// in `initial`).
pub struct Watch<K> {
    pub rx: mpsc::UnboundedReceiver<Seen<K>>,
    /// UIDs of the objects that existed when the watch started.
    pub initial: HashSet<String>,
}

/// Watches `api`; returns once the initial list has been delivered.
pub async fn watch<K>(api: Api<K>, config: watcher::Config) -> Result<Watch<K>>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Clone + Eq + std::hash::Hash + Send,
{
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        let mut initial = HashSet::new();
        let mut stream = watcher(api, config).boxed();
        while let Some(event) = stream.next().await {
            let at = Instant::now();
            match event {
                Ok(watcher::Event::InitApply(object)) => {
                    if ready.is_some() {
                        initial.insert(object.meta().uid.clone().unwrap_or_default());
                    }
                    if tx.send(Seen { at, object }).is_err() {
                        return;
                    }
                }
                Ok(watcher::Event::Apply(object)) => {
                    if tx.send(Seen { at, object }).is_err() {
                        return;
                    }
                }
                Ok(watcher::Event::InitDone) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(std::mem::take(&mut initial));
                    }
                }
                Ok(_) => {}
                // Nobody reads this watch any more (its section ended): stop it.
                Err(_) if tx.is_closed() => return,
                Err(err) => {
                    eprintln!("bench: watch error (retrying): {err}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    });
    let initial = tokio::time::timeout(Duration::from_secs(60), ready_rx)
        .await
        .context("the watch did not list within 60 s")??;
    // What the initial list delivered is not news.
    while rx.try_recv().is_ok() {}
    Ok(Watch { rx, initial })
}
