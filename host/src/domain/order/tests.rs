//! The state machines as tables (every state × every event) and as a property: random event
//! sequences, with duplicates and reordering, against the invariants.
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

const NOW: i64 = 1_000_000;

fn order(state: OrderState) -> Order {
    let paid = state.is_paid();
    Order {
        out_trade_no: "ORDER00001".into(),
        openid: "o_1".into(),
        amount: 100,
        description: "d".into(),
        attach: None,
        state,
        prepay_id: Some("wx_prepay".into()),
        prepay_expires_at: Some(NOW + 100),
        transaction_id: paid.then(|| "T1".to_owned()),
        paid_amount: paid.then_some(100),
        refunded: if state == OrderState::Refunded {
            100
        } else {
            0
        },
        refund_pending: if state == OrderState::Refunding {
            30
        } else {
            0
        },
        review_reason: (state == OrderState::Review).then(|| "amount".to_owned()),
        double_payment: None,
        created_at: NOW - 100,
        expire_at: NOW + 1000,
        updated_at: NOW - 100,
        next_check_at: None,
        checks: 0,
    }
}

fn payment(id: &str, total: i64) -> Payment {
    Payment {
        transaction_id: id.into(),
        total,
        currency: Some("CNY".into()),
        payer_openid: Some("o_1".into()),
    }
}

/// `Ok(state)` for a change, `Err("keep")` / `Err("refuse")` otherwise.
fn outcome(d: &Decision) -> Result<OrderState, &'static str> {
    match d {
        Decision::Change { order, .. } => Ok(order.state),
        Decision::Keep { .. } => Err("keep"),
        Decision::Refuse { .. } => Err("refuse"),
    }
}

#[test]
fn order_transition_table() {
    use OrderState::{Closed, Created, Paid, Refunded, Refunding, Review};
    const K: Result<OrderState, &str> = Err("keep");
    const R: Result<OrderState, &str> = Err("refuse");
    let ok = payment("T1", 100);
    let bad = payment("T1", 99);
    let other = payment("T2", 100);
    let events: Vec<(&str, OrderEvent<'_>)> = vec![
        (
            "pay T1",
            OrderEvent::Pay {
                payment: &ok,
                via: Via::Notify,
            },
        ),
        (
            "pay T1 wrong amount",
            OrderEvent::Pay {
                payment: &bad,
                via: Via::Query,
            },
        ),
        (
            "pay T2",
            OrderEvent::Pay {
                payment: &other,
                via: Via::Notify,
            },
        ),
        (
            "prepay",
            OrderEvent::Prepay {
                prepay_id: "p",
                until: NOW + 50,
                first_check_at: NOW + 60,
            },
        ),
        ("close", OrderEvent::Close { kind: "expired" }),
        (
            "closed upstream",
            OrderEvent::ClosedUpstream {
                trade_state: "REVOKED",
            },
        ),
        ("accept", OrderEvent::Accept),
        ("reserve 20", OrderEvent::ReserveRefund { amount: 20 }),
        ("reserve 101", OrderEvent::ReserveRefund { amount: 101 }),
        ("external 20", OrderEvent::ExternalRefund { amount: 20 }),
    ];
    #[rustfmt::skip]
    let table: [(OrderState, [Result<OrderState, &str>; 10]); 6] = [
        //            T1           T1 bad       T2             prepay        close        closed-up    accept     res 20          res 101  ext 20
        (Created,   [Ok(Paid),    Ok(Review),  Ok(Paid),      Ok(Created),  Ok(Closed),  Ok(Closed),  R,         R,              R,       R]),
        (Paid,      [K,           K,           Ok(Paid),      R,            R,           K,           R,         Ok(Refunding),  R,       Ok(Refunding)]),
        (Closed,    [Ok(Review),  Ok(Review),  Ok(Review),    R,            K,           K,           R,         R,              R,       R]),
        (Refunding, [K,           K,           Ok(Refunding), R,            R,           K,           R,         Ok(Refunding),  R,       Ok(Refunding)]),
        (Refunded,  [K,           K,           Ok(Refunded),  R,            R,           K,           R,         R,              R,       Ok(Refunding)]),
        (Review,    [K,           K,           Ok(Review),    R,            R,           K,           Ok(Paid),  Ok(Refunding),  R,       Ok(Refunding)]),
    ];
    assert_eq!(table.len(), OrderState::ALL.len());
    for (state, row) in table {
        for ((name, event), want) in events.iter().zip(row) {
            let d = decide(&order(state), event, NOW);
            assert_eq!(outcome(&d), want, "{state} + {name}");
            if let Decision::Change { order: next, .. } = &d {
                assert_eq!(next.updated_at, NOW);
                assert_eq!(
                    next.state.is_paid(),
                    next.transaction_id.is_some(),
                    "{state} + {name}: paid states hold a transaction id"
                );
            }
        }
    }
}

