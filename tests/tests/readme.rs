//! The READMEs' commands and snippets against the tree: what the quick start runs exists, every
//! `callop-host` command shown uses subcommands and flags the binary has, the plugins it names
//! exist, snippets headed by a file name are that file's text, the config example parses.
//!
//! Nothing here builds or runs a plugin (the other test files do): it only reads files and asks
//! `callop-host ... --help`, so it is quick.

use std::collections::BTreeMap;
use std::process::Command;

use callop_tests::{host_bin, repo_root, text};

/// A fenced code block: its info string (`sh`, `toml`, ...) and its lines.
struct Block {
    lang: String,
    lines: Vec<String>,
}

/// The fenced blocks of a markdown text.
fn blocks(md: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut cur: Option<Block> = None;
    for l in md.lines() {
        match (&mut cur, l.strip_prefix("```")) {
            (None, Some(info)) => {
                cur = Some(Block {
                    lang: info.trim().to_string(),
                    lines: Vec::new(),
                })
            }
            (Some(_), Some(_)) => out.push(cur.take().unwrap()),
            (Some(b), None) => b.lines.push(l.to_string()),
            (None, None) => {}
        }
    }
    assert!(cur.is_none(), "an unclosed code block");
    out
}

/// The text of `## heading` up to the next `## `.
fn section<'a>(md: &'a str, heading: &str) -> &'a str {
    let start = md
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("no section {heading:?}"));
    let rest = &md[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |e| e + 3);
    &rest[..end]
}

/// A shell line without its trailing `# comment`.
fn strip_comment(l: &str) -> &str {
    l.split(" #").next().unwrap().trim()
}

fn readme() -> String {
    std::fs::read_to_string(repo_root().join("README.md")).unwrap()
}

#[test]
fn quick_start_commands_exist() {
    let md = readme();
    let quick = section(&md, "## The two commands");
    let cmds: Vec<String> = blocks(quick)
        .into_iter()
        .filter(|b| b.lang == "sh")
        .flat_map(|b| b.lines)
        .map(|l| strip_comment(&l).to_string())
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(cmds, ["bash plugins/demo.sh", "bash tests/run-all.sh"]);
    for c in &cmds {
        let script = c.strip_prefix("bash ").unwrap();
        let path = repo_root().join(script);
        assert!(path.is_file(), "{c}: no {}", path.display());
        // The script parses (bash -n reads it without running anything).
        let ok = Command::new("bash").arg("-n").arg(&path).status().unwrap();
        assert!(ok.success(), "{c}: bash -n failed");
    }
}

/// `callop-host [SUB] --help`, memoised.
fn help<'a>(cache: &'a mut BTreeMap<String, String>, sub: &str) -> &'a str {
    cache.entry(sub.to_string()).or_insert_with(|| {
        let mut c = Command::new(host_bin());
        if !sub.is_empty() {
            c.arg(sub);
        }
        let out = c.arg("--help").output().unwrap();
        assert!(out.status.success(), "callop-host {sub} --help failed");
        text(&out.stdout)
    })
}

/// `help` lists `--flag` (not only a longer flag starting with it).
fn has_flag(help: &str, flag: &str) -> bool {
    let needle = format!("--{flag}");
    help.match_indices(&needle).any(|(i, _)| {
        help[i + needle.len()..]
            .chars()
            .next()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '-'))
    })
}

/// Every `callop-host ...` command in the README: in sh blocks, and inline in backticks.
fn host_commands(md: &str) -> Vec<String> {
    let mut cmds: Vec<String> = blocks(md)
        .iter()
        .filter(|b| b.lang == "sh")
        .flat_map(|b| b.lines.iter().map(|l| strip_comment(l).to_string()))
        .filter(|l| l.starts_with("callop-host "))
        .collect();
    for (i, span) in md.split('`').enumerate() {
        if i % 2 == 1 && span.starts_with("callop-host ") {
            cmds.push(span.to_string());
        }
    }
    cmds
}

