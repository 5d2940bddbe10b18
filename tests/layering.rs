//! The architecture as a test: lower layers never use higher ones, and no two sibling
//! modules use each other (directly or around a loop). It reads the sources, as a
//! reviewer would, and fails naming the offending use.
//!
//! Layers, lowest first: `error`/`locks`; `auth`; `net`; `store`; `protocol`; `connection`;
//! `replication`; `node`; `cluster`, `resp`, `shell`; `server`; `cli`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module and the top-level modules it may use.
const ALLOWED: &[(&str, &[&str])] = &[
    ("error", &[]),
    ("locks", &[]),
    ("auth", &["error"]),
    ("store", &["error", "locks"]),
    ("protocol", &["error", "store"]),
    ("net", &["error", "auth"]),
    ("connection", &["error", "protocol", "net"]),
    (
        "replication",
        &[
            "error",
            "auth",
            "locks",
            "store",
            "protocol",
            "connection",
            "net",
        ],
    ),
    ("node", &["error", "locks", "store", "replication"]),
    (
        "cluster",
        &["error", "locks", "store", "replication", "node"],
    ),
    (
        "resp",
        &[
            "error",
            "auth",
            "locks",
            "net",
            "node",
            "replication",
            "store",
        ],
    ),
    ("shell", &["error", "net", "node", "replication", "store"]),
    (
        "server",
        &[
            "error",
            "auth",
            "net",
            "node",
            "replication",
            "resp",
            "store",
            "cluster",
        ],
    ),
    (
        "cli",
        &[
            "error", "auth", "net", "node", "server", "shell", "store", "cluster",
        ],
    ),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, with unit-test files left out (tests may use anything).
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read src").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs")
            && path.file_stem().is_some_and(|s| s != "tests")
        {
            files.push(path);
        }
    }
    files
}

/// The code of a file without comments and without its `#[cfg(test)] mod tests` block.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("read source");
    let text = match text.find("#[cfg(test)]\nmod tests {") {
        Some(at) => &text[..at],
        None => &text,
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first path segments after each `prefix` in `code` (`prefix{a::b, c}` gives a, c).
fn uses_after(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices(prefix) {
        let rest = &code[at + prefix.len()..];
        let group = match rest.strip_prefix('{') {
            Some(inner) => inner[..inner.find('}').unwrap_or(inner.len())].to_string(),
            None => rest.to_string(),
        };
        let entries: Vec<&str> = match rest.starts_with('{') {
            true => group.split(',').collect(),
            false => vec![group.as_str()],
        };
        for entry in entries {
            let name: String = entry
                .trim()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

/// The top-level module a source file belongs to.
fn top_module(path: &Path) -> String {
    let relative = path.strip_prefix(src()).expect("under src");
    let first = relative.components().next().expect("a component");
    let name = first.as_os_str().to_string_lossy();
    name.trim_end_matches(".rs").to_string()
}

#[test]
fn lower_layers_never_use_higher_ones() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut violations = Vec::new();
    for path in sources(&src()) {
        let module = top_module(&path);
        let Some(may_use) = allowed.get(module.as_str()) else {
            continue; // lib.rs, main.rs: the crate's roots
        };
        for used in uses_after(&code(&path), "crate::") {
            let known = allowed.contains_key(used.as_str());
            if known && used != module && !may_use.contains(&used.as_str()) {
                violations.push(format!("{} uses crate::{used}", path.display()));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "layering broken:\n{}",
        violations.join("\n")
    );
}

#[test]
fn sibling_modules_have_no_import_cycles() {
    let mut directories = BTreeSet::new();
    for path in sources(&src()) {
        if let Some(parent) = path.parent() {
            directories.insert(parent.to_path_buf());
        }
    }
    for dir in directories {
        // Sibling modules of this directory (its mod.rs is their parent, not a sibling).
        let siblings: BTreeMap<String, PathBuf> = sources(&dir)
            .into_iter()
            .filter(|p| p.parent() == Some(dir.as_path()))
            .filter_map(|p| {
                let stem = p.file_stem()?.to_string_lossy().to_string();
                (stem != "mod" && stem != "lib" && stem != "main").then_some((stem, p))
            })
            .collect();
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (name, path) in &siblings {
            let code = code(path);
            let module_path = format!(
                "crate::{}::",
                dir.strip_prefix(src())
                    .expect("under src")
                    .to_string_lossy()
                    .replace('/', "::")
            );
            let mut used = uses_after(&code, "super::");
            if module_path != "crate::::" {
                used.extend(uses_after(&code, &module_path));
            }
            used.retain(|u| u != name && siblings.contains_key(u));
            edges.insert(name.clone(), used);
        }
        if let Some(cycle) = find_cycle(&edges) {
            panic!("import cycle in {}: {}", dir.display(), cycle.join(" -> "));
        }
    }
}

/// A cycle in `edges`, as the modules along it, if there is one.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|start| visit(start, edges, &mut Vec::new(), &mut done))
}
