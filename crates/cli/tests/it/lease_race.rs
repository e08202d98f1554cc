//! Several standbys with `auto-promote` racing for one expired lease, round after round,
//! on a local directory, S3 (moto) and Azure (Azurite): exactly one wins every round.
//!
//! A round: the holder is killed (SIGKILL); the three standbys following the replica,
//! frozen across the TTL and woken together, all find its lease expired at the same
//! moment and try to take it, each by a conditional write of the record they read. Checked every round: one standby logs
//! its promotion, the lease object names it at the next epoch, each loser's metrics show
//! it still a standby that sees the winner at that epoch, no loser started an uploader,
//! and the winner's writes reach the replica. The dead holder's place is taken by a fresh
//! standby (restored from the replica) before the next round, so three race every time.
//! Rounds go on for about [`RACE_TIME`]; the last winner's database is then compared,
//! page for page, with a restore of the replica.

use std::collections::HashMap;
use std::ops::DerefMut;
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::lease::{Acquire, Lease, LeaseOptions, Observer};
use engine::storage::abs::{AbsOptions, AbsStore};
use engine::storage::file::FileStore;
use engine::storage::layout::LEASE_NAME;
use engine::storage::s3::{S3Options, S3Store};
use engine::storage::ReplicaStore;

use crate::azurite::{Azurite, ACCOUNT, ACCOUNT_KEY};
use crate::harness::*;
use crate::lease::{
    file_replica, host, lease_owner_epoch, replica_max, wait_replicated, Host, Standby,
};
use crate::metrics::{free_port, http_get};
use crate::moto::Moto;
use crate::s3::block_on;

/// How long the rounds go on (at least [`MIN_ROUNDS`] are played).
const RACE_TIME: Duration = Duration::from_secs(60);
const MIN_ROUNDS: usize = 3;
/// Standbys racing in each round.
const RACERS: usize = 3;

/// One standby in the race: the owner name it writes into the lease, its database and
/// config, the port of its `/metrics`, and its process.
struct Racer {
    name: String,
    slot: usize,
    host: Host,
    port: u16,
    proc: Standby,
}

/// Starts a fresh standby (a new database, restored from the replica) for `slot`; the
/// `generation` tells apart the standbys that took the place of dead ones.
fn racer(work: &Work, replica: &str, slot: usize, generation: usize) -> Racer {
    let name = format!("s{slot}g{generation}");
    let h = host(work, &name, replica, true);
    let port = free_port();
    let body = std::fs::read_to_string(&h.cfg).unwrap();
    std::fs::write(&h.cfg, format!("addr: 127.0.0.1:{port}\n{body}")).unwrap();
    let proc = Standby::start(work, &h);
    Racer {
        name,
        slot,
        host: h,
        port,
        proc,
    }
}

/// What a standby's `/metrics` says of the lease: (holder, our role, epoch).
fn lease_seen(port: u16) -> Option<(String, String, u64)> {
    let (200, body) = http_get(port, "/metrics")? else {
        return None;
    };
    let line = body
        .lines()
        .find(|l| l.starts_with("sqlite_replicate_lease_epoch{"))?;
    let label = |k: &str| {
        let v = line.split(&format!("{k}=\"")).nth(1)?;
        Some(v[..v.find('"')?].to_string())
    };
    let epoch = line.rsplit(' ').next()?.parse::<f64>().ok()? as u64;
    Some((label("holder")?, label("role")?, epoch))
}

/// The lease TTL of every config here ([`crate::lease::TTL`]).
fn ttl() -> Duration {
    let secs = crate::lease::TTL.strip_suffix('s').unwrap();
    Duration::from_secs(secs.parse().unwrap())
}

