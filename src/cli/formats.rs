//! The two forms a CORS configuration takes outside Kubernetes: the aws CLI's JSON
//! (`{"CORSRules": [...]}`, what `aws s3api get-bucket-cors` prints and `put-bucket-cors
//! --cors-configuration file://cors.json` takes) and S3's XML (`<CORSConfiguration>`, the body
//! of PutBucketCors). Both are read strictly, with errors naming the line and the field, and
//! written byte-stably.

use serde::{Deserialize, Serialize};

use crate::cors::CorsRule;

/// A CORS document that cannot be read: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct FormatError {
    pub line: usize,
    pub message: String,
}

/// Which form a document is in, from its first character.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    Json,
    Xml,
}

impl Form {
    pub fn of(text: &str) -> Form {
        if text
            .trim_start_matches('\u{feff}')
            .trim_start()
            .starts_with('<')
        {
            Form::Xml
        } else {
            Form::Json
        }
    }
}

/// Reads either form.
pub fn parse(text: &str) -> Result<Vec<CorsRule>, FormatError> {
    match Form::of(text) {
        Form::Json => parse_json(text),
        Form::Xml => parse_xml(text),
    }
}

// The aws CLI's shapes, members in the service model's order (which is the order the CLI
// prints them in).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AwsConfiguration {
    #[serde(rename = "CORSRules")]
    cors_rules: Vec<AwsRule>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct AwsRule {
    #[serde(rename = "ID", default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    allowed_headers: Vec<String>,
    allowed_methods: Vec<String>,
    allowed_origins: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    expose_headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_age_seconds: Option<i32>,
}

/// Reads the aws CLI's JSON. Unknown members are refused, as the aws CLI refuses them.
pub fn parse_json(text: &str) -> Result<Vec<CorsRule>, FormatError> {
    let mut json = serde_json::Deserializer::from_str(text);
    let config: AwsConfiguration = serde_path_to_error::deserialize(&mut json).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let line = inner.line();
        // serde_json appends " at line L column C"; the line is reported on its own.
        let message = inner.to_string();
        let message = message
            .rsplit_once(" at line ")
            .map_or(message.as_str(), |(m, _)| m)
            .to_owned();
        FormatError {
            line,
            message: if path == "." {
                message
            } else {
                format!("{path}: {message}")
            },
        }
    })?;
    json.end().map_err(|err| FormatError {
        line: err.line(),
        message: "text after the JSON document".into(),
    })?;
    Ok(config
        .cors_rules
        .into_iter()
        .map(|r| CorsRule {
            id: r.id,
            allowed_origins: r.allowed_origins,
            allowed_methods: r.allowed_methods,
            allowed_headers: r.allowed_headers,
            expose_headers: r.expose_headers,
            max_age_seconds: r.max_age_seconds,
        })
        .collect())
}

/// The aws CLI's JSON for `rules`, as `aws s3api get-bucket-cors` prints it: four-space
/// indentation, members in the model's order, empty lists left out, a final newline.
pub fn to_json(rules: &[CorsRule]) -> String {
    let config = AwsConfiguration {
        cors_rules: rules
            .iter()
            .map(|r| AwsRule {
                id: r.id.clone(),
                allowed_headers: r.allowed_headers.clone(),
                allowed_methods: r.allowed_methods.clone(),
                allowed_origins: r.allowed_origins.clone(),
                expose_headers: r.expose_headers.clone(),
                max_age_seconds: r.max_age_seconds,
            })
            .collect(),
    };
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    config
        .serialize(&mut serializer)
        .expect("a CORS configuration serializes");
    let mut text = String::from_utf8(out).expect("serde_json writes UTF-8");
    text.push('\n');
    text
}

const XMLNS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

/// S3's XML for `rules`, as the AWS SDK sends it in PutBucketCors, with one element per line.
pub fn to_xml(rules: &[CorsRule]) -> String {
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CORSConfiguration xmlns=\"{XMLNS}\">\n"
    );
    let element = |out: &mut String, tag: &str, text: &str| {
        out.push_str(&format!("    <{tag}>{}</{tag}>\n", escape(text)));
    };
    for rule in rules {
        out.push_str("  <CORSRule>\n");
        if let Some(id) = &rule.id {
            element(&mut out, "ID", id);
        }
        for h in &rule.allowed_headers {
            element(&mut out, "AllowedHeader", h);
        }
        for m in &rule.allowed_methods {
            element(&mut out, "AllowedMethod", m);
        }
        for o in &rule.allowed_origins {
            element(&mut out, "AllowedOrigin", o);
        }
        for h in &rule.expose_headers {
            element(&mut out, "ExposeHeader", h);
        }
        if let Some(max_age) = rule.max_age_seconds {
            element(&mut out, "MaxAgeSeconds", &max_age.to_string());
        }
        out.push_str("  </CORSRule>\n");
    }
    out.push_str("</CORSConfiguration>\n");
    out
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
    out
}

fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Reads S3's XML: a `CORSConfiguration` of `CORSRule`s, each with `ID`, `AllowedOrigin`,
/// `AllowedMethod`, `AllowedHeader`, `ExposeHeader` and `MaxAgeSeconds` elements. White space
/// around an element's text is not part of the value (pretty-printed documents have it).
pub fn parse_xml(text: &str) -> Result<Vec<CorsRule>, FormatError> {
    use xmlparser::{ElementEnd, Token, Tokenizer};
    let fail = |offset: usize, message: String| FormatError {
        line: line_at(text, offset),
        message,
    };
    // Where we are: 0 outside the root, 1 in CORSConfiguration, 2 in a CORSRule, 3 in one of
    // its fields.
    let mut depth = 0;
    let mut rules: Vec<CorsRule> = Vec::new();
    let mut field: Option<(String, usize)> = None;
    let mut value = String::new();
    let mut open: Option<(String, usize)> = None;
    let mut seen_root = false;
    let mut stack: Vec<String> = Vec::new();
    for token in Tokenizer::from(text) {
        let token = token.map_err(|e| {
            let pos = e.pos();
            FormatError {
                line: pos.row as usize,
                message: format!("not well-formed XML: {e}"),
            }
        })?;
        match token {
            Token::Declaration { .. }
            | Token::Comment { .. }
            | Token::ProcessingInstruction { .. } => {}
            Token::DtdStart { span, .. } | Token::EmptyDtd { span, .. } => {
                return Err(fail(span.start(), "a DOCTYPE is not allowed".into()));
            }
            Token::ElementStart { local, span, .. } => {
                let name = local.as_str().to_owned();
                let at = span.start();
                match depth {
                    0 if name == "CORSConfiguration" && !seen_root => seen_root = true,
                    0 => {
                        return Err(fail(
                            at,
                            format!("the document must be one <CORSConfiguration>, not <{name}>"),
                        ));
                    }
                    1 if name == "CORSRule" => rules.push(CorsRule::default()),
                    1 => {
                        return Err(fail(
                            at,
                            format!("<CORSConfiguration> holds <CORSRule>s, not <{name}>"),
                        ));
                    }
                    2 if FIELDS.contains(&name.as_str()) => {
                        field = Some((name.clone(), at));
                        value.clear();
                    }
                    2 => {
                        return Err(fail(
                            at,
                            format!(
                                "CORSRule[{}]: unknown element <{name}>, expected one of {}",
                                rules.len() - 1,
                                FIELDS.join(", ")
                            ),
                        ));
                    }
                    _ => {
                        let (parent, _) = field.clone().unwrap_or_default();
                        return Err(fail(at, format!("<{parent}> holds text, not <{name}>")));
                    }
                }
                open = Some((name, at));
            }
            Token::Attribute { local, span, .. } => {
                let name = open.as_ref().map(|(n, _)| n.as_str()).unwrap_or_default();
                if !(name == "CORSConfiguration" && (local.as_str() == "xmlns")) {
                    return Err(fail(
                        span.start(),
                        format!("unexpected attribute {} on <{name}>", local.as_str()),
                    ));
                }
            }
            Token::ElementEnd { end, span } => match end {
                ElementEnd::Open => {
                    depth += 1;
                    stack.push(open.clone().map(|(n, _)| n).unwrap_or_default());
                }
                ElementEnd::Empty => {
                    // `<AllowedHeader/>`: an empty value, which validation then refuses.
                    if depth == 2 {
                        let (name, at) = field.take().unwrap_or_default();
                        set_field(&mut rules, &name, "", at, text)?;
                    } else if depth == 1 {
                        // `<CORSRule/>` stays an empty rule.
                    }
                    open = None;
                }
                ElementEnd::Close(_, local) => {
                    let opened = stack.pop().unwrap_or_default();
                    if local.as_str() != opened {
                        return Err(fail(
                            span.start(),
                            format!("</{}> closes <{opened}>", local.as_str()),
                        ));
                    }
                    depth -= 1;
                    if depth == 2 {
                        let (name, at) = field.take().unwrap_or_default();
                        if local.as_str() != name {
                            return Err(fail(
                                span.start(),
                                format!("</{}> closes <{name}>", local.as_str()),
                            ));
                        }
                        set_field(&mut rules, &name, value.trim(), at, text)?;
                    }
                    open = None;
                }
            },
            Token::Text { text: t } => {
                if depth == 3 {
                    value.push_str(&unescape(t.as_str()).map_err(|m| fail(t.start(), m))?);
                } else if !t.as_str().trim().is_empty() {
                    return Err(fail(
                        t.start(),
                        format!("unexpected text {:?}", t.as_str().trim()),
                    ));
                }
            }
            Token::Cdata { text: t, .. } => {
                if depth == 3 {
                    value.push_str(t.as_str());
                } else {
                    return Err(fail(t.start(), "unexpected CDATA".into()));
                }
            }
            Token::EntityDeclaration { span, .. } | Token::DtdEnd { span } => {
                return Err(fail(span.start(), "a DOCTYPE is not allowed".into()));
            }
        }
    }
    if !seen_root {
        return Err(FormatError {
            line: 1,
            message: "no <CORSConfiguration> element".into(),
        });
    }
    if depth != 0 {
        return Err(FormatError {
            line: line_at(text, text.len()),
            message: "the document ends inside an element".into(),
        });
    }
    Ok(rules)
}

