//! Restart policy for failing plugins: `never`, or `on-failure[:N[/PERIOD]]`
//! (at most `N` restarts within `PERIOD`, with exponential backoff; one more
//! failure within the period quarantines the plugin).

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// What the host does when a plugin fails (trap, panic, timeout, out of
/// memory, stack overflow). Stops and normal ends are never restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartPolicy {
    /// A failed plugin stays dead (the default).
    #[default]
    Never,
    /// Restart a failed plugin, at most `max_restarts` times within any
    /// `period`; the next failure within the period quarantines it (it is
    /// not restarted again, [`ExitReason::Quarantined`](super::ExitReason::Quarantined)).
    OnFailure {
        /// Restarts allowed within `period`.
        max_restarts: u32,
        /// The sliding window failures are counted in.
        period: Duration,
    },
}

/// Default `N` of `on-failure`.
pub const DEFAULT_MAX_RESTARTS: u32 = 3;
/// Default `PERIOD` of `on-failure`.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(60);
/// Delay before the first restart; doubled for each further restart within
/// the period, up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(10);
/// Longest delay before a restart.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestartPolicy::Never => f.write_str("never"),
            RestartPolicy::OnFailure {
                max_restarts,
                period,
            } => write!(f, "on-failure:{max_restarts}/{period:?}"),
        }
    }
}

/// A malformed restart policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsePolicyError(pub String);

impl fmt::Display for ParsePolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParsePolicyError {}

/// Parses a duration such as `60s`, `500ms`, `2m`, `1h`, `100us` (a bare
/// number is seconds).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, ParsePolicyError> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| ParsePolicyError(format!("bad duration `{s}` (e.g. `60s`, `500ms`)")))?;
    Ok(match unit {
        "us" => Duration::from_micros(n),
        "ms" => Duration::from_millis(n),
        "s" | "" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => {
            return Err(ParsePolicyError(format!(
                "bad duration unit in `{s}` (use us, ms, s, m or h)"
            )));
        }
    })
}

impl FromStr for RestartPolicy {
    type Err = ParsePolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let usage = || {
            ParsePolicyError(format!(
                "bad restart policy `{s}`: expected `never` or `on-failure[:N[/PERIOD]]`, \
                 e.g. `on-failure:3/60s`"
            ))
        };
        if s == "never" {
            return Ok(RestartPolicy::Never);
        }
        let rest = s.strip_prefix("on-failure").ok_or_else(usage)?;
        let (max_restarts, period) = match rest {
            "" => (DEFAULT_MAX_RESTARTS, DEFAULT_PERIOD),
            _ => {
                let spec = rest.strip_prefix(':').ok_or_else(usage)?;
                let (n, p) = match spec.split_once('/') {
                    Some((n, p)) => (n, Some(p)),
                    None => (spec, None),
                };
                let n: u32 = n.parse().map_err(|_| usage())?;
                let p = match p {
                    Some(p) => parse_duration(p)?,
                    None => DEFAULT_PERIOD,
                };
                (n, p)
            }
        };
        Ok(RestartPolicy::OnFailure {
            max_restarts,
            period,
        })
    }
}

/// What to do after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Restart after this delay (the `n`th restart within the period).
    Restart(Duration),
    /// Do not restart: the policy is `never`.
    Stay,
    /// Do not restart: too many failures within the period.
    Quarantine {
        /// Failures counted within the period (including this one).
        failures: u32,
    },
}

/// The failure history of one plugin instance name.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    failures: VecDeque<Instant>,
}

impl Tracker {
    /// Records a failure at `now` and decides.
    pub(crate) fn on_failure(&mut self, policy: RestartPolicy, now: Instant) -> Decision {
        let RestartPolicy::OnFailure {
            max_restarts,
            period,
        } = policy
        else {
            return Decision::Stay;
        };
        while self
            .failures
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > period)
        {
            self.failures.pop_front();
        }
        self.failures.push_back(now);
        let n = self.failures.len() as u32;
        if n > max_restarts {
            return Decision::Quarantine { failures: n };
        }
        let backoff = FIRST_BACKOFF
            .checked_mul(1u32 << (n - 1).min(20))
            .unwrap_or(MAX_BACKOFF)
            .min(MAX_BACKOFF);
        Decision::Restart(backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_with_defaults() {
        assert_eq!("never".parse(), Ok(RestartPolicy::Never));
        assert_eq!(
            "on-failure".parse(),
            Ok(RestartPolicy::OnFailure {
                max_restarts: 3,
                period: Duration::from_secs(60)
            })
        );
        assert_eq!(
            "on-failure:5".parse(),
            Ok(RestartPolicy::OnFailure {
                max_restarts: 5,
                period: Duration::from_secs(60)
            })
        );
        assert_eq!(
            "on-failure:3/500ms".parse(),
            Ok(RestartPolicy::OnFailure {
                max_restarts: 3,
                period: Duration::from_millis(500)
            })
        );
        for bad in [
            "",
            "always",
            "on-failure:",
            "on-failure:x",
            "on-failure:3/9q",
            "on-failure3",
        ] {
            let e = bad.parse::<RestartPolicy>().unwrap_err();
            assert!(
                e.0.contains("on-failure") || e.0.contains("duration"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn failures_beyond_the_budget_within_the_period_quarantine() {
        let p = RestartPolicy::OnFailure {
            max_restarts: 2,
            period: Duration::from_secs(60),
        };
        let t0 = Instant::now();
        let mut t = Tracker::default();
        assert_eq!(t.on_failure(p, t0), Decision::Restart(FIRST_BACKOFF));
        assert_eq!(t.on_failure(p, t0), Decision::Restart(FIRST_BACKOFF * 2));
        assert_eq!(t.on_failure(p, t0), Decision::Quarantine { failures: 3 });
    }

    #[test]
    fn failures_older_than_the_period_are_forgotten() {
        let p = RestartPolicy::OnFailure {
            max_restarts: 1,
            period: Duration::from_secs(10),
        };
        let t0 = Instant::now();
        let mut t = Tracker::default();
        assert_eq!(t.on_failure(p, t0), Decision::Restart(FIRST_BACKOFF));
        let later = t0 + Duration::from_secs(11);
        assert_eq!(t.on_failure(p, later), Decision::Restart(FIRST_BACKOFF));
        assert_eq!(t.on_failure(RestartPolicy::Never, later), Decision::Stay);
    }
}
