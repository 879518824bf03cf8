//! Naming rules and per-plugin permissions.
//!
//! The policy decides which names are valid (instance names, channel and ping
//! names, targets such as `pong/in` or `@app/out`) and what a plugin is
//! allowed to do beyond its own sources. Everything here is pure and cheap so
//! it can be checked on every host import call.

use std::fmt;

/// Maximum length, in bytes, of an instance name or a local channel/ping name.
pub const MAX_NAME_LEN: usize = 64;

/// The prefix of the embedding application's endpoints (`@app/<name>`).
pub const APP_PREFIX: &str = "@app";

/// Permissions of the plugins of one host.
///
/// The default allows everything the `callop:plugin@0.3.0` world offers:
/// talking to other plugins, to the application and forwarding stdout/stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Whether plugins may connect to other plugins' channels and pings.
    pub allow_plugin_to_plugin: bool,
    /// Whether plugins may send to the application's `@app/...` endpoints.
    pub allow_app_messages: bool,
    /// Whether a plugin's stdout (e.g. `println!`) is forwarded to the log.
    pub forward_stdout: bool,
    /// Whether a plugin's stderr (e.g. `eprintln!`, panics) is forwarded.
    pub forward_stderr: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            allow_plugin_to_plugin: true,
            allow_app_messages: true,
            forward_stdout: true,
            forward_stderr: true,
        }
    }
}

/// Why a name or target was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameError(pub String);

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NameError {}

/// A guest-provided name or target as shown in an error: escaped, and cut
/// to 128 bytes (a target can be as long as the guest likes).
fn shown(s: &str) -> String {
    crate::truncate::truncated(s, 128)
        .escape_debug()
        .to_string()
}

/// Checks a plain name: `[A-Za-z0-9_.-]+`, at most [`MAX_NAME_LEN`] bytes.
///
/// Used for instance names and for local channel/ping names.
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError("name is empty".into()));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError(format!(
            "name `{}...` is longer than {MAX_NAME_LEN} bytes",
            &name[..name.char_indices().nth(16).map_or(name.len(), |(i, _)| i)]
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(NameError(format!(
            "name `{}` contains {c:?}; allowed are A-Z a-z 0-9 _ . -",
            shown(name)
        )));
    }
    Ok(())
}

/// Who owns the endpoint a target names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Owner {
    /// A plugin instance, by instance name.
    Plugin(String),
    /// The embedding application (`@app/...`).
    App,
}

/// A parsed, validated target such as `pong/in`, `in` or `@app/out`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// Owner of the endpoint.
    pub owner: Owner,
    /// Local name of the endpoint inside its owner.
    pub local: String,
}

impl Target {
    /// The fully qualified name (`owner/local`), the key used by the registry.
    pub fn full_name(&self) -> String {
        match &self.owner {
            Owner::Plugin(p) => format!("{p}/{}", self.local),
            Owner::App => format!("{APP_PREFIX}/{}", self.local),
        }
    }
}

/// Parses `target` as seen by plugin instance `me`.
///
/// `name` means `me/name`; `inst/name` names another instance's endpoint;
/// `@app/name` the application's.
pub(crate) fn parse_target(me: &str, target: &str) -> Result<Target, NameError> {
    match target.split_once('/') {
        None => {
            check_name(target)?;
            Ok(Target {
                owner: Owner::Plugin(me.to_string()),
                local: target.to_string(),
            })
        }
        Some((owner, local)) => {
            check_name(local)
                .map_err(|e| NameError(format!("in target `{}`: {e}", shown(target))))?;
            if owner == APP_PREFIX {
                Ok(Target {
                    owner: Owner::App,
                    local: local.to_string(),
                })
            } else {
                check_name(owner)
                    .map_err(|e| NameError(format!("in target `{}`: {e}", shown(target))))?;
                Ok(Target {
                    owner: Owner::Plugin(owner.to_string()),
                    local: local.to_string(),
                })
            }
        }
    }
}

impl Policy {
    /// Whether plugin `me` may address `target` at all.
    pub(crate) fn may_address(&self, me: &str, target: &Target) -> bool {
        match &target.owner {
            Owner::App => self.allow_app_messages,
            Owner::Plugin(p) => p == me || self.allow_plugin_to_plugin,
        }
    }

    /// Why plugin `me` may not address `target` (`what`: "reaching",
    /// "sending to"), naming the setting that forbids it as every refusal
    /// does: `callop-host --isolate` ([`Policy::allow_plugin_to_plugin`]) or
    /// [`Policy::allow_app_messages`].
    pub(crate) fn refusal(&self, what: &str, target: &Target) -> String {
        let why = match &target.owner {
            Owner::App => "the host forbids messages to the application (allow_app_messages)",
            Owner::Plugin(_) => {
                "plugins are isolated from each other (--isolate; allow_plugin_to_plugin)"
            }
        };
        format!("policy forbids {what} `{}`: {why}", target.full_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("pong").is_ok());
        assert!(check_name("a-b_c.9").is_ok());
        assert!(check_name(&"x".repeat(64)).is_ok());
        assert!(
            check_name(&"x".repeat(65))
                .unwrap_err()
                .0
                .contains("longer than 64")
        );
        assert!(check_name("").is_err());
        assert!(check_name("a/b").unwrap_err().0.contains("'/'"));
        assert!(check_name("a b").is_err());
        assert!(check_name("é").is_err());
        assert!(check_name("@app").is_err());
    }

    #[test]
    fn a_huge_target_is_cut_in_its_error() {
        let huge = format!("a/{}", "b".repeat(1 << 20));
        let e = parse_target("me", &huge).unwrap_err();
        assert!(e.0.len() < 512, "{} bytes", e.0.len());
        assert!(e.0.contains("bytes cut"), "{}", e.0);
    }

    #[test]
    fn targets() {
        let t = parse_target("me", "in").unwrap();
        assert_eq!(
            t,
            Target {
                owner: Owner::Plugin("me".into()),
                local: "in".into()
            }
        );
        assert_eq!(t.full_name(), "me/in");
        let t = parse_target("me", "pong/in").unwrap();
        assert_eq!(t.full_name(), "pong/in");
        let t = parse_target("me", "@app/out").unwrap();
        assert_eq!(t.owner, Owner::App);
        assert_eq!(t.full_name(), "@app/out");
        assert!(parse_target("me", "a/b/c").is_err());
        assert!(parse_target("me", "/x").is_err());
        assert!(parse_target("me", "x/").is_err());
        assert!(parse_target("me", "@other/x").is_err());
        assert!(parse_target("me", "").is_err());
    }

    #[test]
    fn permissions() {
        let open = Policy::default();
        let closed = Policy {
            allow_plugin_to_plugin: false,
            allow_app_messages: false,
            ..Policy::default()
        };
        let own = parse_target("me", "in").unwrap();
        let other = parse_target("me", "you/in").unwrap();
        let app = parse_target("me", "@app/out").unwrap();
        assert!(open.may_address("me", &other) && open.may_address("me", &app));
        assert!(closed.may_address("me", &own));
        assert!(!closed.may_address("me", &other));
        assert!(!closed.may_address("me", &app));
        let msg = closed.refusal("sending to", &other);
        assert!(
            msg.contains("--isolate") && msg.contains("`you/in`"),
            "{msg}"
        );
        assert!(
            closed
                .refusal("reaching", &app)
                .contains("allow_app_messages")
        );
    }
}
