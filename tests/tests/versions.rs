//! Plugins built for an older `callop:plugin` keep running after the bump:
//! components built for 0.2.0 (`tests/fixtures/v0.2.0/`, built from the last
//! 0.2.0 commit, see its README) run beside 0.3.0 ones, to exact output.

use std::path::PathBuf;

use callop_tests::{host_bin, host_cmd, plugin, repo_root, run, text};

fn fixture(name: &str) -> PathBuf {
    repo_root()
        .join("tests/fixtures/v0.2.0")
        .join(format!("{name}.wasm"))
}

#[test]
fn a_0_2_0_ticker_ticks_exactly() {
    let o = run(host_cmd()
        .arg(fixture("ticker"))
        .args(["--", "--every", "10ms", "--count", "5"]));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let lines: Vec<String> = text(&o.stdout).lines().map(str::to_string).collect();
    let want: Vec<String> = (1..=5).map(|i| format!("[ticker] tick {i}")).collect();
    assert_eq!(lines, want);
}

#[test]
fn the_0_2_0_selftest_passes() {
    let o = run(host_cmd().arg(fixture("selftest")));
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    assert!(
        text(&o.stdout).contains("[selftest] selftest: ok"),
        "{}",
        text(&o.stdout)
    );
}

#[test]
fn a_0_2_0_plugin_and_a_0_3_0_plugin_exchange_messages_and_pings() {
    // ping (0.2.0) sends to pong (0.3.0) and back: exact counts both ways.
    let o = run(host_cmd()
        .arg(format!(
            "{}@ping=--role,ping,--count,500",
            fixture("ping_pong").display()
        ))
        .arg(format!(
            "{}@pong=--role,pong",
            plugin("ping-pong").display()
        )));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(
        out.contains("[ping] ping: done after 500 exchanges"),
        "{out}"
    );
    assert!(out.contains("[pong] pong: done, answered 500"), "{out}");
}

#[test]
fn inspect_names_the_version_a_component_targets() {
    for (path, version) in [(fixture("ticker"), "0.2.0"), (plugin("ticker"), "0.3.0")] {
        let o = run(std::process::Command::new(host_bin())
            .arg("inspect")
            .arg(&path));
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
        let out = text(&o.stdout);
        assert!(
            out.contains(&format!("world: callop:plugin/plugin@{version}")),
            "{out}"
        );
        assert!(
            out.contains(&format!("callop:plugin/host-loop@{version}")),
            "{out}"
        );
        assert!(
            out.contains("loadable: yes (this host supports callop:plugin 0.3.0, 0.2.0)"),
            "{out}"
        );
    }
}
