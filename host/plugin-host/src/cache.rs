//! On-disk cache of precompiled components (`.cwasm`).
//!
//! The key of an entry is a BLAKE3 hash over a format tag, the wasmtime version,
//! the engine's [`precompile_compatibility_hash`](wasmtime::Engine::precompile_compatibility_hash)
//! (target, compiler flags, tunables) and the component's bytes, so a cache
//! entry can only ever be picked up by an engine that produced an identical
//! artifact. Each `<key>.cwasm` has a `<key>.blake3` sidecar holding the
//! digest of the artifact; a missing or wrong sidecar (truncated write, disk
//! corruption) makes the entry be ignored and rebuilt. (BLAKE3 rather than
//! SHA-256, which format `v1` used: a warm start hashes the component and
//! its artifact, a few hundred KiB, and SHA-256 took most of the start's
//! time; entries of `v1` are never loaded again, LRU eviction or
//! [`CompileCache::clear`] removes them with their `.sha256` sidecar.)
//!
//! Both files are written to a temporary file first and renamed into place.
//! A temporary file is named `<file>.callop-tmp.<pid>.<n>` (the writing
//! process and a counter), so that one left behind by a writer that was
//! killed is recognisable: opening the cache ([`CompileCache::new`])
//! removes those whose process is gone or that are older than
//! [`STALE_TMP_AGE`] (and those of the older `<key>.tmp.<pid>` naming).
//!
//! The cache has a size cap ([`DEFAULT_MAX_SIZE`], 512 MiB, unless
//! [`CompileCache::with_max_size`] says otherwise): after each store the
//! least recently used entries are removed until the rest fit. An entry's
//! last use is the modification time of its `.cwasm`, set when it is
//! stored and again each time it is [loaded](CompileCache::load).
//!
//! ```
//! use callop_plugin_host::cache::CompileCache;
//!
//! let dir = std::env::temp_dir().join(format!("callop-cache-doc-{}", std::process::id()));
//! let cache = CompileCache::new(&dir).with_max_size(64 << 20);
//! assert_eq!(cache.max_size(), 64 << 20);
//! assert!(cache.entries().is_empty()); // nothing stored yet
//! assert_eq!(cache.clear().unwrap(), (0, 0));
//! ```

use std::fs;
use std::hash::Hash;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use wasmtime::Engine;
use wasmtime::component::Component;

/// Version of wasmtime this host is built against (pinned in Cargo.toml).
pub const WASMTIME_VERSION: &str = "48.0.8";

/// Format tag of cache entries; bump when the layout changes.
const FORMAT: &str = "callop-cwasm-v2";

/// What marks a temporary file of the cache: `<file>.callop-tmp.<pid>.<n>`.
const TMP_MARK: &str = ".callop-tmp.";

/// A temporary file older than this is stale even if its process (or one
/// that reused its id) is alive: no write takes that long.
pub const STALE_TMP_AGE: Duration = Duration::from_secs(3600);

/// The default size cap of a cache: 512 MiB.
pub const DEFAULT_MAX_SIZE: u64 = 512 << 20;

/// One entry of a [`CompileCache`] (see [`CompileCache::entries`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    /// The entry's key (64 hex digits).
    pub key: String,
    /// The artifact (`<key>.cwasm`).
    pub path: PathBuf,
    /// Bytes on disk: the artifact and its digest sidecar.
    pub size: u64,
    /// When it was last stored or loaded.
    pub last_used: SystemTime,
}

/// Feeds `std::hash::Hash` output into BLAKE3, so hashing is stable
/// across processes and Rust versions (unlike `DefaultHasher`).
struct KeyHasher<'a>(&'a mut blake3::Hasher);

