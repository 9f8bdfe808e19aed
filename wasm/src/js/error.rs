//! Core errors as real JS `Error` objects with a `code` property.

use js_sys::Reflect;
use wasm_bindgen::JsValue;
use wxpay_core::Error;

/// Converts a core error into a thrown JS `Error` whose `code` is [`Error::code`] (the codes of
/// `tests/vectors/README.md`) and whose `probe` is `true` for a `WECHATPAY/SIGNTEST/` probe.
pub(crate) fn to_js(err: &Error) -> JsValue {
    let js = js_sys::Error::new(&err.to_string());
    js.set_name("WxpayError");
    // `Reflect.set` on a fresh, extensible `Error` cannot fail.
    let _ = Reflect::set(&js, &"code".into(), &err.code().into());
    if err.is_probe() {
        let _ = Reflect::set(&js, &"probe".into(), &JsValue::TRUE);
    }
    js.into()
}

/// `Result` whose error is a thrown JS value.
pub(crate) type JsResult<T> = Result<T, JsValue>;

/// `?`-friendly conversion of core results.
pub(crate) trait IntoJs<T> {
    fn js(self) -> JsResult<T>;
}

impl<T> IntoJs<T> for wxpay_core::Result<T> {
    fn js(self) -> JsResult<T> {
        self.map_err(|e| to_js(&e))
    }
}

/// A `malformed` error for JS arguments of the wrong shape.
pub(crate) fn malformed(what: &'static str) -> JsValue {
    to_js(&Error::Malformed(what))
}
