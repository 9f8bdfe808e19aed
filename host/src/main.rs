//! `wxpay-host` command line: `serve` (production), `doctor` and `verify-notification`
//! (configuration checks, [`wxpay_host::doctor`]), `sandbox` (host + simulator, no credentials
//! needed) and `demo` (the whole payment flow against the sandbox, step by step).
//! `sandbox` and `demo` need the default `sandbox` feature: a production build
//! (`--no-default-features`) has `serve` only, and no simulator inside.

#[cfg(feature = "sandbox")]
use std::net::SocketAddr;
#[cfg(feature = "sandbox")]
use std::time::Duration;

use anyhow::{Context, Result, bail};
#[cfg(feature = "sandbox")]
use serde_json::{Value, json};
#[cfg(feature = "sandbox")]
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;
use wxpay_host::config::DoctorConfig;
use wxpay_host::doctor::{self, Report};
#[cfg(feature = "sandbox")]
use wxpay_host::sandbox::{simulator_config, simulator_config_v2};
use wxpay_host::{Config, Host, Listeners};
#[cfg(feature = "sandbox")]
use wxpay_simulator::{SimulatorHandle, SimulatorOptions};

/// mimalloc: malloc/free were ~10 % of the host's CPU under load (glibc's allocator).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "\
usage: wxpay-host <command>

commands:
  serve     run the server with configuration from WXPAY_* variables (see README)
  doctor    check that configuration (keys, WeChat accepts our signature, platform keys,
            notify URL, database) and print one line per check; exit 1 if any fails
  verify-notification --headers FILE --body FILE
            check a captured WeChat Pay callback (headers file: `Name: value` lines; body
            file: the exact bytes received) with the configured keys
  sandbox [--v2] [--hmac-sha256]
            run the server on SQLite with the built-in WeChat Pay simulator (test keys);
            --v2: APIv2 (XML, MD5 or with --hmac-sha256 HMAC-SHA256, refunds over mutual TLS)
  demo [--v2] [--hmac-sha256]
            run the whole payment flow (login, order, pay, notification, refund) against a
            sandbox and print every step";

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cmd = std::env::args().nth(1).unwrap_or_default();
    match cmd.as_str() {
        "serve" => serve().await,
        "doctor" => finish(run_doctor().await),
        "verify-notification" => finish(verify_notification().await?),
        #[cfg(feature = "sandbox")]
        "sandbox" => sandbox().await,
        #[cfg(feature = "sandbox")]
        "demo" => demo().await,
        #[cfg(not(feature = "sandbox"))]
        "sandbox" | "demo" => bail!(
            "`{cmd}` is not available: this wxpay-host was built without the `sandbox` feature \
             (build it with default features for the simulator)"
        ),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown command {other:?}\n{USAGE}"),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}

/// Prints a report; exits with status 1 unless every check passed.
fn finish(report: Report) -> Result<()> {
    println!("{report}");
    if report.passed() {
        Ok(())
    } else {
        std::process::exit(1)
    }
}

async fn run_doctor() -> Report {
    let loaded = Config::from_env().and_then(|c| Ok((c, DoctorConfig::from_env()?)));
    match loaded {
        Ok((config, extra)) => doctor::run(&config, &extra).await,
        Err(e) => Report::config_error(&e),
    }
}

async fn verify_notification() -> Result<Report> {
    let (mut headers, mut body) = (None, None);
    let mut args = std::env::args().skip(2);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--headers" => headers = args.next(),
            "--body" => body = args.next(),
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    let (Some(headers), Some(body)) = (headers, body) else {
        bail!("verify-notification needs --headers FILE and --body FILE\n{USAGE}");
    };
    let text = std::fs::read_to_string(&headers).with_context(|| format!("reading {headers}"))?;
    let pairs = doctor::parse_header_lines(&text).map_err(|e| anyhow::anyhow!("{headers}: {e}"))?;
    // The exact bytes: the signature covers every one of them.
    let body = std::fs::read(&body).with_context(|| format!("reading {body}"))?;
    Ok(match Config::from_env() {
        Ok(config) => doctor::verify_notification(&config, &pairs, &body).await,
        Err(e) => Report::config_error(&e),
    })
}

async fn serve() -> Result<()> {
    let config = Config::from_env()?;
    let listeners = Listeners::bind(&config)
        .await
        .context("WXPAY_LISTEN / WXPAY_ADMIN_LISTEN")?;
    let host = Host::start(config, listeners, true).await?;
    shutdown_signal().await;
    host.stop().await;
    Ok(())
}

#[cfg(feature = "sandbox")]
fn random_token() -> Result<String> {
    let mut b = [0u8; 24];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("os rng: {e}"))?;
    Ok(hex::encode(b))
}

