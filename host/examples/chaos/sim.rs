//! The in-process WeChat Pay simulator the hosts under test talk to (login, JSAPI prepay,
//! query, close), and the notifications the harness delivers in WeChat's place.

use std::path::Path;

use anyhow::{Context, Result};
use bytes::Bytes;
use serde_json::{Value, json};
use wxpay_simulator::{SimulatorHandle, SimulatorOptions};

/// A notification as WeChat POSTs it: signed headers and the exact body bytes. Redelivery
/// sends the same bytes again.
#[derive(Clone, Debug)]
pub struct Notification {
    /// `Wechatpay-*` headers.
    pub headers: Vec<(String, String)>,
    /// The JSON envelope with the encrypted resource.
    pub body: Bytes,
}

/// A running simulator in public-key mode.
pub struct Sim {
    handle: SimulatorHandle,
}

impl Sim {
    /// Starts a simulator on an ephemeral loopback port.
    pub async fn start() -> Result<Self> {
        let handle = wxpay_simulator::spawn(SimulatorOptions {
            public_key_mode: true,
            ..SimulatorOptions::default()
        })
        .await
        .context("start the WeChat Pay simulator")?;
        Ok(Self { handle })
    }

    /// The `WXPAY_*` variables that point a host at this simulator (all but `WXPAY_LISTEN`,
    /// `WXPAY_DATABASE_URL` and `WXPAY_NOTIFY_URL`); the key files are written to `dir`.
    pub fn host_env(&self, dir: &Path, admin_token: &str) -> Result<Vec<(String, String)>> {
        let sim = &self.handle;
        let merchant_key = dir.join("merchant_private_key.pem");
        std::fs::write(&merchant_key, sim.merchant_private_key_pem())
            .with_context(|| format!("write {}", merchant_key.display()))?;
        let platform_key = dir.join("platform_public_key.pem");
        std::fs::write(&platform_key, sim.platform_public_key_pem())
            .with_context(|| format!("write {}", platform_key.display()))?;
        let key_id = sim
            .platform_public_key_id()
            .context("the simulator is not in public-key mode")?;
        let vars = [
            ("WXPAY_APPID", sim.appid().to_owned()),
            ("WXPAY_APPSECRET", sim.appsecret().to_owned()),
            ("WXPAY_MCHID", sim.mchid().to_owned()),
            ("WXPAY_MERCHANT_SERIAL", sim.merchant_serial().to_owned()),
            (
                "WXPAY_MERCHANT_KEY_FILE",
                merchant_key.display().to_string(),
            ),
            ("WXPAY_API_V3_KEY", sim.api_v3_key().to_owned()),
            (
                "WXPAY_PLATFORM_PUBLIC_KEY_FILE",
                platform_key.display().to_string(),
            ),
            ("WXPAY_PLATFORM_PUBLIC_KEY_ID", key_id.to_owned()),
            ("WXPAY_ADMIN_TOKEN", admin_token.to_owned()),
            ("WXPAY_API_BASE", sim.base_url().to_owned()),
            ("WXPAY_LOGIN_BASE", sim.base_url().to_owned()),
        ];
        Ok(vars.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    /// A fresh `wx.login` code for `openid`.
    pub fn login_code(&self, openid: &str) -> String {
        self.handle.issue_login_code(openid)
    }

    /// The `TRANSACTION.SUCCESS` notification WeChat sends when `openid` pays `total` fen for
    /// `out_trade_no` under `transaction_id`; `id` is the notification id.
    pub fn paid(
        &self,
        id: &str,
        out_trade_no: &str,
        openid: &str,
        total: i64,
        transaction_id: &str,
    ) -> Result<Notification> {
        let sim = &self.handle;
        let transaction = json!({
            "mchid": sim.mchid(), "appid": sim.appid(), "out_trade_no": out_trade_no,
            "transaction_id": transaction_id, "trade_type": "JSAPI", "trade_state": "SUCCESS",
            "trade_state_desc": "支付成功", "bank_type": "OTHERS", "attach": "",
            "success_time": "2026-11-26T12:00:00+08:00", "payer": { "openid": openid },
            "amount": { "total": total, "payer_total": total, "currency": "CNY",
                        "payer_currency": "CNY" },
        });
        self.notification(id, "TRANSACTION.SUCCESS", "transaction", &transaction)
    }

    fn notification(
        &self,
        id: &str,
        event_type: &str,
        original_type: &str,
        resource: &Value,
    ) -> Result<Notification> {
        let (headers, body) = self
            .handle
            .signed_notification(id, event_type, original_type, resource)
            .context("sign a notification")?;
        Ok(Notification {
            headers,
            body: Bytes::from(body),
        })
    }

    /// Stops the simulator.
    pub async fn shutdown(self) {
        self.handle.shutdown().await;
    }
}
