//! `collections` prints the collections that hold records, one per line (control characters
//! escaped), or with `--json` a JSON array of the names as stored.

use crate::common;

use common::Scratch;

#[test]
fn collections_lists_names_as_lines_and_as_json() {
    let s = Scratch::new();
    s.ok(&["put", "games", "g-1", "{}"]);
    s.ok(&["put", "lobby\nfake", "l-1", "{}"]);
    s.ok(&["put", "players", "p-1", "{}"]);
    s.ok(&["delete", "players", "p-1"]);

    assert_eq!(s.ok(&["collections"]), "games\nlobby\\nfake\n");
    let names: Vec<String> =
        serde_json::from_str(&s.ok(&["collections", "--json"])).expect("a JSON array");
    assert_eq!(names, ["games", "lobby\nfake"]);
}
