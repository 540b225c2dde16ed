//! A mirror's prune settings (`prune`, `max_prune`); what a prune run does
//! with them is in [`crate::sync::prune`].

/// `max_prune` unless the mirror sets it: routine upstream clean-ups (a few
/// tags between two runs) go through; a mass disappearance does not.
pub const DEFAULT_MAX_PRUNE: usize = 10;

/// `prune` of a mirror.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PruneMode {
    /// Never delete anything (the default).
    #[default]
    Off,
    /// Delete target tags the source no longer lists.
    NotInSource,
}

impl PruneMode {
    /// Parse the config value.
    pub fn parse(text: &str) -> Result<PruneMode, String> {
        match text {
            "off" => Ok(PruneMode::Off),
            "not-in-source" => Ok(PruneMode::NotInSource),
            other => Err(format!(
                "unknown prune mode {other:?}: expected \"off\" or \"not-in-source\""
            )),
        }
    }
}

/// A mirror's prune settings.
#[derive(Debug, Clone)]
pub struct Prune {
    /// What to prune.
    pub mode: PruneMode,
    /// Most tags deleted in one run.
    pub max: usize,
}

impl Default for Prune {
    fn default() -> Self {
        Prune {
            mode: PruneMode::Off,
            max: DEFAULT_MAX_PRUNE,
        }
    }
}
