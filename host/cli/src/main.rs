//! `callop-host`: run callop wasm plugins in an event loop.
//!
//! A thin command line over [`callop_plugin_host::Host`]; see `--help`. Which crate to pick:
//! this binary to run plugins from the shell; `callop-plugin-host` to host plugins inside your
//! own application; `callop` for the event loop alone.

// The clap doc comments below are `--help` text, where `[:ro]` and the like
// mean "optional", not rustdoc links.
#![allow(rustdoc::broken_intra_doc_links)]

mod new;
mod reload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use callop::EventLoop;
use callop::signals::Signal;
use callop_plugin_host::config::ConfigFile;
use callop_plugin_host::config::grants::GrantFlag;
use callop_plugin_host::metrics::MetricsServer;
use callop_plugin_host::{
    Capabilities, EngineOptions, ExitReason, Host, Limits, PluginComponent, PluginEngine,
    PluginExit, PluginId, PluginSpec, Policy, RestartPolicy, RunEnd, SignalShutdown, cache,
    exit_status,
};

/// Every line this binary prints on stderr goes through the host's bounded
/// stderr queue, as the log and the plugins' stderr do
/// ([`callop_plugin_host::output`]): in order with them, and never waiting
/// for a reader that does not read (`main` flushes it, bounded, at the end).
macro_rules! eprintln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(callop_plugin_host::output::stderr(), $($arg)*);
    }};
}

// After the macro: these modules print through it too.
mod summary;
mod top;

const EXAMPLES: &str = "\
PLUGIN syntax:
  PATH[@NAME][=ARG,ARG,...]
    PATH   the plugin component (.wasm, built for wasm32-wasip2)
    NAME   instance name (default: the file stem, e.g. `ticker`); other plugins
           and the host address its endpoints as NAME/<channel>
    ARG    arguments passed to the plugin's init, comma-separated
  Arguments after `--` are appended to the arguments of every plugin.

Examples:
  callop-host ticker.wasm -- --every 10ms --count 3
  callop-host ticker.wasm=--every,1s ticker.wasm@fast=--every,100ms,--count,20
  callop-host ping_pong.wasm@ping=--role,ping,--count,1000 ping_pong.wasm@pong=--role,pong
  callop-host --callback-timeout 100 --forever idle_worker.wasm
  callop-host --restart on-failure:3/60s --max-memory 64 flaky.wasm
  callop-host --watch relay.wasm                  # reload it when the file changes (also: kill -HUP)
  callop-host compile ticker.wasm relay.wasm      # fill the compile cache
  callop-host inspect ticker.wasm                 # world, imports, exports
  callop-host new my-plugin --dir ~/src           # a plugin crate to start from (--python, --js)
  callop-host cache list                          # the compile cache's entries
  callop-host --metrics 127.0.0.1:9464 ticker.wasm -- --every 1s   # Prometheus metrics
  callop-host top 127.0.0.1:9464                  # what each plugin costs, live

Capabilities (deny by default, per plugin; NAME= may be omitted with one plugin):
  --allow-net echo=127.0.0.1:7000   --allow-net 10.0.0.0/8:80-89   --allow-net connect:[::1]:*
  --dir ./cfg::/config:ro   --fd db=3   --stdin[=NAME]   --allow-signal HUP,USR1   --config callop.toml
  callop-host echo_server.wasm --allow-net 127.0.0.1:7000 -- --listen 127.0.0.1:7000
  seq 10 | callop-host line_counter.wasm --stdin