#[cfg(feature = "sandbox")]
struct Sandbox {
    sim: SimulatorHandle,
    host: Host,
    admin_token: String,
}

/// Which API a sandbox speaks (`--v2`, `--hmac-sha256`).
#[cfg(feature = "sandbox")]
#[derive(Clone, Copy, Debug)]
enum SandboxApi {
    V3,
    V2(wxpay_simulator::V2SignType),
}

#[cfg(feature = "sandbox")]
impl SandboxApi {
    fn from_args() -> Result<Self> {
        let (mut v2, mut hmac) = (false, false);
        for arg in std::env::args().skip(2) {
            match arg.as_str() {
                "--v2" => v2 = true,
                "--hmac-sha256" => hmac = true,
                other => bail!("unknown option {other:?}\n{USAGE}"),
            }
        }
        Ok(match (v2, hmac) {
            (false, false) => Self::V3,
            (false, true) => bail!("--hmac-sha256 is an APIv2 sign type: add --v2"),
            (true, false) => Self::V2(wxpay_simulator::V2SignType::Md5),
            (true, true) => Self::V2(wxpay_simulator::V2SignType::HmacSha256),
        })
    }

    fn describe(self) -> String {
        match self {
            Self::V3 => "APIv3, certificate mode".into(),
            Self::V2(t) => format!("APIv2, {t}"),
        }
    }
}

#[cfg(feature = "sandbox")]
async fn start_sandbox(listen: SocketAddr, database_url: &str, api: SandboxApi) -> Result<Sandbox> {
    let mut opts = SimulatorOptions::default();
    if let SandboxApi::V2(sign_type) = api {
        opts.v2_sign_type = sign_type;
        // HTTPS with the mutual-TLS check on /secapi/, like WeChat's APIv2 refunds.
        opts.tls = true;
    }
    let sim = wxpay_simulator::spawn(opts)
        .await
        .context("starting the WeChat Pay simulator")?;
    let listener = match TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(%listen, error = %e, "address busy, using a free port");
            TcpListener::bind(("127.0.0.1", 0)).await?
        }
    };
    let addr = listener.local_addr()?;
    let admin = TcpListener::bind(("127.0.0.1", 0)).await?;
    let admin_token = random_token()?;
    let mut config = simulator_config(
        &sim,
        addr,
        &format!("http://{addr}"),
        database_url,
        &admin_token,
    );
    if let SandboxApi::V2(_) = api {
        config = simulator_config_v2(config, &sim);
    }
    config.reconcile_after = Duration::from_secs(10);
    config.edge.admin_listen = admin.local_addr()?;
    let listeners = Listeners {
        public: listener,
        admin,
    };
    let host = Host::start(config, listeners, true).await?;
    Ok(Sandbox {
        sim,
        host,
        admin_token,
    })
}

