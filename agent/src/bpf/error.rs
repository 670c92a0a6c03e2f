//! Errors of the observers' userspace API.

/// Errors of the userspace API.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    /// The BPF object is not loaded (see [`super::Observers::status`]).
    #[error("eBPF observers are not loaded: {reason}")]
    NotLoaded {
        /// Why loading failed.
        reason: String,
    },
    /// Plugin ids are `1..MAX_PLUGINS`.
    #[error("plugin id {id} is outside 1..{max}")]
    PluginId {
        /// The id given.
        id: u32,
        /// The exclusive upper bound.
        max: u32,
    },
    /// Every plugin id is taken.
    #[error("no free plugin id for {name}: {max} plugins already have one")]
    NoFreeId {
        /// The plugin.
        name: String,
        /// How many ids exist.
        max: u32,
    },
    /// BPF_ENABLE_STATS failed.
    #[error("cannot enable BPF run-time statistics: {reason}")]
    Stats {
        /// Why.
        reason: String,
    },
    /// A map operation failed.
    #[error("bpf map {map}: {source}")]
    Map {
        /// The map.
        map: &'static str,
        /// What aya reported.
        #[source]
        source: aya::maps::MapError,
    },
}
