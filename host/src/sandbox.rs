//! A host configured for the local WeChat Pay simulator (`sandbox`, `demo`, tests). Built only
//! with the `sandbox` feature: a production build contains no simulator.

use std::net::SocketAddr;
use std::time::Duration;

use wxpay_simulator::SimulatorHandle;

use crate::config::{Config, Edge, PlatformKeySource, Secret};

/// A configuration that points a host at a running simulator (sandbox, demo and tests).
///
/// `notify_base` is the host's own base URL (where the simulator delivers notifications).
#[must_use]
pub fn simulator_config(
    sim: &SimulatorHandle,
    listen: SocketAddr,
    notify_base: &str,
    database_url: &str,
    admin_token: &str,
) -> Config {
    // A simulator with both a public key and a certificate is a merchant switching from one
    // to the other: combined mode.
    let platform = match (
        sim.platform_public_key_id(),
        sim.platform_certificate_serial(),
    ) {
        (Some(id), Some(_)) => PlatformKeySource::Combined {
            id: id.to_owned(),
            pem: sim.platform_public_key_pem().to_owned(),
        },
        (Some(id), None) => PlatformKeySource::PublicKey {
            id: id.to_owned(),
            pem: sim.platform_public_key_pem().to_owned(),
        },
        (None, _) => PlatformKeySource::Certificates,
    };
    Config {
        listen,
        database_url: database_url.into(),
        appid: sim.appid().to_owned(),
        appsecret: Secret::new(sim.appsecret()),
        mchid: sim.mchid().to_owned(),
        merchant_serial: sim.merchant_serial().to_owned(),
        merchant_key_pem: Secret::new(sim.merchant_private_key_pem()),
        api_v3_key: Secret::new(sim.api_v3_key()),
        platform,
        notify_url: notify_base.trim_end_matches('/').to_owned(),
        admin_token: Secret::new(admin_token),
        api_base: sim.base_url().to_owned(),
        login_base: sim.base_url().to_owned(),
        order_expire: Duration::from_secs(1800),
        session_ttl: Duration::from_secs(7200),
        reconcile_interval: Duration::from_secs(5),
        reconcile_after: Duration::from_secs(30),
        cert_refresh_interval: Duration::from_secs(43_200),
        http_timeout: Duration::from_secs(5),
        upstream_retries: 2,
        body_limit: 65_536,
        edge: Edge::default(),
        data_key: None,
    }
}
