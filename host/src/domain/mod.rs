//! Pure payment rules: no IO, no database, no HTTP.
//!
//! - [`ids`]: validated merchant numbers, amounts and texts with WeChat Pay's limits.
//! - [`order`]: the order and refund state machines. Every state change the host makes is
//!   decided here, by [`order::decide`] and [`order::decide_refund`], on the row the service
//!   layer read inside its write transaction.

pub mod ids;
pub mod order;

pub use ids::{Amount, Attach, Description, InvalidField, OutRefundNo, OutTradeNo};
pub use order::{
    Decision, Order, OrderEvent, OrderState, Payment, Refund, RefundDecision, RefundEvent,
    RefundState, Via, decide, decide_refund,
};