#[cfg(feature = "sandbox")]
async fn sandbox() -> Result<()> {
    let listen: SocketAddr = std::env::var("WXPAY_LISTEN")
        .unwrap_or_else(|_| "127.0.0.1:8080".into())
        .parse()
        .context("WXPAY_LISTEN")?;
    let db =
        std::env::var("WXPAY_DATABASE_URL").unwrap_or_else(|_| "sqlite://wxpay-sandbox.db".into());
    let api = SandboxApi::from_args()?;
    let sb = start_sandbox(listen, &db, api).await?;
    let mode = api.describe();
    let host = sb.host.base_url();
    let back_office = sb.host.admin_url();
    let sim = sb.sim.base_url().to_owned();
    let admin = &sb.admin_token;
    // The APIv2 simulator speaks HTTPS under a test CA: written out for curl (`--cacert`) and
    // other clients of the simulator.
    let ca_dir = std::env::temp_dir().join(format!("wxpay-sandbox-{}", random_token()?));
    let (ca_line, cacert) = match sb.sim.tls_root_ca_pem() {
        Some(pem) => {
            std::fs::create_dir_all(&ca_dir)?;
            let path = ca_dir.join("tls_ca.pem");
            std::fs::write(&path, pem)?;
            (
                format!("\n  simulator CA: {}", path.display()),
                format!(" --cacert {}", path.display()),
            )
        }
        None => (String::new(), String::new()),
    };
    println!(
        "\
wxpay sandbox is running (TEST KEYS, generated at start: never use them for real payments)
  host:      {host}   (public: /api, /notify; database {db})
  admin:     {back_office}   (private: /admin, /metrics)
  simulator: {sim}   (WeChat Pay + login, {mode}){ca_line}
  admin token: {admin}

Drive it with curl (Ctrl-C stops both):
  H={host}; B={back_office}; S={sim}; A={admin}
  # 1. the mini-program calls wx.login; the simulator issues the code
  CODE=$(curl -s{cacert} -X POST $S/sim/login/code -H 'content-type: application/json' \\
         -d '{{\"openid\":\"o_sandbox_user\"}}' | sed 's/.*\"code\":\"\\([^\"]*\\)\".*/\\1/')
  # 2. login at the host: returns the host's session token
  TOKEN=$(curl -s -X POST $H/api/login -H 'content-type: application/json' \\
          -d \"{{\\\"code\\\":\\\"$CODE\\\"}}\" | sed 's/.*\"token\":\"\\([^\"]*\\)\".*/\\1/')
  # 3. the merchant back office creates an order (amount in fen)
  curl -s -X POST $B/admin/orders -H \"authorization: Bearer $A\" -H 'content-type: application/json' \\
       -d '{{\"openid\":\"o_sandbox_user\",\"amount\":100,\"description\":\"Sandbox tea\",\"out_trade_no\":\"SANDBOX0001\"}}'
  # 4. the mini-program asks for the wx.requestPayment parameters
  curl -s -X POST $H/api/orders/SANDBOX0001/pay -H \"authorization: Bearer $TOKEN\"
  # 5. the payer pays in WeChat; the simulator notifies the host
  curl -s{cacert} -X POST $S/sim/orders/SANDBOX0001/pay
  # 6. the order is PAID, with its history
  curl -s $B/admin/orders/SANDBOX0001 -H \"authorization: Bearer $A\"
  curl -s $B/metrics"
    );
    shutdown_signal().await;
    sb.host.stop().await;
    sb.sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&ca_dir);
    Ok(())
}

#[cfg(feature = "sandbox")]
async fn demo() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("wxpay-demo-{}", random_token()?));
    std::fs::create_dir_all(&dir)?;
    let db = format!("sqlite://{}", dir.join("demo.db").display());
    let api = SandboxApi::from_args()?;
    println!("demo: {}", api.describe());
    let sb = start_sandbox(SocketAddr::from(([127, 0, 0, 1], 0)), &db, api).await?;
    let result = run_demo(&sb).await;
    sb.host.stop().await;
    sb.sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Sends a demo request and returns its JSON answer; a non-2xx status is an error.
#[cfg(feature = "sandbox")]
async fn answer(req: reqwest::RequestBuilder) -> Result<Value> {
    Ok(req.send().await?.error_for_status()?.json().await?)
}

