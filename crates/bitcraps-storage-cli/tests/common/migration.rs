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
    // Rewrite one player with the same document, so the source's versions are not the ones
    // a fresh copy in the same order would hand out (a copy that dropped them would differ).
    if let Some((key, doc)) = PLAYERS.first() {
        for _ in 0..3 {
            s.cli_at(&source)
                .args(["put", "players", key, doc])
                .assert()
                .success();
        }
    }
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

/// The versions (`info --json`) of a sample of the records: every player, the lobby's first
/// seat and every 500th game.
pub fn versions(s: &Scratch, location_args: &[&str]) -> Vec<(String, u64)> {
    let mut keys: Vec<(&str, String)> = PLAYERS
        .iter()
        .map(|(k, _)| ("players", (*k).to_owned()))
        .collect();
    keys.push(("lobby", "seat-0".to_owned()));
    keys.extend(
        (0..GAMES)
            .step_by(500)
            .map(|i| ("games", format!("g-{i:05}"))),
    );
    keys.into_iter()
        .map(|(c, k)| {
            let out = s
                .bare()
                .args(location_args)
                .args(["info", "--json", c, &k])
                .assert()
                .success();
            let info: serde_json::Value =
                serde_json::from_slice(&out.get_output().stdout).expect("info --json");
            let version = info["version"].as_u64().expect("a numeric version");
            (format!("{c}/{k}"), version)
        })
        .collect()
}