#[test]
fn payment_details() {
    // A payment after close keeps the money visible: REVIEW with the transaction id.
    let d = decide(
        &order(OrderState::Closed),
        &OrderEvent::Pay {
            payment: &payment("T9", 100),
            via: Via::Notify,
        },
        NOW,
    );
    let Decision::Change { order: o, kind, .. } = d else {
        panic!("change")
    };
    assert_eq!(
        (o.state, o.transaction_id.as_deref(), kind),
        (OrderState::Review, Some("T9"), "flagged_review")
    );
    assert!(
        o.review_reason
            .unwrap()
            .contains("after the order was closed")
    );
    // A second transaction id for a paid order is flagged, not dropped; a repeat is a duplicate.
    let d = decide(
        &order(OrderState::Paid),
        &OrderEvent::Pay {
            payment: &payment("T2", 100),
            via: Via::Notify,
        },
        NOW,
    );
    let Decision::Change { order: o, kind, .. } = d else {
        panic!("change")
    };
    assert_eq!(
        (o.double_payment.as_deref(), kind),
        (Some("T2"), "double_payment")
    );
    let again = decide(
        &o,
        &OrderEvent::Pay {
            payment: &payment("T2", 100),
            via: Via::Notify,
        },
        NOW,
    );
    assert_eq!(
        again,
        Decision::Keep {
            outcome: "duplicate"
        }
    );
    // Payer and currency are checked too.
    let mut p = payment("T1", 100);
    p.payer_openid = Some("o_2".into());
    let d = decide(
        &order(OrderState::Created),
        &OrderEvent::Pay {
            payment: &p,
            via: Via::Notify,
        },
        NOW,
    );
    assert_eq!(outcome(&d), Ok(OrderState::Review));
    p = payment("T1", 100);
    p.currency = Some("USD".into());
    let d = decide(
        &order(OrderState::Created),
        &OrderEvent::Pay {
            payment: &p,
            via: Via::Notify,
        },
        NOW,
    );
    assert_eq!(outcome(&d), Ok(OrderState::Review));
    // Closing an order that had a prepay id schedules one more check.
    let Decision::Change { order: o, .. } = decide(
        &order(OrderState::Created),
        &OrderEvent::Close { kind: "expired" },
        NOW,
    ) else {
        panic!("change")
    };
    assert_eq!(o.next_check_at, Some(NOW + RECHECK_AFTER_CLOSE_SECS));
}

fn refund(state: RefundState) -> Refund {
    Refund {
        out_refund_no: "R1".into(),
        out_trade_no: "ORDER00001".into(),
        amount: 30,
        reason: None,
        state,
        refund_id: None,
        source: "api".into(),
        created_at: NOW,
        updated_at: NOW,
        next_check_at: None,
        attempts: 0,
    }
}

