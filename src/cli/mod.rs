//! The commands beside `run` that take users from the aws CLI workflow to BucketCors and back:
//! `import`, `export`, `validate` and `explain`. Each prints to standard output what it made,
//! all of it or nothing, and returns the process's exit status.

pub mod documents;
pub mod explain;
pub mod formats;
pub mod validate;

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, bail};

use crate::api::BucketCors;
use crate::cors::{self, CorsRule};
use crate::s3::{BucketTarget, CorsStore, SdkStore};
use crate::tenancy::EndpointPolicy;

/// Exit status: everything checked is fine.
pub const OK: u8 = 0;
/// Exit status: something checked is refused, denied or differs.
pub const REFUSED: u8 = 1;

/// Where a bucket is, as the command line names it.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct BucketArgs {
    /// The bucket.
    #[arg(long)]
    pub bucket: Option<String>,
    /// S3 endpoint URL (AWS S3 when absent), e.g. `https://s3.fr-par.scw.cloud`.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Region (the AWS SDK's region chain when absent).
    #[arg(long)]
    pub region: Option<String>,
    /// Path-style addressing (`https://endpoint/bucket`) instead of virtual-hosted.
    #[arg(long)]
    pub force_path_style: bool,
}

impl BucketArgs {
    fn target(&self) -> Option<BucketTarget> {
        let bucket = self.bucket.clone()?;
        let mut target = BucketTarget::new(bucket);
        target.endpoint = self.endpoint.clone();
        target.region = self.region.clone();
        target.force_path_style = self.force_path_style;
        Some(target)
    }
}

/// The AWS SDK with the usual credential chain (environment, profile, SSO, web identity, IMDS).
/// The command line is the user's own: no endpoint policy applies.
async fn store(region: Option<String>) -> SdkStore {
    SdkStore::from_env(region, EndpointPolicy::default()).await
}

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  aws s3api get-bucket-cors --bucket my-site > cors.json
  bucketcors import -f cors.json --bucket my-site --namespace web > my-site.yaml
  bucketcors import --bucket my-site --endpoint https://s3.fr-par.scw.cloud --region fr-par")]
pub struct ImportArgs {
    /// A CORS document: the aws CLI's JSON (`{\"CORSRules\": [...]}`) or S3's XML
    /// (`<CORSConfiguration>`); `-` for standard input. Without it, the live bucket's
    /// configuration is read with GetBucketCors.
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub bucket: BucketArgs,
    /// metadata.name of the BucketCors (default: the bucket's name).
    #[arg(long)]
    pub name: Option<String>,
    /// metadata.namespace of the BucketCors (left out when absent).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
}

/// `bucketcors import`: a BucketCors manifest on standard output.
pub async fn import(args: ImportArgs) -> anyhow::Result<u8> {
    let Some(bucket) = args.bucket.bucket.clone() else {
        bail!("--bucket is required: the manifest names the bucket it manages");
    };
    let (rules, source) = match &args.file {
        Some(path) => {
            let text = if path.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("cannot read standard input")?
            } else {
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?
            };
            let form = match formats::Form::of(&text) {
                formats::Form::Json => "the aws CLI's JSON",
                formats::Form::Xml => "S3's XML",
            };
            let rules = formats::parse(&text)
                .map_err(|e| anyhow::anyhow!("{}:{}: {}", path.display(), e.line, e.message))?;
            (rules, format!("{} ({form})", path.display()))
        }
        None => {
            let target = args.bucket.target().expect("the bucket is set");
            let rules = store(args.bucket.region.clone())
                .await
                .get_cors(&target)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            (rules, format!("bucket {bucket} (GetBucketCors)"))
        }
    };
    let (rules, notes) = normalise_for_import(rules);
    if let Err(errors) = cors::validate_rules(&rules) {
        let list: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
        bail!(
            "the configuration of {source} would be refused by the operator; nothing was printed:\n{}",
            list.join("\n")
        );
    }
    let manifest = render_manifest(&ManifestFields {
        name: args.name.clone().unwrap_or_else(|| bucket.clone()),
        namespace: args.namespace.clone(),
        bucket,
        endpoint: args.bucket.endpoint.clone(),
        region: args.bucket.region.clone(),
        force_path_style: args.bucket.force_path_style,
        source,
        notes,
        rules,
    });
    std::io::stdout().write_all(manifest.as_bytes())?;
    Ok(OK)
}

