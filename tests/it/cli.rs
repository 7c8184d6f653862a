//! The command line beside `run`, as users run it, against real servers: `import` from a
//! cors.json and from a live moto bucket, through the operator and back out with `export`
//! (compared with what the real aws CLI prints), and `explain --live` against Ceph RGW and
//! Garage, whose declared divergences it must show.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use bucketcors::cors::CorsRule;

use crate::support::harness::{Harness, bucket_cors};
use crate::support::process::python_env;
use crate::support::stores::{S3Server, garage};
use crate::support::unique_name;

struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs the operator's binary with the keys of `store` as the AWS environment.
fn bucketcors(args: &[&str], store: &S3Server, stdin: Option<&str>) -> Ran {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bucketcors"))
        .args(args)
        .env("AWS_ACCESS_KEY_ID", &store.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &store.secret_key)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bucketcors runs");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The real aws CLI, against `store`.
fn aws(args: &[&str], store: &S3Server) -> String {
    let out = Command::new(python_env().join("bin/aws"))
        .args(args)
        .args(["--endpoint-url", &store.endpoint, "--region", "us-east-1"])
        .env("AWS_ACCESS_KEY_ID", &store.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &store.secret_key)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_PAGER", "")
        .output()
        .expect("the aws CLI runs");
    assert!(
        out.status.success(),
        "aws {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// As the aws CLI's put-bucket-cors documentation writes it.
const DOC_CORS_JSON: &str = r#"{
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
}
"#;

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

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cors_json_imports_applies_and_exports_as_the_aws_cli_reads_it_back() {
    let h = Harness::start().await;
    let moto = S3Server::moto();
    let bucket = unique_name("import-file");
    moto.create_bucket(&bucket).await;
    let dir = tempfile::tempdir().unwrap();
    let cors_json = write(dir.path(), "cors.json", DOC_CORS_JSON);

    // 1. import: a manifest, the rules in order, the endpoint as given.
    let imported = bucketcors(
        &[
            "import",
            "-f",
            &cors_json,
            "--bucket",
            &bucket,
            "--endpoint",
            &h.s3_endpoint,
            "--name",
            "site",
            "--namespace",
            &h.namespace,
        ],
        moto,
        None,
    );
    assert_eq!(imported.code, 0, "{}", imported.stderr);
    let manifest = imported.stdout;
    assert!(
        manifest.contains("(the aws CLI's JSON): 2 rule(s)"),
        "{manifest}"
    );
    let manifest_file = write(dir.path(), "site.yaml", &manifest);
    let validated = bucketcors(&["validate", "-f", &manifest_file], moto, None);
    assert_eq!(
        validated.code, 0,
        "{}{}",
        validated.stdout, validated.stderr
    );

    // 2. The manifest through the real API server to the operator and the bucket.
    let (ok, out) = h
        .cluster
        .kubectl_with_input(&["apply", "-f", "-"], &manifest);
    assert!(ok, "{out}");
    h.wait_reason("site", "Applied").await;
    assert_eq!(bucket_cors(&moto.client(), &bucket).await, doc_rules());

    // 3. export prints what the aws CLI prints for the bucket, byte for byte.
    let exported = bucketcors(&["export", "-f", &manifest_file], moto, None);
    assert_eq!(exported.code, 0, "{}", exported.stderr);
    let printed = aws(&["s3api", "get-bucket-cors", "--bucket", &bucket], moto);
    assert_eq!(exported.stdout, printed);
    // ... and put-bucket-cors takes it back unchanged.
    let again = write(dir.path(), "exported.json", &exported.stdout);
    aws(
        &[
            "s3api",
            "put-bucket-cors",
            "--bucket",
            &bucket,
            "--cors-configuration",
            &format!("file://{again}"),
        ],
        moto,
    );
    assert_eq!(bucket_cors(&moto.client(), &bucket).await, doc_rules());
    // XML from the same manifest reads back to the same rules.
    let xml = bucketcors(&["export", "-f", &manifest_file, "-o", "xml"], moto, None);
    assert_eq!(xml.code, 0, "{}", xml.stderr);
    assert_eq!(
        bucketcors::cli::formats::parse(&xml.stdout).unwrap(),
        doc_rules()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_bucket_imports_and_is_adopted_without_a_write() {
    let h = Harness::start().await;
    let moto = S3Server::moto();
    let bucket = unique_name("import-live");
    moto.create_bucket(&bucket).await;
    let dir = tempfile::tempdir().unwrap();
    // Someone's configuration, set with the aws CLI, with an ID and a repeated method.
    let theirs = write(
        dir.path(),
        "theirs.json",
        r#"{"CORSRules": [
            {"ID": "uploads", "AllowedOrigins": ["https://app.example.com"], "AllowedMethods": ["PUT", "POST", "PUT"], "AllowedHeaders": ["Content-Type"]},
            {"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]}
        ]}"#,
    );
    aws(
        &[
            "s3api",
            "put-bucket-cors",
            "--bucket",
            &bucket,
            "--cors-configuration",
            &format!("file://{theirs}"),
        ],
        moto,
    );
    let before = bucket_cors(&moto.client(), &bucket).await;

    let imported = bucketcors(
        &[
            "import",
            "--bucket",
            &bucket,
            "--endpoint",
            &h.s3_endpoint,
            "--force-path-style",
        ],
        moto,
        None,
    );
    assert_eq!(imported.code, 0, "{}", imported.stderr);
    let manifest = imported.stdout;
    assert!(manifest.contains("(GetBucketCors)"), "{manifest}");
    assert!(
        manifest.contains("#   rule 1: AllowedMethods: dropped the repeated \"PUT\""),
        "{manifest}"
    );
    assert!(
        manifest.contains(&format!("  name: \"{bucket}\"")),
        "{manifest}"
    );
    assert!(
        manifest.contains("  deletionPolicy: Restore\n"),
        "{manifest}"
    );

    // Adopted as it is.
    let (ok, out) = h
        .cluster
        .kubectl_with_input(&["apply", "-n", &h.namespace, "-f", "-"], &manifest);
    assert!(ok, "{out}");
    // InSync is the first pass's verdict: it found the bucket matching and wrote nothing, and
    // recorded what the bucket held.
    let obj = h.wait_reason(&bucket, "InSync").await;
    let recorded = obj.status.unwrap().previous_configuration.unwrap();
    assert_eq!(recorded.cors_rules(), before);
    assert_eq!(bucket_cors(&moto.client(), &bucket).await, before);

    // And out again: the aws CLI's own output, except the repeat the operator treats as one.
    let manifest_file = write(dir.path(), "m.yaml", &manifest);
    let exported = bucketcors(&["export", "-f", &manifest_file], moto, None);
    assert_eq!(exported.code, 0, "{}", exported.stderr);
    let printed = aws(&["s3api", "get-bucket-cors", "--bucket", &bucket], moto);
    assert_eq!(
        exported.stdout,
        printed.replacen(
            "\"PUT\",\n                \"POST\",\n                \"PUT\"",
            "\"PUT\",\n                \"POST\"",
            1
        )
    );

    // Someone changes the bucket by hand; the operator puts the declared rules back. Deleting
    // the object then leaves the bucket as it was before the import, not as the hand left it.
    crate::support::harness::put_behind_the_back(
        &moto.client(),
        &bucket,
        "https://by-hand.example.com",
    )
    .await;
    h.wait_reason(&bucket, "Applied").await;
    h.delete(&bucket).await;
    h.wait_gone(&bucket).await;
    assert_eq!(bucket_cors(&moto.client(), &bucket).await, before);

    // A malformed file prints nothing and names the line and the member.
    let bad = write(
        dir.path(),
        "bad.json",
        "{\"CORSRules\": [\n  {\"AllowedOrigins\": [\"*\"],\n   \"AllowedMethod\": [\"GET\"]}\n]}\n",
    );
    let refused = bucketcors(&["import", "-f", &bad, "--bucket", &bucket], moto, None);
    assert_eq!(refused.code, 2);
    assert_eq!(refused.stdout, "");
    assert!(
        refused
            .stderr
            .contains("bad.json:3: CORSRules[0].AllowedMethod: unknown field"),
        "{}",
        refused.stderr
    );
    // A configuration the operator would refuse prints nothing either.
    let lower = write(
        dir.path(),
        "lower.json",
        r#"{"CORSRules": [{"AllowedOrigins": ["*"], "AllowedMethods": ["get"]}]}"#,
    );
    let refused = bucketcors(&["import", "-f", &lower, "--bucket", &bucket], moto, None);
    assert_eq!((refused.code, refused.stdout.as_str()), (2, ""));
    assert!(
        refused.stderr.contains("spec.rules[0].allowedMethods[0]"),
        "{}",
        refused.stderr
    );
}

/// A manifest for `bucket` on `store`, path style.
fn manifest(store: &S3Server, bucket: &str, rules: &str) -> String {
    format!(
        "apiVersion: bucketcors.dev/v1alpha1\nkind: BucketCors\nmetadata:\n  name: site\nspec:\n  bucket: {bucket}\n  endpoint: {}\n  forcePathStyle: true\n  rules:\n{rules}",
        store.endpoint
    )
}

const APP: &str = "https://app.example.com";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_live_shows_where_ceph_rgw_departs_from_aws() {
    let rgw = S3Server::ceph_rgw();
    let bucket = unique_name("explain");
    rgw.create_bucket(&bucket).await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "m.yaml",
        &manifest(
            rgw,
            &bucket,
            &format!(
                "    - allowedOrigins: [\"{APP}\"]\n      allowedMethods: [GET]\n    - allowedOrigins: [\"{APP}\"]\n      allowedMethods: [PUT]\n"
            ),
        ),
    );
    // Offline, the evaluator alone: rule 2 lets PUT through.
    let offline = bucketcors(
        &["explain", "-f", &file, "--origin", APP, "--method", "PUT"],
        rgw,
        None,
    );
    assert_eq!(offline.code, 0, "{}{}", offline.stdout, offline.stderr);
    assert!(
        offline
            .stdout
            .contains("rule 1: no: method \"PUT\" is not in AllowedMethods [\"GET\"]")
            && offline.stdout.contains("Verdict: allowed by rule 2 (200)"),
        "{}",
        offline.stdout
    );
    // Put the rules on the bucket (through the manifest, as the operator would write them).
    let rules: Vec<CorsRule> = vec![CorsRule::new([APP], ["GET"]), CorsRule::new([APP], ["PUT"])];
    put(rgw, &bucket, &rules).await;

    // RGW takes the first rule whose origin matches and never falls through: 403.
    let live = bucketcors(
        &[
            "explain", "-f", &file, "--origin", APP, "--method", "PUT", "--live",
        ],
        rgw,
        None,
    );
    assert_eq!(live.code, 1, "{}{}", live.stdout, live.stderr);
    assert!(
        live.stdout.contains(&format!(
            "Store: OPTIONS {}/{bucket}/index.html answered 403",
            rgw.endpoint
        )) && live
            .stdout
            .contains("status: the evaluator (AWS's rules) says 200, the store answered 403"),
        "{}",
        live.stdout
    );
    // Where RGW agrees on the verdict, its headers can still differ: it sends no
    // Access-Control-Allow-Credentials (declared in src/cors/preflight.rs).
    let get = bucketcors(
        &[
            "explain", "-f", &file, "--origin", APP, "--method", "GET", "--live",
        ],
        rgw,
        None,
    );
    assert!(get.stdout.contains("answered 200"), "{}", get.stdout);
    assert!(
        !get.stdout.contains("status:")
            && get.stdout.contains(
                "Access-Control-Allow-Credentials: the evaluator says true, the store sent none"
            ),
        "{}",
        get.stdout
    );
    // Reading the rules from the live bucket instead of a manifest gives the same verdict.
    let from_bucket = bucketcors(
        &[
            "explain",
            "--bucket",
            &bucket,
            "--endpoint",
            &rgw.endpoint,
            "--force-path-style",
            "--origin",
            APP,
            "--method",
            "PUT",
        ],
        rgw,
        None,
    );
    assert_eq!(
        from_bucket.code, 0,
        "{}{}",
        from_bucket.stdout, from_bucket.stderr
    );
    assert!(
        from_bucket.stdout.contains("allowed by rule 2"),
        "{}",
        from_bucket.stdout
    );
}

async fn put(store: &S3Server, bucket: &str, rules: &[CorsRule]) {
    use aws_sdk_s3::types::{CorsConfiguration, CorsRule as SdkRule};
    let sdk: Vec<SdkRule> = rules
        .iter()
        .map(|r| {
            SdkRule::builder()
                .set_allowed_origins(Some(r.allowed_origins.clone()))
                .set_allowed_methods(Some(r.allowed_methods.clone()))
                .build()
                .unwrap()
        })
        .collect();
    store
        .client()
        .put_bucket_cors()
        .bucket(bucket)
        .cors_configuration(
            CorsConfiguration::builder()
                .set_cors_rules(Some(sdk))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_live_shows_that_garage_applies_cors_only_to_globally_aliased_buckets() {
    let garage = garage("explain_live_shows_that_garage_applies_cors_only");
    let rules = vec![CorsRule::new([APP], ["GET"])];
    let rule_yaml = format!("    - allowedOrigins: [\"{APP}\"]\n      allowedMethods: [GET]\n");
    let dir = tempfile::tempdir().unwrap();
    let evil = "https://evil.example.com";

    // A bucket made with S3's CreateBucket has only a key-local alias: Garage lets any
    // origin through, which the evaluator (and AWS) would refuse.
    let local = unique_name("explain-local");
    garage
        .client()
        .create_bucket()
        .bucket(&local)
        .send()
        .await
        .unwrap();
    put(garage, &local, &rules).await;
    let file = write(
        dir.path(),
        "local.yaml",
        &manifest(garage, &local, &rule_yaml),
    );
    let live = bucketcors(
        &[
            "explain", "-f", &file, "--origin", evil, "--method", "GET", "--live",
        ],
        garage,
        None,
    );
    assert_eq!(live.code, 1, "{}{}", live.stdout, live.stderr);
    assert!(
        live.stdout.contains("Verdict: denied (403)")
            && live
                .stdout
                .contains("status: the evaluator (AWS's rules) says 403, the store answered 200"),
        "{}",
        live.stdout
    );

    // With a global alias Garage applies the rules: the same request is refused by both.
    let global = unique_name("explain-global");
    garage.create_bucket(&global).await;
    put(garage, &global, &rules).await;
    let file = write(
        dir.path(),
        "global.yaml",
        &manifest(garage, &global, &rule_yaml),
    );
    let live = bucketcors(
        &[
            "explain", "-f", &file, "--origin", evil, "--method", "GET", "--live",
        ],
        garage,
        None,
    );
    assert!(
        live.stdout.contains("answered 403")
            && live.stdout.contains("The store agrees with the evaluator."),
        "{}",
        live.stdout
    );
    // The exit status says "denied".
    assert_eq!(live.code, 1);
}

#[test]
fn validate_reads_standard_input_and_directories_and_answers_in_json() {
    let moto = S3Server::moto();
    let good = "apiVersion: bucketcors.dev/v1alpha1\nkind: BucketCors\nmetadata:\n  name: ok\nspec:\n  bucket: my-site\n  rules:\n    - allowedOrigins: [\"*\"]\n      allowedMethods: [GET]\n";
    let bad = good
        .replace("name: ok", "name: bad")
        .replace("[GET]", "[get]");
    let other = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ignored\n";
    let stream = format!("{good}---\n{other}---\n{bad}");
    let ran = bucketcors(&["validate", "-f", "-", "-o", "json"], moto, Some(&stream));
    assert_eq!(ran.code, 1, "{}{}", ran.stdout, ran.stderr);
    let report: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(report["valid"], false);
    let objects = report["objects"].as_array().unwrap();
    assert_eq!(objects.len(), 2, "the ConfigMap is ignored: {report}");
    assert_eq!(
        (objects[0]["name"].as_str(), objects[0]["valid"].as_bool()),
        (Some("ok"), Some(true))
    );
    assert_eq!(objects[1]["line"], 16, "{report}");
    assert_eq!(
        objects[1]["problems"][0]["field"],
        "spec.rules[0].allowedMethods[0]"
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    write(dir.path(), "a.yaml", good);
    write(&dir.path().join("sub"), "b.yaml", &bad);
    write(dir.path(), "notes.txt", "not a manifest");
    let top = dir.path().display().to_string();
    let flat = bucketcors(&["validate", "-f", &top], moto, None);
    assert_eq!(flat.code, 0, "{}{}", flat.stdout, flat.stderr);
    let deep = bucketcors(&["validate", "-R", "-f", &top], moto, None);
    assert_eq!(deep.code, 1);
    assert!(
        deep.stdout
            .contains("sub/b.yaml:1: BucketCors bad: spec.rules[0].allowedMethods[0]"),
        "{}",
        deep.stdout
    );
    // A store given among the files: what its profile refuses is refused in the objects that
    // name it, across files of a directory.
    let store = "apiVersion: bucketcors.dev/v1alpha1\nkind: ClusterBucketStore\nmetadata:\n  name: r2\nspec:\n  endpoint: https://0123abcd.r2.cloudflarestorage.com\n  buckets: [\"web-*\"]\n";
    let through = "apiVersion: bucketcors.dev/v1alpha1\nkind: BucketCors\nmetadata:\n  name: week\n  namespace: web\nspec:\n  bucket: web-site\n  storeRef: {name: r2}\n  rules:\n    - allowedOrigins: [\"https://app.example.com\"]\n      allowedMethods: [GET]\n      maxAgeSeconds: 604800\n";
    let stores = tempfile::tempdir().unwrap();
    write(stores.path(), "store.yaml", store);
    write(stores.path(), "web.yaml", through);
    let at = stores.path().display().to_string();
    let profiled = bucketcors(&["validate", "-f", &at], moto, None);
    assert_eq!(profiled.code, 1, "{}{}", profiled.stdout, profiled.stderr);
    assert!(
        profiled.stdout.contains(
            "web.yaml:1: BucketCors web/week: spec.rules[0].maxAgeSeconds: \"604800\" is more than Cloudflare R2 allows: maxAgeSeconds up to 86400 (through ClusterBucketStore r2) (operator)"
        ),
        "{}",
        profiled.stdout
    );
    let alone = bucketcors(&["validate", "-f", &format!("{at}/web.yaml")], moto, None);
    assert_eq!(alone.code, 0, "{}{}", alone.stdout, alone.stderr);

    let missing = bucketcors(&["validate", "-f", "/nonexistent.yaml"], moto, None);
    assert_eq!(missing.code, 1);
    assert!(
        missing.stdout.contains("/nonexistent.yaml:0: cannot read"),
        "{}",
        missing.stdout
    );
}

#[test]
fn every_command_has_help_with_examples_and_export_writes_one_file_per_object() {
    let moto = S3Server::moto();
    for command in ["import", "export", "validate", "explain"] {
        let help = bucketcors(&[command, "--help"], moto, None);
        assert_eq!(help.code, 0, "{}", help.stderr);
        assert!(
            help.stdout.contains("Examples:")
                && help.stdout.contains(&format!("bucketcors {command} ")),
            "{command} --help: {}",
            help.stdout
        );
    }
    // A command that cannot run says why and exits 2, printing nothing.
    let cannot = bucketcors(
        &[
            "explain",
            "-f",
            "/nonexistent.yaml",
            "--origin",
            "https://a",
            "--method",
            "GET",
        ],
        moto,
        None,
    );
    assert_eq!((cannot.code, cannot.stdout.as_str()), (2, ""));
    assert!(
        cannot.stderr.contains("/nonexistent.yaml"),
        "{}",
        cannot.stderr
    );
    let dir = tempfile::tempdir().unwrap();
    let doc = |name: &str, origin: &str| {
        format!(
            "apiVersion: bucketcors.dev/v1alpha1\nkind: BucketCors\nmetadata:\n  name: {name}\n  namespace: web\nspec:\n  bucket: {name}-bucket\n  rules:\n    - allowedOrigins: [\"{origin}\"]\n      allowedMethods: [GET]\n"
        )
    };
    let both = write(
        dir.path(),
        "both.yaml",
        &format!(
            "{}---\n{}",
            doc("a", "https://a.example"),
            doc("b", "https://b.example")
        ),
    );
    let refused = bucketcors(&["export", "-f", &both], moto, None);
    assert_eq!((refused.code, refused.stdout.as_str()), (2, ""));
    assert!(refused.stderr.contains("--out-dir"), "{}", refused.stderr);
    let out = dir.path().join("out");
    let out_dir = out.display().to_string();
    let written = bucketcors(
        &["export", "-f", &both, "-o", "xml", "--out-dir", &out_dir],
        moto,
        None,
    );
    assert_eq!(written.code, 0, "{}", written.stderr);
    let a = std::fs::read_to_string(out.join("web_a.xml")).unwrap();
    let b = std::fs::read_to_string(out.join("web_b.xml")).unwrap();
    assert_eq!(
        bucketcors::cli::formats::parse(&a).unwrap(),
        vec![CorsRule::new(["https://a.example"], ["GET"])]
    );
    assert!(
        b.contains("<AllowedOrigin>https://b.example</AllowedOrigin>"),
        "{b}"
    );
    // Byte-stable: the same manifests give the same bytes.
    let again = bucketcors(
        &["export", "-f", &both, "-o", "xml", "--out-dir", &out_dir],
        moto,
        None,
    );
    assert_eq!(again.code, 0);
    assert_eq!(std::fs::read_to_string(out.join("web_a.xml")).unwrap(), a);
}