#[test]
fn refund_transition_table() {
    use RefundState::{Abnormal, Closed, Failed, Pending, Processing, Success};
    const K: Result<RefundState, &str> = Err("keep");
    let events: Vec<(&str, RefundEvent<'_>)> = vec![
        (
            "SUCCESS",
            RefundEvent::Status {
                status: "SUCCESS",
                refund_id: Some("W1"),
            },
        ),
        (
            "CLOSED",
            RefundEvent::Status {
                status: "CLOSED",
                refund_id: None,
            },
        ),
        (
            "ABNORMAL",
            RefundEvent::Status {
                status: "ABNORMAL",
                refund_id: None,
            },
        ),
        (
            "PROCESSING",
            RefundEvent::Status {
                status: "PROCESSING",
                refund_id: None,
            },
        ),
        ("rejected", RefundEvent::Rejected { code: "NOT_ENOUGH" }),
        ("not found", RefundEvent::NotFound),
        (
            "bogus",
            RefundEvent::Status {
                status: "WHAT",
                refund_id: None,
            },
        ),
    ];
    #[rustfmt::skip]
    let table: [(RefundState, [Result<RefundState, &str>; 7]); 6] = [
        //            SUCCESS       CLOSED       ABNORMAL       PROCESSING       rejected     not found     bogus
        (Pending,    [Ok(Success),  Ok(Closed),  Ok(Abnormal),  Ok(Processing),  Ok(Failed),  K,            K]),
        (Processing, [Ok(Success),  Ok(Closed),  Ok(Abnormal),  K,               K,           Ok(Pending),  K]),
        (Abnormal,   [Ok(Success),  Ok(Closed),  K,             K,               K,           K,            K]),
        (Success,    [K,            K,           K,             K,               K,           K,            K]),
        (Closed,     [K,            K,           K,             K,               K,           K,            K]),
        (Failed,     [Ok(Success),  K,           K,             K,               K,           K,            K]),
    ];
    assert_eq!(table.len(), RefundState::ALL.len());
    for (state, row) in table {
        for ((name, event), want) in events.iter().zip(row) {
            let r = refund(state);
            let mut o = order(OrderState::Refunding);
            // Reserved amounts: non-final refunds hold theirs.
            o.refund_pending = if state.is_final() { 0 } else { 30 };
            let got = match decide_refund(&r, &o, event, NOW, 60) {
                RefundDecision::Change { refund, order, .. } => {
                    let reserved_before = !state.is_final();
                    let reserved_after = !refund.state.is_final();
                    let expect_pending = i64::from(reserved_after) * 30;
                    assert_eq!(order.refund_pending, expect_pending, "{state} + {name}");
                    let refunded = i64::from(refund.state == Success) * 30;
                    assert_eq!(order.refunded, refunded, "{state} + {name}");
                    assert!(reserved_before || refund.state == Success);
                    Ok(refund.state)
                }
                RefundDecision::Keep { .. } => Err("keep"),
            };
            assert_eq!(got, want, "{state} + {name}");
        }
    }
}

#[test]
fn refunds_settle_the_order() {
    let mut o = order(OrderState::Paid);
    let Decision::Change {
        order: reserved, ..
    } = decide(&o, &OrderEvent::ReserveRefund { amount: 100 }, NOW)
    else {
        panic!("reserve")
    };
    assert_eq!(
        (reserved.state, reserved.refund_pending),
        (OrderState::Refunding, 100)
    );
    let mut r = refund(RefundState::Pending);
    r.amount = 100;
    let RefundDecision::Change { order: done, .. } = decide_refund(
        &r,
        &reserved,
        &RefundEvent::Status {
            status: "SUCCESS",
            refund_id: None,
        },
        NOW,
        60,
    ) else {
        panic!("settle")
    };
    assert_eq!(
        (done.state, done.refunded, done.refund_pending),
        (OrderState::Refunded, 100, 0)
    );
    // An abnormal refund keeps its reservation: nothing else can be refunded meanwhile.
    let RefundDecision::Change {
        order: abn,
        refund: r2,
        ..
    } = decide_refund(
        &r,
        &reserved,
        &RefundEvent::Status {
            status: "ABNORMAL",
            refund_id: None,
        },
        NOW,
        60,
    )
    else {
        panic!("abnormal")
    };
    assert_eq!(
        (abn.state, abn.refund_pending),
        (OrderState::Refunding, 100)
    );
    assert!(r2.next_check_at.is_some());
    assert!(matches!(
        decide(&abn, &OrderEvent::ReserveRefund { amount: 1 }, NOW),
        Decision::Refuse { .. }
    ));
    // A refused submission releases it.
    o = reserved;
    let RefundDecision::Change { order: rel, .. } =
        decide_refund(&r, &o, &RefundEvent::Rejected { code: "X" }, NOW, 60)
    else {
        panic!("rejected")
    };
    assert_eq!(
        (rel.state, rel.refund_pending, rel.refunded),
        (OrderState::Paid, 0, 0)
    );
}

