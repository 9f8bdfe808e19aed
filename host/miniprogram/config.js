// Where the mini-program finds the wxpay host, and how patiently it confirms a payment.
//
// apiBase: the host's public listener (the `/api/*` routes), without a trailing slash.
//   - production: https://pay.example.com — an https domain listed under 开发管理 → 开发设置 →
//     服务器域名 → request合法域名 in the mini-program's admin console;
//   - local development: the URL `wxpay-host serve` listens on, with 详情 → 本地设置 →
//     「不校验合法域名…」 ticked in WeChat's developer tools (project.config.json sets
//     urlCheck: false for the same reason; never rely on it for a release).
module.exports = {
  apiBase: 'http://127.0.0.1:8080',

  // After wx.requestPayment succeeds, POST /api/orders/{no}/sync is called after each of these
  // delays (milliseconds) until the order leaves CREATED. The host asks WeChat at most once per
  // order every few seconds and otherwise answers what it knows (the notification usually
  // arrives first), so short first steps are cheap.
  syncDelaysMs: [0, 1000, 2000, 3000, 5000],

  // wx.request timeout (milliseconds).
  requestTimeoutMs: 10000,
};