#[test]
fn callop_host_commands_use_real_subcommands_flags_and_plugins() {
    let md = readme();
    let cmds = host_commands(&md);
    assert!(
        cmds.len() >= 8,
        "too few callop-host commands found: {cmds:?}"
    );
    let root = repo_root();
    let mut cache = BTreeMap::new();
    for cmd in &cmds {
        let words: Vec<&str> = cmd.split_whitespace().skip(1).collect();
        let sub = match words.first() {
            Some(w)
                if !w.starts_with('-') && !w.contains('.') && w.chars().all(char::is_lowercase) =>
            {
                let top = help(&mut cache, "").to_string();
                assert!(
                    top.contains(&format!("  {w} ")),
                    "{cmd}: no subcommand {w:?} in --help"
                );
                *w
            }
            _ => "",
        };
        let usage = help(&mut cache, sub).to_string();
        // Before `--`: the host's own flags and the plugins.
        for w in words.iter().take_while(|w| **w != "--") {
            if let Some(flag) = w.strip_prefix("--") {
                let flag = flag.split('=').next().unwrap();
                assert!(
                    has_flag(&usage, flag),
                    "{cmd}: callop-host {sub} has no --{flag}"
                );
            } else if let Some(stem) = w.split(['@', '=']).next().unwrap().strip_suffix(".wasm") {
                if stem.contains('/') || stem.starts_with(|c: char| c.is_uppercase()) {
                    continue; // a built path (target/polyglot/...) or a placeholder
                }
                let krate = root.join("plugins").join(stem.replace('_', "-"));
                if ["flaky", "a", "b"].contains(&stem) {
                    continue; // stand-ins in the syntax examples
                }
                assert!(
                    krate.join("Cargo.toml").is_file(),
                    "{cmd}: {stem}.wasm is no plugin under plugins/"
                );
            }
        }
    }
}

#[test]
fn polyglot_plugins_named_exist() {
    let root = repo_root();
    let mut named = 0;
    for readme in [
        "README.md",
        "plugins/python/README.md",
        "plugins/js/README.md",
    ] {
        let md = std::fs::read_to_string(root.join(readme)).unwrap();
        for (i, _) in md.match_indices("polyglot.sh ") {
            let rest = &md[i + "polyglot.sh ".len()..];
            for w in rest.split_whitespace().take_while(|w| !w.starts_with('#')) {
                let w = w.trim_end_matches(['`', ',', ')', '.', ';']);
                let (lang, name) = match w.split_once('/') {
                    Some((l @ ("python" | "js"), n)) if !n.starts_with('<') => (l, n),
                    _ => break,
                };
                let ext = if lang == "js" { "js" } else { "py" };
                let app = root
                    .join("plugins")
                    .join(lang)
                    .join(name)
                    .join(format!("app.{ext}"));
                assert!(
                    app.is_file(),
                    "{readme}: polyglot.sh {w}: no {}",
                    app.display()
                );
                named += 1;
            }
        }
    }
    assert!(
        named >= 3,
        "found only {named} plugin names after polyglot.sh"
    );
}

#[test]
fn snippets_headed_by_a_file_are_that_file() {
    let root = repo_root();
    let mut checked = Vec::new();
    for readme in [
        "README.md",
        "plugins/python/README.md",
        "plugins/js/README.md",
    ] {
        let md = std::fs::read_to_string(root.join(readme)).unwrap();
        for b in blocks(&md) {
            let Some(first) = b.lines.first() else {
                continue;
            };
            let named = first
                .strip_prefix("# ")
                .or_else(|| first.strip_prefix("// "))
                .filter(|p| p.starts_with("plugins/") && !p.contains(' '));
            let Some(rel) = named else { continue };
            let path = root.join(rel);
            let file = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{readme}: snippet of {rel}: {e}"));
            let body = b.lines.join("\n");
            assert!(
                file.contains(&body),
                "{readme}: the snippet headed {rel} is not the text of {}:\n{body}",
                path.display()
            );
            checked.push(format!("{readme}: {rel}"));
        }
    }
    assert!(checked.len() >= 4, "{checked:?}");
}

#[test]
fn config_example_parses() {
    let md = readme();
    let all = blocks(&md);
    let toml: Vec<&Block> = all
        .iter()
        .filter(|b| b.lang == "toml" && b.lines.iter().any(|l| l.starts_with("[limits]")))
        .collect();
    assert_eq!(toml.len(), 1);
    let text = toml[0].lines.join("\n");
    let cfg = callop_plugin_host::config::ConfigFile::parse(&text)
        .unwrap_or_else(|e| panic!("README's config example: {e}\n{text}"));
    cfg.check_instances(&["echo".to_string()]).unwrap();
}

#[test]
fn files_the_readme_points_at_exist() {
    let md = readme();
    let root = repo_root();
    let mut checked = 0;
    for (i, span) in md.split('`').enumerate() {
        let tops = ["host/", "plugins/", "tests/", "wit/", "guest-sdk/", ".ci/"];
        let is_path = i % 2 == 1
            && tops.iter().any(|t| span.starts_with(t))
            && !span.contains([' ', '<', '*', '{', '('])
            // Made by the first build, git-ignored.
            && !span.contains(".venv")
            && !span.contains("node_modules")
            && !span.contains("/target");
        if is_path {
            assert!(root.join(span).exists(), "README names `{span}`: missing");
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} paths found");
}
