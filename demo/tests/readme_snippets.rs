//! The workspace README shows each adapter's quick-start snippet as `rust,ignore` (the core crate's
//! doctests cannot build the frameworks); the adapters' own READMEs run the same snippets as
//! doctests. This test keeps the two copies identical, so the README shows only compiled code.

/// The lines of the first ```` ```rust ```` block after `heading`, without rustdoc's hidden
/// (`# `) lines.
fn snippet<'a>(readme: &'a str, heading: &str) -> Vec<&'a str> {
    let section = &readme[readme.find(heading).unwrap_or_else(|| panic!("no {heading:?}"))..];
    let body = section
        .split_once("```rust")
        .and_then(|(_, rest)| rest.split_once('\n'))
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("no rust block after {heading:?}"));
    let body = &body[..body.find("```").expect("the block is closed")];
    body.lines().filter(|line| !(line.starts_with("# ") || *line == "#")).collect()
}

const WORKSPACE: &str = include_str!("../../README.md");

#[test]
fn the_burn_snippet_is_the_compiled_one() {
    let compiled = include_str!("../../adapters/burn/README.md");
    let shown = snippet(WORKSPACE, "### With burn");
    assert!(shown.len() > 5);
    assert_eq!(shown, snippet(compiled, "## With burn"));
}

#[test]
fn the_candle_snippet_is_the_compiled_one() {
    let compiled = include_str!("../../adapters/candle/README.md");
    let shown = snippet(WORKSPACE, "### With candle");
    assert!(shown.len() > 5);
    assert_eq!(shown, snippet(compiled, "## With candle"));
}
