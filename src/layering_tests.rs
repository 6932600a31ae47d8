//! The rule of ARCHITECTURE.md that no two top-level modules of `src/` use each other, directly
//! or through others, checked on the source: a change that makes a cycle fails here, with the
//! modules named, instead of in a reviewer's head.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module → the top-level modules it names as `crate::…`.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|ext| ext != "rs") {
                continue;
            }
            let relative = path.strip_prefix(&src).unwrap();
            let first = relative.components().next().unwrap().as_os_str().to_string_lossy();
            let module = first.trim_end_matches(".rs").to_owned();
            if module == "lib" || module == "main" || module == "layering_tests" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let used = graph.entry(module.clone()).or_default();
            for (at, _) in text.match_indices("crate::") {
                let rest = &text[at + "crate::".len()..];
                let name: String =
                    rest.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
                if !name.is_empty() && name != module {
                    used.insert(name);
                }
            }
        }
    }
    graph
}

/// Whether `to` can be reached from `from`, and by which path.
fn path(graph: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> Option<Vec<String>> {
    let mut seen = BTreeSet::new();
    let mut queue = vec![vec![from.to_owned()]];
    while let Some(path) = queue.pop() {
        let last = path.last().unwrap();
        for next in graph.get(last).into_iter().flatten() {
            if next == to {
                let mut found = path.clone();
                found.push(next.clone());
                return Some(found);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                queue.push(longer);
            }
        }
    }
    None
}

#[test]
fn no_two_top_level_modules_use_each_other() {
    let graph = imports();
    assert!(graph.len() > 10, "the walk found the modules: {graph:?}");
    let cycles: Vec<String> = graph
        .iter()
        .flat_map(|(module, used)| used.iter().map(move |other| (module, other)))
        .filter_map(|(module, other)| {
            let back = path(&graph, other, module)?;
            Some(format!("{module} -> {}", back.join(" -> ")))
        })
        .collect();
    assert!(cycles.is_empty(), "import cycles between folders:\n{}", cycles.join("\n"));
}
