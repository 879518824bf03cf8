//! Smoke test of the `callop-host` binary (also makes `cargo test` build it
//! for the end-to-end tests in `tests/`).

use std::process::Command;

#[test]
fn help_lists_syntax_and_examples() {
    let out = Command::new(env!("CARGO_BIN_EXE_callop-host"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "PATH[@NAME][=ARG,ARG,...]",
        "Examples:",
        "compile",
        "inspect",
        "--shutdown-timeout",
        "--callback-timeout",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn no_plugin_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_callop-host"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no plugin given"));
}
