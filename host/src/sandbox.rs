//! A host configured for the local WeChat Pay simulator (`sandbox`, `demo`, tests). Built only
//! with the `sandbox` feature: a production build contains no simulator.

use std::net::SocketAddr;
use std::time::Duration;

use wxpay_simulator::SimulatorHandle;

use crate::config::{ApiV2Settings, Config, Edge, PayApi, PlatformKeySource, Secret};

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
        pay_api: PayApi::V3,
        mchid: sim.mchid().to_owned(),
        merchant_serial: sim.merchant_serial().to_owned(),
        merchant_key_pem: Secret::new(sim.merchant_private_key_pem()),
        api_v3_key: Secret::new(sim.api_v3_key()),
        platform,
        notify_url: notify_base.trim_end_matches('/').to_owned(),
        admin_token: Secret::new(admin_token),
        api_base: sim.base_url().to_owned(),
        login_base: sim.base_url().to_owned(),
        api_ca_pem: None,
        order_expire: Duration::from_secs(1800),
        session_ttl: Duration::from_secs(7200),
        reconcile_interval: Duration::from_secs(5),
        reconcile_after: Duration::from_secs(30),
        cert_refresh_interval: Duration::from_secs(43_200),
        http_timeout: Duration::from_secs(5),
        upstream_retries: 2,
        body_limit: 65_536,
        recorded_payments: 32_768,
        edge: Edge::default(),
        data_key: None,
    }
}

/// The same configuration in APIv2 mode: the simulator's APIv2 key and sign type, and, for a
/// simulator started with `tls`, its CA and the merchant API client certificate (the RSA key
/// and APIv3 key are dropped: APIv2 does not use them).
#[must_use]
pub fn simulator_config_v2(mut config: Config, sim: &SimulatorHandle) -> Config {
    config.pay_api = PayApi::V2(ApiV2Settings {
        key: Secret::new(sim.api_v2_key()),
        sign_type: sim.v2_sign_type(),
        // A simulator started with `tls` serves HTTPS under its own CA and checks the merchant
        // API certificate on `/secapi/`, like WeChat.
        client_cert_pem: sim.merchant_client_cert_pem().map(str::to_owned),
        client_key_pem: sim.merchant_client_key_pem().map(Secret::new),
        spbill_create_ip: "127.0.0.1".into(),
    });
    config.api_ca_pem = sim.tls_root_ca_pem().map(str::to_owned);
    config.merchant_key_pem = Secret::default();
    config.merchant_serial = String::new();
    config.api_v3_key = Secret::default();
    config
}
