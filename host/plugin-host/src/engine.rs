//! The wasmtime engine, the linker, and loading/checking plugin components.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, HasSelf, InstancePre, Linker};
use wasmtime::{Config, Engine, OptLevel};

use super::PACKAGE;
use super::app_api::AppApi;
use super::bindings::Plugin as PluginWorld;
use super::cache::CompileCache;
use super::error::{LoadError, chain};
use super::pooling::Allocator;
use super::state::PluginState;
use super::ticker::Ticker;
use super::versions::{self, GuestExports};

/// How the engine is built.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// Directory of the precompiled-component cache; `None` disables it.
    pub cache_dir: Option<PathBuf>,
    /// The size cap of the compile cache, in bytes: past it the least
    /// recently used entries are removed (`None`:
    /// [`DEFAULT_MAX_SIZE`](crate::cache::DEFAULT_MAX_SIZE), 512 MiB;
    /// `Some(u64::MAX)`: no cap).
    pub cache_max_size: Option<u64>,
    /// Use wasmtime's pooling instance allocator, sized for this many
    /// concurrent plugin instances (`None`: on-demand allocation).
    pub pooling_instances: Option<u32>,
    /// Maximum linear memory per instance, for the pooling allocator's
    /// reservations (bytes; `None`: the default limit, see [`super::Limits`]).
    pub pooling_max_memory: Option<usize>,
    /// The largest component file [`PluginEngine::load_file`] reads (bytes; `None`:
    /// [`DEFAULT_MAX_COMPONENT_SIZE`](crate::component_file::DEFAULT_MAX_COMPONENT_SIZE)).
    pub max_component_size: Option<u64>,
    /// The application's own interfaces, linked for the plugins granted
    /// them (see [`crate::app_api`]; default: none).
    pub app_api: AppApi,
}

/// A configured wasmtime engine plus the linker providing the
/// `callop:plugin/host-loop` and WASI p2 imports. Cheap to clone.
#[derive(Clone)]
pub struct PluginEngine {
    inner: Arc<EngineInner>,
}

impl std::fmt::Debug for PluginEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginEngine").finish_non_exhaustive()
    }
}

struct EngineInner {
    engine: Engine,
    linker: Linker<PluginState>,
    /// The application interfaces linked into `linker`.
    app_api: AppApi,
    cache: Option<CompileCache>,
    allocator: Allocator,
    /// The cap on component files (bytes).
    max_component_size: u64,
    /// The epoch ticker, while some host holds it (see [`PluginEngine::ticker`]).
    ticker: Mutex<Weak<Ticker>>,
}

/// A plugin component that passed the load-time checks and is ready to be
/// instantiated (any number of times) by a [`super::Host`] using the same
/// engine.
#[derive(Clone)]
pub struct PluginComponent {
    pub(crate) pre: InstancePre<PluginState>,
    /// Its guest exports, of the version of `callop:plugin` it was built for.
    pub(crate) exports: GuestExports,
    /// Where it came from (a path or `<bytes>`), for messages.
    pub(crate) origin: String,
    /// The application interfaces it imports (see [`crate::app_api`]).
    pub(crate) app_imports: Arc<[String]>,
}

impl fmt::Debug for PluginComponent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginComponent")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl PluginComponent {
    /// Where the component was loaded from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The version of `callop:plugin` the component was built for (one of
    /// [`SUPPORTED_VERSIONS`](crate::SUPPORTED_VERSIONS)).
    pub fn version(&self) -> &'static str {
        self.exports.version
    }

    /// Whether the component exports the optional `state` interface
    /// (`snapshot`/`restore`, carried over a reload).
    pub fn has_state(&self) -> bool {
        self.exports.has_state()
    }

    /// The application interfaces ([`AppApi`]) it imports, as it names
    /// them: an instance of it must be granted each of them
    /// ([`Capabilities::allow_app_interface`](crate::Capabilities::allow_app_interface)).
    pub fn app_interfaces(&self) -> &[String] {
        &self.app_imports
    }
}

/// What kind of binary some bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinaryKind {
    Component,
    CoreModule,
    Precompiled,
}

