//! `callop-host new`: the skeleton it writes builds outside the repository with the command its
//! README gives, and the component runs in `callop-host` (Rust, and Python with componentize-py).
//!
//! Every child is bounded (killed past its limit); output goes to files in the temporary
//! directory, which is outside the repository and removed at the end.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use callop_tests::{host_bin, host_cmd, repo_root, text, wait_exit};

/// A fresh directory under the system's temp dir (not inside the repository).
fn tmp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("callop-template-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let dir = dir.canonicalize().unwrap();
    let root = repo_root().canonicalize().unwrap();
    assert!(
        !dir.starts_with(&root),
        "{} is inside the repo",
        dir.display()
    );
    dir
}

/// Removes the directory when dropped (also when a test fails).
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `cmd` with its output in `log`, killed after `limit`; returns (success, output).
fn run_logged(cmd: &mut Command, log: &Path, limit: Duration, what: &str) -> (bool, String) {
    let f = File::create(log).unwrap();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let status = wait_exit(&mut child, limit, what);
    (
        status.success(),
        std::fs::read_to_string(log).unwrap_or_default(),
    )
}

/// The commands of the first ```sh block of a README (`\` continuations joined).
fn first_sh_block(readme: &str) -> Vec<String> {
    let mut lines = readme.lines().skip_while(|l| l.trim() != "```sh").skip(1);
    let mut cmds = Vec::new();
    let mut cur = String::new();
    for l in lines.by_ref() {
        if l.trim() == "```" {
            break;
        }
        let l = l.split(" #").next().unwrap().trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if let Some(head) = l.strip_suffix('\\') {
            cur.push_str(head);
            cur.push(' ');
        } else {
            cur.push_str(l);
            cmds.push(std::mem::take(&mut cur));
        }
    }
    cmds
}

/// `callop-host new ARGS --dir DIR`: succeeds and names the skeleton's directory.
fn new_skeleton(dir: &Path, args: &[&str]) -> PathBuf {
    let out = Command::new(host_bin())
        .arg("new")
        .args(args)
        .arg("--dir")
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let root = dir.join(args[0]);
    assert!(
        stdout.contains(&format!("created {}", root.display())),
        "{stdout}"
    );
    root
}

/// Runs `wasm` in callop-host with `args`; asserts exit 0 and returns the stdout lines.
fn run_plugin(wasm: &Path, args: &[&str], log_dir: &Path) -> Vec<String> {
    let mut c = host_cmd();
    c.arg(wasm).arg("--").args(args);
    let out_path = log_dir.join("run.stdout");
    let mut child = c
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(log_dir.join("run.stderr")).unwrap())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(60), "callop-host");
    let err = std::fs::read_to_string(log_dir.join("run.stderr")).unwrap_or_default();
    assert_eq!(status.code(), Some(0), "{err}");
    let out = std::fs::read_to_string(out_path).unwrap();
    out.lines().map(str::to_string).collect()
}

#[test]
fn rust_skeleton_builds_outside_the_repo_and_runs() {
    // The plugins' build fetches the guest SDK's dependencies (if the registry cache lacks
    // them), so the skeleton's build below can be offline.
    callop_tests::plugins_dir();
    let tmp = tmp_dir("rust");
    let _cleanup = Cleanup(tmp.clone());
    let root = new_skeleton(&tmp, &["demo"]);
    for f in [
        "Cargo.toml",
        ".cargo/config.toml",
        "src/lib.rs",
        "README.md",
    ] {
        assert!(root.join(f).is_file(), "no {f}");
    }
    let cargo_toml = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let sdk = repo_root().join("guest-sdk").canonicalize().unwrap();
    assert!(
        cargo_toml.contains(&format!(
            "callop-guest = {{ path = \"{}\" }}",
            sdk.display()
        )),
        "{cargo_toml}"
    );

    // Its code is as rustfmt writes it.
    let fmt = Command::new("cargo")
        .args(["fmt", "--check"])
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(
        fmt.status.success(),
        "cargo fmt --check:\n{}",
        text(&fmt.stdout)
    );

    // The build command the skeleton's README gives, offline.
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let cmds = first_sh_block(&readme);
    assert_eq!(
        cmds.first().map(String::as_str),
        Some("cargo build --release --target wasm32-wasip2"),
        "{readme}"
    );
    let mut build = Command::new("cargo");
    build
        .args(cmds[0].split_whitespace().skip(1))
        .arg("--offline")
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", root.join("target"))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET");
    let (ok, log) = run_logged(
        &mut build,
        &tmp.join("build.log"),
        Duration::from_secs(900),
        "cargo build of the skeleton",
    );
    assert!(ok, "cargo build failed:\n{log}");
    let wasm = root.join("target/wasm32-wasip2/release/demo.wasm");
    assert!(wasm.is_file(), "no {}:\n{log}", wasm.display());

    let lines = run_plugin(&wasm, &["--every", "10", "--count", "3"], &tmp);
    assert_eq!(lines, ["[demo] tick 1", "[demo] tick 2", "[demo] tick 3"]);
}

