pub mod budgets;
pub mod cluster;
pub mod fault_proxy;
pub mod harness;
pub mod moto;
pub mod operator;
pub mod process;
pub mod stores;

use std::sync::atomic::{AtomicU32, Ordering};

/// A name (bucket, namespace) no other test in this run uses.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