/// Classifies `bytes` by their header, with a helpful error for non-wasm.
pub(crate) fn classify(bytes: &[u8]) -> Result<BinaryKind, LoadError> {
    if bytes.starts_with(b"\x7fELF") {
        return Ok(BinaryKind::Precompiled);
    }
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        let detail = if bytes.is_empty() {
            "the file is empty".to_string()
        } else if bytes
            .iter()
            .take(64)
            .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace())
        {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(24)]).into_owned();
            format!(
                "it looks like text (`{}`...); only binary components are accepted",
                text.escape_debug()
            )
        } else {
            let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
            format!("missing `\\0asm` magic (starts with {})", head.join(" "))
        };
        return Err(LoadError::NotWasm { detail });
    }
    match (bytes[4], bytes[5], bytes[6], bytes[7]) {
        (1, 0, 0, 0) => Ok(BinaryKind::CoreModule),
        (_, _, 1, 0) => Ok(BinaryKind::Component),
        (a, b, c, d) => Err(LoadError::NotWasm {
            detail: format!("unknown wasm version/layer {a:02x} {b:02x} {c:02x} {d:02x}"),
        }),
    }
}

impl PluginEngine {
    /// Builds the engine (epoch interruption on, component model on).
    pub fn new(opts: &EngineOptions) -> Result<Self, LoadError> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.cranelift_opt_level(OptLevel::Speed);
        config.parallel_compilation(true);
        let max_memory = opts
            .pooling_max_memory
            .unwrap_or(super::Limits::default().max_memory_bytes);
        let (engine, allocator) =
            super::pooling::build_engine(&mut config, opts.pooling_instances, max_memory)
                .map_err(|e| LoadError::Link(format!("engine: {}", chain(&e))))?;
        let mut linker = Linker::new(&engine);
        // WASI 0.2.12, `wasi:cli/exit.exit-with-code` included (a guest using
        // it ends with its own code, not just 0 or 1); the calls that can
        // block are replaced by bounded ones.
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .and_then(|()| super::wasi_blocking::add_to_linker(&mut linker))
            .map_err(|e| LoadError::Link(format!("WASI: {}", chain(&e))))?;
        // The newest version of our interfaces, then the older ones under
        // their own names (see `versions`).
        PluginWorld::add_to_linker::<PluginState, HasSelf<PluginState>>(&mut linker, |s| s)
            .and_then(|()| versions::link_older(&mut linker))
            .map_err(|e| LoadError::Link(format!("host-loop: {}", chain(&e))))?;
        opts.app_api.link(&mut linker)?;
        let max = opts
            .cache_max_size
            .unwrap_or(crate::cache::DEFAULT_MAX_SIZE);
        let cache = opts
            .cache_dir
            .clone()
            .map(|d| CompileCache::new(d).with_max_size(max));
        Ok(PluginEngine {
            inner: Arc::new(EngineInner {
                engine,
                linker,
                app_api: opts.app_api.clone(),
                cache,
                allocator,
                max_component_size: opts
                    .max_component_size
                    .unwrap_or(crate::component_file::DEFAULT_MAX_COMPONENT_SIZE),
                ticker: Mutex::new(Weak::new()),
            }),
        })
    }

    /// The underlying wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The instance allocator in use (pooling may have fallen back to
    /// on-demand allocation, see [`super::pooling`]).
    pub fn allocator(&self) -> Allocator {
        self.inner.allocator
    }

    /// The engine's epoch ticker (see [`crate::ticker`]): started by the
    /// first caller, shared by every later one, stopped when the last
    /// returned handle is dropped. A host with a callback timeout holds one
    /// for its lifetime, so all hosts on one engine share one ticker thread.
    pub(crate) fn ticker(&self) -> std::io::Result<Arc<Ticker>> {
        let mut slot = self.inner.ticker.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = slot.upgrade() {
            return Ok(t);
        }
        let t = Arc::new(Ticker::start(self.inner.engine.clone())?);
        *slot = Arc::downgrade(&t);
        Ok(t)
    }

    /// The application interfaces this engine links ([`EngineOptions::app_api`]).
    pub fn app_api(&self) -> &AppApi {
        &self.inner.app_api
    }

    /// The compile cache, if enabled.
    pub fn cache(&self) -> Option<&CompileCache> {
        self.inner.cache.as_ref()
    }

    /// Reads, compiles (or fetches from the cache) and checks a plugin file.
    pub fn load_file(&self, path: impl AsRef<Path>) -> Result<PluginComponent, LoadError> {
        let path = path.as_ref();
        let bytes = self.read_file(path)?;
        self.load_bytes_named(&bytes, path.display().to_string())
    }

    /// Reads a component file as [`load_file`](Self::load_file) does: only a regular file,
    /// at most [`EngineOptions::max_component_size`] bytes, read with that bound; a FIFO, a
    /// device or a directory is refused at once ([`LoadError::NotAFile`]).
    pub fn read_file(&self, path: impl AsRef<Path>) -> Result<Vec<u8>, LoadError> {
        crate::component_file::read(path.as_ref(), self.inner.max_component_size)
    }

    /// Compiles (or fetches from the cache) and checks a plugin from bytes.
    pub fn load_bytes(&self, bytes: &[u8]) -> Result<PluginComponent, LoadError> {
        self.load_bytes_named(bytes, "<bytes>".into())
    }

    /// Whether [`compile`](Self::compile) of `bytes` will be quick: the
    /// compile cache holds them (a miss compiles, which takes seconds for a
    /// big component, see [`crate::cache`]). `false` without a cache.
    pub fn is_cached(&self, bytes: &[u8]) -> bool {
        self.inner
            .cache
            .as_ref()
            .is_some_and(|c| c.contains(&self.inner.engine, bytes))
    }

    /// As [`load_bytes`](Self::load_bytes), with `origin` (a path, a name)
    /// for [`PluginComponent::origin`] and the messages.
    pub fn load_bytes_named(
        &self,
        bytes: &[u8],
        origin: String,
    ) -> Result<PluginComponent, LoadError> {
        let component = self.compile(bytes)?;
        let (pre, exports) = self.check(&component)?;
        let ty = component.component_type();
        let app_imports = self
            .inner
            .app_api
            .imported(ty.imports(&self.inner.engine).map(|(n, _)| n))
            .into();
        Ok(PluginComponent {
            pre,
            exports,
            origin,
            app_imports,
        })
    }

    /// Turns bytes into a compiled component (cache-aware), without the
    /// world checks.
    pub fn compile(&self, bytes: &[u8]) -> Result<Component, LoadError> {
        match classify(bytes)? {
            BinaryKind::Component => {}
            BinaryKind::CoreModule => return Err(LoadError::CoreModule),
            BinaryKind::Precompiled => return Err(LoadError::Precompiled),
        }
        if let Some(cache) = &self.inner.cache {
            if let Some(c) = cache.load(&self.inner.engine, bytes) {
                tracing::debug!("using cached artifact");
                return Ok(c);
            }
            // Validate + compile once, store, then load the stored artifact.
            match cache.store(&self.inner.engine, bytes) {
                Ok(path) => {
                    tracing::debug!(path = %path.display(), "cached compiled component");
                    if let Some(c) = cache.load(&self.inner.engine, bytes) {
                        return Ok(c);
                    }
                }
                Err(e) => {
                    let msg = chain(&e);
                    // A compile error is the plugin's fault; a write error is not.
                    if self.validate(bytes).is_err() {
                        return Err(LoadError::Compile(msg));
                    }
                    tracing::warn!("cannot write compile cache: {msg}");
                }
            }
        }
        Component::new(&self.inner.engine, bytes).map_err(|e| LoadError::Compile(chain(&e)))
    }

    fn validate(&self, bytes: &[u8]) -> Result<(), LoadError> {
        Component::new(&self.inner.engine, bytes)
            .map(|_| ())
            .map_err(|e| LoadError::Compile(chain(&e)))
    }

    /// Precompiles `bytes` into the cache and returns the artifact path.
    pub fn precompile_to_cache(&self, bytes: &[u8]) -> Result<PathBuf, LoadError> {
        let Some(cache) = &self.inner.cache else {
            return Err(LoadError::Compile("no cache directory configured".into()));
        };
        match classify(bytes)? {
            BinaryKind::Component => {}
            BinaryKind::CoreModule => return Err(LoadError::CoreModule),
            BinaryKind::Precompiled => return Err(LoadError::Precompiled),
        }
        let path = cache
            .store(&self.inner.engine, bytes)
            .map_err(|e| LoadError::Compile(chain(&e)))?;
        // Make sure the artifact is usable and the component is a plugin.
        let component = cache.load(&self.inner.engine, bytes).ok_or_else(|| {
            LoadError::Compile("the stored artifact could not be loaded back".into())
        })?;
        self.check(&component)?;
        Ok(path)
    }

    /// Checks that `component` is a `callop:plugin/plugin` component of a
    /// supported version whose imports this host provides, and
    /// pre-instantiates it.
    pub(crate) fn check(
        &self,
        component: &Component,
    ) -> Result<(InstancePre<PluginState>, GuestExports), LoadError> {
        let exports = match world_check(&self.inner.engine, component) {
            (Some(exports), problems) if problems.is_empty() => exports,
            (_, problems) => return Err(LoadError::World(problems)),
        };
        let pre = self
            .inner
            .linker
            .instantiate_pre(component)
            .map_err(|e| LoadError::Link(chain(&e)))?;
        Ok((pre, exports))
    }

    /// Describes a component's world, imports and exports.
    pub fn inspect(&self, component: &Component) -> ComponentInfo {
        inspect(&self.inner.engine, component)
    }
}

