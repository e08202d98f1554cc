//! Azure Blob Storage replicas against a real Azurite server on loopback (see `azurite`):
//! the storage contract (the suite the S3 and file backends pass), replicate → restore by
//! config, Litestream 0.5.17 restoring what we wrote, and the errors for a missing
//! container and a wrong key.

use engine::storage::abs::{AbsOptions, AbsStore};
use engine::storage::{ErrorKind, ReplicaStore};
use ltx::Level;

use crate::azurite::{Azurite, ACCOUNT, ACCOUNT_KEY};
use crate::harness::*;
use crate::s3::{
    assert_created_is_header_timestamp, block_on, litestream_restore_ok, litestream_version,
    object_store_conformance, replicate_with_writes, s3_config, ConditionalCreate,
};

fn abs_options(a: &Azurite, prefix: &str) -> AbsOptions {
    AbsOptions {
        account_name: ACCOUNT.into(),
        account_key: Some(ACCOUNT_KEY.into()),
        sas_token: None,
        container: a.container.clone(),
        prefix: prefix.into(),
        endpoint: Some(a.endpoint()),
    }
}

#[test]
fn abs_store_passes_the_storage_conformance_suite_on_azurite() {
    let a = Azurite::start();
    let s = AbsStore::new(abs_options(&a, "conf/db")).unwrap();
    let parent = AbsStore::new(abs_options(&a, "conf")).unwrap();
    let missing = AbsStore::new(AbsOptions {
        container: "no-such-container".into(),
        ..abs_options(&a, "x")
    })
    .unwrap();
    block_on(async {
        // The layout is Litestream's: <path>/ltx/<level>/<min>-<max>.ltx.
        object_store_conformance(
            &s,
            async |p: &str, d: Vec<u8>| s.put_object(p, d.into()).await,
            "ltx/0",
            ConditionalCreate::Atomic,
            &parent,
            &missing,
            "no-such-container",
        )
        .await;
        let wrong = ACCOUNT_KEY.replace('E', "F");
        let e = AbsStore::new(AbsOptions {
            account_key: Some(wrong.clone()),
            ..abs_options(&a, "x")
        })
        .unwrap()
        .list(Level::L0)
        .await
        .unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(&e.kind(), ErrorKind::PermissionDenied)
                && !msg.contains(&wrong)
                && !msg.contains('\n'),
            "{msg}"
        );
    });
}

#[test]
fn replicate_to_azurite_then_restore_by_config() {
    let a = Azurite::start();
    let w = Work::new();
    let db = w.path("app.db");
    let cfg = s3_config(&w, &db, &a.replica_yaml("db/app"));
    let want = replicate_with_writes(&w, &cfg, &db);
    restore_and_compare(&cfg, &db, &w.path("by-config.db"), &want, &[]);
    let s = AbsStore::new(abs_options(&a, "db/app")).unwrap();
    assert!(block_on(assert_created_is_header_timestamp(&s)) > 0);
}

#[test]
fn litestream_restores_what_we_write_to_azurite() {
    litestream_version();
    let a = Azurite::start();
    let w = Work::new();
    let db = w.path("app.db");
    // The same YAML serves both programs.
    let cfg = s3_config(&w, &db, &a.replica_yaml("ls/app"));
    let want = replicate_with_writes(&w, &cfg, &db);
    let out = w.path("litestream.db");
    litestream_restore_ok(&cfg, &db, &out);
    assert_same_pages(
        &want,
        &pages_of_file(&out),
        "litestream restore from Azurite",
    );
}