impl std::hash::Hasher for KeyHasher<'_> {
    fn finish(&self) -> u64 {
        0 // unused: the digest is read from the BLAKE3 hasher itself
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex BLAKE3 digest of `bytes`.
pub(crate) fn digest_hex(bytes: &[u8]) -> String {
    hex(blake3::hash(bytes).as_bytes())
}

/// The cache key for `wasm` compiled by `engine`.
pub(crate) fn cache_key(engine: &Engine, wasm: &[u8]) -> String {
    let mut h = blake3::Hasher::new();
    h.update(FORMAT.as_bytes());
    h.update(&[0]);
    h.update(WASMTIME_VERSION.as_bytes());
    h.update(&[0]);
    engine
        .precompile_compatibility_hash()
        .hash(&mut KeyHasher(&mut h));
    h.update(&[0]);
    h.update(&(wasm.len() as u64).to_le_bytes());
    h.update(wasm);
    hex(h.finalize().as_bytes())
}

/// The default cache directory: `$XDG_CACHE_HOME/callop`, else
/// `$HOME/.cache/callop`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(x).join("callop"));
    }
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|h| PathBuf::from(h).join(".cache").join("callop"))
}

/// A directory of precompiled components.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
    max_size: u64,
}

impl CompileCache {
    /// A cache in `dir` (created on first store). Removes the stale
    /// temporary files of interrupted writes in it (see the module docs);
    /// errors doing so are ignored.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let cache = CompileCache {
            dir: dir.into(),
            max_size: DEFAULT_MAX_SIZE,
        };
        cache.remove_stale_tmp_files();
        cache
    }

    /// The same cache with a size cap of `bytes` (see the module docs;
    /// `u64::MAX`: no cap). The cap is applied at the next store.
    pub fn with_max_size(mut self, bytes: u64) -> Self {
        self.max_size = bytes;
        self
    }

    /// The size cap, in bytes.
    pub fn max_size(&self) -> u64 {
        self.max_size
    }

    /// Whether an entry for `wasm` compiled by `engine` is present (its
    /// artifact and sidecar exist; their content is checked by
    /// [`load`](Self::load)): whether loading it will not compile.
    pub fn contains(&self, engine: &Engine, wasm: &[u8]) -> bool {
        let key = cache_key(engine, wasm);
        self.artifact_path(&key).is_file() && self.digest_path(&key).is_file()
    }

    /// The entries in the cache, least recently used first. A `.cwasm`
    /// without its sidecar counts too (it is removed like any entry).
    pub fn entries(&self) -> Vec<CacheEntry> {
        let Ok(dir) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut entries: Vec<CacheEntry> = dir
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let key = name.strip_suffix(".cwasm")?;
                if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return None;
                }
                let meta = e.metadata().ok().filter(|m| m.is_file())?;
                let sidecar = fs::metadata(self.digest_path(key)).map_or(0, |m| m.len());
                Some(CacheEntry {
                    key: key.to_string(),
                    path: e.path(),
                    size: meta.len() + sidecar,
                    last_used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                })
            })
            .collect();
        entries.sort_by(|a, b| a.last_used.cmp(&b.last_used).then(a.key.cmp(&b.key)));
        entries
    }

    /// Removes every entry; returns how many and how many bytes.
    pub fn clear(&self) -> std::io::Result<(usize, u64)> {
        let mut removed = (0, 0);
        for e in self.entries() {
            self.remove(&e)?;
            removed.0 += 1;
            removed.1 += e.size;
        }
        Ok(removed)
    }

    /// Removes the least recently used entries until the rest fit in the
    /// size cap, never the entry `keep` (the one just stored: it is loaded
    /// next, and one entry larger than the cap stays alone). Returns how
    /// many entries were removed; errors removing one are logged.
    pub fn evict(&self, keep: Option<&str>) -> usize {
        let entries = self.entries();
        let mut total: u64 = entries.iter().map(|e| e.size).sum();
        let mut removed = 0;
        for e in &entries {
            if total <= self.max_size {
                break;
            }
            if Some(e.key.as_str()) == keep {
                continue;
            }
            match self.remove(e) {
                Ok(()) => {
                    tracing::debug!(path = %e.path.display(), size = e.size, "evicted a cache entry");
                    total = total.saturating_sub(e.size);
                    removed += 1;
                }
                Err(err) => {
                    tracing::warn!(path = %e.path.display(), "cannot evict a cache entry: {err}")
                }
            }
        }
        removed
    }

    /// Removes one entry's files (a file already gone is no error).
    fn remove(&self, e: &CacheEntry) -> std::io::Result<()> {
        // The `.sha256` sidecar of a format-v1 entry goes too.
        let legacy = self.dir.join(format!("{}.sha256", e.key));
        for p in [self.artifact_path(&e.key), self.digest_path(&e.key), legacy] {
            match fs::remove_file(&p) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
                _ => {}
            }
        }
        Ok(())
    }

    /// Removes the temporary files left by writers that were killed: those
    /// whose process is gone, or older than [`STALE_TMP_AGE`]; returns how
    /// many were removed. Files of live writers are kept.
    pub fn remove_stale_tmp_files(&self) -> usize {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(tmp_file_pid) else {
                continue;
            };
            let age = entry
                .metadata()
                .ok()
                .filter(|m| m.is_file())
                .and_then(|m| m.modified().ok())
                .map(|t| SystemTime::now().duration_since(t).unwrap_or_default());
            let Some(age) = age else {
                continue; // not a regular file, or gone meanwhile
            };
            if (age > STALE_TMP_AGE || !process_alive(pid)) && fs::remove_file(entry.path()).is_ok()
            {
                tracing::debug!(path = %entry.path().display(), "removed a stale cache temp file");
                removed += 1;
            }
        }
        removed
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the artifact for `key`.
    pub(crate) fn artifact_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.cwasm"))
    }

    fn digest_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.blake3"))
    }

    /// Loads the cached artifact of `wasm`, if present and intact.
    pub fn load(&self, engine: &Engine, wasm: &[u8]) -> Option<Component> {
        let key = cache_key(engine, wasm);
        let path = self.artifact_path(&key);
        let artifact = fs::read(&path).ok()?;
        let want = fs::read_to_string(self.digest_path(&key)).ok()?;
        if want.trim() != digest_hex(&artifact) {
            tracing::warn!(path = %path.display(), "ignoring corrupt cache entry");
            return None;
        }
        // SAFETY: `Component::deserialize_file` trusts that the file is an
        // artifact produced by `Engine::precompile_component` of a
        // compatible engine; wasmtime checks the header and engine
        // compatibility but not the machine code. This file is one we wrote
        // ourselves (atomically: temp file + rename) under a name that is the
        // hash of the source bytes *and* of this engine's configuration, and
        // its content digest was just verified against the sidecar we wrote
        // with it, so it is exactly what our own compiler produced. Someone
        // able to write into the cache directory can already run code as
        // this user, so trusting it adds no new authority.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(c) => {
                touch(&path);
                Some(c)
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), "ignoring unusable cache entry: {e}");
                None
            }
        }
    }

    /// Compiles `wasm`, stores the artifact and returns its path.
    pub fn store(&self, engine: &Engine, wasm: &[u8]) -> wasmtime::Result<PathBuf> {
        let artifact = engine.precompile_component(wasm)?;
        let key = cache_key(engine, wasm);
        fs::create_dir_all(&self.dir)?;
        let path = self.artifact_path(&key);
        write_atomic(&path, &artifact)?;
        write_atomic(
            &self.digest_path(&key),
            format!("{}\n", digest_hex(&artifact)).as_bytes(),
        )?;
        self.evict(Some(&key));
        Ok(path)
    }
}

