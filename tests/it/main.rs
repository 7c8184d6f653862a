//! Integration tests against real servers: one binary, so that servers start once per run.

mod adapter;
mod browser;
mod cli;
mod compat;
mod corpus;
mod crash;
mod deletion;
mod drift;
mod e2e;
mod edges;
mod emulated;
mod expectations;
mod fairness;
mod faults;
mod gitops;
mod hostile;
mod memory;
mod monitoring;
mod operator;
mod ownership;
mod preflight;
mod safety;
mod server_side;
mod tenancy;
mod verified;

// Shared with the benchmark.
use bucketcors_test_support as support;