const FIELDS: [&str; 6] = [
    "ID",
    "AllowedOrigin",
    "AllowedMethod",
    "AllowedHeader",
    "ExposeHeader",
    "MaxAgeSeconds",
];

fn set_field(
    rules: &mut [CorsRule],
    name: &str,
    value: &str,
    at: usize,
    text: &str,
) -> Result<(), FormatError> {
    let index = rules.len() - 1;
    let rule = &mut rules[index];
    let value = value.to_owned();
    match name {
        "ID" if rule.id.is_some() => {
            return Err(FormatError {
                line: line_at(text, at),
                message: format!("CORSRule[{index}]: more than one <ID>"),
            });
        }
        "ID" => rule.id = Some(value),
        "AllowedOrigin" => rule.allowed_origins.push(value),
        "AllowedMethod" => rule.allowed_methods.push(value),
        "AllowedHeader" => rule.allowed_headers.push(value),
        "ExposeHeader" => rule.expose_headers.push(value),
        _ => {
            if rule.max_age_seconds.is_some() {
                return Err(FormatError {
                    line: line_at(text, at),
                    message: format!("CORSRule[{index}]: more than one <MaxAgeSeconds>"),
                });
            }
            rule.max_age_seconds = Some(value.parse().map_err(|_| FormatError {
                line: line_at(text, at),
                message: format!(
                    "CORSRule[{index}].MaxAgeSeconds: {value:?} is not a whole number of seconds"
                ),
            })?);
        }
    }
    Ok(())
}

