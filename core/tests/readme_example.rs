//! The project README's Rust example is the crate-doc example in `src/lib.rs`, which rustdoc
//! compiles and runs; this test keeps the two texts identical, so the README never shows code
//! that does not compile.
#![allow(missing_docs)]

fn rust_blocks(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in text.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```rust") => current = Some(Vec::new()),
            (Some(_), "```") => out.push(current.take().unwrap_or_default().join("\n")),
            (Some(lines), l) => lines.push(l),
            (None, _) => {}
        }
    }
    out
}

#[test]
fn readme_rust_example_is_the_crate_doc_example() {
    let (readme, lib) = (
        include_str!("../../README.md"),
        include_str!("../src/lib.rs"),
    );
    let docs: String = lib
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let in_readme = rust_blocks(readme);
    assert_eq!(in_readme.len(), 1, "one ```rust block in README.md");
    assert!(
        rust_blocks(&docs).contains(&in_readme[0]),
        "README's ```rust block differs from the one in src/lib.rs's docs"
    );
}
