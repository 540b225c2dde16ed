//! Sharding: several replicas split one config's mirrors, each mirror owned
//! by exactly one replica.
//!
//! A replica knows the shard count `N` and its own index `I` (`0 <= I < N`)
//! and runs only the mirrors it owns. Ownership is rendezvous
//! (highest-random-weight) hashing of the mirror *name*: every shard `s`
//! gets the weight `sha256(len(name) as u64 BE || name || s as u32 BE)`
//! (first 8 bytes, big-endian) and the highest weight owns the mirror (ties,
//! which need a sha256 collision in 64 bits, go to the lowest index). So:
//! - every replica computes the same owner from the config alone: no
//!   coordination, no state;
//! - the owner does not depend on the mirror's position in the file, nor on
//!   the other mirrors: adding or removing a mirror moves no other mirror;
//! - going from `N` to `N + 1` shards moves only the mirrors the new shard
//!   wins, about `1/(N + 1)` of them, and each of them moves to the new shard;
//! - sha256 is the same on every platform and Rust version (std's
//!   `DefaultHasher` is not), so mixed builds in one fleet agree.
//!
//! The count and index come, first found wins, from:
//! - count: `--shard-count`, `REGMIRROR_SHARD_COUNT`, `[shard] count`, else 1;
//! - index: `--shard-index`, `REGMIRROR_SHARD_INDEX`, `[shard] index`,
//!   `REGMIRROR_POD_INDEX` (the StatefulSet's `apps.kubernetes.io/pod-index`
//!   label through the downward API), the number after the last `-` of
//!   `POD_NAME` or `HOSTNAME` (a StatefulSet pod's name is `NAME-ORDINAL`),
//!   `JOB_COMPLETION_INDEX` (an Indexed Job); with one shard the index is 0.
//!
//! What is resolved lives as long as the settings it was resolved for: the
//! daemon resolves it again on every reload.

use std::fmt;

use sha2::{Digest as _, Sha256};

/// Environment variable holding the shard count.
pub const ENV_COUNT: &str = "REGMIRROR_SHARD_COUNT";
/// Environment variable holding this replica's shard index.
pub const ENV_INDEX: &str = "REGMIRROR_SHARD_INDEX";
/// Environment variable the manifests fill from the `apps.kubernetes.io/pod-index` label.
pub const ENV_POD_INDEX: &str = "REGMIRROR_POD_INDEX";
/// Environment variable the manifests fill with the pod name (`metadata.name`).
pub const ENV_POD_NAME: &str = "POD_NAME";
/// The host name; a StatefulSet pod's host name is its pod name.
pub const ENV_HOSTNAME: &str = "HOSTNAME";
/// Set by Kubernetes in the pods of an Indexed Job.
pub const ENV_JOB_INDEX: &str = "JOB_COMPLETION_INDEX";
/// Most shards a config may ask for.
pub const MAX_SHARDS: u32 = 1024;

/// `[shard]` of the config file, as written (validated when loaded: `count`
/// is 1 to [`MAX_SHARDS`], `index` below `count` when both are set).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardConfig {
    /// `count`.
    pub count: Option<u32>,
    /// `index`.
    pub index: Option<u32>,
}

/// The shard settings given on the command line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardFlags {
    /// `--shard-count`.
    pub count: Option<u32>,
    /// `--shard-index`.
    pub index: Option<u32>,
}

/// This replica's place among the shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// How many shards split the mirrors (at least 1).
    pub count: u32,
    /// This replica's index, below `count`.
    pub index: u32,
}

impl Shard {
    /// One replica running every mirror.
    pub const SINGLE: Shard = Shard { count: 1, index: 0 };

    /// True when this shard runs the mirror called `name`.
    pub fn owns(&self, name: &str) -> bool {
        owner(name, self.count) == self.index
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shard {} of {}", self.index, self.count)
    }
}

/// Where a count or index came from (for logs and `check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Not set anywhere: the default (one shard, index 0).
    Default,
    /// A command-line flag (`--shard-count`, `--shard-index`).
    Flag(&'static str),
    /// An environment variable, named.
    Env(&'static str),
    /// The config file's `[shard]` table.
    Config,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::Flag(flag) => write!(f, "{flag}"),
            Source::Env(var) => write!(f, "environment variable {var}"),
            Source::Config => f.write_str("[shard] in the config file"),
        }
    }
}

