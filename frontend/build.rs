//! A hydrate build for the browser without `--split` (cargo-leptos) makes a WASM that imports the
//! chunks' loader, `__wasm_split.*.js`, which only a split build writes: the page would stay
//! unhydrated with a failed module import in the browser's console. Say so at build time.

fn main() {
    println!("cargo::rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    let wasm = std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|arch| arch == "wasm32");
    let hydrate = std::env::var_os("CARGO_FEATURE_HYDRATE").is_some();
    let split = std::env::var("CARGO_ENCODED_RUSTFLAGS").is_ok_and(|flags| {
        flags
            .split('\x1f')
            .any(|flag| flag.contains("--emit-relocs"))
    });
    if wasm && hydrate && !split {
        println!(
            "cargo::warning=the hydrate WASM needs `cargo leptos build --split` (or `watch --split`): \
             without it the page cannot load the console's and the messages' chunks (frontend/src/lib.rs)"
        );
    }
}
