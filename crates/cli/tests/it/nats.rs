//! NATS replicas (JetStream object store) against a real `nats-server -js` on loopback
//! (see `nats_server`): the storage contract (the suite every backend passes, with
//! conditional creates refused), prefixes and foreign names, a missing bucket, the
//! server killed and restarted under the store and under a running replicator,
//! replicate → restore by config and by URL, and Litestream 0.5.17 both ways.

use std::time::{Duration, SystemTime};

use engine::storage::nats::NatsStore;
use engine::storage::{ErrorKind, ReplicaStore};
use ltx::Level;

use crate::harness::*;
use crate::nats_server::{NatsServer, PASSWORD};
use crate::s3::{conformance, key, ConditionalCreate};

/// One runtime for a whole test: the store's client lives on the runtime it connected in.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn nats_store_passes_the_storage_conformance_suite_on_nats_server() {
    let n = NatsServer::start();
    n.create_bucket("conf");
    let rt = runtime();
    let s = NatsStore::new(n.options("conf", "db/app")).unwrap();
    // Foreign names in level 0's directory (not LTX; LTX one directory too deep), put
    // through the bucket's root replica, where they are ordinary named objects.
    let raw = NatsStore::new(n.options("conf", "")).unwrap();
    for name in [
        "db/app/ltx/0/junk.txt",
        "db/app/ltx/0/sub/0000000000000009-0000000000000009.ltx",
    ] {
        rt.block_on(raw.named().unwrap().put_name(name, b"x".to_vec().into())).unwrap();
    }
    rt.block_on(conformance(&s, ConditionalCreate::Refused));

    rt.block_on(async {
        // Levels live under the prefix: the bucket's root replica sees none of them.
        s.put(&key(9, 1, 2), b"snap".to_vec().into(), SystemTime::now())
            .await
            .unwrap();
        assert!(raw.list(Level::SNAPSHOT).await.unwrap().is_empty());
        assert_eq!(s.list(Level::SNAPSHOT).await.unwrap().len(), 1);
        // Fenced puts are refused too, saying why.
        let e = s
            .named()
            .unwrap()
            .put_if_absent(&key(0, 1, 1), b"x".to_vec().into(), SystemTime::now())
            .await
            .unwrap_err();
        assert!(
            e.kind() == ErrorKind::Permanent && e.detail().contains("conditional writes"),
            "{e}"
        );
        // A missing bucket is NotFound naming it, with how to create it.
        let missing = NatsStore::new(n.options("nope", "")).unwrap();
        let e = missing.list(Level::L0).await.unwrap_err();
        assert!(
            e.kind() == ErrorKind::NotFound
                && e.what().contains("nope")
                && e.detail().contains("nats object add nope"),
            "{e}"
        );
        // A wrong password is PermissionDenied, and the password never shows.
        let mut o = n.options("conf", "");
        o.password = Some("wrong-password-xyz".into());
        let e = NatsStore::new(o).unwrap().list(Level::L0).await.unwrap_err();
        let shown = format!("{e} {e:?}");
        assert!(e.kind() == ErrorKind::PermissionDenied, "{shown}");
        assert!(
            !shown.contains("wrong-password-xyz") && !shown.contains(PASSWORD),
            "{shown}"
        );
    });
}

#[test]
fn nats_store_survives_the_server_killed_and_restarted() {
    let mut n = NatsServer::start();
    n.create_bucket("re");
    let rt = runtime();
    let s = NatsStore::new(n.options("re", "")).unwrap();
    let t = SystemTime::now();
    rt.block_on(s.put(&key(0, 1, 1), b"before".to_vec().into(), t))
        .unwrap();
    n.kill();
    // No server: a transient error naming the replica, soon (the request timeout).
    let e = rt.block_on(s.list(Level::L0)).unwrap_err();
    assert!(
        e.is_retryable() && e.to_string().contains(s.location()),
        "{e}"
    );
    n.restart();
    // The client reconnects by itself; what was stored before the kill is there.
    let l = wait_for(
        "the store to answer after the restart",
        Duration::from_secs(30),
        || rt.block_on(s.list(Level::L0)).ok(),
    );
    assert_eq!(l.len(), 1);
    rt.block_on(async {
        s.put(&key(0, 2, 2), b"after".to_vec().into(), t)
            .await
            .unwrap();
        assert_eq!(&s.get(&key(0, 1, 1), None).await.unwrap()[..], b"before");
        assert_eq!(&s.get(&key(0, 2, 2), None).await.unwrap()[..], b"after");
    });
}
