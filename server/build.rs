//! Links the release binaries with the code their start runs laid out together.
//!
//! `link-order.txt` lists the functions (their symbol names) that a start of the service runs, up
//! to its first healthy answer, as `valgrind --tool=callgrind` saw them (`scripts/link-order.sh`
//! writes it). Given to the linker as `--symbol-ordering-file`, it puts those functions side by
//! side at the front of `.text`, instead of wherever their crates happened to land. The kernel
//! maps an executable's code in blocks around each page first touched (fault-around over the page
//! cache's large folios: ~108 KB per touch measured here), so a start that touches scattered
//! pages keeps far more of the executable resident than it runs; see docs/design.md, "Idle
//! memory: the start's code side by side".
//!
//! Only for release builds on x86_64 Linux, whose default linker since Rust 1.90 is the
//! toolchain's `rust-lld` (GNU ld has no such option; a build whose `RUSTFLAGS` turn rust-lld off
//! goes without). A symbol the list names that a build does not have (renamed, removed, another
//! binary's) is skipped without a warning, so a stale list only lays out less;
//! `AI_ADMIN_LINK_ORDER=0` turns the option off (another linker, say).
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=link-order.txt");
    println!("cargo:rerun-if-env-changed=AI_ADMIN_LINK_ORDER");
    println!("cargo:rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    let target = std::env::var("TARGET").unwrap_or_default();
    // A build that opts out of rust-lld links with the system's GNU ld, which has no such option.
    let rust_lld = !std::env::var("CARGO_ENCODED_RUSTFLAGS").is_ok_and(|flags| {
        flags.contains("linker-features=-lld") || flags.contains("link-self-contained=-linker")
    });
    let wanted = rust_lld && std::env::var("AI_ADMIN_LINK_ORDER").as_deref() != Ok("0");
    let list =
        Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default()).join("link-order.txt");
    if release && wanted && target == "x86_64-unknown-linux-gnu" && list.is_file() {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            list.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}
