//! Per-key request, token and concurrency limits, behind a trait so a shared
//! store (e.g. Redis) can replace the in-process one when several replicas
//! serve the same keys.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Limits of one API key; `None` = unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyLimits {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub max_concurrent: Option<u64>,
}

/// The state of one budget, for `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub limit: u64,
    pub remaining: u64,
    /// Time until the budget is full again.
    pub reset: Duration,
}

/// What admission reports.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    pub requests: Option<Budget>,
    pub tokens: Option<Budget>,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy)]
pub enum Refusal {
    Requests { retry_after: Duration },
    Tokens { retry_after: Duration },
    Concurrency,
}

/// The counters' storage.
pub trait LimitStore: Send + Sync {
    /// Takes one request, `tokens` tokens and one concurrency slot, all or nothing.
    fn admit(&self, key: &str, limits: &KeyLimits, tokens: u64) -> (Result<(), Refusal>, Snapshot);
    /// Corrects the token count of an admitted request: `reserved` → `actual`.
    fn reconcile(&self, key: &str, limits: &KeyLimits, reserved: u64, actual: u64);
    /// Returns the concurrency slot.
    fn release(&self, key: &str);
    /// Current budgets without taking anything.
    fn peek(&self, key: &str, limits: &KeyLimits) -> Snapshot;
}

/// A token bucket that refills continuously to `capacity` per minute.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    level: f64,
    at: Instant,
}

impl Bucket {
    fn refill(&mut self, capacity: u64, now: Instant) {
        let rate = capacity as f64 / 60.0;
        self.level = (self.level + rate * (now - self.at).as_secs_f64()).min(capacity as f64);
        self.at = now;
    }

    fn budget(&self, capacity: u64) -> Budget {
        let rate = capacity as f64 / 60.0;
        let missing = capacity as f64 - self.level;
        Budget {
            limit: capacity,
            remaining: self.level.max(0.0).floor() as u64,
            reset: Duration::from_secs_f64(if rate > 0.0 {
                missing.max(0.0) / rate
            } else {
                0.0
            }),
        }
    }

    /// Time until `amount` is available.
    fn wait_for(&self, capacity: u64, amount: f64) -> Duration {
        let rate = capacity as f64 / 60.0;
        if rate <= 0.0 || amount > capacity as f64 {
            return Duration::from_secs(60);
        }
        Duration::from_secs_f64(((amount - self.level) / rate).max(0.0))
    }
}

#[derive(Debug, Default)]
struct KeyState {
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
    concurrent: u64,
}

/// The in-process store: one mutex-guarded map (admission is a few
/// arithmetic operations, far from contended at gateway request rates).
#[derive(Default)]
pub struct InProcess {
    keys: Mutex<HashMap<String, KeyState>>,
}

impl InProcess {
    fn with<R>(&self, key: &str, f: impl FnOnce(&mut KeyState) -> R) -> R {
        let mut map = match self.keys.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        f(map.entry(key.to_owned()).or_default())
    }
}

fn bucket(slot: &mut Option<Bucket>, capacity: u64, now: Instant) -> &mut Bucket {
    let b = slot.get_or_insert(Bucket {
        level: capacity as f64,
        at: now,
    });
    b.refill(capacity, now);
    b
}

fn snapshot(st: &mut KeyState, limits: &KeyLimits, now: Instant) -> Snapshot {
    Snapshot {
        requests: limits
            .rpm
            .map(|c| bucket(&mut st.requests, c, now).budget(c)),
        tokens: limits.tpm.map(|c| bucket(&mut st.tokens, c, now).budget(c)),
    }
}

impl LimitStore for InProcess {
    fn admit(&self, key: &str, limits: &KeyLimits, tokens: u64) -> (Result<(), Refusal>, Snapshot) {
        let now = Instant::now();
        self.with(key, |st| {
            if let Some(max) = limits.max_concurrent
                && st.concurrent >= max
            {
                return (Err(Refusal::Concurrency), snapshot(st, limits, now));
            }
            if let Some(c) = limits.rpm {
                let b = bucket(&mut st.requests, c, now);
                if b.level < 1.0 {
                    let retry_after = b.wait_for(c, 1.0);
                    return (
                        Err(Refusal::Requests { retry_after }),
                        snapshot(st, limits, now),
                    );
                }
            }
            if let Some(c) = limits.tpm {
                let b = bucket(&mut st.tokens, c, now);
                // A request larger than the whole budget may still run when the bucket is full.
                let need = (tokens as f64).min(c as f64);
                if b.level < need {
                    let retry_after = b.wait_for(c, need);
                    return (
                        Err(Refusal::Tokens { retry_after }),
                        snapshot(st, limits, now),
                    );
                }
                b.level -= tokens as f64;
            }
            if let Some(c) = limits.rpm {
                bucket(&mut st.requests, c, now).level -= 1.0;
            }
            st.concurrent += 1;
            (Ok(()), snapshot(st, limits, now))
        })
    }

