// Pays one order: pages/pay/pay?out_trade_no=…
//
// 1. POST /api/orders/{no}/pay → the parameters the host signed;
// 2. wx.requestPayment with exactly those parameters (nothing is built or signed here);
// 3. POST /api/orders/{no}/sync until the host reports the order settled. wx.requestPayment's
//    success only says the WeChat client is done: the host's order state is the truth.
//
// A cancelled payment keeps the order payable; any other failure is shown with WeChat's or the
// host's reason. Works for whatever signType the host returns (RSA for APIv3, MD5 or
// HMAC-SHA256 for APIv2).

const api = require('../../api.js');

const STATE_TEXT = {
  CREATED: '待支付',
  PAID: '已支付',
  CLOSED: '已关闭',
  REFUNDING: '退款中',
  REFUNDED: '已退款',
  REVIEW: '支付核对中',
};

// What the page shows for a settled order (and the page status it implies).
const SETTLED = {
  PAID: { status: 'paid', message: '支付成功' },
  REVIEW: { status: 'review', message: '已收到付款，商家正在核对，请稍候查看' },
  REFUNDING: { status: 'refunded', message: '订单已支付，正在退款' },
  REFUNDED: { status: 'refunded', message: '订单已退款' },
  CLOSED: { status: 'closed', message: '订单已关闭，无法支付' },
};

function yuan(fen) {
  const n = Number(fen) || 0;
  return (n / 100).toFixed(2);
}

function isCancel(errMsg) {
  return /requestPayment:(fail[ _]?)?cancel/.test(errMsg || '');
}

// wx.requestPayment as a promise of {ok, errMsg}: exactly the host's parameters plus callbacks.
function requestPayment(params) {
  return new Promise((resolve) => {
    wx.requestPayment(
      Object.assign({}, params, {
        success: (res) => resolve({ ok: true, errMsg: (res && res.errMsg) || 'requestPayment:ok' }),
        fail: (err) => resolve({ ok: false, errMsg: (err && err.errMsg) || 'requestPayment:fail' }),
      }),
    );
  });
}

// A short reason for the user from an ApiError (or anything thrown).
function reasonOf(e) {
  if (!e) {
    return '未知错误';
  }
  if (e.status === 0) {
    return '网络不可用，请稍后重试';
  }
  if (e.status === 429 || e.status === 503) {
    return '服务繁忙，请稍后重试';
  }
  if (e.status === 404) {
    return '订单不存在';
  }
  return e.message || String(e);
}

Page({
  data: {
    outTradeNo: '',
    order: null,
    amountText: '',
    stateText: '',
    // loading | ready | paying | confirming | paid | review | refunded | closed | cancelled |
    // failed | pending | error
    status: 'loading',
    message: '',
    lastError: '',
    busy: false,
    canPay: false,
  },

  onLoad(options) {
    const no = decodeURIComponent((options && options.out_trade_no) || '').trim();
    if (!no) {
      this.setData({ status: 'error', message: '缺少订单号（页面参数 out_trade_no）' });
      return Promise.resolve();
    }
    this.setData({ outTradeNo: no });
    return this.refresh();
  },

  onPullDownRefresh() {
    return this.refresh().then(() => wx.stopPullDownRefresh());
  },

  // Reads the order from the host (no WeChat query).
  async refresh() {
    try {
      this.showOrder(await api.getOrder(this.data.outTradeNo));
    } catch (e) {
      this.setData({ status: 'error', message: reasonOf(e), lastError: e.code || '', canPay: false });
    }
  },

  // "刷新" after a payment that is not confirmed yet: asks the host to check with WeChat.
  async onRefresh() {
    if (this.data.busy) {
      return;
    }
    this.setData({ busy: true });
    try {
      this.showOrder(await api.syncOrder(this.data.outTradeNo));
    } catch (e) {
      this.setData({ message: reasonOf(e), lastError: e.code || '' });
    } finally {
      this.setData({ busy: false });
    }
  },

  // Shows an order; `extra` (status, message) overrides what its state implies.
  showOrder(order, extra) {
    const settled = SETTLED[order.state];
    const patch = {
      order,
      amountText: yuan(order.amount),
      stateText: STATE_TEXT[order.state] || order.state,
      canPay: order.state === 'CREATED',
      status: settled ? settled.status : 'ready',
      message: settled ? settled.message : '',
    };
    this.setData(Object.assign(patch, extra || {}));
  },

  async onPay() {
    if (this.data.busy || !this.data.canPay) {
      return; // a second tap while paying
    }
    const no = this.data.outTradeNo;
    this.setData({ busy: true, status: 'paying', message: '', lastError: '' });
    try {
      wx.showLoading({ title: '正在发起支付', mask: true });
      let params;
      try {
        params = await api.payParams(no);
      } finally {
        wx.hideLoading();
      }
      const result = await requestPayment(params);
      if (result.ok) {
        await this.confirm();
      } else if (isCancel(result.errMsg)) {
        this.cancelled();
      } else {
        await this.failed(result.errMsg.replace(/^requestPayment:fail\s*/, '') || '支付失败', result.errMsg);
      }
    } catch (e) {
      // The host refused the parameters (e.g. 409: paid or closed meanwhile) or is unreachable.
      await this.failed(reasonOf(e), e.code || '');
    } finally {
      this.setData({ busy: false });
    }
  },

  // wx.requestPayment succeeded: wait for the host to confirm it with WeChat.
  async confirm() {
    this.setData({ status: 'confirming', message: '正在确认支付结果…' });
    wx.showLoading({ title: '确认支付结果', mask: true });
    let order;
    try {
      order = await api.syncUntilSettled(this.data.outTradeNo);
    } catch (e) {
      order = null;
    } finally {
      wx.hideLoading();
    }
    if (!order || order.state === 'CREATED') {
      if (order) {
        this.showOrder(order);
      }
      this.setData({
        status: 'pending',
        canPay: false,
        message: '支付结果确认中，请稍后点击“刷新”查看',
      });
      wx.showToast({ title: '支付结果确认中', icon: 'none' });
      return;
    }
    this.showOrder(order);
    if (order.state === 'PAID') {
      wx.showToast({ title: '支付成功', icon: 'success' });
    } else {
      wx.showToast({ title: SETTLED[order.state] ? SETTLED[order.state].message : order.state, icon: 'none' });
    }
  },

  // The user closed WeChat's cashier: nothing happened, the order can still be paid.
  cancelled() {
    this.setData({
      status: 'cancelled',
      canPay: true,
      message: '已取消支付。订单已为您保留，可在有效期内重新支付。',
    });
    wx.showToast({ title: '已取消支付', icon: 'none' });
  },

  // Any other failure. A failure answer does not prove that no money moved (and a refusal of
  // /pay may mean the order was paid meanwhile), so the host is asked first; then the reason
  // is shown if the order is still unpaid.
  async failed(reason, errCode) {
    let order = null;
    try {
      order = await api.syncOrder(this.data.outTradeNo);
    } catch (e) {
      // keep what the page shows; the failure is reported below
    }
    if (order && SETTLED[order.state]) {
      this.showOrder(order);
      wx.showToast({ title: SETTLED[order.state].message, icon: order.state === 'PAID' ? 'success' : 'none' });
      return;
    }
    const failure = { status: 'failed', message: '支付未完成：' + reason, lastError: errCode || '' };
    if (order) {
      this.showOrder(order, failure);
    } else {
      this.setData(failure);
    }
    wx.showModal({ title: '支付失败', content: reason, showCancel: false });
  },
});
