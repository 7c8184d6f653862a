//! `bucketcors explain`: what a browser's preflight gets from a bucket's rules, rule by rule,
//! and (with `--live`) what the store itself answers, side by side.

use std::fmt::Write as _;

use crate::cors::{self, CorsDecision, CorsRequest, CorsRule, Mismatch};
use crate::s3::PreflightAnswer;

/// The preflight being explained.
#[derive(Clone, Debug)]
pub struct Question {
    pub origin: String,
    pub method: String,
    pub headers: Vec<String>,
}

impl Question {
    pub fn request(&self) -> CorsRequest<'_> {
        CorsRequest::preflight(&self.origin, &self.method)
            .request_headers(self.headers.iter().map(String::as_str))
    }
}

fn list(values: &[String]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

fn rule_label(index: usize, rule: &CorsRule) -> String {
    match &rule.id {
        Some(id) => format!("rule {} ({id:?})", index + 1),
        None => format!("rule {}", index + 1),
    }
}

/// The evaluator's account: each rule and why it does or does not match, the verdict and the
/// response headers a browser would get.
pub fn explain(rules: &[CorsRule], question: &Question) -> (String, CorsDecision) {
    let request = question.request();
    let decision = cors::evaluate(rules, &request);
    let mut out = String::new();
    let _ = write!(
        out,
        "Preflight: OPTIONS with Origin: {}, Access-Control-Request-Method: {}",
        question.origin, question.method
    );
    if !question.headers.is_empty() {
        let _ = write!(
            out,
            ", Access-Control-Request-Headers: {}",
            question.headers.join(", ")
        );
    }
    out.push('\n');
    if rules.is_empty() {
        out.push_str("The bucket has no CORS configuration.\n");
    }
    let matched = decision.matched_rule();
    for (index, rule) in rules.iter().enumerate() {
        let label = rule_label(index, rule);
        let reasons: Vec<String> = cors::mismatches(rule, &request)
            .iter()
            .map(|m| match m {
                Mismatch::Origin => format!(
                    "origin {:?} is not allowed by AllowedOrigins {}",
                    question.origin,
                    list(&rule.allowed_origins)
                ),
                Mismatch::Method => format!(
                    "method {:?} is not in AllowedMethods {} (methods are compared exactly)",
                    question.method,
                    list(&rule.allowed_methods)
                ),
                Mismatch::Header(h) => format!(
                    "requested header {h:?} is not allowed by AllowedHeaders {}",
                    list(&rule.allowed_headers)
                ),
            })
            .collect();
        let why = match matched {
            Some(m) if index > m => {
                format!("not looked at: {} matched first", rule_label(m, &rules[m]))
            }
            _ if reasons.is_empty() => "matches".to_owned(),
            _ => format!("no: {}", reasons.join("; ")),
        };
        let _ = writeln!(out, "  {label}: {why}");
    }
    match &decision {
        CorsDecision::Allowed { rule, headers } => {
            let _ = writeln!(
                out,
                "Verdict: allowed by {} (200). The response carries:",
                rule_label(*rule, &rules[*rule])
            );
            for (name, value) in headers.header_pairs() {
                let _ = writeln!(out, "  {name}: {value}");
            }
        }
        CorsDecision::Denied if rules.is_empty() => {
            out.push_str(
                "Verdict: denied (403, \"CORS is not enabled for this bucket\"): the browser blocks the request.\n",
            );
        }
        CorsDecision::Denied => {
            out.push_str(
                "Verdict: denied (403): no rule allows this request, so the browser blocks it.\n",
            );
        }
        CorsDecision::BadRequest(bad) => {
            let _ = writeln!(out, "Verdict: bad request (400): {bad:?}");
        }
    }
    (out, decision)
}

fn split_list(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or_default()
        .split(',')
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect()
}

/// Where the store's answer departs from the evaluator's (AWS's) answer: one line each.
pub fn differences(expected: &CorsDecision, answer: &PreflightAnswer) -> Vec<String> {
    let mut found = Vec::new();
    let status = expected.preflight_status();
    if answer.status != status {
        found.push(format!(
            "status: the evaluator (AWS's rules) says {status}, the store answered {}",
            answer.status
        ));
        return found;
    }
    let Some(headers) = expected.headers() else {
        return found;
    };
    let mut compare = |name: &str, want: Vec<String>, got: Vec<String>| {
        if want != got {
            found.push(format!(
                "{name}: the evaluator says {}, the store sent {}",
                if want.is_empty() {
                    "none".to_owned()
                } else {
                    want.join(", ")
                },
                if got.is_empty() {
                    "none".to_owned()
                } else {
                    got.join(", ")
                }
            ));
        }
    };
    compare(
        "Access-Control-Allow-Origin",
        vec![headers.allow_origin.clone()],
        split_list(answer.header("access-control-allow-origin")),
    );
    compare(
        "Access-Control-Allow-Methods",
        headers.allow_methods.clone(),
        split_list(answer.header("access-control-allow-methods")),
    );
    compare(
        "Access-Control-Allow-Headers",
        headers.allow_headers.clone(),
        split_list(answer.header("access-control-allow-headers")),
    );
    compare(
        "Access-Control-Expose-Headers",
        headers.expose_headers.clone(),
        split_list(answer.header("access-control-expose-headers")),
    );
    compare(
        "Access-Control-Max-Age",
        headers
            .max_age_seconds
            .map(|s| s.to_string())
            .into_iter()
            .collect(),
        split_list(answer.header("access-control-max-age")),
    );
    compare(
        "Access-Control-Allow-Credentials",
        if headers.allow_credentials {
            vec!["true".to_owned()]
        } else {
            Vec::new()
        },
        split_list(answer.header("access-control-allow-credentials")),
    );
    found
}

/// The store's answer and how it compares with the evaluator's.
pub fn render_live(expected: &CorsDecision, answer: &PreflightAnswer) -> (String, bool) {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Store: OPTIONS {} answered {}",
        answer.url, answer.status
    );
    for (name, value) in &answer.headers {
        if name.starts_with("access-control-") || name == "vary" {
            let _ = writeln!(out, "  {name}: {value}");
        }
    }
    let differences = differences(expected, answer);
    if differences.is_empty() {
        out.push_str("The store agrees with the evaluator.\n");
    } else {
        out.push_str("The store differs from the evaluator (what AWS S3 would answer):\n");
        for d in &differences {
            let _ = writeln!(out, "  {d}");
        }
    }
    (out, differences.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = "https://app.example.com";

    fn question(method: &str, headers: &[&str]) -> Question {
        Question {
            origin: APP.into(),
            method: method.into(),
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
        }
    }

    #[test]
    fn every_rule_gets_its_reason_and_the_verdict_its_headers() {
        let rules = vec![
            CorsRule::new(["https://other.example"], ["PUT"]).id("other"),
            CorsRule::new([APP], ["GET"]),
            CorsRule::new([APP], ["PUT"])
                .allowed_headers(["content-type"])
                .max_age(60),
            CorsRule::new(["*"], ["PUT"]),
        ];
        let (text, decision) = explain(&rules, &question("PUT", &["Content-Type"]));
        assert_eq!(decision.matched_rule(), Some(2));
        for line in [
            "rule 1 (\"other\"): no: origin \"https://app.example.com\" is not allowed by AllowedOrigins [\"https://other.example\"]",
            "rule 2: no: method \"PUT\" is not in AllowedMethods [\"GET\"]",
            "rule 3: matches",
            "rule 4: not looked at: rule 3 matched first",
            "Verdict: allowed by rule 3 (200)",
            "Access-Control-Allow-Headers: content-type",
            "Access-Control-Max-Age: 60",
        ] {
            assert!(text.contains(line), "{line:?} is not in:\n{text}");
        }
        let (text, decision) = explain(&rules[..3], &question("PUT", &["X-Trace"]));
        assert_eq!(decision, CorsDecision::Denied);
        assert!(text.contains("rule 3: no: requested header \"X-Trace\" is not allowed by AllowedHeaders [\"content-type\"]"), "{text}");
        assert!(text.contains("Verdict: denied (403)"), "{text}");
        let (text, _) = explain(&[], &question("GET", &[]));
        assert!(text.contains("no CORS configuration"), "{text}");
    }

    #[test]
    fn differences_name_the_status_or_each_header() {
        let rules = [CorsRule::new(["*"], ["GET", "PUT"]).expose_headers(["ETag"])];
        let (_, decision) = explain(&rules, &question("GET", &[]));
        let agreeing = PreflightAnswer {
            url: "u".into(),
            status: 200,
            headers: vec![
                ("access-control-allow-origin".into(), "*".into()),
                ("access-control-allow-methods".into(), "GET, PUT".into()),
                ("access-control-expose-headers".into(), "ETag".into()),
            ],
        };
        assert_eq!(differences(&decision, &agreeing), Vec::<String>::new());
        let rgw_like = PreflightAnswer {
            headers: vec![
                ("access-control-allow-origin".into(), APP.into()),
                ("access-control-allow-methods".into(), "GET".into()),
                ("access-control-expose-headers".into(), "ETag".into()),
            ],
            ..agreeing.clone()
        };
        let found = differences(&decision, &rgw_like);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("Access-Control-Allow-Origin: the evaluator says *"));
        let refused = PreflightAnswer {
            status: 403,
            headers: vec![],
            ..agreeing
        };
        assert_eq!(
            differences(&decision, &refused),
            ["status: the evaluator (AWS's rules) says 200, the store answered 403"]
        );
        let (text, same) = render_live(&decision, &refused);
        assert!(!same && text.contains("differs"), "{text}");
    }
}
