//! A store file that will not open: a clear error naming it, and the opt-in way past it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mooring_core::store::{
    Batch, SessionKey, SessionStore, StoreError, StoreOp, open_or_set_aside,
};
use mooring_store_redb::RedbStore;

#[tokio::test]
async fn a_damaged_file_is_named_in_the_error_and_can_be_set_aside_never_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.redb");
    let garbage = vec![0x42u8; 8192];
    std::fs::write(&path, &garbage).unwrap();

    let error = RedbStore::open(&path).unwrap_err();
    assert!(
        matches!(&error, StoreError::Open { damaged: true, path: p, .. } if p.ends_with("gateway.redb")),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(
        text.contains("gateway.redb") && text.contains("damaged"),
        "{text}"
    );

    let (store, set_aside) = open_or_set_aside(&path, RedbStore::open).unwrap();
    let set_aside = set_aside.expect("the damaged file was moved aside");
    assert_eq!(set_aside.path, path);
    assert_eq!(
        std::fs::read(&set_aside.moved_to).unwrap(),
        garbage,
        "the moved file is kept as it was, for support"
    );
    assert!(
        set_aside
            .moved_to
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("gateway.redb.damaged-")
    );
    // The fresh store works.
    let key = SessionKey::new("mqtt://a:1883", "gw");
    let mut batch = Batch::new();
    batch.push(StoreOp::PutInbound { packet_id: 3 });
    store.commit(&key, batch).await.unwrap();
    assert_eq!(store.load(&key).await.unwrap().inbound, vec![3]);
}

#[tokio::test]
async fn a_store_that_is_locked_or_refused_by_the_system_is_never_moved() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("held.redb");
    let held = RedbStore::open(&path).unwrap();
    assert!(matches!(
        open_or_set_aside(&path, RedbStore::open),
        Err(StoreError::Locked { .. })
    ));
    drop(held);
    let missing = dir.path().join("no-such-dir").join("x.redb");
    let refused = open_or_set_aside(&missing, RedbStore::open);
    assert!(
        matches!(refused, Err(StoreError::Open { damaged: false, .. })),
        "{refused:?}"
    );
    let entries = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(entries, 1, "nothing was moved or created beside the store");
}
