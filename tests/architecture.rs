//! Module boundaries: data flows one way (DESIGN.md). A module may use only modules that
//! come before it in ORDER; this test scans each module's sources for `crate::<module>`.

use std::path::Path;

const ORDER: [&str; 15] = [
    "env", "fs", "digest", "recipe", "graph", "drv", "layer", "store", "fetch", "remote", "build",
    "runtime", "image", "assembly", "cli",
];

/// Leaf utilities may use each other; everything else only what comes earlier.
fn allowed(module: &str, used: &str) -> bool {
    let leaf = |m: &str| matches!(m, "env" | "fs" | "digest");
    let position = |m: &str| ORDER.iter().position(|o| *o == m);
    match (position(module), position(used)) {
        (Some(_), Some(_)) if leaf(module) && leaf(used) => true,
        (Some(m), Some(u)) => u < m || m == u,
        _ => false,
    }
}

fn sources(path: &Path, out: &mut Vec<std::path::PathBuf>) {
    if path.is_dir() {
        for entry in fs_err::read_dir(path).unwrap() {
            sources(&entry.unwrap().path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_owned());
    }
}

#[test]
fn modules_only_use_modules_before_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut violations = Vec::new();
    let mut seen_modules = Vec::new();
    for module in ORDER {
        let (dir, file) = (src.join(module), src.join(format!("{module}.rs")));
        let mut files = Vec::new();
        sources(if dir.is_dir() { &dir } else { &file }, &mut files);
        if files.is_empty() {
            continue;
        }
        seen_modules.push(module);
        for path in files {
            let text = fs_err::read_to_string(&path).unwrap();
            for (index, line) in text.lines().enumerate() {
                let mut rest = line;
                while let Some(at) = rest.find("crate::") {
                    rest = &rest[at + "crate::".len()..];
                    let used: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if ORDER.contains(&used.as_str()) && !allowed(module, &used) {
                        violations.push(format!(
                            "{}:{}: `{module}` uses `{used}`",
                            path.display(),
                            index + 1
                        ));
                    }
                }
            }
        }
    }
    assert!(
        seen_modules.len() >= 10,
        "module layout changed: {seen_modules:?}"
    );
    assert!(
        violations.is_empty(),
        "modules reach up the chain:\n{}",
        violations.join("\n")
    );
}

#[test]
fn every_module_says_what_it_owns() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let missing: Vec<String> = files
        .iter()
        .filter(|p| {
            !fs_err::read_to_string(p)
                .unwrap()
                .trim_start()
                .starts_with("//!")
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a //! header:\n{}",
        missing.join("\n")
    );
}