#[cfg(feature = "sandbox")]
fn step(n: u32, what: &str, v: &Value) {
    println!("\n== {n}. {what}");
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

#[cfg(feature = "sandbox")]
async fn run_demo(sb: &Sandbox) -> Result<()> {
    let mut http = reqwest::Client::builder();
    if let Some(ca) = sb.sim.tls_root_ca_pem() {
        // The APIv2 sandbox's simulator speaks HTTPS under its own test CA.
        http = http.tls_certs_merge(reqwest::Certificate::from_pem_bundle(ca.as_bytes())?);
    }
    let http = http.build()?;
    let host = sb.host.base_url();
    let back_office = sb.host.admin_url();
    let admin = format!("Bearer {}", sb.admin_token);
    println!("demo: host {host}, simulator {}", sb.sim.base_url());

    let openid = "o_demo_user";
    let code = sb.sim.issue_login_code(openid);
    step(
        1,
        "wx.login code (from the simulator)",
        &json!({ "code": code }),
    );

    let login = answer(
        http.post(format!("{host}/api/login"))
            .json(&json!({ "code": code })),
    )
    .await?;
    step(2, "POST /api/login", &login);
    let token = login["token"]
        .as_str()
        .context("login answer has no token")?;
    let bearer = format!("Bearer {token}");

    let order = answer(
        http.post(format!("{back_office}/admin/orders"))
            .header("authorization", &admin)
            .json(
                &json!({ "openid": openid, "amount": 1999, "description": "Demo: one pot of tea" }),
            ),
    )
    .await?;
    step(3, "POST /admin/orders (back office)", &order);
    let no = order["out_trade_no"]
        .as_str()
        .context("order has no out_trade_no")?
        .to_owned();

    let params = answer(
        http.post(format!("{host}/api/orders/{no}/pay"))
            .header("authorization", &bearer),
    )
    .await?;
    step(
        4,
        "POST /api/orders/{no}/pay -> wx.requestPayment parameters",
        &params,
    );

    let mut check = params.clone();
    if let Some(o) = check.as_object_mut() {
        o.insert("openid".into(), json!(openid));
    }
    let checked: Value = http
        .post(format!("{}/sim/request-payment/check", sb.sim.base_url()))
        .json(&check)
        .send()
        .await?
        .json()
        .await?;
    step(
        5,
        "WeChat client check of the parameters (simulator)",
        &checked,
    );

    let paid = sb.sim.pay(&no).context("simulator pay")?;
    step(
        6,
        "payer pays (simulator); notification sent",
        &serde_json::to_value(&paid).context("order snapshot as JSON")?,
    );
    sb.sim
        .wait_for_deliveries(1, Duration::from_secs(10))
        .await
        .context("notification")?;

    let state = answer(
        http.get(format!("{back_office}/admin/orders/{no}"))
            .header("authorization", &admin),
    )
    .await?;
    step(7, "GET /admin/orders/{no} (after the notification)", &state);
    if state["state"] != "PAID" {
        bail!("demo failed: order is {} instead of PAID", state["state"]);
    }
    let mine = answer(
        http.get(format!("{host}/api/orders/{no}"))
            .header("authorization", &bearer),
    )
    .await?;
    step(8, "GET /api/orders/{no} (the mini-program's view)", &mine);

    let refund = answer(
        http.post(format!("{back_office}/admin/orders/{no}/refund"))
            .header("authorization", &admin)
            .json(&json!({ "amount": 500, "reason": "Demo: one cup returned" })),
    )
    .await?;
    step(9, "POST /admin/orders/{no}/refund (back office)", &refund);
    let out_refund_no = refund["out_refund_no"]
        .as_str()
        .context("refund has no out_refund_no")?
        .to_owned();
    // WeChat completes the refund and notifies (the simulator after 1 s).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let done = loop {
        let order = answer(
            http.get(format!("{back_office}/admin/orders/{no}"))
                .header("authorization", &admin),
        )
        .await?;
        let state = order["refunds"]
            .as_array()
            .and_then(|rs| {
                rs.iter()
                    .find(|r| r["out_refund_no"] == out_refund_no.as_str())
            })
            .map(|r| r["state"].clone());
        if state.as_ref().is_some_and(|s| s == "SUCCESS") {
            break order;
        }
        if std::time::Instant::now() > deadline {
            bail!("demo failed: refund {out_refund_no} is {state:?}, not SUCCESS");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    step(
        10,
        "GET /admin/orders/{no} (after the refund notification)",
        &done,
    );
    println!("\ndemo complete: order {no} is PAID, refund {out_refund_no} SUCCESS");
    Ok(())
}
