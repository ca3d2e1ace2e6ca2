//! The one backoff formula of the workspace: exponential with a cap, and nothing else. Pure and
//! dependency-free, so the browser (WASM) uses it too; jitter is the caller's, where `rand` is.

use std::time::Duration;

/// `base · 2^doublings`, at most `cap` (the exponent stops growing at 16).
pub fn exponential(base: Duration, doublings: u32, cap: Duration) -> Duration {
    base.saturating_mul(1u32 << doublings.min(16)).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let base = Duration::from_secs(1);
        let cap = Duration::from_secs(30);
        let delays: Vec<u64> = (0..8)
            .map(|n| exponential(base, n, cap).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(exponential(base, u32::MAX, cap), cap);
        assert_eq!(
            exponential(Duration::MAX, 3, Duration::MAX),
            Duration::MAX,
            "saturates instead of overflowing"
        );
    }
}
