//! The mirror config file (placeholder: the full loader replaces this).

use std::path::{Path, PathBuf};

use crate::registry::RegistryConfig;

/// A loaded, validated config.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// `[[registry]]` tables.
    pub registries: Vec<RegistryConfig>,
    /// Docker config.json to read credentials from.
    pub docker_config: Option<PathBuf>,
}

/// An invalid config.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl Config {
    /// Load and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Err(ConfigError(format!("{}: config loading is not implemented yet", path.display())))
    }
}
