//! Encryption at rest from the command line: `key generate` prints a key file's contents,
//! `--key-file` (or BITCRAPS_STORAGE_KEY_FILE) encrypts a new store, and every key error —
//! no key, a wrong key, an unreadable key file, a key for a plaintext store — exits 1 with a
//! message that says what to do and never shows key material.

#![allow(clippy::expect_used, reason = "tests: a failed step is a failed test")]

use crate::common;

use common::Scratch;
use predicates::prelude::*;

fn generate(s: &Scratch) -> String {
    let out = s.bare().args(["key", "generate"]).assert().success();
    String::from_utf8(out.get_output().stdout.clone()).expect("utf-8")
}

#[test]
fn generate_prints_64_hex_characters_and_a_newline() {
    let s = Scratch::new();
    let (a, b) = (generate(&s), generate(&s));
    for key in [&a, &b] {
        assert_eq!(key.len(), 65, "{key:?}");
        assert!(key.ends_with('\n'));
        assert!(
            key.trim_end().bytes().all(|c| c.is_ascii_hexdigit()),
            "{key:?}"
        );
    }
    assert_ne!(a, b);
}

#[test]
fn key_errors_exit_1_with_a_clear_message() {
    let s = Scratch::new();
    let key = s.path("master.key");
    std::fs::write(&key, generate(&s)).expect("key file");
    let key = key.to_str().expect("utf-8 path");
    s.ok(&[
        "--key-file",
        key,
        "put",
        "bank",
        "house",
        r#"{"chips":100}"#,
    ]);
    assert_eq!(
        s.ok(&["--key-file", key, "get", "bank", "house"]).trim(),
        r#"{"chips":100}"#
    );
    // The environment variable does the same.
    let got = s.ok_with_env(
        &[("BITCRAPS_STORAGE_KEY_FILE", key)],
        &["get", "bank", "house"],
    );
    assert_eq!(got.trim(), r#"{"chips":100}"#);
    // The plaintext is not in the database file.
    let db = std::fs::read(s.path("data").join("bitcraps.db")).expect("db");
    assert!(!db.windows(5).any(|w| w == b"chips"));

    s.cli()
        .args(["get", "bank", "house"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "the store is encrypted and no key was given",
        ));

    let wrong = s.path("wrong.key");
    std::fs::write(&wrong, generate(&s)).expect("key file");
    let wrong_key = std::fs::read_to_string(&wrong).expect("read");
    s.cli()
        .args([
            "--key-file",
            wrong.to_str().expect("utf-8"),
            "get",
            "bank",
            "house",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "does not open this store (wrong key)",
        ))
        .stderr(predicate::str::contains(wrong_key.trim()).not());

    let bad = s.path("bad.key");
    std::fs::write(&bad, "hunter2").expect("key file");
    s.cli()
        .args([
            "--key-file",
            bad.to_str().expect("utf-8"),
            "get",
            "bank",
            "house",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("expected 64 hex characters"))
        .stderr(predicate::str::contains("hunter2").not());

    // A plaintext store with data refuses a key rather than mixing plaintext and ciphertext.
    let plain = s.path("plain");
    s.cli_at(&plain)
        .args(["put", "bank", "house", "1"])
        .assert()
        .success();
    s.cli_at(&plain)
        .args(["--key-file", key, "get", "bank", "house"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("key enable"));
}

#[test]
fn rotate_then_shred_from_the_command_line() {
    let s = Scratch::new();
    let (old, new) = (s.path("old.key"), s.path("new.key"));
    std::fs::write(&old, generate(&s)).expect("key file");
    std::fs::write(&new, generate(&s)).expect("key file");
    let (old, new) = (old.to_str().expect("utf-8"), new.to_str().expect("utf-8"));
    s.ok(&["--key-file", old, "put", "bank", "house", "100"]);
    s.ok(&["--key-file", old, "put", "games", "g-1", "6"]);
    let out = s.ok(&["--key-file", old, "key", "rotate-data", "games"]);
    assert_eq!(out.trim(), "games: new writes use data key version 2");
    // g-1 is sealed under version 1 until re-encrypted; then a second run finds nothing.
    let out = s.ok(&["--key-file", old, "key", "reencrypt"]);
    assert!(out.starts_with("re-encrypted: 1 of 2 blobs read"), "{out}");
    let out = s.ok(&["--key-file", old, "key", "reencrypt"]);
    assert!(out.starts_with("re-encrypted: 0 of 2 blobs read"), "{out}");
    assert_eq!(
        s.ok(&["--key-file", old, "get", "games", "g-1"]).trim(),
        "6"
    );
    let out = s.ok(&["--key-file", old, "key", "rotate", "--new-key-file", new]);
    assert!(out.starts_with("rotated: 3 data keys re-wrapped"), "{out}");
    s.cli()
        .args(["--key-file", old, "get", "bank", "house"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("wrong key"));
    assert_eq!(
        s.ok(&["--key-file", new, "get", "bank", "house"]).trim(),
        "100"
    );

    s.cli()
        .args(["--key-file", new, "key", "shred", "bank"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("pass --yes"));
    let out = s.ok(&["--key-file", new, "key", "shred", "bank", "--yes"]);
    assert_eq!(
        out.trim(),
        "shredded bank: its data key and 1 records destroyed"
    );
    s.cli()
        .args(["--key-file", new, "get", "bank", "house"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "collection bank was crypto-shredded",
        ));
    assert_eq!(
        s.ok(&["--key-file", new, "get", "games", "g-1"]).trim(),
        "6"
    );
}

#[test]
fn export_of_an_encrypted_store_needs_plaintext_spelled_out() {
    let s = Scratch::new();
    let key = s.path("master.key");
    std::fs::write(&key, generate(&s)).expect("key file");
    let key = key.to_str().expect("utf-8");
    s.ok(&[
        "--key-file",
        key,
        "put",
        "bank",
        "house",
        r#"{"chips":100}"#,
    ]);
    let out = s.path("all.jsonl");
    s.cli()
        .args([
            "--key-file",
            key,
            "export",
            "-o",
            out.to_str().expect("utf-8"),
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("pass --plaintext"));
    assert!(!out.exists(), "nothing written");
    let lines = s.ok(&["--key-file", key, "export", "--plaintext"]);
    assert!(lines.contains(r#""chips":100"#), "{lines}");
}

/// `migrate` into an encrypted target: the documents are sealed by the target as they are
/// written, so no plaintext reaches the target's files, and the copy verifies equal.
#[test]
fn migrate_encrypts_into_a_keyed_target() {
    let s = Scratch::new();
    let key = s.path("target.key");
    std::fs::write(&key, generate(&s)).expect("key file");
    for i in 0..50 {
        s.ok(&[
            "put",
            "bank",
            &format!("p-{i}"),
            &format!(r#"{{"note":"in the clear {i}"}}"#),
        ]);
    }
    let target = s.path("encrypted");
    s.bare()
        .args(["migrate", "--from"])
        .arg(s.path("data"))
        .arg("--to")
        .arg(&target)
        .arg("--to-key-file")
        .arg(&key)
        .assert()
        .success();
    let mut all = Vec::new();
    for entry in std::fs::read_dir(&target).expect("target").flatten() {
        all.extend(std::fs::read(entry.path()).unwrap_or_default());
    }
    assert!(!all.is_empty());
    assert!(
        !all.windows(12).any(|w| w == b"in the clear"),
        "plaintext in the target"
    );
    let got = s
        .cli_at(&target)
        .args([
            "--key-file",
            key.to_str().expect("utf-8"),
            "get",
            "bank",
            "p-7",
        ])
        .assert()
        .success();
    assert!(String::from_utf8_lossy(&got.get_output().stdout).contains("in the clear 7"));
}
