//! Opening a node's disk at start: the data directory (created durably, locked, and checked to be
//! this node's by its identity), the log store and what its recovery found, and the actor id this
//! incarnation writes versions as: a new one on every start, settled here before the core exists,
//! with the reason the start found (see [`open_storage`]).

use crate::config::{Bug, NodeConfig};
use crate::env::Env;
use crate::fs::{DirLock, FileSystem};
use crate::store::clean;
use crate::store::identity::{self, Identity};
use crate::store::keyspace::Keyspace;
use crate::store::log::{LogOptions, LogStore, ManifestState, RecoveryReport};
use crate::version::{Actor, valid_actor};
use std::io;
use std::path::Path;

/// How a node came up: for logs and tests.
#[derive(Clone, Debug)]
pub struct Startup {
    /// The actor id of this incarnation.
    pub actor: Actor,
    /// Why the actor id is new, or `None` if it was kept from the last incarnation (only under the
    /// deliberate bugs `keep-actor-on-recovery` and `reuse-actor`).
    pub new_actor_reason: Option<String>,
    /// What the log store's recovery found.
    pub recovery: RecoveryReport,
    /// The number of this start ([`crate::store::clean::begin`]), for the marker of a clean stop.
    pub start: u64,
}

/// Checks what can be checked of the data directory without writing to it: if it exists, it is
/// a directory and, if it has an identity, it is this node's. Run before a join, so that a node
/// started on the wrong directory does not join the ring first.
pub fn check_data_dir<F: FileSystem>(
    fs: &F,
    config: &NodeConfig,
    data_dir: &Path,
) -> io::Result<()> {
    if !fs.exists(data_dir) {
        return Ok(());
    }
    fs.read_dir(data_dir).map_err(|e| {
        let e = in_data_dir(data_dir, e);
        io::Error::new(e.kind(), format!("{e} (is it a directory?)"))
    })?;
    identity::check(fs, data_dir, &identity_of(config)).map(|_| ())
}

/// `e`, said to be about the data directory `dir`, naming it once (the real disk's errors name
/// their path already: [`crate::fs::StdFs`]).
fn in_data_dir(dir: &Path, e: io::Error) -> io::Error {
    let path = dir.display().to_string();
    let message = if e.to_string().contains(&path) {
        format!("data directory: {e}")
    } else {
        format!("data directory {path}: {e}")
    };
    io::Error::new(e.kind(), message)
}

fn identity_of(config: &NodeConfig) -> Identity {
    Identity {
        node: config.id.to_string(),
        cluster: config.cluster.clone(),
    }
}

/// Creates the data directory (durably: its entry and its new parents' are synced), takes its
/// lock, and checks or writes its identity ([`crate::store::identity`]).
fn lock_data_dir<F: FileSystem>(
    fs: &F,
    config: &NodeConfig,
    data_dir: &Path,
) -> io::Result<DirLock> {
    let named = |e: io::Error| in_data_dir(data_dir, e);
    let existed = fs.exists(data_dir);
    fs.create_dir_all(data_dir).map_err(named)?;
    if !existed {
        for ancestor in data_dir.ancestors().filter(|d| !d.as_os_str().is_empty()) {
            fs.sync_dir(ancestor).map_err(named)?;
        }
    }
    let lock = fs.lock_dir(data_dir)?;
    identity::check_or_write(fs, data_dir, &identity_of(config))?;
    Ok(lock)
}

