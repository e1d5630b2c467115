//! A page of records large enough to be opened on more than one thread (a scan page of 300,
//! a `retrieve_many` of 300 keys) comes back in key order with every document exact, keeps
//! the gaps of missing keys where they were asked for, and fails closed: a tampered record
//! anywhere in the page is `Corruption` naming the first damaged record in key order and
//! its data key, never a page with the damaged record left out or garbage in its place.

use crate::common;

use bitcraps_storage::{ListOptions, PersistentStorageManager};
use rusqlite::Connection;
use serde_json::{Value, json};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn key(i: usize) -> String {
    format!("g-{i:04}")
}

fn doc(i: usize) -> Value {
    json!({"table": i, "players": ["alice", "bob"], "point": i % 11, "note": "x".repeat(i % 40)})
}

fn flip_last_byte(db: &Connection, collection: &str, key: &str) -> Result {
    let id: i64 = db.query_row(
        "SELECT blob_id FROM records WHERE collection = ?1 AND key = ?2",
        [collection, key],
        |r| r.get(0),
    )?;
    let mut data: Vec<u8> =
        db.query_row("SELECT data FROM blobs WHERE id = ?1", [id], |r| r.get(0))?;
    let last = data.len().checked_sub(1).ok_or("empty blob")?;
    data[last] ^= 0x01;
    db.execute(
        "UPDATE blobs SET data = ?1 WHERE id = ?2",
        rusqlite::params![data, id],
    )?;
    Ok(())
}

use common::expect_key_corruption as expect_corruption;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_pages_open_in_order_and_fail_closed() -> Result {
    let dir = tempfile::tempdir()?;
    let (_key_dir, master) = common::key_file();
    let s = PersistentStorageManager::open(common::keyed_config(dir.path(), &master)).await?;
    let items: Vec<(String, Value)> = (0..900).map(|i| (key(i), doc(i))).collect();
    s.store_batch("games", &items).await?;
    s.close().await?;
    drop(s);

    // Two damaged records in the second page, one in each half of it.
    let db = Connection::open(dir.path().join("bitcraps.db"))?;
    flip_last_byte(&db, "games", &key(360))?;
    flip_last_byte(&db, "games", &key(510))?;
    drop(db);

    // Reopened: nothing cached, every read below opens ciphertext.
    let s = PersistentStorageManager::open(common::keyed_config(dir.path(), &master)).await?;
    let page = s
        .scan::<Value>("games", ListOptions::default().prefix("g-").limit(300))
        .await?;
    let expected: Vec<(String, Value)> = (0..300).map(|i| (key(i), doc(i))).collect();
    assert_eq!(page.items, expected);
    assert_eq!(page.next_after.as_deref(), Some(key(299).as_str()));

    let second = ListOptions::default()
        .prefix("g-")
        .after(&key(299))
        .limit(300);
    expect_corruption(s.scan::<Value>("games", second).await, "games/g-0360");

    let third = ListOptions::default()
        .prefix("g-")
        .after(&key(599))
        .limit(300);
    let page = s.scan::<Value>("games", third).await?;
    let expected: Vec<(String, Value)> = (600..900).map(|i| (key(i), doc(i))).collect();
    assert_eq!(page.items, expected);

    // retrieve_many: missing keys stay `None` in their places.
    let mut keys: Vec<String> = (600..900).map(key).collect();
    keys.insert(0, "g-missing-a".into());
    keys.insert(150, "g-missing-b".into());
    let got = s.retrieve_many::<Value, _>("games", &keys).await?;
    assert_eq!(got.len(), keys.len());
    for (k, v) in keys.iter().zip(&got) {
        match k.strip_prefix("g-").and_then(|n| n.parse::<usize>().ok()) {
            Some(i) => assert_eq!(v.as_ref(), Some(&doc(i)), "{k}"),
            None => assert!(v.is_none(), "{k}"),
        }
    }
    let damaged: Vec<String> = (300..600).map(key).collect();
    expect_corruption(
        s.retrieve_many::<Value, _>("games", &damaged).await,
        "games/g-0360",
    );
    s.close().await?;
    Ok(())
}
