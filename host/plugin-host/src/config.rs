//! The host's TOML configuration file (`callop-host --config callop.toml`),
//! read in one place by [`ConfigFile`]:
//!
//! * `[limits]` — limits and restart policy of every plugin instance;
//! * `[plugins.NAME]` — one instance (`NAME` as given by `PATH@NAME`, by
//!   default the file stem): the same keys as `[limits]`, overriding them for
//!   this instance, plus its capabilities (deny by default, see
//!   [`capabilities`](super::capabilities)).
//!
//! Keys are kebab-case and named like the `callop-host` flag of the same
//! setting; a value with a unit carries it in the key (`-ms`, `-mib`). The
//! full file, every key with its default (this text is parsed by the tests):
//!
#![doc = concat!("```toml\n", include_str!("config_example.toml"), "```")]
//!
//! | key | flag | meaning |
//! |---|---|---|
//! | `callback-timeout-ms` | `--callback-timeout` | [`Limits::callback_timeout`] in ms; 0: no limit |
//! | `init-timeout-ms` | | [`Limits::init_timeout`] in ms; 0: no limit |
//! | `max-memory-mib` | `--max-memory` | [`Limits::max_memory_bytes`] in MiB |
//! | `max-host-memory-mib` | `--max-host-memory` | [`Limits::max_host_memory_bytes`] in MiB |
//! | `max-sources` | `--max-sources` | [`Limits::max_sources`] |
//! | `max-message-size` | `--max-message-size` | [`Limits::max_message_bytes`] in bytes |
//! | `max-queued-messages` | | [`Limits::max_queued_messages`] |
//! | `max-handles` | | [`Limits::max_handles`] |
//! | `max-batch` | | [`Limits::max_batch`] |
//! | `max-instances` | | [`Limits::max_instances`] |
//! | `max-tables` | | [`Limits::max_tables`] |
//! | `restart` | `--restart` | [`RestartPolicy`]: `never` or `on-failure[:N[/PERIOD]]` |
//! | `allow-net` | `--allow-net` | `[plugins.NAME]` only: network grants |
//! | `dir` | `--dir` | `[plugins.NAME]` only: directory grants |
//! | `fd` | `--fd` | `[plugins.NAME]` only: inherited descriptors, `NAME=N` |
//! | `stdin` | `--stdin` | `[plugins.NAME]` only: the host's stdin |
//! | `allow-signal` | `--allow-signal` | `[plugins.NAME]` only: signals to subscribe to |
//! | `thread` | | `[plugins.NAME]` only: the loop thread (0 to `--threads` − 1) it runs on ([`Host::pin_thread`](crate::Host::pin_thread)) |
//!
//! Every key is optional. Unknown tables and keys are errors naming them (a
//! typo must not silently keep a default); the spellings of earlier versions
//! (`[plugin.NAME]`, snake_case keys such as `callback_timeout_ms`) are
//! errors saying what to write instead. In `callop-host`, flags given
//! explicitly override the file's `[limits]` (not its `[plugins.NAME]`
//! tables), capability flags add to the file's grants, and a
//! `[plugins.NAME]` table naming no loaded instance is an error.
//!
//! The capability values use the flags' syntaxes, parsed by [`grants`]
//! (which `callop-host` uses for the flags too).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{Deserializer, Error as _};

use super::capabilities::Capabilities;
use super::limits::Limits;
use super::restart::RestartPolicy;

pub mod grants;

use grants::{GrantFlag, GrantSpecError};

/// The capability keys of a `[plugins.NAME]` table, as written (each value
/// in the syntax of its flag, see [`grants`]):
///
/// ```toml
/// [plugins.echo]                # instance name
/// allow-net = ["127.0.0.1:7000"]
/// dir = ["./cfg::/cfg:ro"]
/// fd = ["db=3"]
/// stdin = true
/// allow-signal = ["HUP", "USR1"]
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct CapabilitySpec {
    /// `allow-net`: `--allow-net` specs.
    pub allow_net: Vec<String>,
    /// `dir`: `--dir` specs.
    pub dir: Vec<String>,
    /// `fd`: `--fd NAME=N` specs.
    pub fd: Vec<String>,
    /// `stdin`: `--stdin`.
    pub stdin: bool,
    /// `allow-signal`: `--allow-signal` names.
    pub allow_signal: Vec<String>,
}