Config file (--config callop.toml; keys named like the flags, all optional):
  [limits]                          # every plugin
  callback-timeout-ms = 100         # also init-timeout-ms, max-memory-mib, max-sources,
  restart = \"on-failure:3/60s\"      # max-message-size, max-queued-messages, max-handles, ...
  [plugins.echo]                    # the instance `echo`: any [limits] key, and capabilities
  max-memory-mib = 16
  allow-net = [\"127.0.0.1:7000\"]    # also dir, fd, stdin, allow-signal

Runs until no plugin has a live source (or, with --forever, until SIGINT/SIGTERM).
On SIGINT/SIGTERM every plugin's `shutdown` is called and the host waits up to
--shutdown-timeout for them to finish (a guest still running at that deadline,
spinning or blocked, is interrupted); a second signal exits at once.
A plugin that fails (trap, panic, callback timeout, blocked in a host call, out
of memory, stack overflow, or an `init` that errs, traps or times out) is
unloaded with all its sources; the others keep running. With
--restart on-failure[:N[/PERIOD]] it is restarted (backoff 10ms, 20ms, ...)
at most N times within PERIOD (default 3/60s), then quarantined. Each failure
is reported on stderr with the plugin's name, the cause and the wasm backtrace.
Exit status: 0 if every plugin finished (or shut down in time); the first
non-zero `stop` code of a plugin (modulo 256, a non-zero code never gives 0);
1 if a plugin failed; 2 if a plugin could not be loaded (its file,
instantiation or first `init` failed; the others still run); 130 (SIGINT) or
143 (SIGTERM) after a second signal or when a plugin was killed at the
shutdown deadline.
Logs go to stderr, filtered by RUST_LOG (default `info`); plugin stdout/stderr
lines are prefixed with `[NAME] `. Output never holds the host up: lines that
stdout/stderr cannot take fast enough are dropped and counted on stderr; a
plugin's log lines are rate-limited and guest text is cut at 4 KiB.";

/// Run sandboxed callop wasm plugins in a calloop-style event loop.
#[derive(Parser, Debug)]
#[command(name = "callop-host", version, after_help = EXAMPLES, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)] // parsed once
enum Command {
    /// Run plugins (the default when no subcommand is given).
    Run(RunArgs),
    /// Precompile plugins into the cache (used automatically by `run`).
    Compile {
        #[command(flatten)]
        cache: CacheArgs,
        /// Plugin components to compile.
        #[arg(required = true)]
        plugins: Vec<PathBuf>,
    },
    /// Print a component's world, imports and exports.
    Inspect {
        /// The component.
        plugin: PathBuf,
    },
    /// Write a plugin skeleton, DIR/NAME, that builds outside this repository.
    New(new::NewArgs),
    /// List or clear the compile cache.
    Cache {
        #[command(subcommand)]
        action: CacheAction,
    },
    /// Show what each plugin of a running host costs, refreshed: reads its `--metrics` endpoint.
    Top(top::TopArgs),
}

#[derive(Subcommand, Debug)]
enum CacheAction {
    /// List the entries (least recently used first): key, size, last use, and the total.
    List(CacheDirArg),
    /// Remove every entry.
    Clear(CacheDirArg),
}

#[derive(Args, Debug, Clone, Default)]
struct CacheDirArg {
    /// Directory of precompiled components [default: $XDG_CACHE_HOME/callop or ~/.cache/callop].
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
}

#[derive(Args, Debug, Clone, Default)]
struct CacheArgs {
    /// Directory of precompiled components [default: $XDG_CACHE_HOME/callop or ~/.cache/callop].
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Do not read or write the compile cache.
    #[arg(long, conflicts_with = "cache_dir")]
    no_cache: bool,
    /// Size cap of the compile cache, in MiB: past it the least recently used entries are removed [default: 512].
    #[arg(long, value_name = "MIB")]
    cache_max_size: Option<u64>,
}

impl CacheArgs {
    fn dir(&self) -> Option<PathBuf> {
        if self.no_cache {
            None
        } else {
            self.cache_dir.clone().or_else(cache::default_cache_dir)
        }
    }

    /// The engine options for this cache.
    fn engine_options(&self) -> EngineOptions {
        EngineOptions {
            cache_dir: self.dir(),
            cache_max_size: self.cache_max_size.map(|m| m.saturating_mul(1 << 20)),
            ..Default::default()
        }
    }
}

#[derive(Args, Debug, Clone, Default)]
struct RunArgs {
    /// Plugins to run: PATH[@NAME][=ARG,ARG,...] (see below).
    #[arg(value_name = "PLUGIN")]
    plugins: Vec<String>,
    /// Arguments appended to every plugin's arguments.
    #[arg(last = true, value_name = "ARGS")]
    args: Vec<String>,
    /// Keep running when no plugin has a live source (until a signal).
    #[arg(long)]
    forever: bool,
    /// Reload a plugin when its file changes (polled every 200 ms; acted on once the file stayed
    /// the same for one more poll). SIGHUP reloads every plugin (unless a plugin was granted SIGHUP).
    #[arg(long)]
    watch: bool,
    /// Milliseconds plugins get to finish after SIGINT/SIGTERM.
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    shutdown_timeout: u64,
    /// Loop threads to spread the plugins over, one event loop each (a plugin lives on one; `thread = K` in its `[plugins.NAME]` table pins it, else it goes to the thread with the fewest plugins).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: u16,
    /// Fail a plugin whose single callback spends more CPU time than this (milliseconds; 0: no limit) [default: 100].
    #[arg(long, value_name = "MS")]
    callback_timeout: Option<u64>,
    /// Maximum linear memory per plugin, in MiB [default: 256].
    #[arg(long, value_name = "MIB")]
    max_memory: Option<usize>,
    /// Maximum host memory held for one plugin (messages it sent that are not delivered yet), in MiB [default: 64].
    #[arg(long, value_name = "MIB")]
    max_host_memory: Option<usize>,
    /// Maximum number of live sources (timers, idles, pings, channels) per plugin [default: 4096].
    #[arg(long, value_name = "N")]
    max_sources: Option<usize>,
    /// Maximum size of one channel message, in bytes [default: 1048576].
    #[arg(long, value_name = "BYTES")]
    max_message_size: Option<usize>,
    /// What to do when a plugin fails: `never` or `on-failure[:N[/PERIOD]]` (e.g. `on-failure:3/60s`) [default: never].
    #[arg(long, value_name = "POLICY")]
    restart: Option<RestartPolicy>,
    /// TOML file: `[limits]` (every plugin) and `[plugins.NAME]` (one instance: limits and
    /// capabilities), keys named like the flags (`callback-timeout-ms`, `max-memory-mib`,
    /// `restart`, `allow-net`, ...); flags given explicitly override its `[limits]` and add grants.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Forbid plugins to talk to each other (they can still use their own sources).
    #[arg(long)]
    isolate: bool,
    /// Allow binding/connecting: [NAME=][bind:|connect:]ADDR[/LEN][:PORTS] (comma-separated).
    #[arg(long = "allow-net", value_name = "[NAME=]SPEC")]
    allow_net: Vec<String>,
    /// Grant a directory: [NAME=]HOST[::GUEST][:ro].
    #[arg(long = "dir", value_name = "[NAME=]HOST[::GUEST][:ro]")]
    dirs: Vec<String>,
    /// Grant the inherited descriptor N as NAME: [PLUGIN=]NAME=N.
    #[arg(long = "fd", value_name = "[PLUGIN=]NAME=N")]
    fds: Vec<String>,
    /// Grant the host's stdin (to the only plugin, or with `--stdin=NAME` to NAME).
    // `require_equals`: `--stdin plugin.wasm` must not take the plugin as NAME.
    #[arg(
        long,
        value_name = "NAME",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = ""
    )]
    stdin: Vec<String>,
    /// Allow subscribing to signals: [NAME=]HUP,USR1,...
    #[arg(long = "allow-signal", value_name = "[NAME=]SIGNALS")]
    allow_signal: Vec<String>,
    /// Serve per-plugin metrics over HTTP (Prometheus text format, GET /metrics) at ADDR, e.g.
    /// 127.0.0.1:9464 (port 0: a free one); the bound address is printed on stderr. Off by default.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    /// Print a table of what each plugin cost (calls, events, CPU, host time, faults) on stderr at exit.
    #[arg(long)]
    stats_on_exit: bool,
    #[command(flatten)]
    cache: CacheArgs,
}

