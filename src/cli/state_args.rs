//! `--state-dir` and `--no-state`: where the run-state store lives (see
//! `regmirror::sync::state`), for `sync`, `serve` and `import`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use regmirror::sync::state::StateStore;

/// The directory under a config file's directory that holds its store
/// unless `state_dir` or `--state-dir` says otherwise.
pub const BESIDE_CONFIG: &str = ".regmirror-state";

/// Where runs remember what they learnt.
#[derive(Debug, Clone, clap::Args)]
pub struct StateArgs {
    /// Directory of the run-state store: blob locations for mounts across
    /// runs, immutable tags mirrored, first sightings for min_age. Default:
    /// the config's state_dir, else .regmirror-state beside the config file;
    /// for import, $XDG_CACHE_HOME/regmirror (or ~/.cache/regmirror).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Remember nothing across runs: no run-state store is read or written
    /// (every tag is checked, mounts only within the run, min_age holds
    /// nothing); wins over --state-dir and state_dir.
    #[arg(long, env = "REGMIRROR_NO_STATE", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_state: bool,
}

impl StateArgs {
    /// The store of a config-driven command (`sync`, `serve`).
    pub fn open_for_config(
        &self,
        config_path: &Path,
        state_dir: Option<&Path>,
    ) -> Option<Arc<StateStore>> {
        if self.no_state {
            return None;
        }
        let dir = self
            .state_dir
            .clone()
            .or_else(|| state_dir.map(Path::to_path_buf))
            .unwrap_or_else(|| {
                config_path
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."))
                    .join(BESIDE_CONFIG)
            });
        StateStore::open(&dir)
    }

    /// The store of a one-shot `import`: the user's cache directory.
    pub fn open_for_import(&self) -> Option<Arc<StateStore>> {
        if self.no_state {
            return None;
        }
        let dir = self.state_dir.clone().or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
            Some(cache.join("regmirror"))
        });
        match dir {
            Some(dir) => StateStore::open(&dir),
            None => {
                tracing::warn!(
                    "no cache directory (neither XDG_CACHE_HOME nor HOME is set); this import remembers nothing: pass --state-dir DIR to keep blob locations for later imports"
                );
                None
            }
        }
    }
}
