//! `callop-host new NAME [--python|--js] [--dir DIR]`: writes a plugin skeleton.
//!
//! The skeleton is a directory `DIR/NAME` that builds on its own, outside the callop
//! repository. For Rust: a `cdylib` crate depending on the guest SDK (`callop-guest`, by the
//! absolute path of this checkout's `guest-sdk/`, or by `--sdk-git URL`), a ticker in
//! `src/lib.rs`, a `.cargo/config.toml` selecting `wasm32-wasip2` and a README with the build
//! command. For `--python` / `--js`: an `app.py` / `app.js` shaped like `plugins/python/*/` and
//! `plugins/js/*/`, with a README saying how to build it against this checkout's helper library.
//! The templates are `host/cli/templates/`, compiled in. Existing files are never overwritten.

use std::fmt;
use std::path::{Path, PathBuf};

use clap::Args;

/// Arguments of `callop-host new`.
#[derive(Args, Debug, Clone)]
pub struct NewArgs {
    /// Plugin (and crate) name: letters, digits, `-` and `_`, starting with a letter.
    pub name: String,
    /// A Python plugin (`app.py`, built with componentize-py) instead of a Rust crate.
    #[arg(long, conflicts_with = "js")]
    pub python: bool,
    /// A JavaScript plugin (`app.js`, built with componentize-js) instead of a Rust crate.
    #[arg(long)]
    pub js: bool,
    /// Directory in which `NAME/` is created [default: the current directory].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Depend on the guest SDK by this git URL instead of this checkout's path.
    #[arg(long, value_name = "URL", conflicts_with = "sdk_path")]
    pub sdk_git: Option<String>,
    /// The guest SDK directory (`guest-sdk/` of a callop checkout) [default: this checkout's].
    #[arg(long, value_name = "DIR")]
    pub sdk_path: Option<PathBuf>,
}

/// The language of a skeleton.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// A Rust crate over `callop-guest`.
    Rust,
    /// A Python plugin directory (`app.py`).
    Python,
    /// A JavaScript plugin directory (`app.js`).
    Js,
}

/// Where a Rust skeleton gets the guest SDK from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sdk {
    /// `callop-guest = { path = ... }` (an absolute path).
    Path(PathBuf),
    /// `callop-guest = { git = ... }`.
    Git(String),
}

/// Why no skeleton was written.
#[derive(Debug)]
pub enum NewError {
    /// The name is not a usable package name.
    BadName(String),
    /// No guest SDK found (and none given).
    NoSdk(String),
    /// `DIR/NAME` exists already.
    Exists(PathBuf),
    /// Writing failed.
    Io(PathBuf, std::io::Error),
}

impl fmt::Display for NewError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NewError::BadName(n) => write!(
                f,
                "bad plugin name {n:?}: use letters, digits, `-` and `_`, starting with a letter (at most 64)"
            ),
            NewError::NoSdk(why) => write!(
                f,
                "{why}; pass --sdk-path DIR (the guest-sdk/ directory of a callop checkout) or --sdk-git URL"
            ),
            NewError::Exists(p) => write!(f, "{} exists already (nothing written)", p.display()),
            NewError::Io(p, e) => write!(f, "{}: {e}", p.display()),
        }
    }
}

/// The callop checkout this binary was built from (`host/cli/../..`), if it is still there.
pub fn this_checkout() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = root.canonicalize().ok()?;
    root.join("guest-sdk/Cargo.toml").is_file().then_some(root)
}

/// Checks that `name` can be a cargo package name and a directory name.
pub fn check_name(name: &str) -> Result<(), NewError> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(NewError::BadName(name.to_string()))
    }
}

/// `s` as a TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Fills `{{key}}` placeholders.
fn fill(template: &str, vars: &[(&str, &str)]) -> String {
    let mut s = template.to_string();
    for (k, v) in vars {
        s = s.replace(&format!("{{{{{k}}}}}"), v);
    }
    s
}

/// The files of a skeleton: paths relative to `NAME/`, and their contents.
///
/// `checkout` is the callop checkout the Python/JS build notes point at (a placeholder path
/// when unknown).
pub fn render(name: &str, lang: Lang, sdk: &Sdk, checkout: &Path) -> Vec<(PathBuf, String)> {
    let crate_name = name.replace('-', "_");
    let checkout = checkout.display().to_string();
    let (sdk_dep, sdk_note) = match sdk {
        Sdk::Path(p) => (
            format!(
                "callop-guest = {{ path = {} }}",
                toml_str(&p.display().to_string())
            ),
            format!("by path, `{}`", p.display()),
        ),
        Sdk::Git(url) => (
            format!("callop-guest = {{ git = {} }}", toml_str(url)),
            format!("from git, `{url}`; add `rev = \"...\"` to pin it"),
        ),
    };
    let vars = [
        ("name", name),
        ("crate", crate_name.as_str()),
        ("sdk_dep", sdk_dep.as_str()),
        ("sdk_note", sdk_note.as_str()),
        ("checkout", checkout.as_str()),
    ];
    let files: &[(&str, &str)] = match lang {
        Lang::Rust => &[
            (
                "Cargo.toml",
                include_str!("../templates/rust/Cargo.toml.tmpl"),
            ),
            (
                ".cargo/config.toml",
                include_str!("../templates/rust/cargo-config.toml.tmpl"),
            ),
            (
                ".gitignore",
                include_str!("../templates/rust/gitignore.tmpl"),
            ),
            ("src/lib.rs", include_str!("../templates/rust/lib.rs.tmpl")),
            (
                "README.md",
                include_str!("../templates/rust/README.md.tmpl"),
            ),
        ],
        Lang::Python => &[
            ("app.py", include_str!("../templates/python/app.py.tmpl")),
            (
                "README.md",
                include_str!("../templates/python/README.md.tmpl"),
            ),
        ],
        Lang::Js => &[
            ("app.js", include_str!("../templates/js/app.js.tmpl")),
            ("README.md", include_str!("../templates/js/README.md.tmpl")),
        ],
    };
    files
        .iter()
        .map(|(p, t)| (PathBuf::from(p), fill(t, &vars)))
        .collect()
}

