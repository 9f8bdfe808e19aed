//! The simulator's HTTPS listener with optional client certificates ([`crate::SimulatorOptions::tls`]).
//!
//! WeChat Pay's APIv2 `/secapi/` endpoints (the v2 refund) require mutual TLS: the merchant's
//! API certificate (`apiclient_cert.pem`, subject CN = the `mch_id`, issued by WeChat's CA) and
//! its key (`apiclient_key.pem`) are presented in the TLS handshake, and a client without them
//! is refused before any HTTP. The simulator does the same with certificates of its own, made at
//! every start with `rcgen` and valid only for tests:
//!
//! - a CA, "wxpay simulator CA", which a client adds to its trusted roots
//!   ([`crate::SimulatorHandle::tls_root_ca_pem`]);
//! - a server certificate issued by it for `127.0.0.1` (IP) and `localhost` (DNS);
//! - the merchant client certificate issued by it, subject CN = the `mch_id`, serial = the
//!   merchant serial, over the merchant API private key (so it is the `apiclient_cert.pem` of
//!   the simulator's merchant key, [`crate::SimulatorHandle::merchant_client_cert_pem`]).
//!
//! Client certificates are requested but optional in the handshake (rustls
//! `WebPkiClientVerifier` with `allow_unauthenticated`), so that every other route works
//! without one; a certificate that is presented must chain to the simulator CA or the handshake
//! fails. The verified certificate's subject CN reaches the handlers as the [`ClientCert`]
//! request extension, and `/secapi/` answers HTTP 403 unless it is the `mch_id`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
    PKCS_RSA_SHA256, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::SimulatorError;
use super::wire::civil_date;

/// The subject CN of the simulator's CA.
pub(crate) const CA_COMMON_NAME: &str = "wxpay simulator CA";
/// How long a client may take for its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the generated certificates are valid (WeChat's merchant API certificates: 5 years).
const VALIDITY_DAYS: u64 = 5 * 365;

/// The certificate a TLS client presented, as the simulator verified it: its subject CN, or
/// `None` when the client presented none (or the listener is plain HTTP). Added to every
/// request of a TLS connection as a request extension.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ClientCert(pub Option<String>);

/// The PEM texts of the generated TLS material (all test-only).
#[derive(Clone)]
pub(crate) struct TlsPems {
    /// The CA certificate, a client's trusted root.
    pub ca_pem: String,
    /// The merchant API client certificate (`apiclient_cert.pem`).
    pub client_cert_pem: String,
    /// Its private key, PKCS#8 (`apiclient_key.pem`): the merchant API private key.
    pub client_key_pem: String,
    /// The CA's private key, for tests that issue other client certificates.
    #[cfg(test)]
    pub ca_key_pem: String,
}

/// What [`generate`] makes: the PEMs and the server configuration.
pub(crate) struct TlsSetup {
    pub pems: TlsPems,
    pub acceptor: TlsAcceptor,
}

/// Generates the CA, the server certificate and the merchant client certificate (subject CN
/// `mchid`, serial `merchant_serial` (hex), over `merchant_key_pem`), valid from a day before
/// `now` (unix seconds, the real clock: rustls checks validity against it).
///
/// # Errors
/// [`SimulatorError::KeyGeneration`] if a key, certificate or the rustls configuration cannot
/// be made.
pub(crate) fn generate(
    mchid: &str,
    merchant_serial: &str,
    merchant_key_pem: &str,
    now: u64,
) -> Result<TlsSetup, SimulatorError> {
    let err = |what: &'static str| move |e: rcgen::Error| tls_error(what, e);
    let validity = |params: &mut CertificateParams| {
        let ymd = |unix: u64| {
            let (y, m, d) = civil_date(unix);
            rcgen::date_time_ymd(y, m, d)
        };
        params.not_before = ymd(now.saturating_sub(86_400));
        params.not_after = ymd(now.saturating_add(VALIDITY_DAYS * 86_400));
    };

    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(err("CA key"))?;
    #[cfg(test)]
    let ca_key_pem = ca_key.serialize_pem();
    let mut ca_params = ca_params();
    validity(&mut ca_params);
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(err("CA certificate"))?;

    let server_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(err("server key"))?;
    let mut server_params = CertificateParams::default();
    server_params.distinguished_name = name(&[(DnType::CommonName, "127.0.0.1")]);
    server_params.subject_alt_names = vec![
        SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])),
        SanType::DnsName(
            "localhost"
                .try_into()
                .map_err(err("server certificate name"))?,
        ),
    ];
    server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut server_params);
    let server_cert = server_params
        .signed_by(&server_key, &ca)
        .map_err(err("server certificate"))?;

    let client_key_pem = pkcs8_pem(merchant_key_pem)?;
    let client_key = KeyPair::from_pem_and_sign_algo(&client_key_pem, &PKCS_RSA_SHA256)
        .map_err(err("merchant API key"))?;
    let mut client_params = CertificateParams::default();
    // Like WeChat's `apiclient_cert.pem`: CN = the mchid, O = 微信商户系统.
    client_params.distinguished_name = name(&[
        (DnType::CountryName, "CN"),
        (DnType::OrganizationName, "微信商户系统"),
        (
            DnType::OrganizationalUnitName,
            "wxpay simulator merchant (TEST ONLY)",
        ),
        (DnType::CommonName, mchid),
    ]);
    let serial = hex::decode(merchant_serial)
        .map_err(|e| SimulatorError::KeyGeneration(format!("merchant serial: {e}")))?;
    client_params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    client_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    validity(&mut client_params);
    let client_cert = client_params
        .signed_by(&client_key, &ca)
        .map_err(err("merchant client certificate"))?;

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    roots
        .add(ca.der().clone())
        .map_err(|e| tls_error("CA root", e))?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| tls_error("client verifier", e))?;
    let server_key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("protocol versions", e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![server_cert.der().clone(), ca.der().clone()],
            server_key_der,
        )
        .map_err(|e| tls_error("server certificate", e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsSetup {
        pems: TlsPems {
            ca_pem: ca.pem(),
            client_cert_pem: client_cert.pem(),
            client_key_pem,
            #[cfg(test)]
            ca_key_pem,
        },
        acceptor: TlsAcceptor::from(Arc::new(config)),
    })
}

