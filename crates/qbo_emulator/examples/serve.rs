//! Runs an emulator until Ctrl-C, for manual testing and for clients in other languages.
//!
//! ```text
//! cargo run --release -p qbo_emulator --example serve -- '{"port":8765,"invoices":5000}'
//! ```
//! The optional argument is a JSON [`EmulatorConfig`] (missing fields take their defaults).
//! Prints one JSON line with the URLs and the (fake) credentials, then serves.

use qbo_emulator::{Emulator, EmulatorConfig};

#[tokio::main]
async fn main() {
    let cfg: EmulatorConfig = match std::env::args().nth(1) {
        Some(j) => serde_json::from_str(&j).expect("argument must be a JSON EmulatorConfig"),
        None => EmulatorConfig::default(),
    };
    let emu = Emulator::start(cfg).await.expect("emulator starts");
    println!(
        "{}",
        serde_json::json!({
            "base_url": emu.base_url(),
            "api_url": emu.api_url(),
            "token_url": emu.token_url(),
            "discovery_url": format!("{}/.well-known/openid_configuration", emu.base_url()),
            "realm_id": emu.realm_id(),
            "client_id": emu.client_id(),
            "client_secret": emu.client_secret(),
            "refresh_token": emu.initial_refresh_token(),
            "empty_months": emu.empty_months(),
        })
    );
    let _ = tokio::signal::ctrl_c().await;
    emu.shutdown().await;
}