/// Writes the skeleton for `args` into `DIR/NAME`; returns that directory and the files.
pub fn create(args: &NewArgs) -> Result<(PathBuf, Vec<PathBuf>), NewError> {
    check_name(&args.name)?;
    let lang = if args.python {
        Lang::Python
    } else if args.js {
        Lang::Js
    } else {
        Lang::Rust
    };
    let given_sdk = match &args.sdk_path {
        Some(p) => {
            let p = p
                .canonicalize()
                .map_err(|e| NewError::NoSdk(format!("--sdk-path {}: {e}", p.display())))?;
            if !p.join("Cargo.toml").is_file() {
                return Err(NewError::NoSdk(format!(
                    "--sdk-path {}: no Cargo.toml there",
                    p.display()
                )));
            }
            Some(p)
        }
        None => None,
    };
    let checkout = match &given_sdk {
        Some(p) => p.parent().map(Path::to_path_buf),
        None => this_checkout(),
    };
    let sdk = match (&args.sdk_git, given_sdk, &checkout) {
        (Some(url), _, _) => Sdk::Git(url.clone()),
        (None, Some(p), _) => Sdk::Path(p),
        (None, None, Some(root)) => Sdk::Path(root.join("guest-sdk")),
        (None, None, None) if lang == Lang::Rust => {
            return Err(NewError::NoSdk(format!(
                "the callop checkout this binary was built from ({}) is gone",
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../..")
                    .display()
            )));
        }
        (None, None, None) => Sdk::Path(PathBuf::from("/path/to/callop/guest-sdk")),
    };
    let checkout = checkout.unwrap_or_else(|| PathBuf::from("/path/to/callop"));
    let base = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let root = base.join(&args.name);
    if root.exists() {
        return Err(NewError::Exists(root));
    }
    let mut written = Vec::new();
    for (rel, text) in render(&args.name, lang, &sdk, &checkout) {
        let path = root.join(&rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| NewError::Io(parent.to_path_buf(), e))?;
        }
        // create_new: never overwrite (a directory made by someone else in between).
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()))
            .map_err(|e| NewError::Io(path.clone(), e))?;
        written.push(path);
    }
    Ok((root, written))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_checked() {
        for ok in ["demo", "my-plugin", "a_b2"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1x", "-x", "a b", "a/b", "..", "é", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_placeholder_filled() {
        let sdk = Sdk::Path(PathBuf::from("/x/guest-sdk"));
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            for (p, text) in render("my-demo", lang, &sdk, Path::new("/x")) {
                assert!(!text.contains("{{"), "{}: {text}", p.display());
            }
        }
        let files = render("my-demo", Lang::Rust, &sdk, Path::new("/x"));
        let cargo = &files
            .iter()
            .find(|(p, _)| p == Path::new("Cargo.toml"))
            .unwrap()
            .1;
        assert!(cargo.contains("name = \"my-demo\""));
        assert!(cargo.contains("callop-guest = { path = \"/x/guest-sdk\" }"));
        let readme = &files
            .iter()
            .find(|(p, _)| p == Path::new("README.md"))
            .unwrap()
            .1;
        assert!(readme.contains("release/my_demo.wasm"));
        let git = render(
            "d",
            Lang::Rust,
            &Sdk::Git("https://h/r".into()),
            Path::new("/x"),
        );
        assert!(
            git[0]
                .1
                .contains("callop-guest = { git = \"https://h/r\" }")
        );
    }

    #[test]
    fn toml_strings_escaped() {
        assert_eq!(toml_str(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(toml_str("a\nb"), r#""a\u000Ab""#);
    }

    #[test]
    fn never_overwrites() {
        let dir = std::env::temp_dir().join(format!("callop-new-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let args = NewArgs {
            name: "p".into(),
            python: true,
            js: false,
            dir: Some(dir.clone()),
            sdk_git: None,
            sdk_path: None,
        };
        let (root, files) = create(&args).unwrap();
        assert_eq!(root, dir.join("p"));
        assert!(files.iter().any(|f| f.ends_with("app.py")));
        assert!(matches!(create(&args), Err(NewError::Exists(_))));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
