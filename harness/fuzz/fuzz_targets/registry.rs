//! The selector registry (harness::adapter::registry): any text parses or fails cleanly, and a
//! parsed registry's selections never panic.
#![no_main]

use harness::adapter::registry::Registry;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = Registry::parse(text) {
        for m in &r.models {
            let _ = r.select_model(&m.id);
        }
        for a in &r.adapters {
            let _ = r.select_adapter(&a.family, &a.base);
        }
    }
});
