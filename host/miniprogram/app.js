// The sample mini-program: pays an order that the merchant's back office created
// (POST /admin/orders on the host's admin listener). It never creates or prices orders.

const api = require('./api.js');

App({
  globalData: {
    openid: '',
  },

  onLaunch() {
    // Log in early: the back office can only create an order for a user who has logged in
    // once. Pages do not wait for this; api.ensureLogin() shares the same login.
    api
      .ensureLogin()
      .then((session) => {
        this.globalData.openid = session.openid;
      })
      .catch((e) => {
        console.warn('login failed', e.code, e.message);
      });
  },
});
