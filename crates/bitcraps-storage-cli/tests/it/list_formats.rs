//! `list -0` and `list --json` print keys exactly as stored, so a key holding a line break
//! survives the pipe; the default lines escape it.

use crate::common;

use common::Scratch;

#[test]
fn keys_with_line_breaks_survive_null_and_json_listings() {
    let s = Scratch::new();
    s.ok(&["put", "games", "a\nb", "{}"]);
    s.ok(&["put", "games", "c", "{}"]);

    assert_eq!(s.ok(&["list", "games"]), "a\\nb\nc\n");
    assert_eq!(s.ok(&["list", "games", "-0"]), "a\nb\0c\0");
    let keys: Vec<String> =
        serde_json::from_str(&s.ok(&["list", "games", "--json"])).expect("a JSON array");
    assert_eq!(keys, ["a\nb", "c"]);
    let empty: Vec<String> =
        serde_json::from_str(&s.ok(&["list", "nothing", "--json"])).expect("a JSON array");
    assert!(empty.is_empty());
    // --limit stops a JSON listing early and still closes the array.
    let one: Vec<String> =
        serde_json::from_str(&s.ok(&["list", "games", "--json", "--limit", "1"]))
            .expect("a JSON array");
    assert_eq!(one, ["a\nb"]);
}
