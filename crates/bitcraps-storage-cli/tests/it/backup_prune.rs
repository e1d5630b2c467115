//! `backup prune` applies the retention rules without taking a backup; `--dry-run` names
//! what it would delete and deletes nothing; `backup verify --json` is the report as JSON.

use crate::common;

use common::Scratch;

/// Retention "keep the newest backup only".
const KEEP_ONE: &[(&str, &str)] = &[
    ("BITCRAPS_STORAGE_BACKUP_KEEP_LAST", "1"),
    ("BITCRAPS_STORAGE_BACKUP_RETENTION_DAYS", "0"),
    ("BITCRAPS_STORAGE_BACKUP_KEEP_DAILY", "0"),
    ("BITCRAPS_STORAGE_BACKUP_KEEP_WEEKLY", "0"),
    ("BITCRAPS_STORAGE_BACKUP_KEEP_MONTHLY", "0"),
];

#[test]
fn prune_applies_retention_and_dry_run_deletes_nothing() {
    let s = Scratch::new();
    let keep_one = |s: &Scratch, args: &[&str]| s.ok_with_env(KEEP_ONE, args);
    let ids = |json: &str| -> Vec<String> {
        let v: Vec<serde_json::Value> = serde_json::from_str(json).expect("a JSON array");
        v.iter()
            .filter_map(|b| b["id"].as_str().map(str::to_owned))
            .collect()
    };
    s.ok(&["put", "games", "g-1", "{}"]);
    for _ in 0..3 {
        s.ok(&["backup", "create"]);
    }
    let before = ids(&s.ok(&["backup", "list", "--json"]));
    assert_eq!(before.len(), 3);

    let planned: serde_json::Value =
        serde_json::from_str(&keep_one(&s, &["backup", "prune", "--dry-run", "--json"]))
            .expect("JSON");
    assert_eq!(
        planned["kept"],
        serde_json::json!([before[0]]),
        "the newest is kept"
    );
    assert_eq!(
        planned["deleted"],
        serde_json::json!([before[1], before[2]])
    );
    assert_eq!(
        ids(&s.ok(&["backup", "list", "--json"])),
        before,
        "nothing deleted"
    );
    assert!(keep_one(&s, &["backup", "prune", "--dry-run"]).contains("would delete"));

    let pruned: serde_json::Value =
        serde_json::from_str(&keep_one(&s, &["backup", "prune", "--json"])).expect("JSON");
    assert_eq!(pruned, planned);
    assert_eq!(
        ids(&s.ok(&["backup", "list", "--json"])),
        [before[0].clone()]
    );

    let verified: serde_json::Value =
        serde_json::from_str(&s.ok(&["backup", "verify", &before[0], "--json"])).expect("JSON");
    assert_eq!(verified["id"], before[0].as_str());
    assert_eq!(verified["snapshot"]["record_count"], 1);
}
