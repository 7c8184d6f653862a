//! The per-object budgets of the benchmark, as BENCHMARKS.md records them, and how `make
//! bench-check` compares a run with them. CPU seconds and counts are compared, not wall
//! times: on a shared machine the clock is noise, the work done for one object is not.

use anyhow::Context as _;
use serde_json::Value;

/// A CPU figure may grow by this factor (operator CPU per converged object, the lower of the
/// two placements' runs; per steady-state read). Measured noise between two runs of one
/// build on this 2-core machine: up to a third for convergence, under 1% for a steady read; a
/// build without optimisations uses several times as much.
pub const CPU_TOLERANCE: f64 = 1.50;
/// The scale phase's CPU per object and pass: a smaller figure, noisier.
pub const SPREAD_TOLERANCE: f64 = 1.50;
/// A count per object (API writes, S3 requests, Gets per resync) may grow by this much.
pub const COUNT_TOLERANCE: f64 = 0.05;
/// Peak RSS may grow by this factor.
pub const RSS_TOLERANCE: f64 = 1.15;

/// The budgets block of a BENCHMARKS.md.
pub fn committed(markdown: &str) -> anyhow::Result<Value> {
    let section = markdown
        .split_once("## Budgets as `make bench-check` reads them")
        .context("BENCHMARKS.md has no budgets section: run `make bench` to write one")?
        .1;
    let json = section
        .split_once("```json\n")
        .and_then(|(_, rest)| rest.split_once("\n```"))
        .context("BENCHMARKS.md's budgets section has no ```json block")?
        .0;
    serde_json::from_str(json).context("BENCHMARKS.md's budgets block is not JSON")
}

/// How each budget is judged: (key, tolerance kind).
const RULES: &[(&str, Rule)] = &[
    ("operator_cpu_ms_per_object", Rule::Factor(CPU_TOLERANCE)),
    ("operator_cpu_ms_per_read", Rule::Factor(CPU_TOLERANCE)),
    (
        "spread_cpu_us_per_object_pass",
        Rule::Factor(SPREAD_TOLERANCE),
    ),
    (
        "operator_api_writes_per_object",
        Rule::Plus(COUNT_TOLERANCE),
    ),
    ("s3_requests_per_object", Rule::Plus(COUNT_TOLERANCE)),
    ("gets_per_object_per_resync", Rule::Plus(COUNT_TOLERANCE)),
    ("api_writes_per_steady_pass", Rule::Plus(0.0)),
    ("spread_api_writes_per_pass", Rule::Plus(0.0)),
    ("peak_rss_mib", Rule::Factor(RSS_TOLERANCE)),
];

#[derive(Clone, Copy)]
enum Rule {
    /// At most the committed figure times this.
    Factor(f64),
    /// At most the committed figure plus this.
    Plus(f64),
}

impl Rule {
    fn allows(self, before: f64) -> f64 {
        match self {
            Rule::Factor(f) => before * f,
            Rule::Plus(d) => before + d,
        }
    }
}

/// Every (name, committed, now) pair both runs have, a figure or a figure by size.
fn pairs<'a>(before: &'a Value, now: &'a Value, key: &str) -> Vec<(String, f64, f64)> {
    match (&before[key], &now[key]) {
        (Value::Number(b), Value::Number(n)) => {
            vec![(
                key.to_owned(),
                b.as_f64().unwrap_or(0.0),
                n.as_f64().unwrap_or(0.0),
            )]
        }
        (Value::Object(b), Value::Object(n)) => b
            .iter()
            .filter_map(|(size, b)| {
                Some((
                    format!("{key} at {size} objects"),
                    b.as_f64()?,
                    n.get(size)?.as_f64()?,
                ))
            })
            .collect(),
        _ => Vec::new(),
    }
}

pub fn comparisons(before: &Value, now: &Value) -> Vec<String> {
    RULES
        .iter()
        .flat_map(|(key, rule)| {
            pairs(before, now, key)
                .into_iter()
                .map(move |(name, b, n)| {
                    format!(
                        "{name}: {n} (committed {b}, allowed up to {:.4})",
                        rule.allows(b)
                    )
                })
        })
        .collect()
}

/// What grew beyond its tolerance, and a world that differs.
pub fn regressions(before: &Value, now: &Value) -> Vec<String> {
    let mut failures = Vec::new();
    for (key, rule) in RULES {
        let found = pairs(before, now, key);
        if found.is_empty() && !before[*key].is_null() {
            failures.push(format!(
                "{key}: in BENCHMARKS.md but not measured by this run"
            ));
        }
        for (name, b, n) in found {
            if n > rule.allows(b) + 1e-9 {
                failures.push(format!(
                    "{name}: {n}, committed {b} (allowed up to {:.4})",
                    rule.allows(b)
                ));
            }
        }
    }
    if before["world"] != now["world"] {
        let empty = serde_json::Map::new();
        let (b, n) = (
            before["world"].as_object().unwrap_or(&empty),
            now["world"].as_object().unwrap_or(&empty),
        );
        // A process the run did not start (`--check` skips the phases it does not compare)
        // is not a change; one it started differently, or anew, is.
        for name in n.keys() {
            if b.get(name) != n.get(name) {
                failures.push(format!(
                    "the measured world changed: {name} ran {} (committed: {}); a change that alters what is measured needs a new baseline (`make bench`)",
                    n.get(name).map_or("nothing".into(), ToString::to_string),
                    b.get(name).map_or("nothing".into(), ToString::to_string),
                ));
            }
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn budgets(cpu: f64, writes: f64, world: &str) -> Value {
        json!({
            "operator_cpu_ms_per_object": {"100": cpu, "1000": cpu},
            "operator_api_writes_per_object": {"1000": writes},
            "api_writes_per_steady_pass": 0.0,
            "world": {"moto": world},
        })
    }

    #[test]
    fn figures_within_tolerance_pass_and_beyond_fail() {
        let before = budgets(1.6, 3.0, "moto_server -H 127.0.0.1 -p <port>");
        assert!(
            regressions(
                &before,
                &budgets(2.3, 3.04, "moto_server -H 127.0.0.1 -p <port>")
            )
            .is_empty()
        );
        let slower = regressions(
            &before,
            &budgets(2.5, 3.0, "moto_server -H 127.0.0.1 -p <port>"),
        );
        assert_eq!(slower.len(), 2, "{slower:?}");
        assert!(slower[0].contains("operator_cpu_ms_per_object at 100 objects: 2.5"));
        let more_writes = regressions(
            &before,
            &budgets(1.6, 4.0, "moto_server -H 127.0.0.1 -p <port>"),
        );
        assert_eq!(more_writes.len(), 1, "{more_writes:?}");
        let other_world = regressions(&before, &budgets(1.6, 3.0, "moto_server -p <port>"));
        assert!(
            other_world[0].contains("the measured world changed: moto"),
            "{other_world:?}"
        );
        let mut fewer = budgets(1.6, 3.0, "moto_server -H 127.0.0.1 -p <port>");
        fewer["world"] = json!({});
        assert!(
            regressions(&before, &fewer).is_empty(),
            "a phase not run is no change"
        );
    }

    #[test]
    fn the_block_is_read_from_the_markdown() {
        let md = "# Benchmarks\n\n## Budgets as `make bench-check` reads them\n\ntext\n\n```json\n{\"a\": 1}\n```\n";
        assert_eq!(committed(md).unwrap(), json!({"a": 1}));
        assert!(committed("# Benchmarks\n").is_err());
    }
}
