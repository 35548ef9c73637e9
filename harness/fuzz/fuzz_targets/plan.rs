//! Module plans and receipts: any bytes parse or fail cleanly; a parsed plan or receipt writes
//! back to exactly its bytes (the canonical text is the only accepted form); applying a plan to
//! a corpus model with no modules never panics.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use runtime::adapter::{prepare_plan, Plan, Receipt};

fuzz_target!(|data: &[u8]| {
    if let Ok(plan) = Plan::parse(data) {
        assert_eq!(Plan::to_bytes(&plan.base, &plan.modules), data);
    }
    if let Ok(receipt) = Receipt::parse(data) {
        assert_eq!(receipt.to_bytes(), data);
    }
    let _ = prepare_plan(&common::models()[0], data, &[]);
});