fn unescape(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let semi = after
            .find(';')
            .ok_or_else(|| format!("an unterminated entity in {text:?}"))?;
        let entity = &after[..semi];
        let c = match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code =
                    if let Some(hex) = entity.strip_prefix("#x").or(entity.strip_prefix("#X")) {
                        u32::from_str_radix(hex, 16).ok()
                    } else if let Some(dec) = entity.strip_prefix('#') {
                        dec.parse().ok()
                    } else {
                        None
                    };
                code.and_then(char::from_u32)
                    .ok_or_else(|| format!("unknown entity &{entity};"))?
            }
        };
        out.push(c);
        rest = &after[semi + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cors::config_xml_len;

    // As the aws CLI documentation writes it (put-bucket-cors, "To configure CORS").
    const DOC_JSON: &str = r#"{
  "CORSRules": [
    {
      "AllowedOrigins": ["http://www.example.com"],
      "AllowedHeaders": ["*"],
      "AllowedMethods": ["PUT", "POST", "DELETE"],
      "MaxAgeSeconds": 3000,
      "ExposeHeaders": ["x-amz-server-side-encryption"]
    },
    {
      "AllowedOrigins": ["*"],
      "AllowedHeaders": ["Authorization"],
      "AllowedMethods": ["GET"],
      "MaxAgeSeconds": 3000
    }
  ]
}"#;

    fn doc_rules() -> Vec<CorsRule> {
        vec![
            CorsRule::new(["http://www.example.com"], ["PUT", "POST", "DELETE"])
                .allowed_headers(["*"])
                .expose_headers(["x-amz-server-side-encryption"])
                .max_age(3000),
            CorsRule::new(["*"], ["GET"])
                .allowed_headers(["Authorization"])
                .max_age(3000),
        ]
    }

    #[test]
    fn the_aws_cli_documents_cors_json_reads_in_order() {
        assert_eq!(parse(DOC_JSON).unwrap(), doc_rules());
    }

    #[test]
    fn json_is_written_as_the_aws_cli_prints_it_and_reads_back() {
        let rules = vec![doc_rules()[1].clone().id("public")];
        let expected = r#"{
    "CORSRules": [
        {
            "ID": "public",
            "AllowedHeaders": [
                "Authorization"
            ],
            "AllowedMethods": [
                "GET"
            ],
            "AllowedOrigins": [
                "*"
            ],
            "MaxAgeSeconds": 3000
        }
    ]
}
"#;
        assert_eq!(to_json(&rules), expected);
        assert_eq!(parse_json(expected).unwrap(), rules);
        let all = doc_rules();
        assert_eq!(parse(&to_json(&all)).unwrap(), all);
        assert_eq!(to_json(&parse(&to_json(&all)).unwrap()), to_json(&all));
    }

    #[test]
    fn json_errors_name_the_line_and_the_member() {
        let typo = "{\n  \"CORSRules\": [\n    {\n      \"AllowedOrigin\": [\"*\"],\n      \"AllowedMethods\": [\"GET\"]\n    }\n  ]\n}";
        let err = parse(typo).unwrap_err();
        assert_eq!(err.line, 4, "{err}");
        assert!(
            err.message
                .starts_with("CORSRules[0].AllowedOrigin: unknown field `AllowedOrigin`"),
            "{err}"
        );
        let wrong_type = "{\"CORSRules\": [{\"AllowedOrigins\": [\"*\"], \"AllowedMethods\": [\"GET\"],\n \"MaxAgeSeconds\": \"3000\"}]}";
        let err = parse(wrong_type).unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.message.contains("CORSRules[0].MaxAgeSeconds"), "{err}");
        let missing = "{\"CORSRules\": [{\"AllowedOrigins\": [\"*\"]}]}";
        assert!(
            parse(missing)
                .unwrap_err()
                .message
                .contains("AllowedMethods")
        );
        assert!(parse("{}").unwrap_err().message.contains("CORSRules"));
        assert!(parse("{\"CORSRules\": []} x").is_err());
    }

    #[test]
    fn xml_reads_what_s3_documents_and_what_we_write() {
        let xml = r#"<CORSConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
 <CORSRule>
   <AllowedOrigin>http://www.example.com</AllowedOrigin>
   <AllowedMethod>PUT</AllowedMethod>
   <AllowedMethod>POST</AllowedMethod>
   <AllowedMethod>DELETE</AllowedMethod>
   <AllowedHeader>*</AllowedHeader>
  <MaxAgeSeconds>3000</MaxAgeSeconds>
  <ExposeHeader>x-amz-server-side-encryption</ExposeHeader>
 </CORSRule>
 <CORSRule>
   <AllowedOrigin>*</AllowedOrigin>
   <AllowedMethod>GET</AllowedMethod>
   <AllowedHeader>Authorization</AllowedHeader>
   <MaxAgeSeconds>3000</MaxAgeSeconds>
 </CORSRule>
</CORSConfiguration>"#;
        assert_eq!(parse(xml).unwrap(), doc_rules());
        let tricky =
            vec![CorsRule::new(["https://a.example.com"], ["GET"]).id("a&b <c> \"d\" 'e'\nf")];
        assert_eq!(parse(&to_xml(&tricky)).unwrap(), tricky);
        assert_eq!(parse(&to_xml(&doc_rules())).unwrap(), doc_rules());
    }

    #[test]
    fn our_xml_has_the_size_the_64_kb_limit_is_measured_on() {
        // config_xml_len measures the SDK's compact body; ours adds the declaration and the
        // indentation and line ends only.
        for rules in [
            doc_rules(),
            vec![],
            vec![CorsRule::new(["*"], ["GET"]).id("<&>")],
        ] {
            let pretty = to_xml(&rules);
            let compact: String = pretty.lines().skip(1).map(str::trim_start).collect();
            assert_eq!(compact.len(), config_xml_len(&rules), "{pretty}");
        }
    }

    #[test]
    fn xml_errors_name_the_line_and_the_element() {
        let unknown = "<CORSConfiguration>\n<CORSRule>\n<AllowedOrigins>*</AllowedOrigins>\n</CORSRule>\n</CORSConfiguration>";
        let err = parse(unknown).unwrap_err();
        assert_eq!(err.line, 3);
        assert!(
            err.message.contains("unknown element <AllowedOrigins>"),
            "{err}"
        );
        let max_age = "<CORSConfiguration><CORSRule>\n<MaxAgeSeconds>soon</MaxAgeSeconds></CORSRule></CORSConfiguration>";
        let err = parse(max_age).unwrap_err();
        assert_eq!(
            (err.line, err.message.contains("\"soon\"")),
            (2, true),
            "{err}"
        );
        for bad in [
            "<CORSConfiguration><CORSRule>",
            "<CORSConfiguration><CORSRule></CORS></CORSConfiguration>",
            "<Other/>",
            "<CORSConfiguration><Rule/></CORSConfiguration>",
            "<CORSConfiguration><CORSRule><ID>a</ID><ID>b</ID></CORSRule></CORSConfiguration>",
            "<!DOCTYPE x [<!ENTITY a \"b\">]><CORSConfiguration/>",
            "<CORSConfiguration><CORSRule><ID>&bogus;</ID></CORSRule></CORSConfiguration>",
        ] {
            assert!(parse(bad).is_err(), "{bad} was read");
        }
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        fn text() -> impl Strategy<Value = String> {
            // Printable text with the characters XML and JSON escape, and line ends.
            proptest::string::string_regex("[ -~é\n\r\t&<>\"']{0,20}").unwrap()
        }

        fn rule() -> impl Strategy<Value = CorsRule> {
            (
                proptest::option::of(text()),
                proptest::collection::vec(text(), 0..3),
                proptest::collection::vec(text(), 0..3),
                proptest::collection::vec(text(), 0..3),
                proptest::collection::vec(text(), 0..3),
                proptest::option::of(any::<i32>()),
            )
                .prop_map(|(id, origins, methods, headers, expose, max_age)| {
                    CorsRule {
                        id,
                        allowed_origins: origins,
                        allowed_methods: methods,
                        allowed_headers: headers,
                        expose_headers: expose,
                        max_age_seconds: max_age,
                    }
                })
        }

        proptest! {
            #[test]
            fn reading_never_panics_on_any_text(input in any::<String>()) {
                let _ = parse(&input);
                let _ = parse_xml(&input);
                let _ = parse_json(&input);
            }

            #[test]
            fn reading_never_panics_on_xml_like_text(input in "[<>/A-Za-z &;#x0-9\n\"=]{0,80}") {
                let _ = parse_xml(&input);
            }

            #[test]
            fn json_round_trips_every_configuration(rules in proptest::collection::vec(rule(), 0..4)) {
                prop_assert_eq!(parse_json(&to_json(&rules)).unwrap(), rules);
            }

            #[test]
            fn xml_round_trips_every_configuration_without_outer_white_space(
                rules in proptest::collection::vec(rule(), 0..4)
            ) {
                // XML text is read trimmed (pretty-printed documents have white space around
                // values), so values that start or end with white space come back trimmed.
                let trimmed: Vec<CorsRule> = rules
                    .iter()
                    .map(|r| CorsRule {
                        id: r.id.as_ref().map(|v| v.trim().to_owned()),
                        allowed_origins: r.allowed_origins.iter().map(|v| v.trim().to_owned()).collect(),
                        allowed_methods: r.allowed_methods.iter().map(|v| v.trim().to_owned()).collect(),
                        allowed_headers: r.allowed_headers.iter().map(|v| v.trim().to_owned()).collect(),
                        expose_headers: r.expose_headers.iter().map(|v| v.trim().to_owned()).collect(),
                        max_age_seconds: r.max_age_seconds,
                    })
                    .collect();
                prop_assert_eq!(parse_xml(&to_xml(&rules)).unwrap(), trimmed);
            }
        }
    }
}
