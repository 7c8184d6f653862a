//! `make bench-check`: this run's per-object budgets against the ones BENCHMARKS.md holds
//! (the comparison itself is `bucketcors_test_support::budgets`, unit-tested there).

use anyhow::bail;
use bucketcors_test_support::budgets::{committed, comparisons, regressions};

use crate::report::Report;
use crate::say;

pub use bucketcors_test_support::budgets::{
    COUNT_TOLERANCE, CPU_TOLERANCE, RSS_TOLERANCE, SPREAD_TOLERANCE,
};

/// Compares `report` with the budgets of `baseline` (a BENCHMARKS.md); an error lists every
/// regression.
pub fn compare(baseline: &str, report: &Report) -> anyhow::Result<()> {
    let before = committed(baseline)?;
    let now = report.budgets();
    let failures = regressions(&before, &now);
    let compared = comparisons(&before, &now);
    for line in &compared {
        say(line);
    }
    if failures.is_empty() {
        say(&format!(
            "bench-check: {} figures within tolerance of BENCHMARKS.md",
            compared.len()
        ));
        Ok(())
    } else {
        bail!(
            "bench-check: {} regression(s) against BENCHMARKS.md:\n  {}",
            failures.len(),
            failures.join("\n  ")
        )
    }
}