/// The stated expiry (Unix ms) of the lease record in the replica, as `status` reads it.
fn lease_expiry_ms(h: &Host) -> i64 {
    let out = run_ok(&["status", "-config", h.cfg.to_str().unwrap(), "-json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let at = v["leases"][0]["expires_at"].as_str().unwrap();
    at.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

/// The lease expiry (Unix ms) a standby's `/metrics` shows: that of the last record it read.
fn expiry_seen_ms(port: u16) -> Option<i64> {
    let (200, body) = http_get(port, "/metrics")? else {
        return None;
    };
    let v: f64 = body
        .lines()
        .find_map(|l| l.strip_prefix("sqlite_replicate_lease_expires_timestamp_seconds{"))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()?;
    Some((v * 1000.0).round() as i64)
}

/// How many times a standby tried to take the lease and found it held.
fn tries(p: &Proc) -> usize {
    p.log_text().matches("lease still held").count()
}

/// Waits until `r` follows the replica as a standby that sees `holder` at `epoch`.
fn wait_standby_sees(r: &Racer, holder: &str, epoch: u64) {
    let want = (holder.to_string(), "standby".to_string(), epoch);
    let mut last = None;
    let deadline = Duration::from_secs(60);
    let t = Instant::now();
    while t.elapsed() < deadline {
        last = lease_seen(r.port);
        if last.as_ref() == Some(&want) {
            return;
        }
        // A second winner: it took the lease too (and may have stopped on finding it
        // lost at its next write of the record), or thinks itself the holder.
        let log = r.proc.log_text();
        let primary = last.as_ref().is_some_and(|(_, role, _)| role == "primary");
        assert!(
            !primary && !log.contains("lease taken"),
            "{} took the lease too, beside {holder} at epoch {epoch} (it reports {last:?}); log tail:\n{}",
            r.name,
            r.proc.log_tail(4000)
        );
        // Spaces the polls of this wait loop.
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "{} does not report itself a standby seeing {holder} at epoch {epoch} after {deadline:?} (last: {last:?}); log tail:\n{}",
        r.name,
        r.proc.log_tail(4000)
    );
}

fn race_rounds(replica: String, backend: &str) {
    let work = Work::new();
    // Epoch 1: a replicator holds the lease and ships the application's first writes.
    let p = host(&work, "p", &replica, false);
    let app = app_db(&p.db);
    insert_rows(&app, 30, 300);
    drop(app);
    let mut holder: Box<dyn DerefMut<Target = Proc>> = Box::new(Replicator::start(
        &work,
        &["-config", p.cfg.to_str().unwrap()],
    ));
    let mut max = wait_replicated(&p, 1);
    let (mut holder_name, mut holder_slot, mut epoch) = ("p".to_string(), 0, 1);
    let mut holder_host = p;
    let mut racers: Vec<Racer> = (1..=RACERS).map(|s| racer(&work, &replica, s, 0)).collect();
    for r in &racers {
        wait_standby_sees(r, &holder_name, epoch);
    }
    let mut generation = 0;
    let started = Instant::now();
    let (mut rounds, mut lost_tries) = (0, 0);
    while rounds < MIN_ROUNDS || started.elapsed() < RACE_TIME {
        let tries_before: HashMap<String, usize> = racers
            .iter()
            .map(|r| (r.name.clone(), tries(&r.proc)))
            .collect();
        // The holder dies. Each standby counts its lease's expiry from when it first saw
        // the last record, on its own 500 ms tick: left alone they would try one after
        // the other, and the first would win unopposed. So once all three have seen the
        // last record they are frozen across the TTL and woken together: the lease has
        // expired for all of them at once, and all three go for it.
        holder.kill9();
        epoch += 1;
        wait_for(
            &format!("the standbys to see the dead holder's last record (round {rounds})"),
            Duration::from_secs(30),
            || {
                let last = lease_expiry_ms(&holder_host);
                racers
                    .iter()
                    .all(|r| expiry_seen_ms(r.port) == Some(last))
                    .then_some(())
            },
        );
        for r in &racers {
            r.proc.signal(libc::SIGSTOP);
        }
        // Not a wait for an event: the TTL passing while they are frozen is the scenario.
        std::thread::sleep(ttl() + Duration::from_millis(300));
        for r in &racers {
            r.proc.signal(libc::SIGCONT);
        }
        let won = wait_for(
            &format!("a standby to promote (round {rounds}, {backend})"),
            Duration::from_secs(60),
            || {
                racers
                    .iter()
                    .position(|r| r.proc.log_text().contains("promoted"))
            },
        );
        let mut w = racers.remove(won);
        // The lease object: the winner, at the next epoch.
        assert_eq!(
            lease_owner_epoch(&w.host),
            (w.name.clone(), epoch),
            "round {rounds}"
        );
        // The losers stay standbys, and say so: they see the winner at this epoch.
        for r in &racers {
            wait_standby_sees(r, &w.name, epoch);
        }
        // Only the winner uploads: its application's writes reach the replica.
        let app = app_db(&w.host.db);
        insert_rows(&app, 5, 300);
        drop(app);
        w.proc
            .wait_for_line(REPLICA_STARTED, Duration::from_secs(60));
        max = wait_replicated(&w.host, max + 1);
        // Losers that judged the lease expired too and tried to take it (they log
        // "lease still held" on finding the winner's record, or on losing the write).
        lost_tries += racers
            .iter()
            .map(|r| tries(&r.proc) - tries_before[&r.name])
            .sum::<usize>();
        for r in &racers {
            let log = r.proc.log_text();
            assert!(
                !log.contains("lease taken") && !log.contains(REPLICA_STARTED),
                "round {rounds}: {} lost to {} but took the lease or uploads:\n{log}",
                r.name,
                w.name
            );
        }
        // The dead holder's place: a fresh standby, following before the next round.
        generation += 1;
        let fresh = racer(&work, &replica, holder_slot, generation);
        wait_standby_sees(&fresh, &w.name, epoch);
        racers.push(fresh);
        (holder_name, holder_slot, holder_host) = (w.name.clone(), w.slot, w.host);
        holder = Box::new(w.proc);
        rounds += 1;
    }
    eprintln!(
        "lease race ({backend}): {rounds} rounds of {RACERS} standbys in {:?}, one winner each (last epoch {epoch}, holder {holder_name}); {lost_tries} losing attempts to take it",
        started.elapsed()
    );
    assert_eq!(epoch, rounds as u64 + 1);
    // The race was run: losers did go for the lease (usually two a round).
    assert!(
        lost_tries > 0,
        "no standby ever lost a try: no race was run"
    );
    // The last winner stops cleanly (final sync); the replica equals its database. The
    // standbys go first: a clean stop releases the lease, and an auto-promoting standby
    // would take it and write its own image at the next epoch (same rows, another
    // change counter in page 1), which CI once saw.
    for r in &mut racers {
        r.proc.kill9();
    }
    let st = holder.terminate(Duration::from_secs(60));
    assert!(st.success(), "{}", holder.log_tail(4000));
    assert!(replica_max(&holder_host) >= max);
    let want = pages_of_live(&holder_host.db);
    let compared = std::panic::catch_unwind(|| {
        restore_and_compare(
            &holder_host.cfg,
            &holder_host.db,
            &work.path("out.db"),
            &want,
            &[],
        )
    });
    if let Err(e) = compared {
        // Keeps the evidence: every process's log, the databases and a file replica.
        let listing = run(&[
            "ltx",
            "-config",
            holder_host.cfg.to_str().unwrap(),
            holder_host.db.to_str().unwrap(),
        ]);
        eprintln!(
            "{backend}: the restore differs from {holder_name}'s database; work directory kept at {}\nreplica:\n{}",
            work.dir.path().display(),
            String::from_utf8_lossy(&listing.stdout)
        );
        std::mem::forget(work);
        std::panic::resume_unwind(e);
    }
}

#[test]
fn file_standbys_race_for_an_expired_lease_one_wins() {
    let work = Work::new();
    race_rounds(file_replica(&work.path("replica")), "file");
}

#[test]
fn s3_standbys_race_for_an_expired_lease_one_wins() {
    let m = Moto::start();
    race_rounds(m.replica_yaml("db"), "s3 (moto)");
}

#[test]
fn abs_standbys_race_for_an_expired_lease_one_wins() {
    let az = Azurite::start();
    race_rounds(az.replica_yaml("db"), "abs");
}

/// The race at its sharpest, through the engine's lease API on the real store: eight
/// handles (as eight hosts would hold) start `try_acquire` together on one free lease,
/// alternately absent (all race a conditional create) and released (all race a
/// compare-and-swap of the same tag). Exactly one takes it in every one of
/// [`API_ROUNDS`] rounds, the object names it at the next epoch, and every loser is told
/// who holds it.
fn api_race_rounds(store: Arc<dyn ReplicaStore>, backend: &str) {
    const HANDLES: usize = 8;
    block_on(async {
        let leases: Vec<Arc<Lease>> = (0..HANDLES)
            .map(|i| {
                Arc::new(Lease::new(
                    store.clone(),
                    LeaseOptions::new(format!("h{i}"), Duration::from_secs(30)),
                ))
            })
            .collect();
        let t = Instant::now();
        let mut epoch = 0;
        for round in 0..API_ROUNDS {
            let absent = round % 2 == 0;
            if absent {
                store
                    .named()
                    .unwrap()
                    .delete_name(LEASE_NAME)
                    .await
                    .unwrap();
            }
            let go = Arc::new(tokio::sync::Barrier::new(HANDLES));
            let tasks: Vec<_> = leases
                .iter()
                .map(|l| {
                    let (l, go) = (l.clone(), go.clone());
                    tokio::spawn(async move {
                        go.wait().await;
                        l.try_acquire(&mut Observer::default(), false).await
                    })
                })
                .collect();
            let mut winners = Vec::new();
            let mut told = Vec::new();
            for (i, t) in tasks.into_iter().enumerate() {
                match t.await.unwrap() {
                    Ok(Acquire::Acquired { .. }) => winners.push(i),
                    Ok(Acquire::HeldBy { record, .. }) => told.push(record.owner),
                    Err(e) => panic!("{backend} round {round}: h{i}: {e}"),
                }
            }
            assert_eq!(
                winners.len(),
                1,
                "{backend} round {round} ({}): winners {winners:?}",
                if absent { "create" } else { "swap" }
            );
            let w = winners[0];
            epoch = if absent { 1 } else { epoch + 1 };
            let (rec, _) = leases[w].read().await.unwrap().unwrap();
            assert_eq!(
                (rec.owner.as_str(), rec.epoch),
                (format!("h{w}").as_str(), epoch),
                "{backend} round {round}"
            );
            assert!(
                told.iter().all(|o| *o == rec.owner),
                "{backend} round {round}: losers told {told:?}, holder {}",
                rec.owner
            );
            assert_eq!(leases[w].epoch(), Some(epoch));
            // Free for the next round.
            leases[w].release().await.unwrap();
        }
        eprintln!(
            "lease API race ({backend}): {API_ROUNDS} rounds of {HANDLES} handles in {:?}, one winner each",
            t.elapsed()
        );
    });
}

const API_ROUNDS: usize = 100;

#[test]
fn file_lease_api_race_one_winner_per_round() {
    let work = Work::new();
    let store: Arc<dyn ReplicaStore> = Arc::new(FileStore::new(work.path("replica")));
    api_race_rounds(store, "file");
}

#[test]
fn s3_lease_api_race_one_winner_per_round() {
    let m = Moto::start();
    let store = S3Store::new(S3Options {
        bucket: m.bucket.clone(),
        prefix: "db".into(),
        endpoint: Some(m.endpoint()),
        region: Some("us-east-1".into()),
        force_path_style: true,
        access_key_id: Some("testing".into()),
        secret_access_key: Some("testing".into()),
        ..Default::default()
    })
    .unwrap();
    api_race_rounds(Arc::new(store), "s3 (moto)");
}

#[test]
fn abs_lease_api_race_one_winner_per_round() {
    let az = Azurite::start();
    let store = AbsStore::new(AbsOptions {
        account_name: ACCOUNT.into(),
        account_key: Some(ACCOUNT_KEY.into()),
        sas_token: None,
        container: az.container.clone(),
        prefix: "db".into(),
        endpoint: Some(az.endpoint()),
    })
    .unwrap();
    api_race_rounds(Arc::new(store), "abs");
}
