//! The operator documentation (README.md and docs/**/*.md) against the real binaries:
//!
//! - every fenced ```toml block is a configuration `imei-lockd check-config` accepts (each block
//!   on its own, so every snippet shown is a complete file: every key has a default);
//! - every `imei-lockd ...` and `imei-lockctl ...` command shown (in code blocks and inline code)
//!   names subcommands and options the binary has (`<bin> <subcommand> --help` exits 0 and lists
//!   each `--option` used);
//! - every relative Markdown link resolves to a file of the repository, and its `#anchor` to a
//!   heading of the page it names;
//! - the reference pages are complete: every metric family of the catalogue is in
//!   docs/reference/metrics.md, every key of the shipped configuration in docs/reference/config.md.
//!
//! It does not run the commands themselves (they start daemons, need root, etcd or a gateway).
//! It runs in about a second after the build.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{bin, repo_root};

/// Pages other sessions of issue 19 write in parallel: linked from here, present only once their
/// branches are merged. A link to one of these exact paths is accepted while the file is missing;
/// any other missing target fails.
const WRITTEN_ELSEWHERE: &[&str] = &[
    "docs/operations/install-upgrade.md",
    "docs/operations/backup-restore.md",
    "docs/operations/security.md",
    "docs/operations/logging.md",
    // Also written by other sessions (named in the same brief): the index links to them.
    "docs/reference/webhooks.md",
    "docs/integration/s6b-identities.md",
];

/// README.md and every Markdown file under docs/, sorted.
fn pages() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "md") {
                out.push(p);
            }
        }
    }
    let root = repo_root();
    let mut out = vec![root.join("README.md")];
    walk(&root.join("docs"), &mut out);
    out.sort();
    assert!(out.len() > 10, "docs/ has too few pages: {out:?}");
    out
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn rel(p: &Path) -> String {
    p.strip_prefix(repo_root())
        .unwrap_or(p)
        .display()
        .to_string()
}

/// A fenced code block: its info string (`toml`, `sh`, ...), first line number, body.
struct Block {
    info: String,
    line: usize,
    body: String,
}

/// The fenced (```) code blocks of a page.
fn blocks(text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        match open.take() {
            None => {
                if let Some(info) = t.strip_prefix("```") {
                    open = Some(Block {
                        info: info.trim().to_owned(),
                        line: i + 1,
                        body: String::new(),
                    });
                }
            }
            Some(mut b) => {
                if t.starts_with("```") {
                    out.push(b);
                } else {
                    b.body.push_str(line);
                    b.body.push('\n');
                    open = Some(b);
                }
            }
        }
    }
    assert!(open.is_none(), "an unclosed code block");
    out
}

/// The text outside fenced blocks.
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            inside = !inside;
            out.push('\n');
            continue;
        }
        if !inside {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// Inline code spans (`...`) of prose.
fn inline_code(prose: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in prose.lines() {
        let mut parts = line.split('`');
        parts.next();
        while let Some(code) = parts.next() {
            out.push(code.to_owned());
            parts.next();
        }
    }
    out
}

#[test]
fn every_toml_block_passes_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for page in pages() {
        for (n, b) in blocks(&read(&page)).into_iter().enumerate() {
            if b.info.split_whitespace().next() != Some("toml") {
                continue;
            }
            // A block marked `needs-tls-files` names certificates, keys or CAs the test cannot make
            // up (check-config parses them); integration-tests/secrets.rs and day_two.rs run those forms.
            if b.info.split_whitespace().any(|w| w == "needs-tls-files") {
                continue;
            }
            let file = dir.path().join(format!("snippet-{n}.toml"));
            std::fs::write(&file, &b.body).unwrap();
            // A snippet may name secret files relative to the config (beside it): supply them.
            for line in b.body.lines() {
                let line = line.trim();
                if let Some(rest) = line
                    .strip_prefix("token_file")
                    .or_else(|| line.strip_prefix("secret_file"))
                {
                    let name = rest.trim_start_matches([' ', '=']).trim_matches('"');
                    if !name.is_empty() && !name.starts_with('/') {
                        std::fs::write(dir.path().join(name), "documented-secret\n").unwrap();
                    }
                }
            }
            let mut cmd = Command::new(bin("imei-lockd"));
            cmd.arg("check-config").arg("--config").arg(&file);
            // The snippet alone: no override from the environment of the test run.
            for (k, _) in std::env::vars() {
                if k.starts_with("IMEI_LOCKD__") {
                    cmd.env_remove(k);
                }
            }
            let (code, text) = common::output(&mut cmd);
            assert_eq!(
                code,
                0,
                "{}:{}: the ```toml block is not a valid configuration:\n{text}\n{}",
                rel(&page),
                b.line,
                b.body
            );
            checked += 1;
        }
    }
    assert!(checked >= 5, "only {checked} toml blocks found in the docs");
}

