//! Comparing a spec with what a bucket holds, with S3's semantics: rule order matters; inside
//! a rule the lists are sets, and header names are case-insensitive.

use std::collections::BTreeSet;
use std::fmt;

use super::rule::CorsRule;

/// What must be written to make a bucket match its spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// The bucket already matches.
    NoChange,
    /// PutBucketCors with these rules, in this order. Never empty.
    Put(Vec<CorsRule>),
    /// DeleteBucketCors: the spec declares no rules and the bucket has some.
    Delete,
}

impl Plan {
    pub fn writes(&self) -> bool {
        !matches!(self, Plan::NoChange)
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Plan::NoChange => f.write_str("no change"),
            Plan::Put(rules) => write!(f, "put {} rule(s)", rules.len()),
            Plan::Delete => f.write_str("delete"),
        }
    }
}

/// The plan that makes a bucket holding `observed` hold `desired`. An observed "no
/// configuration" is the empty list.
pub fn diff(desired: &[CorsRule], observed: &[CorsRule]) -> Plan {
    if same_rules(desired, observed) {
        Plan::NoChange
    } else if desired.is_empty() {
        Plan::Delete
    } else {
        Plan::Put(desired.to_vec())
    }
}

fn same_rules(a: &[CorsRule], b: &[CorsRule]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(a, b)| Canonical::of(a) == Canonical::of(b))
}

/// A rule reduced to what S3 matches on: sets instead of lists, lower-case header names, an
/// absent id equal to an empty one.
#[derive(Debug, PartialEq, Eq)]
struct Canonical<'a> {
    id: &'a str,
    origins: BTreeSet<&'a str>,
    methods: BTreeSet<&'a str>,
    allowed_headers: BTreeSet<String>,
    expose_headers: BTreeSet<String>,
    max_age_seconds: Option<i32>,
}

impl<'a> Canonical<'a> {
    fn of(rule: &'a CorsRule) -> Self {
        Canonical {
            id: rule.id.as_deref().unwrap_or(""),
            origins: rule.allowed_origins.iter().map(String::as_str).collect(),
            methods: rule.allowed_methods.iter().map(String::as_str).collect(),
            allowed_headers: lower_set(&rule.allowed_headers),
            expose_headers: lower_set(&rule.expose_headers),
            max_age_seconds: rule.max_age_seconds,
        }
    }

    fn into_rule(self) -> CorsRule {
        CorsRule {
            id: (!self.id.is_empty()).then(|| self.id.to_owned()),
            allowed_origins: self.origins.into_iter().map(str::to_owned).collect(),
            allowed_methods: self.methods.into_iter().map(str::to_owned).collect(),
            allowed_headers: self.allowed_headers.into_iter().collect(),
            expose_headers: self.expose_headers.into_iter().collect(),
            max_age_seconds: self.max_age_seconds,
        }
    }
}

fn lower_set(headers: &[String]) -> BTreeSet<String> {
    headers.iter().map(|h| h.to_ascii_lowercase()).collect()
}

/// The canonical form of `rules`: same order of rules, each rule's lists sorted and without
/// duplicates, header names in lower case. `diff(normalise(x), x)` is always NoChange.
pub fn normalise(rules: &[CorsRule]) -> Vec<CorsRule> {
    rules.iter().map(|r| Canonical::of(r).into_rule()).collect()
}

// Keeps a drift message readable in `kubectl get` and within an Event's size.
const DESCRIBED_RULES: usize = 3;

/// A short account of how `observed` differs from `desired`, for the Drifted condition.
/// Empty when they are the same.
pub fn describe_drift(desired: &[CorsRule], observed: &[CorsRule]) -> String {
    if same_rules(desired, observed) {
        return String::new();
    }
    if observed.is_empty() {
        return format!(
            "the bucket has no CORS configuration; the spec declares {} rule(s)",
            desired.len()
        );
    }
    if desired.is_empty() {
        return format!(
            "the bucket has {} rule(s); the spec declares none",
            observed.len()
        );
    }
    let mut parts = Vec::new();
    if desired.len() != observed.len() {
        parts.push(format!(
            "the bucket has {} rule(s), the spec {}",
            observed.len(),
            desired.len()
        ));
    }
    let differing: Vec<String> = desired
        .iter()
        .zip(observed)
        .enumerate()
        .filter_map(|(i, (d, o))| {
            let fields = differing_fields(&Canonical::of(d), &Canonical::of(o));
            (!fields.is_empty()).then(|| format!("rule {i} differs in {}", fields.join(", ")))
        })
        .collect();
    let more = differing.len().saturating_sub(DESCRIBED_RULES);
    parts.extend(differing.into_iter().take(DESCRIBED_RULES));
    if more > 0 {
        parts.push(format!("{more} more rule(s) differ"));
    }
    parts.join("; ")
}