impl CapabilitySpec {
    /// The keys, as written in the file.
    pub const KEYS: &'static [&'static str] = &["allow-net", "dir", "fd", "stdin", "allow-signal"];

    /// Parses the specs (and takes the inherited descriptors).
    pub fn build(&self) -> Result<Capabilities, GrantSpecError> {
        let mut c = Capabilities::new().stdin(self.stdin);
        for (flag, specs) in [
            (GrantFlag::AllowNet, &self.allow_net),
            (GrantFlag::Dir, &self.dir),
            (GrantFlag::Fd, &self.fd),
            (GrantFlag::AllowSignal, &self.allow_signal),
        ] {
            for s in specs {
                c = flag.add(c, s)?;
            }
        }
        Ok(c)
    }
}

/// The limit keys of a table (all optional: unset keys keep the value they
/// override). Used for `[limits]`, and for the limit half of
/// `[plugins.NAME]` ([`PluginTable::limits`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LimitsTable {
    /// `callback-timeout-ms` (`--callback-timeout`): [`Limits::callback_timeout`]
    /// in milliseconds; 0 means no limit.
    pub callback_timeout_ms: Option<u64>,
    /// `init-timeout-ms`: [`Limits::init_timeout`] in milliseconds; 0 means no limit.
    pub init_timeout_ms: Option<u64>,
    /// `max-memory-mib` (`--max-memory`): [`Limits::max_memory_bytes`] in MiB.
    pub max_memory_mib: Option<usize>,
    /// `max-host-memory-mib` (`--max-host-memory`):
    /// [`Limits::max_host_memory_bytes`] in MiB.
    pub max_host_memory_mib: Option<usize>,
    /// `max-sources` (`--max-sources`): [`Limits::max_sources`].
    pub max_sources: Option<usize>,
    /// `max-message-size` (`--max-message-size`): [`Limits::max_message_bytes`], in bytes.
    pub max_message_size: Option<usize>,
    /// `max-queued-messages`: [`Limits::max_queued_messages`].
    pub max_queued_messages: Option<usize>,
    /// `max-handles`: [`Limits::max_handles`].
    pub max_handles: Option<usize>,
    /// `max-batch`: [`Limits::max_batch`].
    pub max_batch: Option<usize>,
    /// `max-instances`: [`Limits::max_instances`].
    pub max_instances: Option<usize>,
    /// `max-tables`: [`Limits::max_tables`].
    pub max_tables: Option<usize>,
    /// `restart` (`--restart`): the restart policy, `never` or
    /// `on-failure[:N[/PERIOD]]` (checked by [`ConfigFile::resolve`]).
    pub restart: Option<String>,
}

impl LimitsTable {
    /// The keys of the table, as written in the file.
    pub const KEYS: &'static [&'static str] = &[
        "callback-timeout-ms",
        "init-timeout-ms",
        "max-memory-mib",
        "max-host-memory-mib",
        "max-sources",
        "max-message-size",
        "max-queued-messages",
        "max-handles",
        "max-batch",
        "max-instances",
        "max-tables",
        "restart",
    ];

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
        if let Some(m) = self.max_host_memory_mib {
            l.max_host_memory_bytes = m.saturating_mul(1 << 20);
        }
        let set = |dst: &mut usize, v: Option<usize>| {
            if let Some(v) = v {
                *dst = v;
            }
        };
        set(&mut l.max_sources, self.max_sources);
        set(&mut l.max_message_bytes, self.max_message_size);
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
                    .map_err(|e| ConfigError(format!("`{what}` restart: {e}")))
            })
            .transpose()
    }
}

/// One `[plugins.NAME]` table: the [`LimitsTable`] keys (overriding
/// `[limits]` for this instance), the [`CapabilitySpec`] keys and `thread`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginTable {
    /// The limit keys and `restart`.
    pub limits: LimitsTable,
    /// The capability keys (`allow-net`, `dir`, `fd`, `stdin`, `allow-signal`).
    pub capabilities: CapabilitySpec,
    /// `thread`: the loop thread the instance runs on
    /// ([`Host::pin_thread`](crate::Host::pin_thread)).
    pub thread: Option<usize>,
}