/// A parsed PLUGIN argument.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PluginArg {
    path: PathBuf,
    name: String,
    args: Vec<String>,
}

fn parse_plugin_arg(s: &str) -> Result<PluginArg, String> {
    let (left, args) = match s.split_once('=') {
        Some((l, a)) => (
            l,
            a.split(',')
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect(),
        ),
        None => (s, Vec::new()),
    };
    let (path, name) = match left.rsplit_once('@') {
        Some((p, n)) if !n.contains('/') => (p, Some(n.to_string())),
        _ => (left, None),
    };
    if path.is_empty() {
        return Err(format!("`{s}`: missing plugin path"));
    }
    let path = PathBuf::from(path);
    let name = match name {
        Some(n) => n,
        None => path
            .file_stem()
            .map(|x| x.to_string_lossy().into_owned())
            .ok_or_else(|| format!("`{s}`: cannot derive an instance name; use PATH@NAME"))?,
    };
    Ok(PluginArg { path, name, args })
}

/// Splits `NAME=REST` if NAME is one of `names`; otherwise the value
/// belongs to the only plugin.
fn target_of<'a>(
    flag: &str,
    value: &'a str,
    names: &[String],
) -> Result<(String, &'a str), String> {
    if let Some((n, rest)) = value.split_once('=')
        && names.iter().any(|x| x == n)
    {
        return Ok((n.to_string(), rest));
    }
    match names {
        [only] => Ok((only.clone(), value)),
        _ => Err(format!(
            "{flag} {value}: several plugins are loaded; prefix the value with the instance name (NAME=...)"
        )),
    }
}

