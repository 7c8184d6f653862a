//! The pure preflight evaluator (`cors::evaluate`) against real stores' OPTIONS answers.
//! Every case must agree with Ceph RGW and with Garage (when its binary is cached), or be a
//! divergence of that store from AWS that is declared here and documented in
//! `src/cors/preflight.rs`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bucketcors::cors::{CorsRequest, CorsRule, evaluate, parse_request_headers};
use bucketcors::s3::{BucketTarget, CorsStore, Credentials};

use crate::support::harness::ambient_store;
use crate::support::stores::{S3Server, garage};
use crate::support::unique_name;

const APP: &str = "https://app.example.com";

struct Case {
    name: &'static str,
    rules: Vec<CorsRule>,
    origin: &'static str,
    method: &'static str,
    headers: &'static str,
    /// Why RGW answers differently from AWS here, when it does.
    rgw_differs: Option<&'static str>,
    /// Why Garage answers differently from AWS here, when it does.
    garage_differs: Option<&'static str>,
}

fn case(
    name: &'static str,
    rules: Vec<CorsRule>,
    origin: &'static str,
    method: &'static str,
) -> Case {
    Case {
        name,
        rules,
        origin,
        method,
        headers: "",
        rgw_differs: None,
        garage_differs: None,
    }
}

fn cases() -> Vec<Case> {
    let app_get = || CorsRule::new([APP], ["GET"]);
    vec![
        case(
            "exact origin and method",
            vec![app_get().max_age(30)],
            APP,
            "GET",
        ),
        case(
            "another origin",
            vec![app_get()],
            "https://evil.example.com",
            "GET",
        ),
        case("another method", vec![app_get()], APP, "PUT"),
        case("lower-case method", vec![app_get()], APP, "get"),
        case(
            "origin wildcard",
            vec![CorsRule::new(["https://*.example.com"], ["GET"])],
            APP,
            "GET",
        ),
        case(
            "origin wildcard, other scheme",
            vec![CorsRule::new(["https://*.example.com"], ["GET"])],
            "http://app.example.com",
            "GET",
        ),
        case(
            "any origin",
            vec![CorsRule::new(["*"], ["GET"]).expose_headers(["ETag"])],
            "https://anything.test",
            "GET",
        ),
        case(
            "the first matching rule answers",
            vec![app_get().max_age(11), app_get().max_age(22)],
            APP,
            "GET",
        ),
        Case {
            headers: "x-amz-date, Content-Type",
            garage_differs: Some(
                "Garage compares requested headers with AllowedHeader case-sensitively, so \
                 Content-Type does not match content-type",
            ),
            ..case(
                "requested headers allowed by a wildcard and by name",
                vec![app_get().allowed_headers(["x-amz-*", "content-type"])],
                APP,
                "GET",
            )
        },
        Case {
            headers: "X-Custom",
            ..case(
                "a requested header no rule allows",
                vec![app_get()],
                APP,
                "GET",
            )
        },
        Case {
            rgw_differs: Some(
                "RGW takes the first rule whose origin matches and never looks further, so a later \
                 rule with the requested method is not found",
            ),
            ..case(
                "a later rule allows the method",
                vec![app_get(), CorsRule::new([APP], ["PUT"])],
                APP,
                "PUT",
            )
        },
        case("no configuration", vec![], APP, "GET"),
        // An empty method stands for no Access-Control-Request-Method header.
        Case {
            rgw_differs: Some(
                "RGW checks the preflight's headers before it looks for a configuration: 400 \
                 where AWS answers 403 (CORS is not enabled)",
            ),
            garage_differs: Some(
                "Garage checks the preflight's headers before it looks for a configuration: 400 \
                 where AWS answers 403 (CORS is not enabled)",
            ),
            ..case("no configuration, no request method", vec![], APP, "")
        },
        case(
            "no request method",
            vec![CorsRule::new(["*"], ["GET"])],
            APP,
            "",
        ),
    ]
}