/// Runs `plugins/polyglot.sh PLUGIN` (one at a time: the tests of this file run in parallel and
/// share the toolchains and the output directory), log in `log_dir`.
fn polyglot(plugin: &str, log_dir: &Path) {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let repo = repo_root();
    let (ok, log) = run_logged(
        Command::new("bash")
            .arg(repo.join("plugins/polyglot.sh"))
            .arg(plugin)
            .env("CALLOP_POLYGLOT_OUT", repo.join("target/polyglot")),
        &log_dir.join("polyglot.log"),
        Duration::from_secs(900),
        "plugins/polyglot.sh",
    );
    assert!(ok, "plugins/polyglot.sh {plugin} failed:\n{log}");
}

/// `plugins/polyglot.sh LANG/hello` (installing the toolchain if needed), then runs the
/// component: the README's hello example prints `hello 1` … `hello 3`.
fn readme_hello_builds_and_runs(lang: &str) {
    let repo = repo_root();
    let tmp = tmp_dir(&format!("hello-{lang}"));
    let _cleanup = Cleanup(tmp.clone());
    polyglot(&format!("{lang}/hello"), &tmp);
    let wasm = repo.join(format!("target/polyglot/{lang}-hello.wasm"));
    let lines = run_plugin(&wasm, &[], &tmp);
    let want: Vec<String> = (1..=3)
        .map(|n| format!("[{lang}-hello] hello {n}"))
        .collect();
    assert_eq!(lines, want);
}

#[test]
fn readme_python_hello_builds_and_runs() {
    readme_hello_builds_and_runs("python");
}

#[test]
fn readme_js_hello_builds_and_runs() {
    readme_hello_builds_and_runs("js");
}

#[test]
fn python_skeleton_builds_with_its_readme_command_and_runs() {
    // plugins/polyglot.sh installs componentize-py (plugins/python/.venv) on the way.
    let repo = repo_root();
    let tmp = tmp_dir("python");
    let _cleanup = Cleanup(tmp.clone());
    polyglot("python/hello", &tmp);
    let root = new_skeleton(&tmp, &["pydemo", "--python"]);
    assert!(root.join("app.py").is_file());
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let cmds = first_sh_block(&readme);
    let cmd = cmds.first().expect("a build command");
    assert!(cmd.starts_with("componentize-py "), "{readme}");
    let venv_bin = repo.join("plugins/python/.venv/bin");
    let path = format!(
        "{}:{}",
        venv_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let (ok, log) = run_logged(
        Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .current_dir(&root)
            .env("PATH", path),
        &tmp.join("build.log"),
        Duration::from_secs(600),
        "componentize-py",
    );
    assert!(ok, "{cmd} failed:\n{log}");
    let wasm = root.join("pydemo.wasm");
    assert!(wasm.is_file(), "no {}:\n{log}", wasm.display());

    let lines = run_plugin(&wasm, &["--every", "10ms", "--count", "3"], &tmp);
    assert_eq!(
        lines,
        ["[pydemo] tick 1", "[pydemo] tick 2", "[pydemo] tick 3"]
    );
}

#[test]
fn skeleton_refuses_bad_names_and_existing_dirs() {
    let tmp = tmp_dir("refuse");
    let _cleanup = Cleanup(tmp.clone());
    for bad in ["../up", "1st", "a b"] {
        let out = Command::new(host_bin())
            .args(["new", bad, "--dir"])
            .arg(&tmp)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(text(&out.stderr).contains("bad plugin name"), "{bad}");
    }
    std::fs::create_dir(tmp.join("taken")).unwrap();
    let out = Command::new(host_bin())
        .args(["new", "taken", "--dir"])
        .arg(&tmp)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("exists already"));
    assert_eq!(std::fs::read_dir(tmp.join("taken")).unwrap().count(), 0);

    // --sdk-git: the dependency line names the URL.
    let root = new_skeleton(
        &tmp,
        &["gitdemo", "--sdk-git", "https://example.invalid/callop"],
    );
    let cargo_toml = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(
        cargo_toml.contains("callop-guest = { git = \"https://example.invalid/callop\" }"),
        "{cargo_toml}"
    );
}
