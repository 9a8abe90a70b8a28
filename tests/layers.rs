//! The layers of `src/` hold: each module's doc says what it may call, that is all it
//! calls, and no module calls one above its own.
//!
//! Reads the sources only. A module's calls are its `crate::NAME` paths outside its unit
//! tests; what it may call is the backticked module names of the "May call ..." sentence of
//! its top doc (or none, when the doc says it calls nothing else in Cairn).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, from the top: a module may call only modules of lower layers.
const LAYERS: &[&[&str]] = &[
    &["main", "fuzzing", "snapshot_cli"],
    &["api", "peer", "auto_compaction"],
    &["server"],
    &["raft"],
    &["apply", "etcd_backend"],
    &["watch", "lease", "members", "auth", "alarms"],
    &["mvcc"],
    &["storage"],
    &["config"],
    &["cluster", "net", "feature_gates", "metrics", "etcd_data"],
    &[
        "failpoints",
        "proto",
        "error",
        "telemetry",
        "bbolt",
        "crc32c",
    ],
];

/// Shared by every layer: the wire messages, etcd's errors, fault-injection points, and
/// the spans of work done for a request (opened where the work happens).
const EVERYONE_MAY_CALL: [&str; 4] = ["proto", "error", "failpoints", "telemetry"];

/// Modules without a doc of their own to check: the binary and the crate root.
const UNCHECKED: [&str; 2] = ["main", "lib"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to: `src/server/kv.rs` → `server`.
fn module_of(file: &Path) -> String {
    let rel = file.strip_prefix(src()).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_str()
        .unwrap();
    first.trim_end_matches(".rs").to_string()
}

/// Unit tests stand outside the layers: a test may open whatever it needs (a store takes
/// `storage`). Inline ones are cut from their file (`code`); files of their own are skipped.
fn is_unit_test_file(file: &Path) -> bool {
    file.file_name().is_some_and(|n| n == "tests.rs")
}

/// The code of a file without comments and without its unit tests.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(tests) => &text[..tests],
        None => text,
    };
    text.lines()
        .map(|line| line.split("//").next().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Names after `crate::`, in paths and in `use crate::{a, b::c}` groups.
fn crate_paths(code: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    names.insert(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            names.insert(name);
        }
    }
    names
}

/// What a module's top doc says it may call; None when the doc says neither.
fn claimed(doc: &str, modules: &BTreeSet<String>) -> Option<BTreeSet<String>> {
    let doc = doc.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some(at) = doc.find("May call") {
        let sentence = &doc[at..];
        let end = sentence.find(". ").unwrap_or(sentence.len());
        let names = sentence[..end]
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|name| modules.contains(*name))
            .map(str::to_string)
            .collect();
        return Some(names);
    }
    let says_none = doc.contains("alls nothing else in Cairn")
        || doc.contains("alls nothing in Cairn")
        || doc.contains("May call nothing");
    says_none.then(BTreeSet::new)
}

fn top_doc(module: &str) -> String {
    let file = [
        src().join(format!("{module}.rs")),
        src().join(module).join("mod.rs"),
    ]
    .into_iter()
    .find(|f| f.exists())
    .unwrap_or_else(|| panic!("no file for module {module}"));
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .take_while(|l| l.starts_with("//!") || l.trim().is_empty())
        .map(|l| l.trim_start_matches("//!"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_module_calls_only_what_its_doc_says_and_only_lower_layers() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut calls: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files.iter().filter(|f| !is_unit_test_file(f)) {
        let module = module_of(file);
        let text = std::fs::read_to_string(file).unwrap();
        let names = crate_paths(&code(&text));
        calls.entry(module.clone()).or_default().extend(names);
    }
    let modules: BTreeSet<String> = calls.keys().cloned().collect();
    let layer_of = |m: &str| LAYERS.iter().position(|layer| layer.contains(&m));
    let mut faults = Vec::new();
    for (module, called) in &calls {
        let Some(layer) = layer_of(module) else {
            if module != "lib" {
                faults.push(format!("{module}: in no layer (add it to LAYERS)"));
            }
            continue;
        };
        let called: BTreeSet<&String> = called
            .iter()
            .filter(|c| *c != module && modules.contains(*c))
            .collect();
        for c in &called {
            match layer_of(c) {
                Some(l) if l > layer => {}
                _ => faults.push(format!("{module} calls {c}, which is not below it")),
            }
        }
        if UNCHECKED.contains(&module.as_str()) {
            continue;
        }
        let Some(allowed) = claimed(&top_doc(module), &modules) else {
            faults.push(format!(
                "{module}: its doc says neither \"May call\" nor \"calls nothing else in Cairn\""
            ));
            continue;
        };
        for c in called {
            if !allowed.contains(c) && !EVERYONE_MAY_CALL.contains(&c.as_str()) {
                faults.push(format!("{module} calls {c}, which its doc does not list"));
            }
        }
    }
    assert!(faults.is_empty(), "layering faults:\n{}", faults.join("\n"));
}

#[test]
fn the_check_sees_paths_and_groups_and_skips_comments_and_unit_tests() {
    let text = "use crate::mvcc::Mvcc;\nuse crate::{raft::Raft, storage};\n// crate::api\nlet x = crate::watch::f();\n#[cfg(test)]\nmod tests {\n    use crate::config;\n}\n";
    let names = crate_paths(&code(text));
    let expected: BTreeSet<String> = ["mvcc", "raft", "storage", "watch"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(names, expected);
    let modules: BTreeSet<String> = ["raft", "mvcc", "net"]
        .into_iter()
        .map(String::from)
        .collect();
    let claim = claimed(
        "Owns x.\n May call `raft` and\n `mvcc`. Not `net`.",
        &modules,
    )
    .unwrap();
    assert_eq!(claim.len(), 2);
    assert!(claim.contains("raft") && claim.contains("mvcc"));
    assert_eq!(
        claimed("Calls nothing else in Cairn.", &modules),
        Some(BTreeSet::new())
    );
    assert_eq!(claimed("Owns x.", &modules), None);
}