use versions::split_iface;

/// The guest exports of `component` (if it has those of a supported
/// version) and every reason it is not a plugin of our world (empty: it is).
fn world_check(engine: &Engine, component: &Component) -> (Option<GuestExports>, Vec<String>) {
    let ty = component.component_type();
    // Exports: the `guest` interface of a supported version, with
    // init/dispatch/shutdown (and `state`'s functions if it exports that).
    let (exports, mut problems) = match GuestExports::find(engine, component) {
        Ok(g) => (Some(g), Vec::new()),
        Err(p) => (None, p),
    };
    // Imports: of our package only the interfaces of a supported version;
    // others go to the linker.
    for (name, _) in ty.imports(engine) {
        if let Some((pkg, iface, ver)) = split_iface(name)
            && pkg == PACKAGE
            && !versions::is_supported_import(name)
        {
            if iface == "host-loop" || iface == "types" || iface == "io" {
                problems.push(format!(
                    "imports `{name}` but this host supports {PACKAGE} versions {} \
                         (plugin built for {PACKAGE}@{})",
                    versions::supported_list(),
                    ver.unwrap_or("<unversioned>")
                ));
            } else {
                problems.push(format!("imports unknown interface `{name}`"));
            }
        }
    }
    (exports, problems)
}

/// A human-readable description of a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentInfo {
    /// The world it appears to target (e.g. `callop:plugin/plugin@0.2.0`),
    /// if it exports some version of our `guest` interface.
    pub world: Option<String>,
    /// Imports: (name, description).
    pub imports: Vec<(String, String)>,
    /// Exports: (name, description).
    pub exports: Vec<(String, String)>,
    /// Problems that prevent loading it in this host (empty: loadable).
    pub problems: Vec<String>,
    /// Whether it exports the `state` interface of its version (its state
    /// is carried over a reload; see [`STATE_EXPORT`](crate::STATE_EXPORT)).
    pub state: bool,
}

