//! The admin listener's connection caps: open connections in all and per client address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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
