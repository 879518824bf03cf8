//! The host's TOML configuration file (`callop-host --config callop.toml`):
//! limits and restart policy for every plugin (`[limits]`), with per-instance
//! overrides (`[plugins.<instance-name>]`).
//!
//! ```toml
//! [limits]
//! callback_timeout_ms = 100      # 0: no limit
//! init_timeout_ms = 1000         # 0: no limit
//! max_memory_mib = 256
//! max_sources = 4096
//! max_message_bytes = 1048576
//! max_queued_messages = 4096
//! max_handles = 4096
//! max_batch = 1024
//! restart = "on-failure:3/60s"   # or "never"
//!
//! [plugins.faulty]               # instance name
//! max_memory_mib = 16
//! restart = "never"
//! ```
//!
//! Unknown keys are errors (a typo must not silently keep a default).
//! Command-line flags given explicitly override the file's `[limits]`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::limits::Limits;
use super::restart::RestartPolicy;

/// One table of limit settings (all optional: unset keys keep the value
/// they override).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsTable {
    /// [`Limits::callback_timeout`] in milliseconds; 0 means no limit.
    pub callback_timeout_ms: Option<u64>,
    /// [`Limits::init_timeout`] in milliseconds; 0 means no limit.
    pub init_timeout_ms: Option<u64>,
    /// [`Limits::max_memory_bytes`] in MiB.
    pub max_memory_mib: Option<usize>,
    /// [`Limits::max_sources`].
    pub max_sources: Option<usize>,
    /// [`Limits::max_message_bytes`].
    pub max_message_bytes: Option<usize>,
    /// [`Limits::max_queued_messages`].
    pub max_queued_messages: Option<usize>,
    /// [`Limits::max_handles`].
    pub max_handles: Option<usize>,
    /// [`Limits::max_batch`].
    pub max_batch: Option<usize>,
    /// [`Limits::max_instances`].
    pub max_instances: Option<usize>,
    /// [`Limits::max_tables`].
    pub max_tables: Option<usize>,
    /// Restart policy (`never` or `on-failure[:N[/PERIOD]]`).
    pub restart: Option<String>,
}

impl LimitsTable {
    /// `base` with this table's settings applied.
    pub fn apply(&self, base: &Limits) -> Limits {
        let mut l = base.clone();
        if let Some(ms) = self.callback_timeout_ms {
            l.callback_timeout = (ms > 0).then(|| Duration::from_millis(ms));
        }
        if let Some(ms) = self.init_timeout_ms {
            l.init_timeout = (ms > 0).then(|| Duration::from_millis(ms));
        }
        if let Some(m) = self.max_memory_mib {
            l.max_memory_bytes = m.saturating_mul(1 << 20);
        }
        let set = |dst: &mut usize, v: Option<usize>| {
            if let Some(v) = v {
                *dst = v;
            }
        };
        set(&mut l.max_sources, self.max_sources);
        set(&mut l.max_message_bytes, self.max_message_bytes);
        set(&mut l.max_queued_messages, self.max_queued_messages);
        set(&mut l.max_handles, self.max_handles);
        set(&mut l.max_batch, self.max_batch);
        set(&mut l.max_instances, self.max_instances);
        set(&mut l.max_tables, self.max_tables);
        l
    }

    fn restart_policy(&self, what: &str) -> Result<Option<RestartPolicy>, ConfigError> {
        self.restart
            .as_deref()
            .map(|r| {
                r.parse()
                    .map_err(|e| ConfigError(format!("{what}.restart: {e}")))
            })
            .transpose()
    }
}

/// The limits and restart part of the `--config` file (`[limits]`, `[plugins.NAME]`).
///
/// The same file also holds capabilities (`[plugin.NAME]`, see
/// [`capabilities::ConfigFile`](super::capabilities::ConfigFile)), so unknown top-level tables
/// are left to that reader; unknown keys inside the tables are errors.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ConfigFile {
    /// Settings for every plugin.
    #[serde(default)]
    pub limits: LimitsTable,
    /// Per-instance overrides, by instance name.
    #[serde(default)]
    pub plugins: BTreeMap<String, LimitsTable>,
}