/// Builds every plugin's capabilities from the config file and the flags.
fn capabilities(
    run: &RunArgs,
    file: &ConfigFile,
    names: &[String],
) -> Result<Vec<(String, Capabilities)>, String> {
    let mut caps: Vec<(String, Capabilities)> = names
        .iter()
        .map(|n| (n.clone(), Capabilities::new()))
        .collect();
    let mut add = |name: &str, c: Capabilities| {
        if let Some(slot) = caps.iter_mut().find(|(n, _)| n == name) {
            let old = std::mem::take(&mut slot.1);
            slot.1 = old.merge(c);
        }
    };
    for (name, t) in &file.plugins {
        let c = t
            .capabilities
            .build()
            .map_err(|e| format!("--config: `[plugins.{name}]`: {e}"))?;
        add(name, c);
    }
    let grant = |flag: GrantFlag, spec: &str| {
        flag.add(Capabilities::new(), spec)
            .map_err(|e| e.to_string())
    };
    for v in &run.allow_net {
        let (n, spec) = target_of("--allow-net", v, names)?;
        add(&n, grant(GrantFlag::AllowNet, spec)?);
    }
    for v in &run.dirs {
        let (n, spec) = target_of("--dir", v, names)?;
        add(&n, grant(GrantFlag::Dir, spec)?);
    }
    for v in &run.fds {
        // `db=3` is NAME=N for the only plugin; `echo=db=3` names the plugin.
        let (n, spec) = match v.split_once('=') {
            Some((p, rest)) if rest.contains('=') && names.iter().any(|x| x == p) => {
                (p.to_string(), rest)
            }
            _ => target_of("--fd", "", names).map(|(n, _)| (n, v.as_str()))?,
        };
        add(&n, grant(GrantFlag::Fd, spec)?);
    }
    for v in &run.stdin {
        let n = if v.is_empty() {
            target_of("--stdin", "", names)?.0
        } else if names.contains(v) {
            v.clone()
        } else {
            return Err(format!("--stdin {v}: no plugin instance named `{v}`"));
        };
        add(&n, Capabilities::new().stdin(true));
    }
    for v in &run.allow_signal {
        let (n, spec) = target_of("--allow-signal", v, names)?;
        add(&n, grant(GrantFlag::AllowSignal, spec)?);
    }
    Ok(caps)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Module paths (`callop_plugin_host::host::lifecycle:`) only when
    // RUST_LOG asks for debug or trace output: short lines by default.
    let targets = std::env::var("RUST_LOG").is_ok_and(|v| {
        let v = v.to_ascii_lowercase();
        v.contains("debug") || v.contains("trace")
    });
    // Colours only on a terminal, and never with NO_COLOR set (no-color.org).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Through the host's bounded stderr queue: never waits for a reader.
        .with_writer(callop_plugin_host::output::stderr)
        .with_ansi(ansi)
        .with_target(targets)
        .init();

    let code = match cli.command {
        Some(Command::Run(run)) => cmd_run(run),
        Some(Command::Compile { cache, plugins }) => cmd_compile(cache, plugins),
        Some(Command::Inspect { plugin }) => cmd_inspect(plugin),
        Some(Command::New(args)) => cmd_new(args),
        Some(Command::Cache { action }) => cmd_cache(action),
        Some(Command::Top(args)) => top::run(&args),
        None if cli.run.plugins.is_empty() => {
            eprintln!("error: no plugin given (see `callop-host --help`)");
            ExitCode::from(2)
        }
        None => cmd_run(cli.run),
    };
    // What the plugins, the log and this binary queued: at most 500 ms more.
    callop_plugin_host::output::flush(Duration::from_millis(500));
    code
}