fn describe(engine: &Engine, item: &ComponentItem) -> String {
    match item {
        ComponentItem::ComponentInstance(i) => {
            let funcs: Vec<&str> = i.exports(engine).map(|(n, _)| n).collect();
            format!("instance {{ {} }}", funcs.join(", "))
        }
        ComponentItem::ComponentFunc(_) => "func".into(),
        ComponentItem::CoreFunc(_) => "core func".into(),
        ComponentItem::Module(_) => "core module".into(),
        ComponentItem::Component(_) => "component".into(),
        ComponentItem::Type(_) => "type".into(),
        ComponentItem::Resource(_) => "resource".into(),
    }
}

fn inspect(engine: &Engine, component: &Component) -> ComponentInfo {
    let ty = component.component_type();
    let imports = ty
        .imports(engine)
        .map(|(n, e)| (n.to_string(), describe(engine, &e.ty)))
        .collect();
    let exports: Vec<(String, String)> = ty
        .exports(engine)
        .map(|(n, e)| (n.to_string(), describe(engine, &e.ty)))
        .collect();
    let world = exports.iter().find_map(|(n, _)| {
        let (p, i, v) = split_iface(n)?;
        (p == PACKAGE && i == "guest").then(|| match v {
            Some(v) => format!("{PACKAGE}/plugin@{v}"),
            None => format!("{PACKAGE}/plugin"),
        })
    });
    let (found, problems) = world_check(engine, component);
    let state = found.is_some_and(|g| g.has_state());
    ComponentInfo {
        world,
        imports,
        exports,
        problems,
        state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> PluginEngine {
        PluginEngine::new(&EngineOptions::default()).unwrap()
    }

    fn err(bytes: &[u8]) -> String {
        engine().load_bytes(bytes).unwrap_err().to_string()
    }

    #[test]
    fn hosts_of_one_engine_share_one_ticker_until_the_last_goes() {
        let e = engine();
        let a = e.ticker().unwrap();
        let b = e.clone().ticker().unwrap();
        assert!(Arc::ptr_eq(&a, &b), "a second user started a second ticker");
        drop(a);
        assert!(e.inner.ticker.lock().unwrap().upgrade().is_some());
        drop(b);
        assert!(
            e.inner.ticker.lock().unwrap().upgrade().is_none(),
            "the ticker outlived its last user"
        );
        // A later user starts a new one.
        let c = e.ticker().unwrap();
        assert_eq!(Arc::strong_count(&c), 1);
    }

    #[test]
    fn classify_headers() {
        assert_eq!(
            classify(&wat::parse_str("(module)").unwrap()).unwrap(),
            BinaryKind::CoreModule
        );
        assert_eq!(
            classify(&wat::parse_str("(component)").unwrap()).unwrap(),
            BinaryKind::Component
        );
        assert_eq!(
            classify(b"\x7fELF\x02\x01\x01\0").unwrap(),
            BinaryKind::Precompiled
        );
        assert!(classify(b"").is_err());
    }

    #[test]
    fn garbage_is_not_wasm() {
        let e = err(&[0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5]);
        assert!(
            e.contains("not a WebAssembly binary") && e.contains("de ad be ef"),
            "{e}"
        );
        let e = err(b"");
        assert!(e.contains("empty"), "{e}");
        let e = err(b"(component)\n");
        assert!(e.contains("looks like text"), "{e}");
    }

    #[test]
    fn core_module_is_rejected() {
        let e = err(&wat::parse_str("(module (func (export \"f\")))").unwrap());
        assert!(
            e.contains("core WebAssembly module, not a component"),
            "{e}"
        );
    }

    #[test]
    fn precompiled_is_rejected() {
        let e = err(b"\x7fELF\x02\x01\x01\0\0\0\0\0");
        assert!(e.contains("precompiled"), "{e}");
    }

    #[test]
    fn broken_component_is_a_compile_error() {
        let mut bytes = wat::parse_str("(component (core module))").unwrap();
        bytes.truncate(bytes.len() - 1);
        let e = err(&bytes);
        assert!(e.starts_with("invalid component"), "{e}");
    }

    #[test]
    fn empty_component_lacks_guest_export() {
        let e = err(&wat::parse_str("(component)").unwrap());
        assert!(
            e.contains("missing export `callop:plugin/guest@0.3.0`"),
            "{e}"
        );
        assert!(e.contains("exports: nothing"), "{e}");
    }

    #[test]
    fn other_version_is_named() {
        let e = err(&wat::parse_str(
            r#"(component
                 (import "callop:plugin/host-loop@0.1.0" (instance))
                 (instance $g)
                 (export "callop:plugin/guest@0.1.0" (instance $g)))"#,
        )
        .unwrap());
        assert!(
            e.contains("exports `callop:plugin/guest@0.1.0` but this host supports callop:plugin versions 0.3.0, 0.2.0"),
            "{e}"
        );
        assert!(e.contains("imports `callop:plugin/host-loop@0.1.0`"), "{e}");
        assert!(e.contains("built for callop:plugin@0.1.0"), "{e}");
    }

    #[test]
    fn guest_without_functions() {
        let e = err(&wat::parse_str(
            r#"(component (instance $g) (export "callop:plugin/guest@0.2.0" (instance $g)))"#,
        )
        .unwrap());
        assert!(
            e.contains("lacks function `init`") && e.contains("lacks function `shutdown`"),
            "{e}"
        );
    }

    #[test]
    fn unknown_interface_of_our_package() {
        let e = err(&wat::parse_str(
            r#"(component
                 (import "callop:plugin/files@0.2.0" (instance))
                 (instance $g)
                 (export "callop:plugin/guest@0.2.0" (instance $g)))"#,
        )
        .unwrap());
        assert!(
            e.contains("imports unknown interface `callop:plugin/files@0.2.0`"),
            "{e}"
        );
    }

    #[test]
    fn inspect_reports_world() {
        let eng = engine();
        let c = eng
            .compile(&wat::parse_str(r#"(component (instance $g) (export "callop:plugin/guest@0.2.0" (instance $g)))"#).unwrap())
            .unwrap();
        let info = eng.inspect(&c);
        assert_eq!(info.world.as_deref(), Some("callop:plugin/plugin@0.2.0"));
        assert_eq!(info.exports.len(), 1);
        assert!(!info.problems.is_empty());
    }

    #[test]
    fn missing_file() {
        let e = engine()
            .load_file("/nonexistent/plugin.wasm")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read `/nonexistent/plugin.wasm`"), "{e}");
    }
}