/// A resolved shard with where its count and index came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The shard.
    pub shard: Shard,
    /// Where the count came from.
    pub count_from: Source,
    /// Where the index came from.
    pub index_from: Source,
}

/// Why the shard settings cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    /// A value that is not a number in range.
    #[error("{from}: {value:?} is not a valid shard {what}: expected a whole number{range}")]
    Invalid {
        /// Where the value came from.
        from: Source,
        /// `count` or `index`.
        what: &'static str,
        /// The text found.
        value: String,
        /// The range expected, as text.
        range: String,
    },
    /// The index is not below the count.
    #[error(
        "shard index {index} (from {index_from}) is not below the shard count {count} (from {count_from}): \
         indexes run from 0 to {last}; set the count to the number of replicas"
    )]
    OutOfRange {
        /// The index.
        index: u32,
        /// Where it came from.
        index_from: Source,
        /// The count.
        count: u32,
        /// Where it came from.
        count_from: Source,
        /// `count - 1`.
        last: u32,
    },
    /// Several shards, but nothing says which one this replica is.
    #[error(
        "shard count is {count} (from {count_from}) but this replica's shard index is unknown: pass --shard-index, \
         set {ENV_INDEX}, or run it as a StatefulSet pod ({ENV_POD_INDEX} from the apps.kubernetes.io/pod-index \
         label, or a {ENV_POD_NAME}/{ENV_HOSTNAME} ending in -ORDINAL) or in an Indexed Job ({ENV_JOB_INDEX})"
    )]
    MissingIndex {
        /// The count.
        count: u32,
        /// Where it came from.
        count_from: Source,
    },
}

fn parse_number(from: Source, what: &'static str, text: &str, max: u32) -> Result<u32, ShardError> {
    let invalid = || ShardError::Invalid {
        from: from.clone(),
        what,
        // From the environment: shown, but never at length.
        value: text.chars().take(64).collect(),
        range: if what == "count" {
            format!(" from 1 to {max}")
        } else {
            format!(" from 0 to {}", max - 1)
        },
    };
    let t = text.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) || t.len() > 10 {
        return Err(invalid());
    }
    let n: u64 = t.parse().map_err(|_| invalid())?;
    let ok = if what == "count" {
        (1..=u64::from(max)).contains(&n)
    } else {
        n < u64::from(max)
    };
    if ok { Ok(n as u32) } else { Err(invalid()) }
}

/// The ordinal at the end of a StatefulSet pod name (`regmirror-2` -> 2):
/// the digits after the last `-`, without a leading zero (unless just "0").
pub fn ordinal_of(name: &str) -> Option<u32> {
    let (_, digits) = name.trim().rsplit_once('-')?;
    if digits.is_empty()
        || digits.len() > 9
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    digits.parse().ok()
}

