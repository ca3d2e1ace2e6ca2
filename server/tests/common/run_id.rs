//! The test run's name, shared by the test crates (`tests/api`, `tests/migrations.rs`).

/// `TEST_RUN_ID` (scripts/test.sh sets it and, when the run passed, drops the run's PostgreSQL
/// schemas and removes its SQLite files by that name), `t` without it. Every schema and file a
/// test makes is named after it, so the clean-up finds them.
pub fn run_id() -> String {
    std::env::var("TEST_RUN_ID")
        .ok()
        .filter(|id| {
            (1..=24).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
        .unwrap_or_else(|| "t".to_owned())
}