/// Marks the entry at `path` as used now (its modification time, see the
/// module docs); an error (a read-only cache) only loses the LRU order.
fn touch(path: &Path) {
    let r = fs::File::open(path).and_then(|f| f.set_modified(SystemTime::now()));
    if let Err(e) = r {
        tracing::debug!(path = %path.display(), "cannot mark a cache entry used: {e}");
    }
}

/// The temporary file a write of `path` goes through:
/// `<file>.callop-tmp.<pid>.<n>`, unique within this process too (two
/// threads may store the same entry at once).
fn tmp_path(path: &Path) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!("{TMP_MARK}{}.{n}", std::process::id()));
    path.with_file_name(name)
}

/// The process that wrote the temporary file `name`, if it is one: of
/// [`tmp_path`], or of the older naming `<64 hex digits>.tmp.<pid>`.
fn tmp_file_pid(name: &str) -> Option<u32> {
    if let Some((_, rest)) = name.split_once(TMP_MARK) {
        let (pid, n) = rest.split_once('.')?;
        n.parse::<u64>().ok()?;
        return pid.parse().ok();
    }
    let (key, pid) = name.split_once(".tmp.")?;
    if key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()) {
        pid.parse().ok()
    } else {
        None
    }
}

/// Whether process `pid` exists (`kill(pid, 0)`; a process of another user
/// exists too). This process's own files are always its live writes.
fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let Some(p) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    !matches!(
        rustix::process::test_kill_process(p),
        Err(rustix::io::Errno::SRCH)
    )
}

fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = tmp_path(path);
    let written = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(epoch: bool) -> Engine {
        let mut c = wasmtime::Config::new();
        c.epoch_interruption(epoch);
        Engine::new(&c).unwrap()
    }

    #[test]
    fn key_depends_on_bytes_and_engine_config() {
        let a = engine(true);
        let b = engine(false);
        let k1 = cache_key(&a, b"one");
        assert_eq!(k1, cache_key(&a, b"one"));
        assert_eq!(
            k1,
            cache_key(&engine(true), b"one"),
            "stable across engines with the same config"
        );
        assert_ne!(k1, cache_key(&a, b"two"));
        assert_ne!(k1, cache_key(&b, b"one"));
        assert_eq!(k1.len(), 64);
    }

    #[test]
    fn store_then_load_and_reject_corruption() {
        let dir = std::env::temp_dir().join(format!("callop-cache-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let cache = CompileCache::new(&dir);
        let e = engine(true);
        let wasm = wat::parse_str("(component)").unwrap();
        assert!(cache.load(&e, &wasm).is_none());
        let path = cache.store(&e, &wasm).unwrap();
        assert!(path.exists());
        assert!(cache.load(&e, &wasm).is_some());
        // Another engine config never sees this entry.
        assert!(cache.load(&engine(false), &wasm).is_none());
        // Corrupt the artifact: the digest check rejects it.
        let mut bytes = fs::read(&path).unwrap();
        let n = bytes.len() / 2;
        bytes[n] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        assert!(cache.load(&e, &wasm).is_none());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn size_cap_evicts_least_recently_used() {
        let dir = std::env::temp_dir().join(format!("callop-cache-lru-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let e = engine(true);
        let wasm = |i: u32| {
            wat::parse_str(format!(
                "(component (core module (func (export \"f{i}\") (result i32) i32.const {i})))"
            ))
            .unwrap()
        };
        let cache = CompileCache::new(&dir).with_max_size(u64::MAX);
        let old = SystemTime::now() - Duration::from_secs(600);
        // Three entries, each used at a distinct time: 0 oldest, 2 newest.
        for i in 0..3 {
            let p = cache.store(&e, &wasm(i)).unwrap();
            fs::File::open(&p)
                .unwrap()
                .set_modified(old + Duration::from_secs(10 * u64::from(i)))
                .unwrap();
        }
        // Using entry 0 makes it the most recently used.
        assert!(cache.load(&e, &wasm(0)).is_some());
        let entries = cache.entries();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[2].key, cache_key(&e, &wasm(0)), "{entries:?}");
        let one = entries.iter().map(|x| x.size).max().unwrap();
        // A cap for two entries: storing a fourth evicts the two least
        // recently used (1 and 2), keeps 0 (used) and the new one.
        let cache = cache.with_max_size(2 * one + one / 2);
        cache.store(&e, &wasm(3)).unwrap();
        let keys: Vec<String> = cache.entries().into_iter().map(|x| x.key).collect();
        assert_eq!(keys.len(), 2, "{keys:?}");
        assert!(keys.contains(&cache_key(&e, &wasm(0))));
        assert!(keys.contains(&cache_key(&e, &wasm(3))));
        assert!(!cache.contains(&e, &wasm(1)) && !cache.contains(&e, &wasm(2)));
        assert!(
            !dir.join(format!("{}.blake3", cache_key(&e, &wasm(1))))
                .exists()
        );
        // An entry larger than the cap stays alone.
        let tiny = cache.with_max_size(1);
        tiny.store(&e, &wasm(4)).unwrap();
        let keys: Vec<String> = tiny.entries().into_iter().map(|x| x.key).collect();
        assert_eq!(keys, vec![cache_key(&e, &wasm(4))]);
        assert!(tiny.load(&e, &wasm(4)).is_some());
        // Clear removes everything.
        let (n, bytes) = tiny.clear().unwrap();
        assert_eq!(n, 1);
        assert!(bytes > 0);
        assert!(tiny.entries().is_empty());
        let _ = fs::remove_dir_all(&dir);
    }

    /// A process id that is not running: a child that has been reaped.
    fn dead_pid() -> u32 {
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        pid
    }

    #[test]
    fn temp_files_name_their_writer() {
        let t = tmp_path(Path::new("/c/abc.cwasm"));
        let name = t.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("abc.cwasm.callop-tmp."), "{name}");
        assert_eq!(tmp_file_pid(name), Some(std::process::id()));
        assert_ne!(tmp_path(Path::new("/c/abc.cwasm")), t, "unique per write");
        let key = "0123456789abcdef".repeat(4);
        assert_eq!(tmp_file_pid(&format!("{key}.tmp.42")), Some(42));
        for other in [
            "abc.cwasm",
            "abc.blake3",
            "x.tmp.42",
            "abc.cwasm.callop-tmp.12",
            "abc.cwasm.callop-tmp.x.1",
        ] {
            assert_eq!(tmp_file_pid(other), None, "{other}");
        }
    }

    #[test]
    fn opening_removes_stale_temp_files_only() {
        let dir = std::env::temp_dir().join(format!("callop-cache-tmp-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let dead = dead_pid();
        let key = "0123456789abcdef".repeat(4);
        // Left by killed writers: a dead process's, in both namings; one of
        // a live process (init, pid 1) older than STALE_TMP_AGE.
        let stale = [
            format!("{key}.cwasm.callop-tmp.{dead}.0"),
            format!("{key}.tmp.{dead}"),
            format!("{key}.blake3.callop-tmp.1.7"),
        ];
        // A live writer's (this process), an entry, an unrelated file.
        let kept = [
            format!("{key}.cwasm.callop-tmp.{}.3", std::process::id()),
            format!("{key}.cwasm"),
            "notes.txt".to_string(),
        ];
        for n in stale.iter().chain(&kept) {
            fs::write(dir.join(n), b"x").unwrap();
        }
        let old = SystemTime::now() - STALE_TMP_AGE - Duration::from_secs(60);
        fs::File::options()
            .write(true)
            .open(dir.join(&stale[2]))
            .unwrap()
            .set_modified(old)
            .unwrap();
        let cache = CompileCache::new(&dir);
        for n in &stale {
            assert!(!dir.join(n).exists(), "stale {n} kept");
        }
        for n in &kept {
            assert!(dir.join(n).exists(), "{n} removed");
        }
        assert_eq!(cache.remove_stale_tmp_files(), 0);
        // A store leaves no temp file behind.
        let e = engine(true);
        cache
            .store(&e, &wat::parse_str("(component)").unwrap())
            .unwrap();
        let tmp: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(TMP_MARK))
            .map(|e| e.file_name())
            .collect();
        assert_eq!(tmp.len(), 1, "only the live writer's file: {tmp:?}");
        let _ = fs::remove_dir_all(&dir);
    }
}
