//! `scripts/bench.sh ceiling` only (cargo feature `bench-ceiling`, which no service build and no
//! test build turns on): how many entity webhooks a second this machine allows when the service
//! does less per event than it must. `BENCH_CEILING`, read once per process:
//! - unset or `full`: everything, as always;
//! - `event`: the batch stores the event's row alone — no booking, no messages (the ceiling of
//!   acknowledging an event before its booking is applied);
//! - `nothing`: the event is answered without being stored at all (the HTTP work, the secret's
//!   check, the JSON, the answer) — acknowledged events are then lost, which is the point.

use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ceiling {
    Full,
    EventAlone,
    Nothing,
}

/// What `BENCH_CEILING` asks for (an unknown value is `full`).
pub fn ceiling() -> Ceiling {
    static CEILING: OnceLock<Ceiling> = OnceLock::new();
    *CEILING.get_or_init(|| match std::env::var("BENCH_CEILING").as_deref() {
        Ok("event") => Ceiling::EventAlone,
        Ok("nothing") => Ceiling::Nothing,
        _ => Ceiling::Full,
    })
}