/// What `<bin> <path...> --help` says: its subcommands and its options (`--name`, and whether
/// each takes a value).
struct Help {
    subcommands: BTreeSet<String>,
    options: Vec<(String, bool)>,
}

fn help(binary: &str, path: &[String]) -> Option<Help> {
    let mut cmd = Command::new(bin(binary));
    cmd.args(path).arg("--help");
    let (code, text) = common::output(&mut cmd);
    if code != 0 {
        return None;
    }
    let mut subcommands = BTreeSet::new();
    let mut options = Vec::new();
    let mut in_commands = false;
    for line in text.lines() {
        if !line.starts_with(' ') {
            in_commands = line.starts_with("Commands:");
            continue;
        }
        let t = line.trim_start();
        if in_commands {
            if let Some(name) = t.split_whitespace().next() {
                if name != "help" {
                    subcommands.insert(name.to_owned());
                }
            }
            continue;
        }
        // "-c, --config <FILE>  ..." or "--json  ..."; wrapped help text is not an option.
        if !t.starts_with('-') {
            continue;
        }
        for (i, _) in t.match_indices("--") {
            let rest = &t[i + 2..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            if name.is_empty() {
                continue;
            }
            let takes_value = rest[name.len()..].starts_with(" <");
            options.push((format!("--{name}"), takes_value));
            break;
        }
    }
    Some(Help {
        subcommands,
        options,
    })
}

/// One command line of the docs running a binary: the tokens after its name, up to a shell
/// operator or comment. The name counts in command position only (first word, or after `sudo`,
/// `$`, `&&`, `|`, ... or `VAR=value`), so `systemctl reload imei-lockd` is not a command of it.
fn command_args(line: &str, binary: &str) -> Option<Vec<String>> {
    let tokens: Vec<&str> = line.split_whitespace().collect();
    let mut command_position = true;
    let mut at = None;
    for (i, t) in tokens.iter().enumerate() {
        if command_position && (*t == binary || t.ends_with(&format!("/{binary}"))) {
            at = Some(i);
            break;
        }
        let prefix = ["sudo", "$", "exec", "time", "&&", "||", ";", "|"].contains(t);
        command_position = prefix || (command_position && t.contains('=') && !t.starts_with('-'));
    }
    let at = at?;
    let mut out = Vec::new();
    for t in &tokens[at + 1..] {
        if ["|", "&&", ";", ">", "2>&1", "\\", "||"].contains(t) || t.starts_with('#') {
            break;
        }
        out.push((*t).to_owned());
    }
    Some(out)
}

/// Checks one command: subcommands exist, each `--option` is one of its (or a global) option.
fn check_command(
    binary: &str,
    args: &[String],
    cache: &mut std::collections::BTreeMap<Vec<String>, Help>,
) -> Result<(), String> {
    let mut path: Vec<String> = Vec::new();
    let mut global: Vec<(String, bool)> = Vec::new();
    let mut i = 0;
    loop {
        if !cache.contains_key(&path) {
            let h = help(binary, &path)
                .ok_or_else(|| format!("`{binary} {} --help` fails", path.join(" ")))?;
            cache.insert(path.clone(), h);
        }
        let h = &cache[&path];
        if path.is_empty() {
            global.clone_from(&h.options);
        }
        // Options before the next subcommand (global ones at the top).
        while let Some(a) = args.get(i) {
            if !a.starts_with("--") {
                break;
            }
            let name = a.split('=').next().unwrap_or(a);
            let known = h
                .options
                .iter()
                .chain(global.iter())
                .find(|(o, _)| o == name)
                .ok_or_else(|| format!("`{binary} {}` has no option {name}", path.join(" ")))?;
            i += if known.1 && !a.contains('=') { 2 } else { 1 };
        }
        match args.get(i) {
            Some(a) if h.subcommands.contains(a) => {
                path.push(a.clone());
                i += 1;
            }
            Some(a) if !h.subcommands.is_empty() && !a.starts_with('-') => {
                let words = a.chars().all(|c| c.is_ascii_lowercase() || c == '-');
                if words {
                    return Err(format!(
                        "`{binary} {}` has no subcommand {a:?} (it has {:?})",
                        path.join(" "),
                        h.subcommands
                    ));
                }
                break;
            }
            _ => break,
        }
    }
    // The rest: positional values and the leaf's options.
    let h = &cache[&path];
    for a in &args[i..] {
        if a.starts_with("--") {
            let name = a.split('=').next().unwrap_or(a);
            if !h
                .options
                .iter()
                .chain(global.iter())
                .any(|(o, _)| o == name)
            {
                return Err(format!(
                    "`{binary} {}` has no option {name}",
                    path.join(" ")
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn every_command_shown_names_real_subcommands_and_options() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for binary in ["imei-lockd", "imei-lockctl"] {
        let mut cache = std::collections::BTreeMap::new();
        for page in pages() {
            let text = read(&page);
            let mut lines: Vec<String> = inline_code(&prose(&text));
            for b in blocks(&text) {
                let shell = ["sh", "bash", "shell", "console"];
                if shell.contains(&b.info.split_whitespace().next().unwrap_or("")) {
                    lines.extend(b.body.lines().map(str::to_owned));
                }
            }
            for line in lines {
                let Some(args) = command_args(&line, binary) else {
                    continue;
                };
                // Placeholders such as `imei-lockctl <sub> --help` are not commands.
                if args.iter().any(|a| a.starts_with('<') || a.contains("...")) {
                    continue;
                }
                checked += 1;
                if let Err(e) = check_command(binary, &args, &mut cache) {
                    failures.push(format!("{}: `{}`: {e}", rel(&page), line.trim()));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 20, "only {checked} commands found in the docs");
}

/// GitHub's anchor of a heading: lower case, letters, digits, `-` and `_` kept, spaces to `-`,
/// the rest dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a page's headings (outside code blocks).
fn anchors(page: &Path) -> BTreeSet<String> {
    prose(&read(page))
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| slug(l.trim_start_matches('#')))
        .collect()
}

#[test]
fn relative_links_resolve() {
    let root = repo_root();
    let mut failures = Vec::new();
    for page in pages() {
        let text = prose(&read(&page));
        for (i, _) in text.match_indices("](") {
            let rest = &text[i + 2..];
            let Some(end) = rest.find(')') else {
                continue;
            };
            let target = rest[..end].split_whitespace().next().unwrap_or("");
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
            let resolved = if file.is_empty() {
                page.clone()
            } else {
                page.parent().unwrap_or(&root).join(file)
            };
            if !resolved.exists() {
                let normal = normalize(&resolved);
                let known_later = normal
                    .strip_prefix(&root)
                    .ok()
                    .is_some_and(|p| WRITTEN_ELSEWHERE.iter().any(|w| Path::new(w) == p));
                if !known_later {
                    failures.push(format!("{}: link to {target} does not resolve", rel(&page)));
                }
                continue;
            }
            let is_page = resolved.extension().is_some_and(|x| x == "md");
            if !anchor.is_empty() && is_page && !anchors(&resolved).contains(anchor) {
                failures.push(format!(
                    "{}: link to {target}: no heading with that anchor",
                    rel(&page)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `a/b/../c` → `a/c` without touching the file system.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[test]
fn metrics_reference_lists_every_family() {
    let page = read(&repo_root().join("docs/reference/metrics.md"));
    let missing: Vec<&str> = imei_lockd::telemetry::catalogue::FAMILIES
        .iter()
        .map(|f| f.name)
        .filter(|name| !page.contains(&format!("`{name}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/reference/metrics.md lacks these families of src/telemetry/catalogue.rs: {missing:?}"
    );
}

/// Every key of conf/imei-lockd.toml, commented-out examples included, as `section.key`
/// (`[[radius.clients]]` keys as `radius.clients[].key`).
fn shipped_keys() -> Vec<String> {
    let text = read(&repo_root().join("conf/imei-lockd.toml"));
    let mut section = String::new();
    let mut keys = Vec::new();
    for line in text.lines() {
        let t = line.trim_start_matches('#').trim();
        if let Some(s) = t.strip_prefix("[[").and_then(|s| s.split("]]").next()) {
            section = format!("{s}[]");
            continue;
        }
        if let Some(s) = t.strip_prefix('[').and_then(|s| s.split(']').next()) {
            let name =
                |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '_';
            if !s.is_empty() && s.chars().all(name) {
                section = s.to_owned();
            }
            continue;
        }
        let Some((key, _)) = t.split_once(" = ") else {
            continue;
        };
        let name = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
        if !section.is_empty() && key.chars().all(name) {
            keys.push(format!("{section}.{key}"));
        }
    }
    keys
}

#[test]
fn config_reference_lists_every_shipped_key() {
    let page = read(&repo_root().join("docs/reference/config.md"));
    let keys = shipped_keys();
    assert!(keys.len() > 30, "found only {} keys: {keys:?}", keys.len());
    let missing: Vec<&String> = keys
        .iter()
        .filter(|k| !page.contains(&format!("`{k}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/reference/config.md lacks these keys of conf/imei-lockd.toml: {missing:?}"
    );
}