/// Opens the node's storage in `data_dir` and settles the actor id of this incarnation. The data
/// directory is locked for as long as the returned keyspace lives, and must be this node's (or
/// new): see [`crate::store::identity`].
///
/// Every start takes a new actor id, so that no (actor, counter) is ever issued twice: a node
/// that kept its actor would issue again the counters of every write its disk no longer holds,
/// and the disk cannot always tell (a data directory restored from a backup, its clean-shutdown
/// marker, `STARTS` and log all agreeing, is one that cannot). The reason says what the start
/// found, the first of:
/// - an empty (new or wiped) disk, or one whose actor record is unreadable or another node's;
/// - the whole log gone beside a stored actor id (the actor is kept apart from the log,
///   [`Keyspace::set_actor`], so that damage to the log cannot decide this by taking it along);
/// - recovery cut a torn tail, skipped damaged records, or found a data file or the manifest
///   missing ([`RecoveryReport::lost_data`]): the lost records may hold the highest counters;
/// - an actor record of another incarnation than the log's last;
/// - the last stop was not clean ([`crate::store::clean`]): a coordinator sends a new version to
///   the replicas while its own copy is still being synced, so a crash may have taken back a
///   counter that others saw (and, with an fsync policy other than `always`, acknowledged writes
///   too);
/// - otherwise, a clean stop (which a restored backup looks like).
///
/// The deliberate bug `reuse-actor` always uses the bare node id, restarting counters after a
/// wipe; `keep-actor-on-recovery` keeps the stored actor after an unclean stop or a recovery that
/// lost data.
pub fn open_storage<E: Env>(
    env: &E,
    config: &NodeConfig,
    data_dir: &Path,
) -> io::Result<(Keyspace<LogStore<E::Fs>>, Startup)> {
    let lock = lock_data_dir(&env.fs(), config, data_dir)?;
    // Taken away (durably) before anything else: from here on a crash is an unclean stop. Then
    // this start is counted, so that the marker cannot vouch for a later start.
    let marker = clean::take(&env.fs(), data_dir)?;
    let (last_start, start) = clean::begin(&env.fs(), data_dir)?;
    let options = LogOptions {
        max_file_bytes: config.log_file_bytes_max,
    };
    // A new store's id and a new actor id are drawn once, together: a new store always takes a
    // new actor, and one draw for both keeps a start's draws from the environment's randomness as
    // many as before store ids existed, so simulated runs of a seed stay as they were.
    let mut drawn = None;
    let (log, recovery) = LogStore::open(env.fs(), data_dir, options, || {
        *drawn.insert(env.random_u64())
    })?;
    let mut keyspace = Keyspace::new(log).with_lock(lock).with_rule(config.rule());
    if config.has_bug(Bug::ReuseActor) {
        // The deliberate bug ignores the loss, and so its marker too.
        keyspace.storage_mut().loss_handled()?;
        let startup = Startup {
            actor: config.id.to_string().into(),
            new_actor_reason: None,
            recovery,
            start,
        };
        return Ok((keyspace, startup));
    }
    let stored = match keyspace.actor() {
        Ok(bytes) => bytes
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .filter(|actor| valid_actor(actor)),
        // Decay of the record itself: as good as no record.
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            tracing::error!(node = %config.id, error = %e, "the stored actor id is damaged");
            None
        }
        Err(e) => return Err(e),
    };
    // A node issues only actor ids of its own name (`renew_actor`, and below): another node's
    // (a restore that mixed two nodes' files, a hand-edited file) would make this node issue
    // that node's counters too, two writes under one dot. Damage, like an unreadable record.
    let own = |actor: &String| crate::version::is_actor_of(actor, &config.id);
    let foreign = stored.clone().filter(|actor| !own(actor));
    let stored = stored.filter(own);
    // The log records the actor too (`Keyspace::logged_actor`): an actor file that names another
    // incarnation of this node than the log's last (an old `ACTOR` restored or copied beside a
    // newer log) would make the node issue again the counters that incarnation issued before its
    // disk was lost, for the keys not refilled yet. Damage, like a foreign actor.
    let logged = match keyspace.logged_actor() {
        Ok(bytes) => bytes.and_then(|bytes| String::from_utf8(bytes).ok()),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => None,
        Err(e) => return Err(e),
    };
    let stale = stored
        .clone()
        .zip(logged.clone())
        .filter(|(stored, logged)| stored != logged)
        .map(|(stored, logged)| {
            format!(
                "the stored actor id {stored:?} is not the {logged:?} the log was last written \
                 as (an actor file of another incarnation)"
            )
        });
    // The actor is kept apart from the log, so a store whose log is new beside a stored actor lost
    // its whole log (every data file and the manifest): the counters went with it.
    let log_gone = recovery.manifest == ManifestState::Created;
    let new_actor_reason = match stored {
        None => Some(match foreign {
            Some(actor) => format!(
                "the stored actor id {actor:?} is not one of node {}'s (damage)",
                config.id
            ),
            None => "no actor id stored (a new or wiped disk)".to_string(),
        }),
        Some(_) if log_gone && !config.has_bug(Bug::KeepActorOnRecovery) => {
            Some("the log is gone (no data file, no manifest) beside a stored actor id".into())
        }
        // Deliberate bug `keep-actor-on-recovery`: the lost records' counters will be issued again.
        // First, as the cause: what the log lost may be the record of its last actor too.
        Some(_) if recovery.lost_data() && !config.has_bug(Bug::KeepActorOnRecovery) => {
            Some(format!("recovery lost data: {}", recovery.loss_summary()))
        }
        Some(_) if stale.is_some() => stale,
        // Deliberate bug `keep-actor-on-recovery`: a version sent before it was durable here, and
        // lost in the crash, will have its counter issued again.
        Some(ref actor)
            if !marker.as_ref().is_some_and(|m| {
                m.actor == *actor
                    && Some(m.start) == last_start
                    && Some(m.log_end) == recovery.log_end
            }) && !config.has_bug(Bug::KeepActorOnRecovery) =>
        {
            Some(match &marker {
                None => "the node did not stop cleanly (no clean-shutdown marker): versions it \
                         sent may carry counters its disk lost"
                    .to_string(),
                Some(m) if m.actor != *actor => format!(
                    "the clean-shutdown marker names actor {:?}, not the stored {actor:?}",
                    m.actor
                ),
                Some(m) if Some(m.start) != last_start => format!(
                    "the clean-shutdown marker closes start {}, not the last start ({}): a \
                     marker of an earlier start",
                    m.start,
                    last_start.map_or("unknown".to_string(), |n| n.to_string())
                ),
                Some(m) => format!(
                    "the clean stop left the log ending at byte {} of data file {}, and it ends \
                     {}: changed while the node was down, and the records gone may hold this \
                     actor's highest counters",
                    m.log_end.len_bytes,
                    m.log_end.file_id,
                    recovery
                        .log_end
                        .map_or("nowhere (no data file)".to_string(), |e| format!(
                            "at byte {} of data file {}",
                            e.len_bytes, e.file_id
                        )),
                ),
            })
        }
        // A clean stop, and still a new actor: a data directory restored from a backup, or copied
        // back, cannot be told from the one it copies (its marker, `STARTS` and log agree), and
        // kept its actor would issue again every counter that actor issued after the copy, for
        // other writes: replicas that hold the first write under the dot keep it and acknowledge
        // the second, which is lost (an attack of 2026-12-03: 41 and 59 of 200 acknowledged puts
        // through a node restored from a cold backup). The cost is an entry per start in the clocks
        // of the keys each incarnation writes. Deliberate bug `keep-actor-on-recovery` keeps it.
        Some(_) if !config.has_bug(Bug::KeepActorOnRecovery) => Some(
            "every start takes a new actor id (the last stop was clean, but a data directory \
             restored from a backup cannot be told from the one it copies)"
                .to_string(),
        ),
        Some(_) => None,
    };
    let actor = match (stored, &new_actor_reason) {
        (Some(actor), None) => {
            // A store written before the log recorded the actor: recorded now, so that an actor
            // file of another incarnation is noticed from the next start on.
            if logged.as_deref() != Some(actor.as_str()) {
                keyspace.log_actor(&actor)?;
                keyspace.sync()?;
            }
            actor
        }
        (_, reason) => {
            let draw = drawn.take().unwrap_or_else(|| env.random_u64());
            let actor = format!("{}.{:08x}", config.id, draw as u32);
            tracing::warn!(
                node = %config.id,
                %actor,
                reason = reason.as_deref().unwrap_or_default(),
                "taking a new actor id"
            );
            keyspace.set_actor(&actor)?;
            keyspace.sync()?;
            actor
        }
    };
    // Only now that a new actor id is stored (or the deliberate bug kept the old one) may the
    // store forget the loss: a crash before this point reports it again at the next start.
    keyspace.storage_mut().loss_handled()?;
    if recovery.lost_data() && new_actor_reason.is_none() {
        tracing::warn!(
            node = %config.id,
            %actor,
            lost = %recovery.loss_summary(),
            "keeping the actor id although recovery lost data (deliberate bug keep-actor-on-recovery)"
        );
    }
    let startup = Startup {
        actor: actor.into(),
        new_actor_reason,
        recovery,
        start,
    };
    Ok((keyspace, startup))
}