/// One step of the property test: what WeChat (or a person) does.
#[derive(Clone, Debug)]
enum Step {
    Pay {
        txid: u8,
        total: i64,
        via_query: bool,
    },
    QueryClosed,
    Close,
    Accept,
    RequestRefund {
        id: u8,
        amount: i64,
    },
    RefundStatus {
        id: u8,
        status: &'static str,
    },
    Rejected {
        id: u8,
    },
    NotFound {
        id: u8,
    },
    ConsoleRefund {
        id: u8,
        amount: i64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u8..3, prop_oneof![Just(100i64), Just(90)], any::<bool>()).prop_map(
            |(txid, total, via_query)| Step::Pay {
                txid,
                total,
                via_query
            }
        ),
        Just(Step::QueryClosed),
        Just(Step::Close),
        Just(Step::Accept),
        (0u8..4, 1i64..=120).prop_map(|(id, amount)| Step::RequestRefund { id, amount }),
        (
            0u8..6,
            prop_oneof![
                Just("SUCCESS"),
                Just("CLOSED"),
                Just("ABNORMAL"),
                Just("PROCESSING")
            ]
        )
            .prop_map(|(id, status)| Step::RefundStatus { id, status }),
        (0u8..4).prop_map(|id| Step::Rejected { id }),
        (0u8..4).prop_map(|id| Step::NotFound { id }),
        (4u8..6, 1i64..=50).prop_map(|(id, amount)| Step::ConsoleRefund { id, amount }),
    ]
}