/// A configuration file that could not be read or understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// The resolved configuration: host-wide limits and restart policy, plus
/// per-instance ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Limits of instances without an override.
    pub limits: Limits,
    /// Restart policy of instances without an override.
    pub restart: RestartPolicy,
    /// Per-instance limits and restart policy.
    pub plugins: BTreeMap<String, (Limits, RestartPolicy)>,
}

impl ConfigFile {
    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError(e.to_string()))
    }

    /// Reads and parses a file.
    pub fn read(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read `{}`: {e}", path.display())))?;
        Self::parse(&text).map_err(|e| ConfigError(format!("`{}`: {e}", path.display())))
    }

    /// Applies the file on top of `base` limits and `base_restart`
    /// (per-instance tables apply on top of the file's `[limits]`).
    pub fn resolve(
        &self,
        base: &Limits,
        base_restart: RestartPolicy,
    ) -> Result<Resolved, ConfigError> {
        self.resolve_with(base, base_restart, |_| {}, None)
    }

    /// Like [`resolve`](Self::resolve), with command-line overrides taking
    /// precedence over the file's `[limits]` (but not over its per-instance
    /// tables): `cli` edits the host-wide limits after the file's `[limits]`
    /// were applied, and `cli_restart` (if given) replaces its restart policy.
    pub fn resolve_with(
        &self,
        base: &Limits,
        base_restart: RestartPolicy,
        cli: impl FnOnce(&mut Limits),
        cli_restart: Option<RestartPolicy>,
    ) -> Result<Resolved, ConfigError> {
        let mut limits = self.limits.apply(base);
        cli(&mut limits);
        let restart = match cli_restart {
            Some(r) => r,
            None => self
                .limits
                .restart_policy("limits")?
                .unwrap_or(base_restart),
        };
        let mut plugins = BTreeMap::new();
        for (name, t) in &self.plugins {
            super::policy::check_name(name)
                .map_err(|e| ConfigError(format!("[plugins.{name}]: bad instance name: {e}")))?;
            let r = t
                .restart_policy(&format!("plugins.{name}"))?
                .unwrap_or(restart);
            plugins.insert(name.clone(), (t.apply(&limits), r));
        }
        Ok(Resolved {
            limits,
            restart,
            plugins,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_per_plugin_overrides_resolve() {
        let f = ConfigFile::parse(
            r#"
            [limits]
            callback_timeout_ms = 50
            max_sources = 10
            restart = "on-failure:2/30s"

            [plugins.faulty]
            max_memory_mib = 16
            restart = "never"
            "#,
        )
        .unwrap();
        let r = f.resolve(&Limits::default(), RestartPolicy::Never).unwrap();
        assert_eq!(r.limits.callback_timeout, Some(Duration::from_millis(50)));
        assert_eq!(r.limits.max_sources, 10);
        assert_eq!(r.restart, "on-failure:2/30s".parse().unwrap());
        let (fl, fr) = &r.plugins["faulty"];
        assert_eq!(fl.max_memory_bytes, 16 << 20);
        assert_eq!(fl.max_sources, 10, "inherits [limits]");
        assert_eq!(*fr, RestartPolicy::Never);
    }

    #[test]
    fn typos_and_bad_values_are_errors_naming_the_key() {
        let e = ConfigFile::parse("[limits]\nmax_sorces = 3\n").unwrap_err();
        assert!(e.0.contains("max_sorces"), "{e}");
        let f = ConfigFile::parse("[plugins.x]\nrestart = \"sometimes\"\n").unwrap();
        let e = f
            .resolve(&Limits::default(), RestartPolicy::Never)
            .unwrap_err();
        assert!(e.0.contains("plugins.x.restart"), "{e}");
        let f = ConfigFile::parse("[plugins.\"a b\"]\n").unwrap();
        assert!(f.resolve(&Limits::default(), RestartPolicy::Never).is_err());
    }

    #[test]
    fn zero_callback_timeout_means_unlimited() {
        let f = ConfigFile::parse("[limits]\ncallback_timeout_ms = 0\n").unwrap();
        let r = f.resolve(&Limits::default(), RestartPolicy::Never).unwrap();
        assert_eq!(r.limits.callback_timeout, None);
    }
}
