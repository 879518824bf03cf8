//! The guest SDK's doc examples compile for `wasm32-wasip2` (they cannot
//! run natively: they are `no_run`). wit-bindgen's own generated doctest
//! (`__export_plugin_impl`) would try to execute a wasm file and is skipped.

use std::process::Command;

#[test]
fn guest_sdk_doc_examples_compile() {
    // The plugins' workspace, as `plugins/build.sh` uses it (the wasm32-wasip2
    // target is installed by the build the other tests run first).
    callop_tests::plugins_dir();
    let out = Command::new("cargo")
        .current_dir(callop_tests::repo_root().join("plugins"))
        .env_remove("CARGO_TARGET_DIR")
        .args([
            "test",
            "--doc",
            "-p",
            "callop-guest",
            "--target",
            "wasm32-wasip2",
            "--",
            "--skip",
            "__export_plugin_impl",
        ])
        .output()
        .expect("cannot run cargo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" 0 failed"), "{stdout}");
    assert!(
        stdout.contains(" 0 ignored"),
        "an ignored example: {stdout}"
    );
}
