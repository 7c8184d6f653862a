#![forbid(unsafe_code)]
//! bucketcors: a Kubernetes operator that keeps the CORS configuration of S3 buckets equal to
//! what `BucketCors` objects declare.

pub mod admission;
pub mod api;
pub mod cli;
pub mod constraints;
pub mod controller;
pub mod cors;
pub mod decide;
pub mod http;
pub mod metrics;
pub mod profiles;
pub mod reason;
pub mod s3;
pub mod status;
pub mod telemetry;
pub mod tenancy;
pub mod verify;

/// The BucketCors CRD as YAML, exactly as `crds/bucketcors.yaml` holds it.
pub fn crd_yaml() -> String {
    yaml_document(&admission::crd())
}

/// The ClusterBucketStore CRD as YAML, exactly as `crds/clusterbucketstore.yaml` holds it.
pub fn store_crd_yaml() -> String {
    yaml_document(&admission::store_crd())
}

fn yaml_document(crd: &impl serde::Serialize) -> String {
    let yaml = serde_saphyr::to_string(crd).expect("the CRD serializes");
    format!("---\n{yaml}")
}
