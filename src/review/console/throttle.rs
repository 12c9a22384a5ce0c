//! Failed sign-ins per client address: after `FAILURES` in `WINDOW_MS` an address is refused
//! (HTTP 429) without its password being checked, until the window ends. Refusals are counted
//! here, not written one by one: the audit log gets one row when an address is first refused
//! and one with the count when its window ends, so a password-spraying client cannot flood it.
//! In memory only: a restart starts every address afresh (the per-account lockout in `auth`
//! is in the database and stays).

use std::{collections::HashMap, sync::Mutex};

/// Failed sign-ins one address may make per window: well above what a person mistyping does,
/// far below what guessing needs.
pub const FAILURES: u32 = 20;
/// The window: ten minutes.
pub const WINDOW_MS: i64 = 10 * 60_000;
/// Addresses remembered at most; older windows are dropped first when it fills.
const ADDRESSES: usize = 10_000;

#[derive(Debug, Clone, Copy, Default)]
struct Window {
    start_ms: i64,
    failures: u32,
    refused: u64,
}

/// What a sign-in from an address may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gate {
    /// Refused without checking the password.
    pub refused: bool,
    /// This is the window's first refusal (audited as such).
    pub first_refusal: bool,
    /// The refusals of the address's window that just ended (audited once, as a count).
    pub ended_refusals: Option<u64>,
    /// When the current window ends (ms since 1970).
    pub until_ms: i64,
}

/// The failed sign-ins per address.
#[derive(Debug, Default)]
pub struct Throttle {
    windows: Mutex<HashMap<String, Window>>,
}

impl Throttle {
    /// Whether a sign-in from `address` at `now_ms` goes ahead; counts it when refused.
    pub fn gate(&self, address: &str, now_ms: i64) -> Gate {
        let mut windows = self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if windows.len() >= ADDRESSES && !windows.contains_key(address) {
            windows.retain(|_, w| now_ms - w.start_ms < WINDOW_MS);
        }
        let window = windows.entry(address.to_string()).or_insert(Window { start_ms: now_ms, ..Window::default() });
        let mut ended_refusals = None;
        if now_ms - window.start_ms >= WINDOW_MS {
            ended_refusals = Some(window.refused).filter(|n| *n > 0);
            *window = Window { start_ms: now_ms, ..Window::default() };
        }
        let refused = window.failures >= FAILURES;
        if refused {
            window.refused += 1;
        }
        let until_ms = window.start_ms + WINDOW_MS;
        Gate { refused, first_refusal: refused && window.refused == 1, ended_refusals, until_ms }
    }

    /// Counts a failed sign-in from `address` (after `gate` let it through).
    pub fn failed(&self, address: &str, now_ms: i64) {
        let mut windows = self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let window = windows.entry(address.to_string()).or_insert(Window { start_ms: now_ms, ..Window::default() });
        window.failures += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_refused_after_its_failures_until_the_window_ends() {
        let throttle = Throttle::default();
        for _ in 0..FAILURES {
            assert!(!throttle.gate("10.0.0.1", 0).refused);
            throttle.failed("10.0.0.1", 0);
        }
        let first = throttle.gate("10.0.0.1", 1);
        assert!(first.refused && first.first_refusal && first.until_ms == WINDOW_MS);
        let second = throttle.gate("10.0.0.1", 2);
        assert!(second.refused && !second.first_refusal);
        assert!(!throttle.gate("10.0.0.2", 2).refused, "another address is not refused");
        let after = throttle.gate("10.0.0.1", WINDOW_MS);
        assert_eq!((after.refused, after.ended_refusals), (false, Some(2)));
    }
}