/// The CA's certificate parameters (without validity).
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(&[
        (DnType::OrganizationName, "wxpay simulator (TEST ONLY)"),
        (DnType::CommonName, CA_COMMON_NAME),
    ]);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// For tests: a client certificate with subject CN `cn` and a fresh P-256 key, issued by the CA
/// whose key is `ca_key_pem` (the simulator's, or any other) — `(certificate PEM, key PEM)`.
#[cfg(test)]
pub(crate) fn issue_client_cert(ca_key_pem: &str, cn: &str) -> (String, String) {
    let ca_key = KeyPair::from_pem(ca_key_pem).expect("CA key");
    let ca = rcgen::Issuer::new(ca_params(), ca_key);
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = CertificateParams::default();
    params.distinguished_name = name(&[(DnType::CommonName, cn)]);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &ca).expect("certificate");
    (cert.pem(), key.serialize_pem())
}

/// For tests: a CA of its own with the same name as the simulator's — `(certificate PEM, key
/// PEM)`.
#[cfg(test)]
pub(crate) fn other_ca() -> (String, String) {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
    let cert = ca_params().self_signed(&key).expect("CA");
    (cert.pem(), key.serialize_pem())
}

fn tls_error(what: &str, e: impl std::fmt::Display) -> SimulatorError {
    SimulatorError::KeyGeneration(format!("TLS {what}: {e}"))
}

fn name(parts: &[(DnType, &str)]) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    for (ty, value) in parts {
        name.push(ty.clone(), *value);
    }
    name
}

/// The merchant private key as a PKCS#8 PEM: as it is, or wrapped if it is PKCS#1.
fn pkcs8_pem(pem: &str) -> Result<String, SimulatorError> {
    match PrivateKeyDer::from_pem_slice(pem.as_bytes()) {
        Ok(PrivateKeyDer::Pkcs8(_)) => Ok(pem.to_owned()),
        Ok(PrivateKeyDer::Pkcs1(pkcs1)) => Ok(pem_encode(
            "PRIVATE KEY",
            &pkcs1_to_pkcs8(pkcs1.secret_pkcs1_der()),
        )),
        Ok(_) => Err(SimulatorError::KeyGeneration(
            "merchant API key: not an RSA key".into(),
        )),
        Err(e) => Err(tls_error("merchant API key", e)),
    }
}

/// `PrivateKeyInfo { version 0, rsaEncryption NULL, OCTET STRING pkcs1 }` (RFC 5208).
fn pkcs1_to_pkcs8(pkcs1: &[u8]) -> Vec<u8> {
    // SEQUENCE { INTEGER 0 } and AlgorithmIdentifier { 1.2.840.113549.1.1.1, NULL }.
    const HEAD: [u8; 18] = [
        0x02, 0x01, 0x00, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01,
        0x01, 0x05, 0x00,
    ];
    let mut octets = vec![0x04];
    der_len(pkcs1.len(), &mut octets);
    octets.extend_from_slice(pkcs1);
    let mut out = vec![0x30];
    der_len(HEAD.len() + octets.len(), &mut out);
    out.extend_from_slice(&HEAD);
    out.extend_from_slice(&octets);
    out
}

