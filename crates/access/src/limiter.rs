//! Rate limits (a token bucket per key) and the brake on failed logins.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys kept before idle ones are dropped.
const MAX_KEYS: usize = 100_000;

/// `rate` requests a second on average, bursts of up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// One token bucket per key.
#[derive(Debug)]
pub struct Limiter<K> {
    rate: Rate,
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    pub fn new(rate: Rate) -> Limiter<K> {
        Limiter {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`; when there is none, says how long until there is.
    pub fn take(&self, key: &K) -> Result<(), Duration> {
        self.take_at(key, Instant::now())
    }

    fn take_at(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let Rate { per_second, burst } = self.rate;
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        if buckets.len() >= MAX_KEYS {
            // Full buckets hold no state worth keeping.
            buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.at).as_secs_f64() * per_second < burst
            });
        }
        let bucket = buckets.entry(key.clone()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() * per_second;
        bucket.tokens = (bucket.tokens + refill).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / per_second.max(f64::MIN_POSITIVE),
            ))
        }
    }
}

/// The longest wait a run of failures can impose.
const MAX_WAIT: Duration = Duration::from_secs(300);
/// Failures this old are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(900);

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Counts failed logins per key (a user name, a client address) and slows each key down
/// once it fails too often: after `free` failures, every attempt waits twice as long as the
/// one before, up to [`MAX_WAIT`].
#[derive(Debug)]
pub struct LoginBrake {
    free: u32,
    failures: Mutex<HashMap<String, Failures>>,
}

impl LoginBrake {
    pub fn new(free: u32) -> LoginBrake {
        LoginBrake {
            free: free.max(1),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// How long `key` must still wait before its next attempt, if it must.
    pub fn wait(&self, key: &str) -> Option<Duration> {
        self.wait_at(key, Instant::now())
    }

    fn wait_at(&self, key: &str, now: Instant) -> Option<Duration> {
        let failures = self.failures.lock().ok()?;
        let f = failures.get(key)?;
        if f.count < self.free {
            return None;
        }
        let wait = Duration::from_secs(1 << (f.count - self.free).min(16)).min(MAX_WAIT);
        let ready = f.last + wait;
        (ready > now).then(|| ready - now)
    }

    pub fn failed(&self, key: &str) {
        self.failed_at(key, Instant::now());
    }

    fn failed_at(&self, key: &str, now: Instant) {
        let Ok(mut failures) = self.failures.lock() else {
            return;
        };
        if failures.len() >= MAX_KEYS {
            failures.retain(|_, f| now.duration_since(f.last) < FORGET_AFTER);
        }
        let f = failures.entry(key.to_owned()).or_insert(Failures {
            count: 0,
            last: now,
        });
        if now.duration_since(f.last) >= FORGET_AFTER {
            f.count = 0;
        }
        f.count += 1;
        f.last = now;
    }

    pub fn succeeded(&self, key: &str) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let limiter = Limiter::new(Rate {
            per_second: 2.0,
            burst: 3.0,
        });
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.take_at(&"a", t0).is_ok());
        }
        let wait = limiter.take_at(&"a", t0).expect_err("burst spent");
        assert!(wait > Duration::from_millis(400) && wait <= Duration::from_millis(500));
        assert!(limiter.take_at(&"b", t0).is_ok(), "keys are separate");
        assert!(
            limiter
                .take_at(&"a", t0 + Duration::from_millis(500))
                .is_ok()
        );
        assert!(
            limiter
                .take_at(&"a", t0 + Duration::from_millis(500))
                .is_err()
        );
    }

    #[test]
    fn failed_logins_wait_longer_each_time_and_success_forgives() {
        let brake = LoginBrake::new(5);
        let t0 = Instant::now();
        for _ in 0..5 {
            assert_eq!(brake.wait_at("bob", t0), None);
            brake.failed_at("bob", t0);
        }
        assert_eq!(brake.wait_at("bob", t0), Some(Duration::from_secs(1)));
        brake.failed_at("bob", t0);
        assert_eq!(brake.wait_at("bob", t0), Some(Duration::from_secs(2)));
        assert_eq!(brake.wait_at("bob", t0 + Duration::from_secs(2)), None);
        assert_eq!(brake.wait_at("eve", t0), None);
        brake.succeeded("bob");
        assert_eq!(brake.wait_at("bob", t0), None);
        brake.failed_at("carol", t0);
        brake.failed_at("carol", t0 + FORGET_AFTER);
        assert_eq!(brake.failures.lock().expect("lock")["carol"].count, 1);
    }
}