impl PluginTable {
    /// The keys of a `[plugins.NAME]` table that are neither limits nor
    /// capabilities.
    pub const PLACEMENT_KEYS: &'static [&'static str] = &["thread"];
}

impl<'de> Deserialize<'de> for PluginTable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // `#[serde(flatten)]` does not combine with `deny_unknown_fields`: the
        // keys are split by hand, and each half denies unknown keys.
        let mut limits = toml::Table::deserialize(d)?;
        let mut caps = toml::Table::new();
        for k in CapabilitySpec::KEYS {
            if let Some(v) = limits.remove(*k) {
                caps.insert(k.to_string(), v);
            }
        }
        let thread = match limits.remove("thread") {
            None => None,
            Some(v) => Some(
                v.as_integer()
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| {
                        let found = v
                            .as_integer()
                            .map_or_else(|| format!("a {}", v.type_str()), |n| n.to_string());
                        D::Error::custom(format!(
                            "`thread`: expected a thread number (0, 1, ...), found {found}"
                        ))
                    })?,
            ),
        };
        Ok(PluginTable {
            thread,
            limits: toml::Value::Table(limits)
                .try_into()
                .map_err(D::Error::custom)?,
            capabilities: toml::Value::Table(caps)
                .try_into()
                .map_err(D::Error::custom)?,
        })
    }
}

/// The `--config` file: `[limits]` and `[plugins.NAME]` (see the
/// [module documentation](self) for every key).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// `[limits]`: settings for every plugin instance.
    #[serde(default)]
    pub limits: LimitsTable,
    /// `[plugins.NAME]`: per-instance overrides and capabilities, by instance name.
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginTable>,
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
    /// Per-instance limits and restart policy, for the `[plugins.NAME]`
    /// tables that set any limit key.
    pub plugins: BTreeMap<String, (Limits, RestartPolicy)>,
}

/// The current key for `key` if it is an old (snake_case) or flag-style
/// spelling of one: `callback_timeout_ms` or `callback-timeout` →
/// `callback-timeout-ms`.
fn new_spelling(key: &str) -> Option<&'static str> {
    let kebab = key.replace('_', "-");
    let kebab = match kebab.as_str() {
        "max-message-bytes" => "max-message-size",
        "callback-timeout" => "callback-timeout-ms",
        "init-timeout" => "init-timeout-ms",
        "max-memory" => "max-memory-mib",
        "max-host-memory" => "max-host-memory-mib",
        k => k,
    };
    LimitsTable::KEYS
        .iter()
        .chain(CapabilitySpec::KEYS)
        .find(|k| **k == kebab)
        .copied()
}

/// Checks the tables and keys of a parsed file against the format, so that
/// unknown and old spellings get an error saying what to write instead
/// (serde's `deny_unknown_fields` only knows the current keys).
fn check_keys(file: &toml::Table) -> Result<(), ConfigError> {
    for (k, v) in file {
        match k.as_str() {
            "limits" => check_table("[limits]", v, false)?,
            "plugins" => {
                for (name, t) in v.as_table().into_iter().flatten() {
                    check_table(&format!("[plugins.{name}]"), t, true)?;
                }
            }
            "plugin" => {
                let name = v
                    .as_table()
                    .and_then(|t| t.keys().next())
                    .map_or("NAME", String::as_str);
                return Err(ConfigError(format!(
                    "`[plugin.{name}]`: did you mean `[plugins.{name}]`?"
                )));
            }
            _ => {
                let what = if v.is_table() {
                    format!("table `[{k}]`")
                } else {
                    format!("key `{k}`")
                };
                return Err(ConfigError(format!(
                    "unknown {what}: expected `[limits]` or `[plugins.NAME]`"
                )));
            }
        }
    }
    Ok(())
}