    fn reconcile(&self, key: &str, limits: &KeyLimits, reserved: u64, actual: u64) {
        let Some(c) = limits.tpm else { return };
        let now = Instant::now();
        self.with(key, |st| {
            let b = bucket(&mut st.tokens, c, now);
            b.level = (b.level + reserved as f64 - actual as f64).min(c as f64);
        });
    }

    fn release(&self, key: &str) {
        self.with(key, |st| st.concurrent = st.concurrent.saturating_sub(1));
    }

    fn peek(&self, key: &str, limits: &KeyLimits) -> Snapshot {
        let now = Instant::now();
        self.with(key, |st| snapshot(st, limits, now))
    }
}

/// An admitted request's hold on its key's budgets. Dropping it returns the
/// concurrency slot; `settle` corrects the token reservation.
pub struct Permit {
    store: Arc<dyn LimitStore>,
    key: String,
    limits: KeyLimits,
    reserved: u64,
    settled: bool,
}

impl Permit {
    pub fn new(store: Arc<dyn LimitStore>, key: String, limits: KeyLimits, reserved: u64) -> Self {
        Self {
            store,
            key,
            limits,
            reserved,
            settled: false,
        }
    }

    /// Charges the real token count instead of the estimate.
    pub fn settle(&mut self, actual: u64) {
        if !self.settled {
            self.store
                .reconcile(&self.key, &self.limits, self.reserved, actual);
            self.settled = true;
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.store.release(&self.key);
    }
}

/// OpenAI's reset format: `1s`, `6m0s`, `250ms`.
pub fn format_reset(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs_f64().ceil() as u64;
    if secs < 60 {
        format!("{secs}s")
    } else {
        format!("{}m{}s", secs / 60, secs % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_per_minute_and_retry_after() {
        let store = InProcess::default();
        let limits = KeyLimits {
            rpm: Some(2),
            tpm: None,
            max_concurrent: None,
        };
        assert!(store.admit("k", &limits, 0).0.is_ok());
        store.release("k");
        let (ok, snap) = store.admit("k", &limits, 0);
        assert!(ok.is_ok());
        assert_eq!(snap.requests.unwrap().remaining, 0);
        store.release("k");
        match store.admit("k", &limits, 0).0 {
            Err(Refusal::Requests { retry_after }) => {
                assert!(
                    retry_after > Duration::from_secs(25) && retry_after <= Duration::from_secs(30)
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tokens_are_reserved_and_reconciled() {
        let store = InProcess::default();
        let limits = KeyLimits {
            rpm: None,
            tpm: Some(1000),
            max_concurrent: None,
        };
        assert!(store.admit("k", &limits, 900).0.is_ok());
        assert!(matches!(
            store.admit("k", &limits, 200).0,
            Err(Refusal::Tokens { .. })
        ));
        store.reconcile("k", &limits, 900, 100);
        assert!(store.admit("k", &limits, 200).0.is_ok());
    }

    #[test]
    fn concurrency_slots_come_back_on_drop() {
        let store: Arc<dyn LimitStore> = Arc::new(InProcess::default());
        let limits = KeyLimits {
            rpm: None,
            tpm: None,
            max_concurrent: Some(1),
        };
        assert!(store.admit("k", &limits, 0).0.is_ok());
        let permit = Permit::new(store.clone(), "k".into(), limits, 0);
        assert!(matches!(
            store.admit("k", &limits, 0).0,
            Err(Refusal::Concurrency)
        ));
        drop(permit);
        assert!(store.admit("k", &limits, 0).0.is_ok());
    }

    #[test]
    fn reset_format() {
        assert_eq!(format_reset(Duration::from_millis(250)), "250ms");
        assert_eq!(format_reset(Duration::from_secs(1)), "1s");
        assert_eq!(format_reset(Duration::from_secs(360)), "6m0s");
    }
}
