//! `keys.md`, the key table of the docs (both attributes' rustdoc include it; the README
//! links to it), checked against `keys::KEYS`, the table the parser reads: a key added to
//! one and not the other, or marked main-only in one and not the other, fails here.

use crate::keys::{Macro, Scope, KEYS};

const TABLE: &str = include_str!("keys.md");

/// The `(key, on)` cells of each row of `keys.md`'s table, in order.
fn documented() -> Vec<(String, String)> {
    let mut rows = Vec::new();
    for line in TABLE.lines().filter(|line| line.starts_with('|')) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        if cells[0] == "key" || cells[0].starts_with('-') {
            continue; // the header and its rule
        }
        assert_eq!(cells.len(), 4, "a row of keys.md has four cells: {line}");
        let key = cells[0]
            .strip_prefix('`')
            .and_then(|key| key.strip_suffix('`'))
            .unwrap_or_else(|| panic!("keys.md: the key cell is `name`: {line}"));
        rows.push((key.to_owned(), cells[1].to_owned()));
    }
    rows
}

fn on(scope: Scope) -> &'static str {
    match scope {
        Scope::Both => "both",
        Scope::Only(Macro::Main) => "main",
        Scope::Only(Macro::Test) => "test",
    }
}

#[test]
fn keys_md_names_every_key_of_the_parser_and_no_other() {
    let documented: Vec<String> = documented().into_iter().map(|(key, _)| key).collect();
    for spec in KEYS {
        assert!(
            documented.iter().any(|key| key == spec.name),
            "`{}` is a key of keys.rs but has no row in keys.md",
            spec.name
        );
    }
    for key in &documented {
        assert!(
            KEYS.iter().any(|spec| spec.name == key),
            "keys.md documents `{key}`, which is not a key of keys.rs"
        );
    }
    let parsed: Vec<&str> = KEYS.iter().map(|spec| spec.name).collect();
    assert_eq!(
        documented, parsed,
        "keys.md lists the keys once each, in KEYS' order (the order of the \"valid keys\" \
         message)"
    );
}

#[test]
fn keys_md_marks_main_only_and_test_only_keys_as_keys_rs_does() {
    for (key, marked) in documented() {
        let Some(spec) = KEYS.iter().find(|spec| spec.name == key) else {
            continue; // the test above names it
        };
        assert_eq!(
            marked,
            on(spec.scope),
            "keys.md marks `{key}` as `{marked}`, keys.rs as `{}`",
            on(spec.scope)
        );
    }
}

#[test]
fn both_attributes_include_keys_md_and_write_no_table_of_their_own() {
    let lib = include_str!("lib.rs");
    assert_eq!(
        lib.matches("#[doc = include_str!(\"keys.md\")]").count(),
        2,
        "#[runner::main] and #[runner::test] each include keys.md"
    );
    for spec in KEYS {
        let row = format!("/// | `{}` |", spec.name);
        assert!(
            !lib.contains(&row),
            "lib.rs has a key table row of its own for `{}`: keys.md is the one table",
            spec.name
        );
    }
}
