//! `import --batch-size 1` of a large document's versions, one line each (the rewrite
//! workload of issue #16): every version is stored as given, the later ones as deltas whose
//! text the store checks from its keyframe; the last reads back byte for byte, and a broken
//! version at the end is refused with the line's number and nothing of it stored.
#![allow(clippy::expect_used, reason = "tests: a failed step is a failed test")]

use crate::common;

use common::Scratch;

/// The JSON text of a game log of `rolls` rolls (~90 bytes each), keys in the order given.
fn log(rolls: u64) -> String {
    let rolls: Vec<String> = (0..rolls)
        .map(|n| {
            format!(
                r#"{{"n":{n},"dice":[{},{}],"shooter":"p-{}","bets":[{{"kind":"pass","amount":{}}}]}}"#,
                n % 6 + 1,
                (n * 7 + 1) % 6 + 1,
                n % 7,
                10 + n % 90
            )
        })
        .collect();
    format!(r#"{{"game":1,"rolls":[{}]}}"#, rolls.join(","))
}

fn line(rolls: u64) -> String {
    format!(
        "{{\"collection\":\"logs\",\"key\":\"game-1\",\"value\":{}}}\n",
        log(rolls)
    )
}

#[test]
fn a_large_document_imported_version_by_version_reads_back_identical() {
    let s = Scratch::new();
    let first = 3_000;
    let versions = 12;
    let input: String = (first..first + versions).map(line).collect();
    assert!(input.len() > 2_000_000, "{}", input.len());
    s.cli()
        .args(["import", "--batch-size", "1", "-"])
        .write_stdin(input)
        .assert()
        .success()
        .stderr(predicates::str::contains("imported 12 records"));
    let last = log(first + versions - 1);
    assert_eq!(s.ok(&["get", "logs", "game-1"]), format!("{last}\n"));
    let info = s.ok(&["info", "--json", "logs", "game-1"]);
    let info: serde_json::Value = serde_json::from_str(&info).expect("info --json is JSON");
    assert_eq!(info["is_delta"], serde_json::Value::Bool(true), "{info}");

    // A broken version after good ones: exit 4 naming its line, the good ones stored.
    let broken = format!(
        "{{\"collection\":\"logs\",\"key\":\"game-1\",\"value\":{},]}}}}\n",
        log(first + versions)
            .strip_suffix("]}")
            .expect("the log ends its rolls")
    );
    let input = format!("{}{broken}", line(first + versions));
    s.cli()
        .args(["import", "--batch-size", "1", "-"])
        .write_stdin(input)
        .assert()
        .code(4)
        .stderr(predicates::str::contains("line 2: "))
        .stderr(predicates::str::contains(
            "(1 records before it were imported)",
        ));
    assert_eq!(
        s.ok(&["get", "logs", "game-1"]),
        format!("{}\n", log(first + versions))
    );
}
