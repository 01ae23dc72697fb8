//! The engine's Web Worker script (built by Trunk with `data-type="worker"`).

#[cfg(target_arch = "wasm32")]
fn main() {
    civicbase_worker::glue::start();
}

/// The worker only runs in a browser.
#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!("civicbase-worker runs in a browser's Web Worker: build the app with trunk.");
}
