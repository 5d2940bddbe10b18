//! The documentation stays inside the repository: every relative link in its Markdown
//! files resolves to a file or directory of this repository (a clean clone has nothing
//! beside it), and the design of record is here.

use std::path::{Component, Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.md` file of the repository, outside build output and hidden directories.
fn markdown_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') || name == "target" {
            continue;
        }
        if path.is_dir() {
            files.extend(markdown_files(&path));
        } else if name.ends_with(".md") {
            files.push(path);
        }
    }
    files
}

/// The targets of `[text](target)` links in `text`.
fn link_targets(text: &str) -> Vec<String> {
    text.match_indices("](")
        .filter_map(|(at, _)| {
            let rest = &text[at + 2..];
            let end = rest.find(')')?;
            Some(rest[..end].trim().to_string())
        })
        .collect()
}

/// `path` with `.` and `..` resolved lexically (no filesystem access).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[test]
fn every_relative_link_resolves_inside_the_repository() {
    let root = root();
    let mut broken = Vec::new();
    for file in markdown_files(&root) {
        let text = std::fs::read_to_string(&file).expect("read markdown");
        for target in link_targets(&text) {
            let external = target.contains("://") || target.starts_with("mailto:");
            let path = target.split('#').next().unwrap_or("");
            if external || path.is_empty() {
                continue;
            }
            let resolved = normalize(&file.parent().expect("a directory").join(path));
            if !resolved.starts_with(&root) || !resolved.exists() {
                broken.push(format!("{}: {target}", file.display()));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "links that leave the repo or go nowhere:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_design_of_record_is_in_the_repository() {
    let design = std::fs::read_to_string(root().join("docs/design.md")).expect("docs/design.md");
    assert!(
        design.contains("## Invariants"),
        "the invariants are part of it"
    );
}
