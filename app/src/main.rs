//! CivicBase in the browser: a Leptos app (client-side rendered) that shows
//! what the engine in its Web Worker reports and sends it the user's intents.

#[cfg(target_arch = "wasm32")]
mod client;
#[cfg(target_arch = "wasm32")]
mod i18n;
#[cfg(target_arch = "wasm32")]
mod mesh;
#[cfg(target_arch = "wasm32")]
mod ui;

#[cfg(target_arch = "wasm32")]
fn main() {
    std::panic::set_hook(Box::new(|info| {
        web_sys::console::error_1(&info.to_string().into());
    }));
    leptos::mount::mount_to_body(ui::App);
}

/// The app only runs in a browser.
#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!("civicbase-app runs in a browser: build it with `trunk build` (see README).");
}
