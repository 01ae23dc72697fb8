//! Admission (connections per IP address and in total) and the per-connection token bucket.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::metrics::RefuseReason;

/// Counts open connections per IP address and in total; a [`Ticket`] holds one slot of each.
#[derive(Debug)]
pub(crate) struct Admission {
    max_per_ip: usize,
    max_total: usize,
    state: Mutex<AdmissionState>,
    /// Notified when the last connection closes.
    idle: Notify,
}

#[derive(Debug, Default)]
struct AdmissionState {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

impl Admission {
    /// A limit of zero means unlimited.
    pub(crate) fn new(max_per_ip: usize, max_total: usize) -> Arc<Self> {
        Arc::new(Admission {
            max_per_ip: if max_per_ip == 0 {
                usize::MAX
            } else {
                max_per_ip
            },
            max_total: if max_total == 0 {
                usize::MAX
            } else {
                max_total
            },
            state: Mutex::default(),
            idle: Notify::new(),
        })
    }

    /// Takes a slot for a connection from `ip`, or says which limit it would exceed.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, RefuseReason> {
        let ip = ip.to_canonical();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.total >= self.max_total {
            return Err(RefuseReason::ServerFull);
        }
        let count = state.per_ip.entry(ip).or_insert(0);
        if *count >= self.max_per_ip {
            return Err(RefuseReason::PerIpLimit);
        }
        *count += 1;
        state.total += 1;
        Ok(Ticket {
            admission: Arc::clone(self),
            ip,
        })
    }

    fn release(&self, ip: IpAddr) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.total = state.total.saturating_sub(1);
        if let Some(count) = state.per_ip.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                state.per_ip.remove(&ip);
            }
        }
        if state.total == 0 {
            self.idle.notify_waiters();
        }
    }

    /// The number of admitted connections still open.
    pub(crate) fn open(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }

    /// Resolves once no admitted connection is open.
    pub(crate) async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            // Registered before the check, so a release in between is not missed.
            notified.as_mut().enable();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// One admitted connection; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct Ticket {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Ticket {
    /// The address the connection comes from.
    pub(crate) fn ip(&self) -> IpAddr {
        self.ip
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admission.release(self.ip);
    }
}

/// A token bucket: `rate` tokens per second, holding at most `burst`. Every received frame
/// takes one token.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket. A rate of zero disables the limit.
    pub(crate) fn new(rate: u32, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate: f64::from(rate),
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes one token; false when the bucket is empty.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.last);
        self.last = now;
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Rounds a duration used as a period up to at least one millisecond, since tokio intervals
/// refuse a zero period.
pub(crate) fn at_least_1ms(duration: Duration) -> Duration {
    duration.max(Duration::from_millis(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, 5, start);
        assert!((0..5).all(|_| bucket.take(start)));
        assert!(!bucket.take(start));
        // 100 ms refills one token at 10/s.
        assert!(bucket.take(start + Duration::from_millis(100)));
        assert!(!bucket.take(start + Duration::from_millis(100)));
        // A long pause refills no more than the burst.
        let later = start + Duration::from_secs(60);
        assert!((0..5).all(|_| bucket.take(later)));
        assert!(!bucket.take(later));
    }

    #[test]
    fn a_zero_rate_disables_the_bucket() {
        let now = Instant::now();
        let mut bucket = TokenBucket::new(0, 1, now);
        assert!((0..10_000).all(|_| bucket.take(now)));
    }

    #[test]
    fn admission_counts_per_ip_and_in_total_and_frees_on_drop() {
        let admission = Admission::new(2, 3);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let first = admission.admit(a).expect("first");
        let _second = admission.admit(a).expect("second");
        assert_eq!(admission.admit(a).err(), Some(RefuseReason::PerIpLimit));
        let _third = admission.admit(b).expect("other ip");
        assert_eq!(admission.admit(b).err(), Some(RefuseReason::ServerFull));
        drop(first);
        assert!(admission.admit(a).is_ok());
    }

    #[test]
    fn ipv4_mapped_ipv6_counts_as_the_ipv4_address() {
        let admission = Admission::new(1, 0);
        let v4: IpAddr = [192, 0, 2, 1].into();
        let mapped: IpAddr = std::net::Ipv4Addr::new(192, 0, 2, 1)
            .to_ipv6_mapped()
            .into();
        let _held = admission.admit(v4).expect("first");
        assert_eq!(
            admission.admit(mapped).err(),
            Some(RefuseReason::PerIpLimit)
        );
    }
}
