//! `--shard-count` / `--shard-index` of `sync`, `serve` and `check`, and
//! `check --shards`. The assignment itself lives in `regmirror::sync::shard`.

use regmirror::sync::shard::{self, Resolved, Shard, ShardError, ShardFlags};
use regmirror::sync::{Config, Mirror};

use super::UsageError;

/// Shard flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ShardArgs {
    /// Number of replicas that split the mirrors (default: REGMIRROR_SHARD_COUNT,
    /// then `[shard] count`, then 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(shard::MAX_SHARDS)))]
    pub shard_count: Option<u32>,
    /// This replica's shard, 0 to N-1 (default: REGMIRROR_SHARD_INDEX, `[shard] index`,
    /// the StatefulSet pod ordinal, JOB_COMPLETION_INDEX).
    #[arg(long, value_name = "I")]
    pub shard_index: Option<u32>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl ShardArgs {
    fn flags(&self) -> ShardFlags {
        ShardFlags {
            count: self.shard_count,
            index: self.shard_index,
        }
    }

    /// This replica's shard; errors are usage errors (exit 2).
    pub fn resolve(&self, config: &Config) -> anyhow::Result<Resolved> {
        shard::resolve(&self.flags(), &config.shard, &env).map_err(|e| usage(config, e))
    }

    /// Keep the mirrors this replica owns (all of them with one shard), and
    /// say so in the log.
    pub fn keep_owned(
        &self,
        config: &Config,
        mut mirrors: Vec<Mirror>,
    ) -> anyhow::Result<(Resolved, Vec<Mirror>)> {
        let r = self.resolve(config)?;
        if r.shard.count > 1 {
            let before = mirrors.len();
            mirrors.retain(|m| r.shard.owns(&m.name));
            tracing::info!(
                shard_index = r.shard.index,
                shard_count = r.shard.count,
                index_from = %r.index_from,
                count_from = %r.count_from,
                mirrors = mirrors.len(),
                of = before,
                "sharded: this replica runs only the mirrors its shard owns"
            );
        }
        Ok((r, mirrors))
    }
}

fn usage(config: &Config, e: ShardError) -> anyhow::Error {
    UsageError(format!("shard settings for {}: {e}", config.path.display())).into()
}

/// How many of `config`'s mirrors each of `count` shards owns.
pub fn per_shard(config: &Config, count: u32) -> Vec<usize> {
    shard::assign(config.mirrors.iter().map(|m| m.name.as_str()), count)
        .iter()
        .map(Vec::len)
        .collect()
}

/// `check`'s shard lines: the count and this replica's index (when one can
/// be found), and with `all` the mirrors of every shard and the balance.
pub fn check_lines(args: &ShardArgs, config: &Config, all: bool) -> anyhow::Result<Vec<String>> {
    let (count, count_from) =
        shard::resolve_count(&args.flags(), &config.shard, &env).map_err(|e| usage(config, e))?;
    let resolved = match shard::resolve(&args.flags(), &config.shard, &env) {
        Ok(r) => Some(r),
        // `check` runs nothing: an unknown index is worth a note, not a failure.
        Err(ShardError::MissingIndex { .. }) => None,
        Err(e) => return Err(usage(config, e)),
    };
    let this = resolved.as_ref().map(|r| r.shard);
    let mut out = vec![match &resolved {
        Some(r) if count > 1 => format!(
            "shards: {count} (from {count_from}); this replica is shard {} (index from {})",
            r.shard.index, r.index_from
        ),
        Some(_) => format!("shards: 1 (from {count_from}); one replica runs every mirror"),
        None => format!(
            "shards: {count} (from {count_from}); this replica's index is not set (pass --shard-index to see its own)"
        ),
    }];
    if !all {
        return Ok(out);
    }
    let split = shard::assign(config.mirrors.iter().map(|m| m.name.as_str()), count);
    for (i, names) in split.iter().enumerate() {
        let mine = count > 1
            && this
                == Some(Shard {
                    count,
                    index: i as u32,
                });
        out.push(format!(
            "shard {i}{}: {} mirror{}",
            if mine { " (this replica)" } else { "" },
            names.len(),
            if names.len() == 1 { "" } else { "s" }
        ));
        out.extend(names.iter().map(|n| format!("  {n}")));
    }
    let sizes: Vec<usize> = split.iter().map(Vec::len).collect();
    let total: usize = sizes.iter().sum();
    let mean = total as f64 / f64::from(count);
    let min = sizes.iter().min().copied().unwrap_or(0);
    let max = sizes.iter().max().copied().unwrap_or(0);
    let ratio = if total == 0 { 1.0 } else { max as f64 / mean };
    out.push(format!(
        "balance: {min} to {max} mirrors per shard, {mean:.1} on average; the largest shard has {ratio:.2}x the average"
    ));
    Ok(out)
}