fn der_len(len: usize, out: &mut Vec<u8>) {
    match u8::try_from(len) {
        Ok(short) if short < 0x80 => out.push(short),
        _ => {
            let bytes = len.to_be_bytes();
            let skip = bytes.iter().take_while(|&&b| b == 0).count();
            out.push(0x80 | u8::try_from(bytes.len() - skip).unwrap_or(0x7f));
            out.extend_from_slice(&bytes[skip..]);
        }
    }
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

/// The subject CN of a (verified) certificate.
pub(crate) fn common_name(der: &[u8]) -> Option<String> {
    use der::Decode as _;
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    let cn = cert.tbs_certificate().subject().common_name().ok()??;
    Some(String::from(cn))
}

/// Serves `app` over TLS on `listener` until `shutdown` turns `true`, then stops accepting and
/// lets the open connections finish (graceful shutdown, as `axum::serve` does for plain HTTP).
///
/// Each accepted connection's handshake runs in its own task (a slow or failing client does not
/// hold up the others); every request of a connection carries its [`ClientCert`].
pub(crate) async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stopped(&mut shutdown) => break,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // E.g. out of file descriptors: wait a little, as axum::serve does.
                tracing::warn!(error = %e, "simulator accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (acceptor, app, watcher) = (acceptor.clone(), app.clone(), graceful.watcher());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "simulator TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!("simulator TLS handshake timed out");
                    return;
                }
            };
            let cert = ClientCert(
                tls.get_ref()
                    .1
                    .peer_certificates()
                    .and_then(<[CertificateDer<'_>]>::first)
                    .and_then(|c| common_name(c)),
            );
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(cert.clone());
                tower::ServiceExt::oneshot(app.clone(), req)
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(tls), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, "simulator TLS connection failed");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Resolves once `shutdown` is `true` (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkcs1_keys_are_wrapped_as_pkcs8() {
        let key = KeyPair::generate_for(&PKCS_RSA_SHA256).expect("key");
        let pkcs8 = key.serialize_der();
        let PrivateKeyDer::Pkcs8(parsed) =
            PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).expect("pem")
        else {
            panic!("PKCS#8");
        };
        assert_eq!(parsed.secret_pkcs8_der(), pkcs8.as_slice());
        // The PKCS#1 key inside PKCS#8 is the OCTET STRING at its end: re-wrapping it gives
        // back the same bytes.
        let pkcs1_start = pkcs8.len() - pkcs1_len(&pkcs8);
        let pkcs1 = &pkcs8[pkcs1_start..];
        assert_eq!(pkcs1_to_pkcs8(pkcs1), pkcs8);
        let pkcs1_pem = pem_encode("RSA PRIVATE KEY", pkcs1);
        let wrapped = pkcs8_pem(&pkcs1_pem).expect("wrapped");
        assert!(wrapped.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert_eq!(
            KeyPair::from_pem_and_sign_algo(&wrapped, &PKCS_RSA_SHA256)
                .expect("parses")
                .public_key_raw(),
            key.public_key_raw()
        );
    }

    /// The length of the PKCS#1 key in an RSA PKCS#8 DER (the last TLV's content).
    fn pkcs1_len(pkcs8: &[u8]) -> usize {
        // 30 82 LL LL | 02 01 00 | 30 0d … 05 00 | 04 82 LL LL <pkcs1>
        let at = 4 + 3 + 15 + 1;
        assert_eq!(pkcs8[at - 1], 0x04);
        assert_eq!(pkcs8[at], 0x82);
        usize::from(pkcs8[at + 1]) << 8 | usize::from(pkcs8[at + 2])
    }

    #[test]
    fn the_client_certificate_names_the_mchid_and_carries_the_merchant_serial() {
        let key = KeyPair::generate_for(&PKCS_RSA_SHA256).expect("key");
        let serial = "1DDE55AD98ED71D6EDD4A4A16996DE7B47773A8C";
        let setup =
            generate("1900009191", serial, &key.serialize_pem(), 1_750_000_000).expect("generated");
        let info = wxpay_core::keys::parse_certificate_pem(&setup.pems.client_cert_pem)
            .expect("certificate");
        assert_eq!(info.serial_no, serial);
        let der =
            CertificateDer::from_pem_slice(setup.pems.client_cert_pem.as_bytes()).expect("der");
        assert_eq!(common_name(&der).as_deref(), Some("1900009191"));
        let ca = CertificateDer::from_pem_slice(setup.pems.ca_pem.as_bytes()).expect("ca");
        assert_eq!(common_name(&ca).as_deref(), Some(CA_COMMON_NAME));
        assert_eq!(setup.pems.client_key_pem, key.serialize_pem());
    }
}