/// Checks the keys of `[limits]` (`per_instance` false) or of a
/// `[plugins.NAME]` table.
fn check_table(what: &str, table: &toml::Value, per_instance: bool) -> Result<(), ConfigError> {
    // Other types than tables are left to serde's type errors.
    for k in table.as_table().into_iter().flat_map(|t| t.keys()) {
        let is_cap = CapabilitySpec::KEYS.contains(&k.as_str());
        let is_placement = PluginTable::PLACEMENT_KEYS.contains(&k.as_str());
        if LimitsTable::KEYS.contains(&k.as_str()) || (per_instance && (is_cap || is_placement)) {
            continue;
        }
        let msg = if is_placement {
            format!("`{what}`: `{k}` places one instance: put it in `[plugins.NAME]`")
        } else if is_cap {
            format!(
                "`{what}`: `{k}` is a capability, granted per instance: put it in `[plugins.NAME]`"
            )
        } else if let Some(new) = new_spelling(k) {
            format!("`{what}`: unknown key `{k}`: did you mean `{new}`?")
        } else {
            let caps: &[&str] = if per_instance {
                CapabilitySpec::KEYS
            } else {
                &[]
            };
            let placement: &[&str] = if per_instance {
                PluginTable::PLACEMENT_KEYS
            } else {
                &[]
            };
            let expected: Vec<String> = LimitsTable::KEYS
                .iter()
                .chain(caps)
                .chain(placement)
                .map(|k| format!("`{k}`"))
                .collect();
            format!(
                "`{what}`: unknown key `{k}` (expected one of {})",
                expected.join(", ")
            )
        };
        return Err(ConfigError(msg));
    }
    Ok(())
}