/// The shard count alone: flag, environment, config, else 1.
pub fn resolve_count(
    flags: &ShardFlags,
    config: &ShardConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(u32, Source), ShardError> {
    if let Some(n) = flags.count {
        let from = Source::Flag("--shard-count");
        return parse_number(from.clone(), "count", &n.to_string(), MAX_SHARDS).map(|n| (n, from));
    }
    if let Some(v) = env(ENV_COUNT).filter(|v| !v.trim().is_empty()) {
        let from = Source::Env(ENV_COUNT);
        return parse_number(from.clone(), "count", &v, MAX_SHARDS).map(|n| (n, from));
    }
    if let Some(n) = config.count {
        return Ok((n, Source::Config));
    }
    Ok((1, Source::Default))
}

/// This replica's shard. `env` looks up environment variables (pass
/// `|k| std::env::var(k).ok()`; tests pass a map).
pub fn resolve(
    flags: &ShardFlags,
    config: &ShardConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Resolved, ShardError> {
    let (count, count_from) = resolve_count(flags, config, env)?;
    let explicit = explicit_index(flags, config, env)?;
    let (index, index_from) = match explicit {
        Some(found) => found,
        None if count == 1 => (0, Source::Default),
        None => match derived_index(env)? {
            Some(found) => found,
            None => return Err(ShardError::MissingIndex { count, count_from }),
        },
    };
    if index >= count {
        return Err(ShardError::OutOfRange {
            index,
            index_from,
            count,
            count_from,
            last: count - 1,
        });
    }
    Ok(Resolved {
        shard: Shard { count, index },
        count_from,
        index_from,
    })
}

/// The index set on purpose: flag, environment, config.
fn explicit_index(
    flags: &ShardFlags,
    config: &ShardConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<(u32, Source)>, ShardError> {
    if let Some(i) = flags.index {
        return Ok(Some((i, Source::Flag("--shard-index"))));
    }
    if let Some(v) = env(ENV_INDEX).filter(|v| !v.trim().is_empty()) {
        let from = Source::Env(ENV_INDEX);
        let i = parse_number(from.clone(), "index", &v, MAX_SHARDS)?;
        return Ok(Some((i, from)));
    }
    Ok(config.index.map(|i| (i, Source::Config)))
}

/// The index Kubernetes gives the pod: the pod-index label, the pod name's
/// ordinal, the Indexed Job's completion index.
fn derived_index(
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<(u32, Source)>, ShardError> {
    if let Some(v) = env(ENV_POD_INDEX).filter(|v| !v.trim().is_empty()) {
        let from = Source::Env(ENV_POD_INDEX);
        let i = parse_number(from.clone(), "index", &v, MAX_SHARDS)?;
        return Ok(Some((i, from)));
    }
    for var in [ENV_POD_NAME, ENV_HOSTNAME] {
        if let Some(i) = env(var).as_deref().and_then(ordinal_of) {
            return Ok(Some((i, Source::Env(var))));
        }
    }
    if let Some(v) = env(ENV_JOB_INDEX).filter(|v| !v.trim().is_empty()) {
        let from = Source::Env(ENV_JOB_INDEX);
        let i = parse_number(from.clone(), "index", &v, MAX_SHARDS)?;
        return Ok(Some((i, from)));
    }
    Ok(None)
}

/// Rendezvous weight of shard `shard` for the mirror called `name`.
pub fn weight(name: &str, shard: u32) -> u64 {
    let mut h = Sha256::new();
    h.update((name.len() as u64).to_be_bytes());
    h.update(name.as_bytes());
    h.update(shard.to_be_bytes());
    let d = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    u64::from_be_bytes(first)
}

/// The shard (below `count`) that owns the mirror called `name`; 0 when
/// `count` is 0 or 1.
pub fn owner(name: &str, count: u32) -> u32 {
    let mut best = (0u32, 0u64);
    for s in 0..count {
        let w = weight(name, s);
        if s == 0 || w > best.1 {
            best = (s, w);
        }
    }
    best.0
}

/// The names each of `count` shards owns, in the order given.
pub fn assign<'a>(names: impl IntoIterator<Item = &'a str>, count: u32) -> Vec<Vec<&'a str>> {
    let mut shards = vec![Vec::new(); count.max(1) as usize];
    for name in names {
        shards[owner(name, count) as usize].push(name);
    }
    shards
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("team-{}/app-{i}", i % 37)).collect()
    }

    #[test]
    fn every_mirror_has_exactly_one_owner_for_1_to_16_shards() {
        let names = names(1500);
        for count in 1..=16u32 {
            let shards: Vec<Shard> = (0..count).map(|index| Shard { count, index }).collect();
            // What each replica decides on its own (quadratic in `count`: a sample).
            for n in names.iter().step_by(10) {
                let owners = shards.iter().filter(|s| s.owns(n)).count();
                assert_eq!(owners, 1, "{n} has {owners} owners with {count} shards");
            }
            let split = assign(names.iter().map(String::as_str), count);
            assert_eq!(split.len(), count as usize);
            assert_eq!(split.iter().map(Vec::len).sum::<usize>(), names.len());
            // Balance: each shard's share is binomial; none is 4 standard
            // deviations off its fair share.
            let p = 1.0 / f64::from(count);
            let fair = names.len() as f64 * p;
            let sigma = (names.len() as f64 * p * (1.0 - p)).sqrt();
            for (i, s) in split.iter().enumerate() {
                assert!(
                    (s.len() as f64 - fair).abs() <= 4.0 * sigma,
                    "shard {i} of {count} owns {} of {} mirrors",
                    s.len(),
                    names.len()
                );
            }
        }
    }

    #[test]
    fn adding_a_shard_moves_about_one_in_n_plus_one_mirrors_all_to_the_new_shard() {
        let names = names(1500);
        for count in 1..=15u32 {
            let mut moved = 0usize;
            for n in &names {
                let before = owner(n, count);
                let after = owner(n, count + 1);
                if before != after {
                    moved += 1;
                    assert_eq!(
                        after, count,
                        "{n} moved from {before} to an old shard {after}"
                    );
                }
            }
            let expected = 1.0 / f64::from(count + 1);
            let share = moved as f64 / names.len() as f64;
            assert!(
                (share - expected).abs() < 0.25 * expected + 0.01,
                "{count} -> {} shards moved {share:.3} of the mirrors, expected about {expected:.3}",
                count + 1
            );
        }
    }

    #[test]
    fn adding_or_removing_a_mirror_moves_no_other_mirror() {
        let names = names(300);
        let all = assign(names.iter().map(String::as_str), 5);
        let fewer = assign(names.iter().skip(1).map(String::as_str), 5);
        for (a, f) in all.iter().zip(&fewer) {
            let a: Vec<&&str> = a.iter().filter(|n| **n != names[0]).collect();
            assert_eq!(a, f.iter().collect::<Vec<_>>());
        }
    }

    /// Pinned values, computed independently with Python's hashlib:
    /// `int.from_bytes(sha256(len(n).to_bytes(8,'big') + n + s.to_bytes(4,'big')).digest()[:8], 'big')`.
    /// A change here re-assigns mirrors in running fleets: it must not happen by accident.
    #[test]
    fn weights_are_stable_across_runs_and_platforms() {
        assert_eq!(weight("nginx", 0), 0x1527_55d1_30b0_2260);
        assert_eq!(weight("nginx", 1), 0x3c72_ebec_310f_e487);
        assert_eq!(weight("library/alpine", 2), 0xeebc_1377_e97f_5b5f);
        let owners: Vec<u32> = (1..=8).map(|n| owner("nginx", n)).collect();
        assert_eq!(owners, [0, 1, 2, 3, 4, 4, 4, 4]);
        for (name, shard) in [
            ("nginx", 2),
            ("library/alpine", 0),
            ("mirror/redis", 2),
            ("team/app", 0),
        ] {
            assert_eq!(owner(name, 3), shard, "{name}");
        }
    }

    #[test]
    fn ordinals_come_from_statefulset_pod_names() {
        assert_eq!(ordinal_of("regmirror-0"), Some(0));
        assert_eq!(ordinal_of("my-release-regmirror-12"), Some(12));
        assert_eq!(ordinal_of("regmirror"), None);
        assert_eq!(ordinal_of("regmirror-7d9f8c6b5-x2k4z"), None);
        assert_eq!(ordinal_of("regmirror-01"), None);
        assert_eq!(ordinal_of("regmirror-"), None);
        assert_eq!(ordinal_of("regmirror-99999999999"), None);
    }

    #[test]
    fn resolution_order_flag_env_config_pod_index_pod_name_job_index() {
        let three = ShardFlags {
            count: Some(3),
            index: None,
        };
        let all = [
            (ENV_INDEX, "1"),
            (ENV_POD_INDEX, "2"),
            (ENV_POD_NAME, "regmirror-0"),
            (ENV_HOSTNAME, "host-1"),
            (ENV_JOB_INDEX, "2"),
        ];
        let config = ShardConfig {
            count: Some(3),
            index: Some(0),
        };
        let r = |flags: &ShardFlags, config: &ShardConfig, env: &[(&str, &str)]| {
            resolve(flags, config, &env_of(env)).map(|r| (r.shard.index, r.index_from))
        };
        let with_flag = ShardFlags {
            count: Some(3),
            index: Some(2),
        };
        assert_eq!(
            r(&with_flag, &config, &all),
            Ok((2, Source::Flag("--shard-index")))
        );
        assert_eq!(r(&three, &config, &all), Ok((1, Source::Env(ENV_INDEX))));
        assert_eq!(r(&three, &config, &all[1..]), Ok((0, Source::Config)));
        let none = ShardConfig::default();
        assert_eq!(
            r(&three, &none, &all[1..]),
            Ok((2, Source::Env(ENV_POD_INDEX)))
        );
        assert_eq!(
            r(&three, &none, &all[2..]),
            Ok((0, Source::Env(ENV_POD_NAME)))
        );
        assert_eq!(
            r(&three, &none, &all[3..]),
            Ok((1, Source::Env(ENV_HOSTNAME)))
        );
        assert_eq!(
            r(&three, &none, &all[4..]),
            Ok((2, Source::Env(ENV_JOB_INDEX)))
        );
        // An empty pod-index label (older clusters) falls through to the name.
        assert_eq!(
            r(
                &three,
                &none,
                &[(ENV_POD_INDEX, ""), (ENV_HOSTNAME, "regmirror-2")]
            ),
            Ok((2, Source::Env(ENV_HOSTNAME)))
        );
        // A host name without an ordinal falls through to the Job index.
        assert_eq!(
            r(
                &three,
                &none,
                &[(ENV_HOSTNAME, "laptop"), (ENV_JOB_INDEX, "1")]
            ),
            Ok((1, Source::Env(ENV_JOB_INDEX)))
        );
    }

    #[test]
    fn count_order_and_single_shard_default() {
        let env = env_of(&[(ENV_COUNT, "4"), (ENV_HOSTNAME, "regmirror-3")]);
        let config = ShardConfig {
            count: Some(2),
            index: None,
        };
        let flags = ShardFlags {
            count: Some(5),
            index: None,
        };
        assert_eq!(resolve(&flags, &config, &env).unwrap().shard.count, 5);
        let r = resolve(&ShardFlags::default(), &config, &env).unwrap();
        assert_eq!(
            (r.shard, r.count_from),
            (Shard { count: 4, index: 3 }, Source::Env(ENV_COUNT))
        );
        let r = resolve(
            &ShardFlags::default(),
            &config,
            &env_of(&[(ENV_HOSTNAME, "x-1")]),
        )
        .unwrap();
        assert_eq!(
            (r.shard, r.count_from),
            (Shard { count: 2, index: 1 }, Source::Config)
        );
        // One shard: no index needed, whatever the host name says.
        let r = resolve(
            &ShardFlags::default(),
            &ShardConfig::default(),
            &env_of(&[(ENV_HOSTNAME, "regmirror-7")]),
        )
        .unwrap();
        assert_eq!(r.shard, Shard::SINGLE);
        assert!(Shard::SINGLE.owns("anything"));
    }

    #[test]
    fn shard_table_of_the_config_is_validated() {
        use crate::sync::Config;
        let parse = |t: &str| Config::parse(std::path::Path::new("c.toml"), t);
        let c = parse("[shard]\ncount = 3\nindex = 2\n").unwrap();
        assert_eq!(
            c.shard,
            ShardConfig {
                count: Some(3),
                index: Some(2)
            }
        );
        assert_eq!(parse("").unwrap().shard, ShardConfig::default());
        let e = parse("[shard]\ncount = 0\n").unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(2), Some("shard.count")),
            "{e}"
        );
        let e = parse("[shard]\ncount = 2\nindex = 2\n").unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(3), Some("shard.index")),
            "{e}"
        );
        assert!(e.message.contains("0 to 1"), "{e}");
        let e = parse("[shard]\ncount = 2\nreplicas = 2\n").unwrap_err();
        assert!(e.message.contains("replicas"), "{e}");
        let e = parse("[shard]\ncount = -1\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("shard.count"), "{e}");
    }

    #[test]
    fn errors_say_what_and_where() {
        let none = ShardConfig::default();
        let flags = |count, index| ShardFlags { count, index };
        let e = resolve(&flags(Some(3), None), &none, &env_of(&[])).unwrap_err();
        assert!(
            matches!(e, ShardError::MissingIndex { count: 3, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("--shard-index"), "{e}");
        let e = resolve(&flags(Some(3), Some(3)), &none, &env_of(&[])).unwrap_err();
        assert!(
            matches!(
                e,
                ShardError::OutOfRange {
                    index: 3,
                    count: 3,
                    ..
                }
            ),
            "{e}"
        );
        let e = resolve(
            &flags(None, None),
            &none,
            &env_of(&[(ENV_HOSTNAME, "regmirror-4"), (ENV_COUNT, "3")]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("HOSTNAME"), "{e}");
        let e = resolve(&flags(Some(0), None), &none, &env_of(&[])).unwrap_err();
        assert!(
            matches!(e, ShardError::Invalid { what: "count", .. }),
            "{e}"
        );
        for bad in ["-1", "two", "1.5", "99999999999", "0x2"] {
            let e = resolve(&flags(None, None), &none, &env_of(&[(ENV_COUNT, bad)])).unwrap_err();
            assert!(e.to_string().contains(ENV_COUNT), "{bad}: {e}");
            let e =
                resolve(&flags(Some(2), None), &none, &env_of(&[(ENV_INDEX, bad)])).unwrap_err();
            assert!(e.to_string().contains(ENV_INDEX), "{bad}: {e}");
        }
        let e = resolve(&flags(Some(MAX_SHARDS + 1), Some(0)), &none, &env_of(&[])).unwrap_err();
        assert!(matches!(e, ShardError::Invalid { .. }), "{e}");
    }
}
