//! A source store for the `migrate` tests: several collections, documents written in a
//! non-canonical form (key order, spaces, escapes, exponents) that any re-serialization would
//! change, identical (deduplicated) documents, and unicode keys.

use std::path::{Path, PathBuf};

use super::Scratch;

/// Records in the `games` collection: more than two batches of the default 1000.
pub const GAMES: usize = 2_345;
/// Identical documents in the `lobby` collection.
pub const LOBBY: usize = 5;

/// Keys and documents of the `players` collection, stored exactly as written here.
pub const PLAYERS: [(&str, &str); 4] = [
    ("ключ 🎲", r#"{"name":"Алиса", "balance": 1.0e3}"#),
    ("é", r#"{"b":2,"a":1,"esc":"\u00e9\n"}"#),
    (
        "tab\tkey \"quoted\"",
        r#"{ "nested" : { "z" : [ 1 , 2 ] } }"#,
    ),
    ("日本語/キー", r#"[true,null,-0,"🎲"]"#),
];

/// The `games` document number `i`, as stored.
pub fn game(i: usize) -> String {
    format!(
        r#"{{"point":{},"round":{i}, "shooter":"p-{}","bets":[5.50,1e2]}}"#,
        4 + i % 7,
        i % 13
    )
}

/// The `lobby` document (every lobby record holds this).
pub const LOBBY_DOC: &str = r#"{"status": "open", "seats": [null, null]}"#;

/// Writes the source's records as JSON Lines and imports them into `<scratch>/source`;
/// returns that data directory.
pub fn build_source(s: &Scratch) -> PathBuf {
    let mut lines = String::new();
    let mut line = |collection: &str, key: &str, doc: &str| {
        let c = serde_json::to_string(collection).unwrap_or_default();
        let k = serde_json::to_string(key).unwrap_or_default();
        lines.push_str(&format!(
            "{{\"collection\":{c},\"key\":{k},\"value\":{doc}}}\n"
        ));
    };
    for i in 0..GAMES {
        line("games", &format!("g-{i:05}"), &game(i));
    }
    for i in 0..LOBBY {
        line("lobby", &format!("seat-{i}"), LOBBY_DOC);
    }
    for (key, doc) in PLAYERS {
        line("players", key, doc);
    }
    let file = s.path("source.jsonl");
    std::fs::write(&file, lines).expect("write the source records");
    let source = s.path("source");
    s.cli_at(&source)
        .arg("import")
        .arg(&file)
        .assert()
        .success();
    source
}

/// `export` of the store at `data` (a directory, or a URL when it contains `://`), sorted.
pub fn export(s: &Scratch, data: &Path) -> Vec<String> {
    let mut cmd = s.bare();
    let text = data.to_string_lossy();
    if text.contains("://") {
        cmd.arg("--url").arg(data);
    } else {
        cmd.arg("--data").arg(data);
    }
    let out = cmd.arg("export").assert().success();
    super::sorted_lines(&String::from_utf8_lossy(&out.get_output().stdout))
}

/// Checks that `get` on the store at `location` returns every named document byte for byte.
pub fn assert_documents(s: &Scratch, location_args: &[&str]) {
    let get = |collection: &str, key: &str| {
        let out = s
            .bare()
            .args(location_args)
            .args(["get", collection, key])
            .assert()
            .success();
        String::from_utf8_lossy(&out.get_output().stdout).into_owned()
    };
    for (key, doc) in PLAYERS {
        assert_eq!(get("players", key), format!("{doc}\n"), "players/{key}");
    }
    for i in [0, 999, 1000, GAMES - 1] {
        assert_eq!(get("games", &format!("g-{i:05}")), format!("{}\n", game(i)));
    }
    assert_eq!(get("lobby", "seat-3"), format!("{LOBBY_DOC}\n"));
}