/// Applies `steps` the way the service layer does (decide, then write what was decided) and
/// checks the invariants after every step.
fn run(steps: &[Step]) -> Result<(), TestCaseError> {
    let mut o = order(OrderState::Created);
    o.prepay_id = Some("p".into());
    let mut refunds: BTreeMap<u8, Refund> = BTreeMap::new();
    let mut payments_seen: Vec<String> = Vec::new();
    let mut recorded: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let mut success_after_failure = false;
    let mut now = NOW;
    for st in steps {
        now += 1;
        match st {
            Step::Pay {
                txid,
                total,
                via_query,
            } => {
                let id = format!("T{txid}");
                let p = Payment {
                    transaction_id: id.clone(),
                    ..payment("", *total)
                };
                let via = if *via_query { Via::Query } else { Via::Notify };
                if let Decision::Change { order, .. } =
                    decide(&o, &OrderEvent::Pay { payment: &p, via }, now)
                {
                    o = order;
                    recorded.insert(id.clone());
                }
                if !payments_seen.contains(&id) {
                    payments_seen.push(id);
                }
            }
            Step::QueryClosed | Step::Close | Step::Accept => {
                let ev = match st {
                    Step::QueryClosed => OrderEvent::ClosedUpstream {
                        trade_state: "CLOSED",
                    },
                    Step::Close => OrderEvent::Close {
                        kind: "closed_by_merchant",
                    },
                    _ => OrderEvent::Accept,
                };
                if let Decision::Change { order, .. } = decide(&o, &ev, now) {
                    o = order;
                }
            }
            Step::RequestRefund { id, amount } => {
                if refunds.contains_key(id) {
                    continue;
                }
                if let Decision::Change { order, .. } =
                    decide(&o, &OrderEvent::ReserveRefund { amount: *amount }, now)
                {
                    o = order;
                    let mut r = refund(RefundState::Pending);
                    r.out_refund_no = format!("R{id}");
                    r.amount = *amount;
                    refunds.insert(*id, r);
                }
            }
            Step::ConsoleRefund { id, amount } => {
                if refunds.contains_key(id) {
                    continue;
                }
                if let Decision::Change { order, .. } =
                    decide(&o, &OrderEvent::ExternalRefund { amount: *amount }, now)
                {
                    o = order;
                    let mut r = refund(RefundState::Pending);
                    r.out_refund_no = format!("R{id}");
                    r.amount = *amount;
                    r.source = "console".into();
                    refunds.insert(*id, r);
                }
            }
            Step::RefundStatus { id, .. } | Step::Rejected { id } | Step::NotFound { id } => {
                let Some(r) = refunds.get(id).cloned() else {
                    continue;
                };
                let ev = match st {
                    Step::RefundStatus { status, .. } => RefundEvent::Status {
                        status,
                        refund_id: Some("W"),
                    },
                    Step::Rejected { .. } => RefundEvent::Rejected { code: "X" },
                    _ => RefundEvent::NotFound,
                };
                if let RefundDecision::Change { refund, order, .. } =
                    decide_refund(&r, &o, &ev, now, 60)
                {
                    success_after_failure |=
                        r.state == RefundState::Failed && refund.state == RefundState::Success;
                    o = order;
                    refunds.insert(*id, refund);
                }
            }
        }
        // Invariants.
        prop_assert_eq!(
            o.state.is_paid(),
            o.transaction_id.is_some(),
            "paid ⇔ transaction id: {:?}",
            o
        );
        prop_assert!(o.refunded >= 0 && o.refund_pending >= 0, "{:?}", o);
        let pending: i64 = refunds
            .values()
            .filter(|r| !r.state.is_final())
            .map(|r| r.amount)
            .sum();
        let succeeded: i64 = refunds
            .values()
            .filter(|r| r.state == RefundState::Success)
            .map(|r| r.amount)
            .sum();
        prop_assert_eq!(o.refund_pending, pending, "reserved = open refunds");
        prop_assert_eq!(o.refunded, succeeded, "refunded = succeeded refunds");
        if o.state.is_paid() && o.state != OrderState::Review {
            prop_assert_eq!(
                o.state == OrderState::Refunding,
                pending > 0,
                "REFUNDING ⇔ something reserved"
            );
        }
        let host_only = refunds.values().all(|r| r.source == "api");
        if host_only && !success_after_failure {
            prop_assert!(
                o.refunded + o.refund_pending <= o.paid_amount.unwrap_or(o.amount),
                "{:?}",
                o
            );
        }
        // No authentic payment unrecorded: the first one is the order's transaction id, every
        // other one was written (as a double payment) with its event.
        if let Some(first) = payments_seen.first() {
            prop_assert_eq!(o.transaction_id.as_deref(), Some(first.as_str()));
        } else {
            prop_assert!(o.transaction_id.is_none());
        }
        for seen in &payments_seen {
            prop_assert!(recorded.contains(seen), "payment {} unrecorded", seen);
        }
        // What the service's in-memory `RecordedPayments` relies on: the order's payment is
        // recorded for good, and a repeat of a payment the order records is a duplicate. (A
        // double payment can be displaced by a later one; its event stays, and a repeat of it
        // would only flag it again.)
        if let Some(first) = payments_seen.first() {
            prop_assert!(
                o.records_payment(first),
                "payment {} forgotten: {:?}",
                first,
                o
            );
        }
        for id in recorded.iter().filter(|id| o.records_payment(id)) {
            for total in [100, 90] {
                let p = Payment {
                    transaction_id: id.clone(),
                    ..payment("", total)
                };
                for via in [Via::Notify, Via::Query] {
                    let d = decide(&o, &OrderEvent::Pay { payment: &p, via }, now);
                    prop_assert!(
                        matches!(
                            d,
                            Decision::Keep {
                                outcome: "duplicate"
                            }
                        ),
                        "repeat of {} decided {:?}",
                        id,
                        d
                    );
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]
    #[test]
    fn random_event_sequences_keep_the_invariants(steps in proptest::collection::vec(step(), 1..40)) {
        run(&steps)?;
    }
}