/// Removes what the operator would treat as the same anyway, and says what it removed: a
/// value repeated within one list (the operator compares each list as a set, and some stores
/// merge repeats) and an empty ID (S3 treats it as none).
pub fn normalise_for_import(rules: Vec<CorsRule>) -> (Vec<CorsRule>, Vec<String>) {
    let mut notes = Vec::new();
    let rules = rules
        .into_iter()
        .enumerate()
        .map(|(index, mut rule)| {
            let mut dedupe = |field: &str, values: &mut Vec<String>, fold: bool| {
                let mut seen = std::collections::HashSet::new();
                let before = values.clone();
                values.retain(|v| {
                    seen.insert(if fold {
                        v.to_ascii_lowercase()
                    } else {
                        v.clone()
                    })
                });
                if before.len() != values.len() {
                    let mut dropped = before.clone();
                    for kept in values.iter() {
                        if let Some(at) = dropped.iter().position(|d| d == kept) {
                            dropped.remove(at);
                        }
                    }
                    notes.push(format!(
                        "rule {}: {field}: dropped the repeated {}",
                        index + 1,
                        dropped
                            .iter()
                            .map(|d| format!("{d:?}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            };
            dedupe("AllowedOrigins", &mut rule.allowed_origins, false);
            dedupe("AllowedMethods", &mut rule.allowed_methods, false);
            dedupe("AllowedHeaders", &mut rule.allowed_headers, true);
            dedupe("ExposeHeaders", &mut rule.expose_headers, true);
            if rule.id.as_deref() == Some("") {
                rule.id = None;
                notes.push(format!("rule {}: dropped the empty ID", index + 1));
            }
            rule
        })
        .collect();
    (rules, notes)
}

/// What goes into an imported manifest.
pub struct ManifestFields {
    pub name: String,
    pub namespace: Option<String>,
    pub bucket: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub force_path_style: bool,
    pub source: String,
    pub notes: Vec<String>,
    pub rules: Vec<CorsRule>,
}

fn quoted(text: &str) -> String {
    serde_json::to_string(text).expect("a string serializes")
}

fn quoted_list(values: &[String]) -> String {
    let items: Vec<String> = values.iter().map(|v| quoted(v)).collect();
    format!("[{}]", items.join(", "))
}

/// A BucketCors manifest, written the same way every time: a comment saying where the rules
/// came from and what was normalised, then the object, rules in their order.
pub fn render_manifest(m: &ManifestFields) -> String {
    let mut out = format!(
        "# Imported by `bucketcors import` from {}: {} rule(s), in their order.\n",
        m.source,
        m.rules.len()
    );
    if m.notes.is_empty() {
        out.push_str("# Nothing was normalised.\n");
    } else {
        out.push_str("# Normalised (the operator treats these as the same):\n");
        for note in &m.notes {
            out.push_str(&format!("#   {note}\n"));
        }
    }
    out.push_str(
        "# Applied as it is, the operator finds the bucket already matching and writes nothing.\n",
    );
    out.push_str("apiVersion: bucketcors.dev/v1alpha1\nkind: BucketCors\nmetadata:\n");
    out.push_str(&format!("  name: {}\n", quoted(&m.name)));
    if let Some(ns) = &m.namespace {
        out.push_str(&format!("  namespace: {}\n", quoted(ns)));
    }
    out.push_str(&format!("spec:\n  bucket: {}\n", quoted(&m.bucket)));
    if let Some(endpoint) = &m.endpoint {
        out.push_str(&format!("  endpoint: {}\n", quoted(endpoint)));
    }
    if let Some(region) = &m.region {
        out.push_str(&format!("  region: {}\n", quoted(region)));
    }
    if m.force_path_style {
        out.push_str("  forcePathStyle: true\n");
    }
    // Importing, then deleting the object, leaves the bucket as it was.
    out.push_str(
        "  # Deleting this object puts back what the bucket holds when the operator first sees it.\n  deletionPolicy: Restore\n",
    );
    if m.rules.is_empty() {
        out.push_str("  rules: []\n");
    } else {
        out.push_str("  rules:\n");
    }
    for rule in &m.rules {
        let mut first = true;
        let mut line = |key: &str, value: String| {
            out.push_str(if first { "    - " } else { "      " });
            first = false;
            out.push_str(&format!("{key}: {value}\n"));
        };
        if let Some(id) = &rule.id {
            line("id", quoted(id));
        }
        line("allowedOrigins", quoted_list(&rule.allowed_origins));
        line("allowedMethods", quoted_list(&rule.allowed_methods));
        if !rule.allowed_headers.is_empty() {
            line("allowedHeaders", quoted_list(&rule.allowed_headers));
        }
        if !rule.expose_headers.is_empty() {
            line("exposeHeaders", quoted_list(&rule.expose_headers));
        }
        if let Some(max_age) = rule.max_age_seconds {
            line("maxAgeSeconds", max_age.to_string());
        }
    }
    out
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// The aws CLI's JSON, as `get-bucket-cors` prints it and `put-bucket-cors` takes it.
    Json,
    /// S3's XML, the body of PutBucketCors.
    Xml,
}

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  bucketcors export -f my-site.yaml > cors.json
  aws s3api put-bucket-cors --bucket my-site --cors-configuration file://cors.json
  bucketcors export -f manifests/ -R -o xml --out-dir cors/")]
pub struct ExportArgs {
    /// Manifest files or directories (`-` for standard input); BucketCors documents are
    /// exported, other kinds ignored.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<String>,
    /// Read directories recursively.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// The format written.
    #[arg(short = 'o', long, value_enum, default_value = "json")]
    pub output: ExportFormat,
    /// Write one file per object, `NAMESPACE_NAME.json` (or `.xml`), into this directory
    /// instead of standard output; required when there are several objects.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
}

/// `bucketcors export`.
pub fn export(args: ExportArgs) -> anyhow::Result<u8> {
    let docs = documents::load(&args.files, args.recursive).map_err(load_errors)?;
    let mut objects = Vec::new();
    for doc in docs
        .iter()
        .filter(|d| validate::is_ours(d) && d.kind() == "BucketCors")
    {
        let verdict = validate::check(doc);
        if !verdict.valid {
            bail!(
                "{} is not a valid BucketCors; nothing was written:\n{}",
                verdict.name,
                validate::render_text(std::slice::from_ref(&verdict)).trim_end()
            );
        }
        let object: BucketCors = serde_json::from_value(doc.value.clone())
            .with_context(|| format!("{}:{}", doc.file, doc.line))?;
        objects.push((doc, object));
    }
    if objects.is_empty() {
        bail!("no BucketCors in {}", args.files.join(", "));
    }
    let render = |rules: &[CorsRule]| match args.output {
        ExportFormat::Json => formats::to_json(rules),
        ExportFormat::Xml => formats::to_xml(rules),
    };
    match &args.out_dir {
        None if objects.len() > 1 => bail!(
            "{} BucketCors objects found; name a directory with --out-dir to get one file each",
            objects.len()
        ),
        None => {
            std::io::stdout().write_all(render(&objects[0].1.spec.rules).as_bytes())?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let extension = match args.output {
                ExportFormat::Json => "json",
                ExportFormat::Xml => "xml",
            };
            let mut names = std::collections::HashSet::new();
            let mut files = Vec::new();
            for (doc, object) in &objects {
                let name = doc.object_name().replace('/', "_");
                if !names.insert(name.clone()) {
                    bail!("two objects are named {name}; nothing was written");
                }
                files.push((
                    dir.join(format!("{name}.{extension}")),
                    render(&object.spec.rules),
                ));
            }
            for (path, text) in files {
                std::fs::write(&path, text)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                eprintln!("wrote {}", path.display());
            }
        }
    }
    Ok(OK)
}

fn load_errors(errors: Vec<documents::LoadError>) -> anyhow::Error {
    let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
    anyhow::anyhow!("{}", list.join("\n"))
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValidateFormat {
    /// One line per problem: `FILE:LINE: KIND NAME: FIELD: MESSAGE (CHECK)`.
    Text,
    /// One JSON document with every verdict, for CI annotations.
    Json,
}

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Checks what the API server (the CRD's schema and CEL rules) and the operator
check, offline. Exit status: 0 when every BucketCors and ClusterBucketStore passes, 1 when one
does not or a file cannot be read.

Examples:
  bucketcors validate -f manifests/ -R
  kustomize build overlays/prod | bucketcors validate -f -
  bucketcors validate -f my-site.yaml -o json"
)]
pub struct ValidateArgs {
    /// Manifest files or directories (`-` for standard input).
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<String>,
    /// Read directories recursively.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: ValidateFormat,
}

/// `bucketcors validate`.
pub fn validate(args: ValidateArgs) -> anyhow::Result<u8> {
    let (docs, load_errors) = match documents::load(&args.files, args.recursive) {
        Ok(docs) => (docs, Vec::new()),
        Err(errors) => (Vec::new(), errors),
    };
    // A BucketCors that names a store given among the files is checked against its profile.
    let stores = validate::stores(&docs);
    let verdicts: Vec<validate::Verdict> = docs
        .iter()
        .filter(|d| validate::is_ours(d))
        .map(|d| validate::check_among(d, &stores))
        .collect();
    let refused = verdicts.iter().filter(|v| !v.valid).count();
    let ok = load_errors.is_empty() && refused == 0;
    match args.output {
        ValidateFormat::Json => {
            let report = serde_json::json!({
                "valid": ok,
                "errors": load_errors.iter().map(|e| serde_json::json!({
                    "file": e.file, "line": e.line, "message": e.message,
                })).collect::<Vec<_>>(),
                "objects": verdicts,
            });
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        ValidateFormat::Text => {
            for e in &load_errors {
                println!("{e}");
            }
            print!("{}", validate::render_text(&verdicts));
            eprintln!(
                "{} document(s) read, {} of ours checked, {refused} refused",
                docs.len(),
                verdicts.len()
            );
        }
    }
    Ok(if ok { OK } else { REFUSED })
}

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Exit status: 0 when the request is allowed (by the store, with --live), 1 when it
is denied or the store's answer differs from the evaluator's.

Examples:
  bucketcors explain -f my-site.yaml --origin https://app.example.com --method PUT --header content-type
  bucketcors explain -f my-site.yaml --origin https://app.example.com --method GET --live
  bucketcors explain --bucket my-site --origin https://app.example.com --method GET --live"
)]
pub struct ExplainArgs {
    /// The page's origin (the preflight's `Origin`).
    #[arg(long)]
    pub origin: String,
    /// The method the page wants (`Access-Control-Request-Method`).
    #[arg(long)]
    pub method: String,
    /// A header the page wants to send (`Access-Control-Request-Headers`); repeat, or separate
    /// with commas.
    #[arg(long = "header", value_delimiter = ',')]
    pub headers: Vec<String>,
    /// A manifest with the rules (and the bucket, for --live). Without it, the live bucket's
    /// rules are read with GetBucketCors.
    #[arg(short = 'f', long = "filename")]
    pub file: Option<String>,
    /// Which BucketCors of the manifest, when it holds several.
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub bucket: BucketArgs,
    /// Also send the real preflight to the bucket and compare the store's answer.
    #[arg(long)]
    pub live: bool,
    /// The object the live preflight asks about.
    #[arg(long, default_value = "index.html")]
    pub key: String,
}

/// `bucketcors explain`.
pub async fn explain(args: ExplainArgs) -> anyhow::Result<u8> {
    let question = explain::Question {
        origin: args.origin.clone(),
        method: args.method.clone(),
        headers: args
            .headers
            .iter()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .collect(),
    };
    let (rules, mut target) = match &args.file {
        Some(file) => {
            let object = one_object(file, args.name.as_deref())?;
            let mut target = BucketTarget::new(object.spec.bucket.clone());
            target.endpoint = object.spec.endpoint.clone();
            target.region = object.spec.region.clone();
            target.force_path_style = object.spec.force_path_style.unwrap_or(false);
            (object.spec.rules, Some(target))
        }
        None => {
            let Some(target) = args.bucket.target() else {
                bail!("name the rules: -f MANIFEST, or --bucket to read the live bucket's");
            };
            let rules = store(args.bucket.region.clone())
                .await
                .get_cors(&target)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            (rules, Some(target))
        }
    };
    // The command line's bucket options override the manifest's.
    if let Some(t) = target.as_mut() {
        if let Some(bucket) = &args.bucket.bucket {
            t.bucket = bucket.clone();
        }
        if args.bucket.endpoint.is_some() {
            t.endpoint = args.bucket.endpoint.clone();
        }
        if args.bucket.region.is_some() {
            t.region = args.bucket.region.clone();
        }
        t.force_path_style |= args.bucket.force_path_style;
    }
    let (text, decision) = explain::explain(&rules, &question);
    print!("{text}");
    if !args.live {
        return Ok(if decision.is_allowed() { OK } else { REFUSED });
    }
    let target = target.expect("a target is known");
    let headers: Vec<&str> = question.headers.iter().map(String::as_str).collect();
    let answer = store(target.region.clone())
        .await
        .preflight(
            &target,
            &args.key,
            &question.origin,
            &question.method,
            &headers,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (live, same) = explain::render_live(&decision, &answer);
    print!("{live}");
    Ok(if same && answer.status == 200 {
        OK
    } else {
        REFUSED
    })
}

fn one_object(file: &str, name: Option<&str>) -> anyhow::Result<BucketCors> {
    let docs = documents::load(&[file.to_owned()], false).map_err(load_errors)?;
    let ours: Vec<_> = docs
        .iter()
        .filter(|d| validate::is_ours(d) && d.kind() == "BucketCors")
        .filter(|d| name.is_none_or(|n| d.value["metadata"]["name"] == n))
        .collect();
    let doc = match ours.as_slice() {
        [one] => *one,
        [] => bail!(
            "no BucketCors{} in {file}",
            name.map(|n| format!(" named {n}")).unwrap_or_default()
        ),
        _ => bail!(
            "{file} holds {} BucketCors; choose one with --name",
            ours.len()
        ),
    };
    let verdict = validate::check(doc);
    if !verdict.valid {
        bail!(
            "{} is not a valid BucketCors:\n{}",
            verdict.name,
            validate::render_text(std::slice::from_ref(&verdict)).trim_end()
        );
    }
    Ok(serde_json::from_value(doc.value.clone())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_drops_repeats_and_empty_ids_and_says_so() {
        let rules = vec![
            CorsRule::new(["https://a", "https://a"], ["GET", "PUT", "GET"])
                .allowed_headers(["Content-Type", "content-type"])
                .id(""),
            CorsRule::new(["*"], ["GET"]),
        ];
        let (rules, notes) = normalise_for_import(rules);
        assert_eq!(
            rules[0],
            CorsRule::new(["https://a"], ["GET", "PUT"]).allowed_headers(["Content-Type"])
        );
        assert_eq!(
            notes,
            [
                "rule 1: AllowedOrigins: dropped the repeated \"https://a\"",
                "rule 1: AllowedMethods: dropped the repeated \"GET\"",
                "rule 1: AllowedHeaders: dropped the repeated \"content-type\"",
                "rule 1: dropped the empty ID",
            ]
        );
        assert_eq!(rules[1], CorsRule::new(["*"], ["GET"]));
    }

    #[test]
    fn an_imported_manifest_is_a_valid_bucketcors_with_the_rules_in_order() {
        let rules = vec![
            CorsRule::new(["https://b.example"], ["PUT"])
                .id("upload \"x\"")
                .allowed_headers(["*"])
                .max_age(30),
            CorsRule::new(["*"], ["GET"]).expose_headers(["ETag"]),
        ];
        let text = render_manifest(&ManifestFields {
            name: "site".into(),
            namespace: Some("web".into()),
            bucket: "my-site".into(),
            endpoint: Some("https://s3.example.com".into()),
            region: Some("eu-1".into()),
            force_path_style: true,
            source: "cors.json".into(),
            notes: vec!["rule 1: dropped the empty ID".into()],
            rules: rules.clone(),
        });
        assert!(
            text.contains("#   rule 1: dropped the empty ID\n"),
            "{text}"
        );
        let docs = documents::split("m.yaml", &text).unwrap();
        let verdict = validate::check(&docs[0]);
        assert!(verdict.valid, "{:?}\n{text}", verdict.problems);
        let object: BucketCors = serde_json::from_value(docs[0].value.clone()).unwrap();
        assert_eq!(object.spec.rules, rules);
        assert_eq!(object.metadata.namespace.as_deref(), Some("web"));
        assert_eq!(object.spec.force_path_style, Some(true));
        assert_eq!(
            object.spec.endpoint.as_deref(),
            Some("https://s3.example.com")
        );
    }
}