fn cmd_compile(cache: CacheArgs, plugins: Vec<PathBuf>) -> ExitCode {
    let Some(dir) = cache.dir() else {
        eprintln!("error: compile needs a cache directory (drop --no-cache or set --cache-dir)");
        return ExitCode::from(2);
    };
    let engine = match PluginEngine::new(&EngineOptions {
        cache_dir: Some(dir),
        ..cache.engine_options()
    }) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut status = ExitCode::SUCCESS;
    for p in plugins {
        let r = engine
            .read_file(&p)
            .and_then(|bytes| engine.precompile_to_cache(&bytes));
        match r {
            Ok(out) => println!("{} -> {}", p.display(), out.display()),
            Err(e) => {
                eprintln!("error: {}: {e}", p.display());
                status = ExitCode::from(2);
            }
        }
    }
    status
}

fn cmd_new(args: new::NewArgs) -> ExitCode {
    match new::create(&args) {
        Ok((root, files)) => {
            println!("created {}", root.display());
            for f in files {
                println!("  {}", f.display());
            }
            println!("build and run: see {}", root.join("README.md").display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// `cache list` and `cache clear`.
fn cmd_cache(action: CacheAction) -> ExitCode {
    let (CacheAction::List(d) | CacheAction::Clear(d)) = &action;
    let Some(dir) = d.cache_dir.clone().or_else(cache::default_cache_dir) else {
        eprintln!("error: no cache directory (set --cache-dir, XDG_CACHE_HOME or HOME)");
        return ExitCode::from(2);
    };
    let c = cache::CompileCache::new(&dir);
    match action {
        CacheAction::List(_) => {
            let entries = c.entries();
            println!("cache: {}", dir.display());
            if !entries.is_empty() {
                println!("{:<16}  {:>10}  last use", "entry", "size");
            }
            let now = std::time::SystemTime::now();
            for e in &entries {
                let ago = now.duration_since(e.last_used).unwrap_or_default();
                println!(
                    "{:<16}  {:>10}  {}",
                    &e.key[..16],
                    mib(e.size),
                    ago_text(ago)
                );
            }
            let total: u64 = entries.iter().map(|e| e.size).sum();
            println!("total: {} entries, {}", entries.len(), mib(total));
            ExitCode::SUCCESS
        }
        CacheAction::Clear(_) => match c.clear() {
            Ok((n, bytes)) => {
                println!(
                    "removed {n} entries ({}) from {}",
                    mib(bytes),
                    dir.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: clearing {}: {e}", dir.display());
                ExitCode::from(1)
            }
        },
    }
}

/// `bytes` in MiB, one decimal.
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

/// `d` as "5 s ago", "3 min ago", "2 h ago", "4 days ago".
fn ago_text(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..120 => format!("{s} s ago"),
        120..7200 => format!("{} min ago", s / 60),
        7200..172_800 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

fn cmd_inspect(plugin: PathBuf) -> ExitCode {
    let engine = match PluginEngine::new(&EngineOptions::default()) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let component = engine.read_file(&plugin).and_then(|b| engine.compile(&b));
    let component = match component {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {}: {e}", plugin.display());
            return ExitCode::from(2);
        }
    };
    let info = engine.inspect(&component);
    println!("component: {}", plugin.display());
    println!(
        "world: {}",
        info.world
            .as_deref()
            .unwrap_or("(unknown: no callop:plugin/guest export)")
    );
    println!("imports:");
    for (n, d) in &info.imports {
        println!("  {n}: {d}");
    }
    println!("exports:");
    for (n, d) in &info.exports {
        println!("  {n}: {d}");
    }
    if info.problems.is_empty() {
        println!(
            "loadable: yes (this host supports {} {})",
            callop_plugin_host::PACKAGE,
            callop_plugin_host::SUPPORTED_VERSIONS.join(", ")
        );
        ExitCode::SUCCESS
    } else {
        println!("loadable: no");
        for p in &info.problems {
            println!("  - {p}");
        }
        ExitCode::from(1)
    }
}

/// `run`: an error message ends the run with status 2 (`None`: already
/// reported).
fn cmd_run(run: RunArgs) -> ExitCode {
    match run_plugins(&run) {
        Ok(code) => code,
        Err(msg) => {
            if let Some(m) = msg {
                eprintln!("error: {m}");
            }
            ExitCode::from(2)
        }
    }
}

/// Parses, builds the configuration, loads the plugins, runs them until
/// they end or a signal shuts them down, and reports their exits.
fn run_plugins(run: &RunArgs) -> Result<ExitCode, Option<String>> {
    let specs = plugin_args(run)?;
    let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    // The --config file, read once: limits, restart policies, capabilities.
    let file = match &run.config {
        Some(p) => ConfigFile::read(p).and_then(|f| f.check_instances(&names).map(|()| f)),
        None => Ok(ConfigFile::default()),
    }
    .map_err(|e| format!("--config: {e}"))?;
    let caps = capabilities(run, &file, &names)?;

    // The loop and the signal source come first: the signals are blocked in
    // this thread before any other thread (compiler pool, epoch ticker)
    // exists, so those threads inherit the mask and never get them.
    let mut event_loop: EventLoop<'static, ()> =
        EventLoop::try_new().map_err(|e| format!("cannot create the event loop: {e}"))?;
    let granted: Vec<Signal> = caps
        .iter()
        .flat_map(|(_, c)| c.signals().iter().copied())
        .collect();
    let grace = Duration::from_millis(run.shutdown_timeout);
    // SIGHUP reloads every plugin, unless a plugin was granted it (it is
    // then that plugin's signal).
    let hup_reloads = !granted.contains(&Signal::SIGHUP);
    let mut watched = granted.clone();
    if hup_reloads {
        watched.push(Signal::SIGHUP);
    }
    let mut signals = SignalShutdown::new(&event_loop.handle(), grace, &watched)
        .map_err(|e| format!("cannot watch signals: {e}"))?
        .forever(run.forever)
        // A loop stuck where no alarm reaches it still ends: the process
        // exits a second after the shutdown deadline or the second signal.
        .exit_if_stuck(Some(Duration::from_secs(1)))
        // Ctrl-C while compiling (a first run of a big plugin takes many
        // seconds) or starting the plugins: exit at once, 130/143.
        .exit_before_run(true);

    let host = build_host(run, &file, &event_loop)?;
    let _metrics = match &run.metrics {
        Some(addr) => Some(serve_metrics(&host, addr)?),
        None => None,
    };
    let started = std::time::Instant::now();
    signals.attach(&host);
    for (name, c) in caps {
        host.grant(&name, c);
    }
    let (ids, not_started) = load_plugins(&host, &specs)?;
    if !hup_reloads {
        tracing::info!("SIGHUP is granted to a plugin: it does not reload plugins");
    }
    let entries = ids
        .iter()
        .zip(&specs)
        .map(|(id, s)| (*id, s.name.clone(), s.path.clone()))
        .collect();
    let reloader = reload::Reloader::new(
        &event_loop.handle(),
        host.engine().clone(),
        entries,
        run.watch,
        hup_reloads,
    )?;
    signals = signals.on_pending(reloader.hook());

    // Every plugin failed to start and none will be restarted: end now
    // (even with --forever).
    let end = if not_started.len() == specs.len() && host.is_empty() {
        RunEnd::Finished
    } else {
        signals
            .run(&mut event_loop, &host, &mut ())
            .map_err(|e| format!("event loop: {e}"))?
    };
    let exits = host.exits();
    let stats = run.stats_on_exit.then(|| host.stats());
    drop(host);
    report(&exits);
    if let Some(s) = stats {
        eprintln!("{}", summary::table(&s, started.elapsed()).trim_end());
    }
    let status = signals
        .signal_status(end, &exits)
        .unwrap_or_else(|| plugin_status(&exits, &not_started));
    Ok(ExitCode::from(status))
}

/// How often the loop hands a snapshot of its figures to the metrics server.
const METRICS_PERIOD: Duration = Duration::from_millis(250);

/// `--metrics ADDR`: binds the metrics endpoint (saying where on stderr)
/// and publishes the host's figures to it every [`METRICS_PERIOD`].
fn serve_metrics(host: &Host<'_, ()>, addr: &str) -> Result<MetricsServer, String> {
    let server = MetricsServer::bind(addr).map_err(|e| format!("--metrics {addr}: {e}"))?;
    eprintln!("metrics: http://{}/metrics", server.local_addr());
    let publisher = server.publisher();
    host.publish_stats(METRICS_PERIOD, move |s| publisher.publish(s))
        .map_err(|e| format!("--metrics: {e}"))?;
    Ok(server)
}

/// The PLUGIN arguments, with the arguments after `--` appended.
fn plugin_args(run: &RunArgs) -> Result<Vec<PluginArg>, String> {
    let mut specs = Vec::new();
    for s in &run.plugins {
        let mut p = parse_plugin_arg(s)?;
        p.args.extend(run.args.iter().cloned());
        specs.push(p);
    }
    if specs.is_empty() {
        return Err("no plugin given (see `callop-host --help`)".into());
    }
    Ok(specs)
}

/// The host on `event_loop`, with the limits and restart policies of the
/// config file and the flags.
fn build_host<'l>(
    run: &RunArgs,
    file: &ConfigFile,
    event_loop: &EventLoop<'l, ()>,
) -> Result<Host<'l, ()>, String> {
    let resolved = file
        .resolve_with(
            &Limits::default(),
            RestartPolicy::Never,
            |l| {
                if let Some(m) = run.max_memory {
                    l.max_memory_bytes = m.saturating_mul(1 << 20);
                }
                if let Some(m) = run.max_host_memory {
                    l.max_host_memory_bytes = m.saturating_mul(1 << 20);
                }
                if let Some(n) = run.max_sources {
                    l.max_sources = n;
                }
                if let Some(n) = run.max_message_size {
                    l.max_message_bytes = n;
                }
                if let Some(ms) = run.callback_timeout {
                    l.callback_timeout = (ms > 0).then(|| Duration::from_millis(ms));
                }
            },
            run.restart,
        )
        .map_err(|e| format!("--config: {e}"))?;
    let policy = Policy {
        allow_plugin_to_plugin: !run.isolate,
        ..Policy::default()
    };
    let engine = PluginEngine::new(&run.cache.engine_options()).map_err(|e| e.to_string())?;
    let host = Host::with_engine(event_loop.handle(), engine, policy, resolved.limits)
        .map_err(|e| e.to_string())?;
    host.set_restart_policy(None, resolved.restart);
    for (name, (l, r)) in resolved.plugins {
        host.set_limits(&name, l);
        host.set_restart_policy(Some(&name), r);
    }
    host.start_threads(usize::from(run.threads))
        .map_err(|e| format!("--threads {}: {e}", run.threads))?;
    for (name, t) in &file.plugins {
        if let Some(k) = t.thread {
            host.pin_thread(name, k)
                .map_err(|e| format!("--config: `[plugins.{name}]` thread = {k}: {e}"))?;
        }
    }
    Ok(host)
}

/// Compiles and starts every plugin; returns their ids and the plugins that
/// failed to start (their `init` or instantiation): each failure is that
/// plugin's alone, reported as its exit, and restarted per its restart
/// policy.
#[allow(clippy::type_complexity)]
fn load_plugins(
    host: &Host<'_, ()>,
    specs: &[PluginArg],
) -> Result<(Vec<PluginId>, Vec<PluginId>), String> {
    let mut components: Vec<PluginComponent> = Vec::new();
    let engine = host.engine();
    for s in specs {
        let bytes = engine
            .read_file(&s.path)
            .map_err(|e| format!("{}: {e}", s.path.display()))?;
        // A compile takes a while (seconds, up to half a minute for a
        // Python or JS plugin on a loaded machine): say so before.
        if !engine.is_cached(&bytes) {
            match engine.cache() {
                Some(_) => tracing::info!("compiling {} (first run, cached afterwards)", s.name),
                None => tracing::info!("compiling {} (--no-cache: every run compiles)", s.name),
            }
        }
        let c = engine
            .load_bytes_named(&bytes, s.path.display().to_string())
            .map_err(|e| format!("{}: {e}", s.path.display()))?;
        components.push(c);
    }
    let plugin_specs: Vec<PluginSpec<'_>> = specs
        .iter()
        .zip(&components)
        .map(|(s, c)| PluginSpec {
            component: c,
            name: &s.name,
            args: &s.args,
        })
        .collect();
    let ids = host
        .load_many_supervised(&plugin_specs)
        .map_err(|(name, e)| format!("plugin `{name}`: {e}"))?;
    // Only `init` has run yet: every failure so far is a failed start
    // (a quarantine at once adds a second exit of the same plugin).
    let mut failed: Vec<PluginId> = host
        .exits()
        .iter()
        .filter(|e| e.reason.is_failure())
        .map(|e| e.id)
        .collect();
    failed.dedup();
    Ok((ids, failed))
}

/// Prints the failures.
fn report(exits: &[PluginExit]) {
    for e in exits.iter().filter(|e| e.reason.is_failure()) {
        match (&e.fault, &e.reason) {
            (Some(f), _) => eprintln!(
                "error: plugin `{}` failed (run {}): {f}",
                e.name,
                e.restarts + 1
            ),
            (None, r) => eprintln!("error: plugin `{}` {r}", e.name),
        }
    }
}

/// The exit status the plugins' exits give: the first non-zero
/// [`exit_status`], except that the failed first start of a plugin in
/// `not_started` is 2.
fn plugin_status(exits: &[PluginExit], not_started: &[PluginId]) -> u8 {
    exits
        .iter()
        .map(|e| match &e.reason {
            ExitReason::Trapped(_) if e.restarts == 0 && not_started.contains(&e.id) => 2,
            r => exit_status(r),
        })
        .find(|c| *c != 0)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_arg_syntax() {
        let p = parse_plugin_arg("dir/ticker.wasm").unwrap();
        assert_eq!(
            p,
            PluginArg {
                path: "dir/ticker.wasm".into(),
                name: "ticker".into(),
                args: vec![]
            }
        );
        let p = parse_plugin_arg("ping_pong.wasm@pong=--role,pong").unwrap();
        assert_eq!(p.name, "pong");
        assert_eq!(p.args, vec!["--role", "pong"]);
        let p = parse_plugin_arg("a@b/c.wasm").unwrap();
        assert_eq!(p.path, PathBuf::from("a@b/c.wasm"));
        assert_eq!(p.name, "c");
        assert!(parse_plugin_arg("@x").is_err());
        let p = parse_plugin_arg("t.wasm=").unwrap();
        assert!(p.args.is_empty());
    }

    #[test]
    fn cli_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let c = Cli::try_parse_from([
            "callop-host",
            "a.wasm",
            "b.wasm@x=1,2",
            "--",
            "--count",
            "3",
        ])
        .unwrap();
        assert_eq!(c.run.plugins, vec!["a.wasm", "b.wasm@x=1,2"]);
        assert_eq!(c.run.args, vec!["--count", "3"]);
        // `--stdin` never takes the plugin path as its value.
        let c = Cli::try_parse_from(["callop-host", "--stdin", "a.wasm"]).unwrap();
        assert_eq!(c.run.plugins, vec!["a.wasm"]);
        assert_eq!(c.run.stdin, vec![""]);
        let c = Cli::try_parse_from(["callop-host", "--stdin=x", "a.wasm@x"]).unwrap();
        assert_eq!(c.run.stdin, vec!["x"]);
        assert_eq!(c.run.plugins, vec!["a.wasm@x"]);
        let c = Cli::try_parse_from(["callop-host", "cache", "list", "--cache-dir", "d"]).unwrap();
        assert!(matches!(
            c.command,
            Some(Command::Cache {
                action: CacheAction::List(_)
            })
        ));
        let c = Cli::try_parse_from(["callop-host", "inspect", "a.wasm"]).unwrap();
        assert!(matches!(c.command, Some(Command::Inspect { .. })));
    }
}
