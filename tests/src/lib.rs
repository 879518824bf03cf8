//! Helpers for the end-to-end tests: building the example plugins once and
//! finding the `callop-host` binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub mod polyglot;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Builds every example plugin (`plugins/build.sh`, once per test binary;
/// cargo makes repeated builds cheap) and returns the directory holding the
/// `.wasm` components.
pub fn plugins_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = repo_root();
        let out = Command::new("bash")
            .arg(root.join("plugins/build.sh"))
            .env_remove("CARGO_TARGET_DIR")
            .output()
            .expect("cannot run plugins/build.sh");
        assert!(
            out.status.success(),
            "plugins/build.sh failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        root.join("plugins/target/wasm32-wasip2/release")
    })
}

/// Path of the component of example plugin `name` (e.g. `ping-pong`).
pub fn plugin(name: &str) -> PathBuf {
    let p = plugins_dir().join(format!("{}.wasm", name.replace('-', "_")));
    assert!(p.exists(), "missing plugin {}", p.display());
    p
}

/// A compile cache shared by all tests (compiled components are reused).
pub fn cache_dir() -> PathBuf {
    target_dir().join("callop-test-cache")
}

/// The cargo target directory these tests were built in.
pub fn target_dir() -> PathBuf {
    // <target>/debug/deps/<test-binary>
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

/// The `callop-host` binary built alongside the tests (`cargo test
/// --workspace` builds it, because the `callop` package has integration
/// tests).
pub fn host_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().and_then(Path::parent).expect("profile dir");
    let bin = dir.join("callop-host");
    assert!(
        bin.exists(),
        "{} not built: run `cargo build -p callop --bins` (or `cargo test --workspace`)",
        bin.display()
    );
    bin
}
