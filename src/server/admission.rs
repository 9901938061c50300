//! The HTTP listeners' (admin, web page) accept loop and its connection caps: open connections
//! in all and per client address, and the time a request header has to arrive.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

/// An HTTP listener's caps.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HttpCaps {
    pub(crate) max_connections: usize,
    /// 0: no per-address cap.
    pub(crate) max_per_address: usize,
    /// For a request header to arrive, also between the requests of a kept-alive connection.
    pub(crate) header_timeout: Duration,
}

/// A running HTTP listener: its accept loop in a task of its own.
pub(crate) struct HttpTask {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpTask {
    /// Serves `app` on `listener` under `caps`; `name` names the listener in log lines.
    pub(crate) fn spawn(
        listener: tokio::net::TcpListener,
        app: Router,
        caps: HttpCaps,
        name: &'static str,
    ) -> HttpTask {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(accept_loop(listener, app, caps, name, stopped));
        HttpTask { stop, task }
    }

    /// Stops the listener, waiting (bounded) for requests in progress.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_secs(2), &mut task).await.is_err() {
            task.abort();
        }
    }
}

/// Accepts connections under the caps and serves each in a task of its own until `stopped`;
/// then asks the open ones to finish. A connection over either cap is closed as soon as it is
/// accepted.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: Router,
    caps: HttpCaps,
    name: &'static str,
    mut stopped: oneshot::Receiver<()>,
) {
    let admissions = Admissions::new(caps.max_connections, caps.max_per_address);
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(caps.header_timeout).keep_alive(true);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut stopped => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors, most likely: wait for some to be freed rather than
                // spin on the error.
                tracing::warn!(error = %e, "{name} listener cannot accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(admission) = admissions.admit(peer.ip()) else {
            tracing::debug!(%peer, "{name} connection over the connection caps closed");
            drop(stream);
            continue;
        };
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _admission = admission;
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "{name} connection ended");
            }
        });
    }
    graceful.shutdown().await;
}

/// The open connections, in all and per client address.
pub(crate) struct Admissions {
    all: Arc<Semaphore>,
    per_address: Mutex<HashMap<IpAddr, usize>>,
    max_per_address: usize,
}

/// One admitted connection's place under both caps, given back when it is dropped.
pub(crate) struct Admission {
    _place: OwnedSemaphorePermit,
    admissions: Arc<Admissions>,
    ip: IpAddr,
}

impl Admissions {
    /// Room for `max_connections` connections, `max_per_address` of them (0: any number) from
    /// one IP address.
    pub(crate) fn new(max_connections: usize, max_per_address: usize) -> Arc<Admissions> {
        Arc::new(Admissions {
            all: Arc::new(Semaphore::new(max_connections)),
            per_address: Mutex::new(HashMap::new()),
            max_per_address,
        })
    }

    /// A place for a new connection from `ip`, or `None` when a cap is reached.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Admission> {
        let place = self.all.clone().try_acquire_owned().ok()?;
        let mut counts = self.per_address.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(ip).or_insert(0);
        if self.max_per_address > 0 && *count >= self.max_per_address {
            if *count == 0 {
                counts.remove(&ip);
            }
            return None;
        }
        *count += 1;
        Some(Admission { _place: place, admissions: self.clone(), ip })
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut counts = self.admissions.per_address.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_in_all_and_per_address_and_places_come_back() {
        let a = Admissions::new(3, 2);
        let (x, y): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = a.admit(x).unwrap();
        let _second = a.admit(x).unwrap();
        assert!(a.admit(x).is_none(), "per-address cap");
        let _third = a.admit(y).unwrap();
        assert!(a.admit(y).is_none(), "global cap");
        drop(first);
        assert!(a.admit(x).is_some());
    }
}