impl ConfigFile {
    /// Parses TOML text. Unknown tables and keys are errors naming them.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let raw: toml::Table = toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        check_keys(&raw)?;
        toml::from_str(text).map_err(|e| ConfigError(e.to_string()))
    }

    /// Reads and parses a file.
    pub fn read(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read `{}`: {e}", path.display())))?;
        Self::parse(&text).map_err(|e| ConfigError(format!("`{}`: {e}", path.display())))
    }

    /// Checks that every `[plugins.NAME]` table names one of `instances`
    /// (a table for an instance that is not loaded is most likely a typo).
    pub fn check_instances(&self, instances: &[String]) -> Result<(), ConfigError> {
        match self.plugins.keys().find(|n| !instances.contains(n)) {
            None => Ok(()),
            Some(name) => Err(ConfigError(format!(
                "`[plugins.{name}]`: no plugin instance named `{name}` (loaded: {})",
                instances.join(", ")
            ))),
        }
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
                .restart_policy("[limits]")?
                .unwrap_or(base_restart),
        };
        let mut plugins = BTreeMap::new();
        for (name, t) in &self.plugins {
            super::policy::check_name(name)
                .map_err(|e| ConfigError(format!("`[plugins.{name}]`: bad instance name: {e}")))?;
            let r = t
                .limits
                .restart_policy(&format!("[plugins.{name}]"))?
                .unwrap_or(restart);
            if t.limits != LimitsTable::default() {
                plugins.insert(name.clone(), (t.limits.apply(&limits), r));
            }
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

    const EXAMPLE: &str = include_str!("config_example.toml");

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn full_example_parses_to_the_expected_values() {
        let f = ConfigFile::parse(EXAMPLE).unwrap();
        assert_eq!(
            f.limits,
            LimitsTable {
                callback_timeout_ms: Some(100),
                init_timeout_ms: Some(1000),
                max_memory_mib: Some(256),
                max_host_memory_mib: Some(64),
                max_sources: Some(4096),
                max_message_size: Some(1 << 20),
                max_queued_messages: Some(4096),
                max_handles: Some(4096),
                max_batch: Some(1024),
                max_instances: Some(64),
                max_tables: Some(64),
                restart: Some("on-failure:3/60s".into()),
            }
        );
        // The example documents the defaults.
        assert_eq!(f.limits.apply(&Limits::default()), Limits::default());
        let echo = &f.plugins["echo"];
        assert_eq!(
            echo.limits,
            LimitsTable {
                max_memory_mib: Some(16),
                restart: Some("never".into()),
                ..LimitsTable::default()
            }
        );
        assert_eq!(
            echo.capabilities,
            CapabilitySpec {
                allow_net: strings(&["127.0.0.1:7000"]),
                dir: strings(&["./cfg::/cfg:ro"]),
                fd: strings(&["db=3"]),
                stdin: true,
                allow_signal: strings(&["HUP", "USR1"]),
            }
        );
        // Every key of the format is in the example.
        for k in LimitsTable::KEYS.iter().chain(CapabilitySpec::KEYS) {
            assert!(EXAMPLE.contains(&format!("\n{k} = ")), "{k}");
        }

        let r = f.resolve(&Limits::default(), RestartPolicy::Never).unwrap();
        assert_eq!(r.restart, "on-failure:3/60s".parse().unwrap());
        let (el, er) = &r.plugins["echo"];
        assert_eq!(el.max_memory_bytes, 16 << 20);
        assert_eq!(el.max_sources, 4096, "inherits [limits]");
        assert_eq!(*er, RestartPolicy::Never);
        assert!(f.check_instances(&strings(&["echo", "other"])).is_ok());
        let e = f.check_instances(&strings(&["ticker"])).unwrap_err();
        assert!(e.0.contains("no plugin instance named `echo`"), "{e}");
    }

    #[test]
    fn every_key_is_known_to_its_struct() {
        // `KEYS` drives the key check and the split of `[plugins.NAME]`: a
        // key missing from the structs would be an unknown-field error.
        for k in LimitsTable::KEYS.iter().chain(CapabilitySpec::KEYS) {
            let e = ConfigFile::parse(&format!("[plugins.x]\n{k} = {{}}\n")).unwrap_err();
            assert!(!e.0.contains("unknown"), "{k}: {e}");
            assert!(e.0.contains("invalid type"), "{k}: {e}");
        }
    }

    #[test]
    fn thread_places_one_instance_and_is_checked() {
        let f = ConfigFile::parse("[plugins.a]\nthread = 1\nmax-sources = 9\n").unwrap();
        assert_eq!(f.plugins["a"].thread, Some(1));
        assert_eq!(f.plugins["a"].limits.max_sources, Some(9));
        // Placement alone sets no per-instance limits.
        let f = ConfigFile::parse("[plugins.a]\nthread = 0\n").unwrap();
        let r = f.resolve(&Limits::default(), RestartPolicy::Never).unwrap();
        assert!(r.plugins.is_empty());
        for bad in ["-1", "\"one\"", "1.5"] {
            let e = ConfigFile::parse(&format!("[plugins.a]\nthread = {bad}\n")).unwrap_err();
            assert!(e.0.contains("thread number"), "{bad}: {e}");
        }
        let e = ConfigFile::parse("[limits]\nthread = 1\n").unwrap_err();
        assert!(e.0.contains("put it in `[plugins.NAME]`"), "{e}");
    }

    #[test]
    fn capability_keys_build_capabilities() {
        let f = ConfigFile::parse(
            "[plugins.echo]\nallow-net = [\"bind:127.0.0.1:7000\"]\ndir = [\"/tmp::/t:ro\"]\n\
             stdin = true\nallow-signal = [\"HUP,usr1\"]\n",
        )
        .unwrap();
        let t = &f.plugins["echo"];
        assert_eq!(t.limits, LimitsTable::default());
        let caps = t.capabilities.build().unwrap();
        assert!(caps.check_bind("127.0.0.1:7000".parse().unwrap()).is_ok());
        assert!(
            caps.check_connect("127.0.0.1:7000".parse().unwrap())
                .is_err()
        );
        assert_eq!(caps.dir_grants().len(), 1);
        assert!(caps.dir_grants()[0].is_read_only());
        assert!(caps.grants_stdin());
        assert_eq!(
            caps.signals(),
            &[
                callop::signals::Signal::SIGHUP,
                callop::signals::Signal::SIGUSR1
            ]
        );
        // A table with capabilities only sets no per-instance limits.
        let r = f.resolve(&Limits::default(), RestartPolicy::Never).unwrap();
        assert!(r.plugins.is_empty());
        let f = ConfigFile::parse("[plugins.x]\nallow-net = [\"1.2.3:80\"]\n").unwrap();
        assert_eq!(
            f.plugins["x"].capabilities.build().unwrap_err().to_string(),
            "--allow-net `1.2.3:80`: bad address `1.2.3`"
        );
    }

    #[test]
    fn unknown_tables_and_keys_are_errors_naming_them() {
        let e = ConfigFile::parse("[limit]\nmax-sources = 3\n").unwrap_err();
        assert!(e.0.contains("unknown table `[limit]`"), "{e}");
        let e = ConfigFile::parse("[limits]\nmax-sorces = 3\n").unwrap_err();
        assert!(e.0.contains("`[limits]`: unknown key `max-sorces`"), "{e}");
        assert!(
            !e.0.contains("allow-net"),
            "no capabilities in [limits]: {e}"
        );
        let e = ConfigFile::parse("[plugins.x]\nallow-nett = []\n").unwrap_err();
        assert!(
            e.0.contains("`[plugins.x]`: unknown key `allow-nett`"),
            "{e}"
        );
        assert!(e.0.contains("`allow-net`"), "lists the keys: {e}");
        let e = ConfigFile::parse("[limits]\nallow-net = []\n").unwrap_err();
        assert!(e.0.contains("put it in `[plugins.NAME]`"), "{e}");
        let e = ConfigFile::parse("top = 1\n").unwrap_err();
        assert!(e.0.contains("unknown key `top`"), "{e}");
    }

    #[test]
    fn old_spellings_say_what_to_write() {
        let e = ConfigFile::parse("[plugin.echo]\nallow-net = []\n").unwrap_err();
        assert_eq!(e.0, "`[plugin.echo]`: did you mean `[plugins.echo]`?");
        for (old, new) in [
            ("callback_timeout_ms", "callback-timeout-ms"),
            ("max_memory_mib", "max-memory-mib"),
            ("max_message_bytes", "max-message-size"),
            ("max_queued_messages", "max-queued-messages"),
            ("allow_net", "allow-net"),
            ("callback-timeout", "callback-timeout-ms"),
        ] {
            let e = ConfigFile::parse(&format!("[plugins.x]\n{old} = 1\n")).unwrap_err();
            assert!(
                e.0.contains(&format!("unknown key `{old}`: did you mean `{new}`?")),
                "{e}"
            );
        }
        let e = ConfigFile::parse("[limits]\nmax_sources = 1\n").unwrap_err();
        assert!(e.0.contains("did you mean `max-sources`?"), "{e}");
    }

    #[test]
    fn bad_values_are_errors_naming_the_key() {
        let e = ConfigFile::parse("[limits]\nmax-sources = \"many\"\n").unwrap_err();
        assert!(e.0.contains("max-sources"), "{e}");
        let f = ConfigFile::parse("[plugins.x]\nrestart = \"sometimes\"\n").unwrap();
        let e = f
            .resolve(&Limits::default(), RestartPolicy::Never)
            .unwrap_err();
        assert!(e.0.contains("`[plugins.x]` restart"), "{e}");
        let f = ConfigFile::parse("[plugins.\"a b\"]\n").unwrap();
        assert!(f.resolve(&Limits::default(), RestartPolicy::Never).is_err());
    }

    #[test]
    fn zero_callback_timeout_means_unlimited() {
        let f = ConfigFile::parse("[limits]\ncallback-timeout-ms = 0\n").unwrap();
        let r = f.resolve(&Limits::default(), RestartPolicy::Never).unwrap();
        assert_eq!(r.limits.callback_timeout, None);
    }

    #[test]
    fn flags_override_limits_but_not_instance_tables() {
        let f = ConfigFile::parse(
            "[limits]\nmax-sources = 10\nrestart = \"never\"\n[plugins.x]\nmax-sources = 20\n",
        )
        .unwrap();
        let r = f
            .resolve_with(
                &Limits::default(),
                RestartPolicy::Never,
                |l| l.max_sources = 30,
                Some("on-failure".parse().unwrap()),
            )
            .unwrap();
        assert_eq!(r.limits.max_sources, 30);
        assert_eq!(r.restart, "on-failure".parse().unwrap());
        assert_eq!(r.plugins["x"].0.max_sources, 20);
        assert_eq!(r.plugins["x"].1, r.restart);
    }
}
