//! On-disk cache of precompiled components (`.cwasm`).
//!
//! The key of an entry is a SHA-256 over a format tag, the wasmtime version,
//! the engine's [`precompile_compatibility_hash`](wasmtime::Engine::precompile_compatibility_hash)
//! (target, compiler flags, tunables) and the component's bytes, so a cache
//! entry can only ever be picked up by an engine that produced an identical
//! artifact. Each `<key>.cwasm` has a `<key>.sha256` sidecar holding the
//! digest of the artifact; a missing or wrong sidecar (truncated write, disk
//! corruption) makes the entry be ignored and rebuilt.

use std::fs;
use std::hash::Hash;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Version of wasmtime this host is built against (pinned in Cargo.toml).
pub const WASMTIME_VERSION: &str = "48.0.8";

/// Format tag of cache entries; bump when the layout changes.
const FORMAT: &str = "callop-cwasm-v1";

/// Feeds `std::hash::Hash` output into SHA-256, so hashing is stable
/// across processes and Rust versions (unlike `DefaultHasher`).
struct ShaHasher<'a>(&'a mut Sha256);

impl std::hash::Hasher for ShaHasher<'_> {
    fn finish(&self) -> u64 {
        0 // unused: the digest is read from the Sha256 itself
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The cache key for `wasm` compiled by `engine`.
pub(crate) fn cache_key(engine: &Engine, wasm: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(FORMAT.as_bytes());
    h.update([0]);
    h.update(WASMTIME_VERSION.as_bytes());
    h.update([0]);
    engine
        .precompile_compatibility_hash()
        .hash(&mut ShaHasher(&mut h));
    h.update([0]);
    h.update((wasm.len() as u64).to_le_bytes());
    h.update(wasm);
    hex(&h.finalize())
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
}

impl CompileCache {
    /// A cache in `dir` (created on first store).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        CompileCache { dir: dir.into() }
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
        self.dir.join(format!("{key}.sha256"))
    }

    /// Loads the cached artifact of `wasm`, if present and intact.
    pub fn load(&self, engine: &Engine, wasm: &[u8]) -> Option<Component> {
        let key = cache_key(engine, wasm);
        let path = self.artifact_path(&key);
        let artifact = fs::read(&path).ok()?;
        let want = fs::read_to_string(self.digest_path(&key)).ok()?;
        if want.trim() != sha256_hex(&artifact) {
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
            Ok(c) => Some(c),
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
            format!("{}\n", sha256_hex(&artifact)).as_bytes(),
        )?;
        Ok(path)
    }
}

fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)
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
}
