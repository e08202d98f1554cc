//! Several standbys with `auto-promote` racing for one expired lease, round after round,
//! on a local directory, S3 (moto) and Azure (Azurite): exactly one wins every round.
//!
//! A round: the holder is killed (SIGKILL); the three standbys following the replica all
//! see its lease unchanged for the TTL and try to take it at about the same moment, each
//! by a conditional write of the record they read. Checked every round: one standby logs
//! its promotion, the lease object names it at the next epoch, each loser's metrics show
//! it still a standby that sees the winner at that epoch, no loser started an uploader,
//! and the winner's writes reach the replica. The dead holder's place is taken by a fresh
//! standby (restored from the replica) before the next round, so three race every time.
//! Rounds go on for about [`RACE_TIME`]; the last winner's database is then compared,
//! page for page, with a restore of the replica.

use std::ops::DerefMut;
use std::time::{Duration, Instant};

use crate::azurite::Azurite;
use crate::harness::*;
use crate::lease::{
    file_replica, host, lease_owner_epoch, replica_max, wait_replicated, Host, Standby,
};
use crate::metrics::{free_port, http_get};
use crate::moto::Moto;

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
    let mut rounds = 0;
    while rounds < MIN_ROUNDS || started.elapsed() < RACE_TIME {
        // The holder dies; for the standbys its lease expires a TTL after they last saw
        // it change, at about the same moment for all three.
        holder.kill9();
        epoch += 1;
        let won = wait_for(
            &format!("a standby to promote (round {rounds}, {backend})"),
            Duration::from_secs(60),
            || racers.iter().position(|r| r.proc.log_text().contains("promoted")),
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
        w.proc.wait_for_line(REPLICA_STARTED, Duration::from_secs(60));
        max = wait_replicated(&w.host, max + 1);
        for r in &racers {
            let log = r.proc.log_text();
            assert!(
                !log.contains("promoted") && !log.contains(REPLICA_STARTED),
                "round {rounds}: {} lost to {} but promoted or uploads:\n{log}",
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
        "lease race ({backend}): {rounds} rounds of {RACERS} standbys in {:?}, one winner each (last epoch {epoch}, holder {holder_name})",
        started.elapsed()
    );
    assert_eq!(epoch, rounds as u64 + 1);
    // The last winner stops cleanly (final sync); the replica equals its database.
    let st = holder.terminate(Duration::from_secs(60));
    assert!(st.success(), "{}", holder.log_tail(4000));
    assert!(replica_max(&holder_host) >= max);
    let want = pages_of_live(&holder_host.db);
    restore_and_compare(
        &holder_host.cfg,
        &holder_host.db,
        &work.path("out.db"),
        &want,
        &[],
    );
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
