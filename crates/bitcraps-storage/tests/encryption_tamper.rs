//! Attacks on the ciphertext of a closed encrypted store, through SQL: a blob's bytes moved
//! to another record, a record pointed at another collection's blob, a dictionary moved to
//! another collection, a flipped byte. Each read is `Corruption` naming the record and the
//! data key — never the other record's data, never garbage returned as a value.

mod common;

use bitcraps_storage::{PersistentStorageManager, StorageConfig};
use rusqlite::Connection;
use serde_json::json;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn config(dir: &std::path::Path, key: &std::path::Path) -> StorageConfig {
    common::keyed_config(dir, key)
}

fn blob_of(db: &Connection, collection: &str, key: &str) -> rusqlite::Result<i64> {
    db.query_row(
        "SELECT blob_id FROM records WHERE collection = ?1 AND key = ?2",
        [collection, key],
        |r| r.get(0),
    )
}

use common::expect_key_corruption as expect_corruption;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moved_ciphertext_is_corruption_never_the_other_records_data() -> Result {
    let dir = tempfile::tempdir()?;
    let (_key_dir, key) = common::key_file();
    let s = PersistentStorageManager::open(config(dir.path(), &key)).await?;
    s.store("bank", "alice", &json!({"chips": 10})).await?;
    s.store("bank", "bob", &json!({"chips": 999_999})).await?;
    s.store("bank", "carol", &json!({"chips": 3})).await?;
    s.store("games", "g-1", &json!({"point": 6})).await?;
    s.close().await?;
    drop(s);

    let db = Connection::open(dir.path().join("bitcraps.db"))?;
    let (alice, bob, carol) = (
        blob_of(&db, "bank", "alice")?,
        blob_of(&db, "bank", "bob")?,
        blob_of(&db, "bank", "carol")?,
    );
    // Bob's ciphertext copied over Alice's blob: Alice must not read Bob's balance.
    db.execute(
        "UPDATE blobs SET data = (SELECT data FROM blobs WHERE id = ?1) WHERE id = ?2",
        [bob, alice],
    )?;
    // A record of `games` pointed at a blob of `bank`.
    db.execute(
        "UPDATE records SET blob_id = ?1 WHERE collection = 'games' AND key = 'g-1'",
        [carol],
    )?;
    db.execute(
        "UPDATE blobs SET refcount = refcount + 1 WHERE id = ?1",
        [carol],
    )?;
    drop(db);

    let s = PersistentStorageManager::open(config(dir.path(), &key)).await?;
    expect_corruption(
        s.retrieve::<serde_json::Value>("bank", "alice").await,
        "bank/alice",
    );
    expect_corruption(
        s.retrieve::<serde_json::Value>("games", "g-1").await,
        "games/g-1",
    );
    assert_eq!(
        s.retrieve::<serde_json::Value>("bank", "bob").await?,
        Some(json!({"chips": 999_999}))
    );
    assert_eq!(
        s.retrieve::<serde_json::Value>("bank", "carol").await?,
        Some(json!({"chips": 3}))
    );
    // The deep check names the damaged blob's record too.
    let report = s.check_consistency_deep().await?;
    let damaged: Vec<_> = report
        .damaged
        .iter()
        .map(|d| format!("{}/{}", d.collection, d.key))
        .collect();
    assert_eq!(damaged, ["bank/alice"], "{report:?}");
    s.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_or_a_changed_codec_is_corruption() -> Result {
    let dir = tempfile::tempdir()?;
    let (_key_dir, key) = common::key_file();
    let s = PersistentStorageManager::open(config(dir.path(), &key)).await?;
    s.store("bank", "alice", &json!({"chips": 10})).await?;
    s.store("bank", "bob", &json!({"chips": 11})).await?;
    s.close().await?;
    drop(s);
    let db = Connection::open(dir.path().join("bitcraps.db"))?;
    let alice = blob_of(&db, "bank", "alice")?;
    let bob = blob_of(&db, "bank", "bob")?;
    let mut data: Vec<u8> = db.query_row("SELECT data FROM blobs WHERE id = ?1", [alice], |r| {
        r.get(0)
    })?;
    let last = data.len() - 1;
    data[last] ^= 0x01;
    db.execute(
        "UPDATE blobs SET data = ?1 WHERE id = ?2",
        rusqlite::params![data, alice],
    )?;
    db.execute("UPDATE blobs SET codec = 2 WHERE id = ?1", [bob])?;
    drop(db);
    let s = PersistentStorageManager::open(config(dir.path(), &key)).await?;
    expect_corruption(
        s.retrieve::<serde_json::Value>("bank", "alice").await,
        "bank/alice",
    );
    expect_corruption(
        s.retrieve::<serde_json::Value>("bank", "bob").await,
        "bank/bob",
    );
    s.close().await?;
    Ok(())
}

/// Regression: `metadata().content_hash` of an encrypted store was the keyed address, not
/// blake3 of the document as documented, so `migrate` into an encrypted target reported
/// every record as different. It is the document's blake3 again; the row keeps the keyed
/// address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_reports_the_documents_blake3_not_the_keyed_address() -> Result {
    let dir = tempfile::tempdir()?;
    let (_key_dir, key) = common::key_file();
    let s = PersistentStorageManager::open(config(dir.path(), &key)).await?;
    let doc = json!({"chips": 10});
    s.store("bank", "alice", &doc).await?;
    let meta = s.metadata("bank", "alice").await?.ok_or("missing")?;
    let json = serde_json::to_vec(&doc)?;
    assert_eq!(meta.content_hash, blake3::hash(&json).to_hex().to_string());
    s.close().await?;
    drop(s);
    let db = Connection::open(dir.path().join("bitcraps.db"))?;
    let stored: Vec<u8> = db.query_row("SELECT hash FROM blobs", [], |r| r.get(0))?;
    assert_ne!(
        stored,
        blake3::hash(&json).as_bytes().to_vec(),
        "the row holds the keyed address"
    );
    Ok(())
}
