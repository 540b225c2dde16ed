//! The integration tests, compiled as one binary so the shared harness
//! (`common`) builds once. Each module is one former test file; run one
//! with `cargo test --test it MODULE::`.

mod common;
mod layout_support;
#[path = "support/sync_run.rs"]
mod sync_run;

mod airgap;
mod archive_space;
mod backup;
mod bad_input;
mod budget;
mod cli_credentials;
mod cli_exit_codes;
mod cli_help;
mod cli_messages;
mod cli_report;
mod config;
mod copy;
mod dashboard;
mod deploy;
mod discovery;
mod error_kinds;
mod fuzz_regressions;
mod hardening;
mod harness;
mod identity_acr;
mod identity_create;
mod identity_ecr;
mod identity_gar;
mod import;
mod index_create;
mod interrupted;
mod layout;
mod layout_hostile;
mod layout_names;
mod listings;
mod malicious;
mod memory;
mod not_a_registry;
mod prune;
mod real_clients;
mod referrers;
mod referrers_e2e;
mod referrers_harness;
mod referrers_hostile;
mod registry;
mod registry_fake;
mod registry_rules;
mod repetition;
mod self_conflict;
mod serve;
mod shard;
mod symlinks;
mod sync;
mod uploads;
mod uploads_sessions;