/// Sends a preflight to the store and returns its status and headers (lower-case names).
fn options(
    endpoint: &str,
    path: &str,
    origin: &str,
    method: &str,
    headers: &str,
) -> (u16, Vec<(String, String)>) {
    let authority = endpoint.trim_start_matches("http://");
    let mut stream = TcpStream::connect(authority).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request = format!(
        "OPTIONS {path} HTTP/1.1\r\nHost: {authority}\r\nOrigin: {origin}\r\nConnection: close\r\n"
    );
    if !method.is_empty() {
        request.push_str(&format!("Access-Control-Request-Method: {method}\r\n"));
    }
    if !headers.is_empty() {
        request.push_str(&format!("Access-Control-Request-Headers: {headers}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, _) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers)
}

/// What a store sends that AWS would not, beyond which cases it decides differently.
struct Answers {
    store: &'static S3Server,
    differs: fn(&Case) -> Option<&'static str>,
    /// Garage never sends Access-Control-Max-Age.
    sends_max_age: bool,
    /// What the store sends in Access-Control-Allow-Headers.
    allow_headers: AllowHeaders,
}

/// AWS sends the requested headers lower-cased; neither store does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AllowHeaders {
    /// The requested headers as the request spelled them (RGW).
    AsSpelled,
    /// The rule's own AllowedHeaders (Garage): not compared here.
    RuleList,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_evaluator_agrees_with_ceph_rgw_except_where_rgw_departs_from_aws() {
    cross_check(Answers {
        store: S3Server::ceph_rgw(),
        differs: |case| case.rgw_differs,
        sends_max_age: true,
        allow_headers: AllowHeaders::AsSpelled,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_evaluator_agrees_with_garage_except_where_garage_departs_from_aws() {
    let store = garage("the_evaluator_agrees_with_garage");
    cross_check(Answers {
        store,
        differs: |case| case.garage_differs,
        sends_max_age: false,
        allow_headers: AllowHeaders::RuleList,
    })
    .await;
}

async fn cross_check(answers: Answers) {
    let store = answers.store;
    let name = store.name;
    let mut problems = Vec::new();
    for case in cases() {
        let bucket = unique_name("preflight");
        store.create_bucket(&bucket).await;
        if !case.rules.is_empty() {
            let mut target = BucketTarget::new(&bucket);
            target.endpoint = Some(store.endpoint.clone());
            target.credentials = Some(Credentials {
                access_key_id: store.access_key.clone(),
                secret_access_key: store.secret_key.clone(),
                session_token: None,
            });
            // Straight to the store, past validation: "get" is a case on purpose.
            ambient_store()
                .put_cors(&target, &case.rules)
                .await
                .unwrap();
        }
        let mut request =
            CorsRequest::preflight(case.origin, case.method).request_headers_value(case.headers);
        if case.method.is_empty() {
            request.method = None;
        }
        let expected = evaluate(&case.rules, &request);
        let (status, headers) = options(
            &store.endpoint,
            &format!("/{bucket}/object"),
            case.origin,
            case.method,
            case.headers,
        );
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let agrees_on_status = status == expected.preflight_status();
        eprintln!(
            "{}: evaluator {} / {name} {status}",
            case.name,
            expected.preflight_status()
        );
        match (agrees_on_status, (answers.differs)(&case)) {
            (true, Some(why)) => problems.push(format!(
                "{}: declared divergent ({why}) but {name} agrees",
                case.name
            )),
            (false, None) => problems.push(format!(
                "{}: evaluator says {}, {name} answered {status} {headers:?}",
                case.name,
                expected.preflight_status()
            )),
            _ => {}
        }
        // Where both allow, the matched rule's Max-Age and expose headers reach the browser.
        if let (true, Some(answer)) = (agrees_on_status, expected.headers()) {
            let max_age = answer
                .max_age_seconds
                .filter(|_| answers.sends_max_age)
                .map(|m| m.to_string());
            if header("access-control-max-age") != max_age.as_deref() {
                problems.push(format!(
                    "{}: Max-Age {:?}, {name} {:?}",
                    case.name,
                    max_age,
                    header("access-control-max-age")
                ));
            }
            // RGW joins with "," and echoes the origin even for a `*` rule; Garage joins with
            // ", " and sends the header empty when there is nothing to expose (documented).
            let exposed: Vec<&str> = header("access-control-expose-headers")
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|h| !h.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            if exposed
                != answer
                    .expose_headers
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
            {
                problems.push(format!(
                    "{}: expose {:?}, {name} {exposed:?}",
                    case.name, answer.expose_headers
                ));
            }
            // AWS answers the requested headers lower-cased, joined with ", "; RGW keeps the
            // request's spelling (declared in src/cors/preflight.rs).
            if answers.allow_headers == AllowHeaders::AsSpelled && !answer.allow_headers.is_empty()
            {
                let expected: Vec<String> = parse_request_headers(case.headers)
                    .into_iter()
                    .map(str::to_owned)
                    .collect();
                assert_eq!(
                    expected
                        .iter()
                        .map(|h| h.to_ascii_lowercase())
                        .collect::<Vec<_>>(),
                    answer.allow_headers,
                    "the evaluator lower-cases what was requested"
                );
                let sent: Vec<String> = header("access-control-allow-headers")
                    .unwrap_or_default()
                    .split(',')
                    .map(|h| h.trim().to_owned())
                    .filter(|h| !h.is_empty())
                    .collect();
                if sent != expected {
                    problems.push(format!(
                        "{}: allow-headers {expected:?}, {name} {sent:?}",
                        case.name
                    ));
                }
            }
            if header("access-control-allow-origin").is_none() {
                problems.push(format!(
                    "{}: {name} sent no Access-Control-Allow-Origin",
                    case.name
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
