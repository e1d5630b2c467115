//! Attacks on the ciphertext of a closed encrypted store, through SQL: a blob's bytes moved
//! to another record, a record pointed at another collection's blob, a dictionary moved to
//! another collection, a flipped byte. Each read is `Corruption` naming the record and the
//! data key — never the other record's data, never garbage returned as a value.

use crate::common;

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

fn blob_data(db: &Connection, id: i64) -> rusqlite::Result<Vec<u8>> {
    db.query_row("SELECT data FROM blobs WHERE id = ?1", [id], |r| r.get(0))
}

fn set_blob_data(db: &Connection, id: i64, data: &[u8]) -> rusqlite::Result<usize> {
    db.execute(
        "UPDATE blobs SET data = ?1 WHERE id = ?2",
        rusqlite::params![data, id],
    )
}

/// Layout v2 (format 0xE3, or 0xE4 with XChaCha20-Poly1305) holds no plain content hash:
/// what stops a moved or altered blob is the associated data, which binds the row's keyed
/// address and the layout. A v2 blob moved to another record, one with a flipped byte in
/// its nonce or ciphertext, and one relabelled to layout v1 (the format byte of the same
/// suite's v1, which would read its first 32 bytes as the hash) are all `Corruption`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v2_blob_moved_altered_or_relabelled_v1_is_corruption() -> Result {
    let dir = tempfile::tempdir()?;
    let (_key_dir, key) = common::key_file();
    let s = PersistentStorageManager::open(config(dir.path(), &key)).await?;
    let names = ["alice", "bob", "carol", "dave", "erin"];
    for (i, name) in names.iter().enumerate() {
        s.store("bank", name, &json!({"chips": i * 1000, "owner": name}))
            .await?;
    }
    s.close().await?;
    drop(s);

    let db = Connection::open(dir.path().join("bitcraps.db"))?;
    let ids: Vec<i64> = names
        .iter()
        .map(|n| blob_of(&db, "bank", n))
        .collect::<rusqlite::Result<_>>()?;
    let data: Vec<Vec<u8>> = ids
        .iter()
        .map(|id| blob_data(&db, *id))
        .collect::<rusqlite::Result<_>>()?;
    assert!(
        data.iter().all(|d| matches!(d.first(), Some(0xE3 | 0xE4))),
        "new documents are sealed in layout v2"
    );
    // alice: bob's v2 ciphertext.
    set_blob_data(&db, ids[0], &data[1])?;
    // bob: a flipped byte in the nonce; carol: in the ciphertext.
    let mut nonce = data[1].clone();
    nonce[9] ^= 0x01;
    set_blob_data(&db, ids[1], &nonce)?;
    let mut body = data[2].clone();
    let mid = 9 + 12 + 2;
    body[mid] ^= 0x40;
    set_blob_data(&db, ids[2], &body)?;
    // dave: relabelled as the same suite's layout v1.
    let mut downgraded = data[3].clone();
    downgraded[0] = if downgraded[0] == 0xE3 { 0xE2 } else { 0xE1 };
    set_blob_data(&db, ids[3], &downgraded)?;
    drop(db);

    let s = PersistentStorageManager::open(config(dir.path(), &key)).await?;
    for name in &names[..4] {
        expect_corruption(
            s.retrieve::<serde_json::Value>("bank", name).await,
            &format!("bank/{name}"),
        );
    }
    assert_eq!(
        s.retrieve::<serde_json::Value>("bank", "erin").await?,
        Some(json!({"chips": 4000, "owner": "erin"}))
    );
    let report = s.check_consistency_deep().await?;
    let mut damaged: Vec<_> = report
        .damaged
        .iter()
        .map(|d| format!("{}/{}", d.collection, d.key))
        .collect();
    damaged.sort();
    assert_eq!(
        damaged,
        ["bank/alice", "bank/bob", "bank/carol", "bank/dave"]
    );
    s.close().await?;
    Ok(())
}
