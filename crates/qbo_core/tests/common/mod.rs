//! The emulator and a client for it, unthrottled, for the engine's integration tests.

use qbo_core::client::ClientConfig;
use qbo_core::limiter::Pacing;
use qbo_core::{Credentials, Environment, QboClient};
use qbo_emulator::{Emulator, EmulatorConfig, Knobs};
use secrecy::SecretString;

/// An emulator with `invoices` invoices (and 5 customers and items), and a client that paces
/// far above it.
pub async fn emulator_and_client(invoices: usize) -> (Emulator, QboClient) {
    let emu = Emulator::start(EmulatorConfig { invoices, customers: 5, items: 5, knobs: Knobs::unthrottled(), ..Default::default() }).await.unwrap();
    let creds = Credentials {
        client_id: emu.client_id().into(),
        client_secret: SecretString::from(emu.client_secret().to_string()),
        refresh_token: SecretString::from(emu.initial_refresh_token().to_string()),
        realm_id: emu.realm_id().into(),
        environment: Environment::Sandbox,
        api_base_url: Some(emu.base_url()),
        token_url: Some(emu.token_url()),
    };
    let config = ClientConfig { pacing: Pacing { requests_per_minute: 1_000_000, ..Pacing::default() }, ..ClientConfig::default() };
    let client = QboClient::new(creds, config).unwrap();
    (emu, client)
}