fn differing_fields(d: &Canonical<'_>, o: &Canonical<'_>) -> Vec<&'static str> {
    let mut fields = Vec::new();
    if d.id != o.id {
        fields.push("id");
    }
    if d.origins != o.origins {
        fields.push("allowedOrigins");
    }
    if d.methods != o.methods {
        fields.push("allowedMethods");
    }
    if d.allowed_headers != o.allowed_headers {
        fields.push("allowedHeaders");
    }
    if d.expose_headers != o.expose_headers {
        fields.push("exposeHeaders");
    }
    if d.max_age_seconds != o.max_age_seconds {
        fields.push("maxAgeSeconds");
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn app() -> CorsRule {
        CorsRule::new(
            ["https://a.example.com", "https://b.example.com"],
            ["GET", "PUT"],
        )
        .id("app")
        .allowed_headers(["Content-Type", "x-amz-date"])
        .expose_headers(["ETag"])
        .max_age(3000)
    }

    fn public() -> CorsRule {
        CorsRule::new(["*"], ["GET"]).allowed_headers(["*"])
    }

    #[test]
    fn identical_rules_write_nothing() {
        assert_eq!(diff(&[app(), public()], &[app(), public()]), Plan::NoChange);
    }

    #[test]
    fn reordering_origins_methods_and_headers_inside_a_rule_writes_nothing() {
        let reordered = CorsRule::new(
            ["https://b.example.com", "https://a.example.com"],
            ["PUT", "GET", "GET"],
        )
        .id("app")
        .allowed_headers(["X-Amz-Date", "content-type"])
        .expose_headers(["etag", "ETag"])
        .max_age(3000);
        assert_eq!(diff(&[app()], &[reordered]), Plan::NoChange);
    }

    #[test]
    fn reordering_rules_puts_the_desired_order() {
        assert_eq!(
            diff(&[app(), public()], &[public(), app()]),
            Plan::Put(vec![app(), public()])
        );
    }

    #[test]
    fn absent_and_empty_are_equal_but_max_age_absent_is_not_zero() {
        let mut with_empty_id = public();
        with_empty_id.id = Some(String::new());
        assert_eq!(diff(&[public()], &[with_empty_id]), Plan::NoChange);
        assert_eq!(
            diff(&[public().max_age(0)], &[public()]),
            Plan::Put(vec![public().max_age(0)])
        );
    }

    #[test]
    fn origins_are_case_sensitive() {
        let upper = CorsRule::new(["https://APP.example.com"], ["GET"]);
        let lower = CorsRule::new(["https://app.example.com"], ["GET"]);
        assert!(diff(&[lower], &[upper]).writes());
    }

    #[test]
    fn empty_spec_deletes_an_existing_configuration_and_leaves_none_alone() {
        assert_eq!(diff(&[], &[public()]), Plan::Delete);
        assert_eq!(diff(&[], &[]), Plan::NoChange);
    }

    #[test]
    fn a_missing_configuration_is_put() {
        assert_eq!(diff(&[public()], &[]), Plan::Put(vec![public()]));
    }

    #[test]
    fn drift_is_described_by_rule_and_field() {
        let mut changed = app();
        changed
            .allowed_origins
            .push("https://evil.example.com".into());
        changed.max_age_seconds = None;
        assert_eq!(
            describe_drift(&[app(), public()], &[changed]),
            "the bucket has 1 rule(s), the spec 2; rule 0 differs in allowedOrigins, maxAgeSeconds"
        );
        assert_eq!(
            describe_drift(&[app()], &[]),
            "the bucket has no CORS configuration; the spec declares 1 rule(s)"
        );
        assert_eq!(
            describe_drift(&[], &[app()]),
            "the bucket has 1 rule(s); the spec declares none"
        );
        assert_eq!(describe_drift(&[app()], &[app()]), "");
    }

    #[test]
    fn drift_descriptions_stay_short() {
        let desired = vec![public(); 100];
        let observed = vec![app(); 100];
        let message = describe_drift(&desired, &observed);
        assert!(message.ends_with("97 more rule(s) differ"), "{message}");
        assert!(message.len() < 400);
    }

    // Small alphabets so that generated rules often collide and compare equal.
    fn header() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("*".to_owned()),
            Just("Content-Type".to_owned()),
            Just("content-type".to_owned()),
            Just("x-amz-date".to_owned()),
            "[A-Za-z-]{1,6}",
        ]
    }

    fn arb_rule() -> impl Strategy<Value = CorsRule> {
        (
            proptest::option::of(prop_oneof![Just(String::new()), "[a-z]{1,4}"]),
            proptest::collection::vec(
                prop_oneof![Just("*".to_owned()), "https://[a-c]{1,2}\\.example\\.com"],
                1..4,
            ),
            proptest::collection::vec(proptest::sample::select(&super::super::METHODS[..]), 1..5),
            proptest::collection::vec(header(), 0..4),
            proptest::collection::vec(header(), 0..3),
            proptest::option::of(prop_oneof![Just(0), Just(3000), 0..i32::MAX]),
        )
            .prop_map(
                |(id, origins, methods, allowed, expose, max_age)| CorsRule {
                    id,
                    allowed_origins: origins,
                    allowed_methods: methods.into_iter().map(str::to_owned).collect(),
                    allowed_headers: allowed,
                    expose_headers: expose,
                    max_age_seconds: max_age,
                },
            )
    }

    fn arb_rules() -> impl Strategy<Value = Vec<CorsRule>> {
        proptest::collection::vec(arb_rule(), 0..6)
    }

    fn shuffled_inside(rule: &CorsRule, seed: u64) -> CorsRule {
        fn rotate(list: &[String], by: u64, dup: bool) -> Vec<String> {
            let mut list = list.to_vec();
            if !list.is_empty() {
                let n = list.len();
                list.rotate_left((by as usize) % n);
                list.reverse();
                if dup {
                    list.push(list[0].clone());
                }
            }
            list
        }
        CorsRule {
            id: rule.id.clone(),
            allowed_origins: rotate(&rule.allowed_origins, seed, seed.is_multiple_of(2)),
            allowed_methods: rotate(&rule.allowed_methods, seed / 2, seed.is_multiple_of(3)),
            allowed_headers: rotate(&rule.allowed_headers, seed / 3, seed.is_multiple_of(5))
                .into_iter()
                .map(|h| {
                    if seed.is_multiple_of(2) {
                        h.to_ascii_uppercase()
                    } else {
                        h
                    }
                })
                .collect(),
            expose_headers: rotate(&rule.expose_headers, seed / 5, false)
                .into_iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            max_age_seconds: rule.max_age_seconds,
        }
    }

    proptest! {
        #[test]
        fn a_configuration_never_differs_from_itself(rules in arb_rules()) {
            prop_assert_eq!(diff(&rules, &rules), Plan::NoChange);
            prop_assert_eq!(describe_drift(&rules, &rules), "");
        }

        #[test]
        fn after_a_put_the_bucket_diffs_to_no_change(desired in arb_rules(), observed in arb_rules()) {
            let now_held = match diff(&desired, &observed) {
                Plan::NoChange => observed,
                Plan::Put(rules) => rules,
                Plan::Delete => Vec::new(),
            };
            prop_assert_eq!(diff(&desired, &now_held), Plan::NoChange);
        }

        #[test]
        fn a_store_that_normalises_what_it_holds_causes_no_write(rules in arb_rules()) {
            prop_assert_eq!(diff(&rules, &normalise(&rules)), Plan::NoChange);
            prop_assert_eq!(normalise(&normalise(&rules)), normalise(&rules));
        }

        #[test]
        fn permuting_lists_inside_rules_never_writes(rules in arb_rules(), seed in any::<u64>()) {
            let shuffled: Vec<CorsRule> = rules.iter().map(|r| shuffled_inside(r, seed)).collect();
            prop_assert_eq!(diff(&rules, &shuffled), Plan::NoChange);
        }

        #[test]
        fn permuting_rules_writes_when_they_differ(rules in arb_rules(), by in 1usize..6) {
            let mut permuted = rules.clone();
            if !permuted.is_empty() {
                let n = permuted.len();
                permuted.rotate_left(by % n);
            }
            let differ = rules.iter().zip(&permuted).any(|(a, b)| diff(std::slice::from_ref(a), std::slice::from_ref(b)).writes());
            prop_assert_eq!(diff(&rules, &permuted).writes(), differ);
            if differ {
                prop_assert_eq!(diff(&rules, &permuted), Plan::Put(rules.clone()));
            }
        }

        #[test]
        fn put_never_carries_zero_rules(desired in arb_rules(), observed in arb_rules()) {
            if let Plan::Put(rules) = diff(&desired, &observed) {
                prop_assert!(!rules.is_empty());
            }
        }
    }
}
