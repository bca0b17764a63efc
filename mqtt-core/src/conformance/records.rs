//! The checks of what a session holds: every record kind byte-exact, order, removal, batch
//! order, all-or-nothing, and isolation between sessions.

use super::*;

pub(super) async fn empty_store_loads_empty_sessions<F: StoreFactory>(f: &F) -> CheckResultOf {
    let (store, _loc) = f.create().await?;
    let loaded = store.load(&key("nobody")).await?;
    ensure!(loaded.is_empty(), "a fresh store returned {loaded:?}");
    let sessions = store.sessions().await?;
    ensure!(sessions.is_empty(), "a fresh store lists {sessions:?}");
    Ok(())
}

pub(super) async fn every_record_kind_round_trips_byte_exact<F: StoreFactory>(
    f: &F,
) -> CheckResultOf {
    let (store, _loc) = f.create().await?;
    let k = key("round-trip");
    commit(&store, &k, one_of_each()).await?;
    let loaded = store.load(&k).await?;
    ensure!(
        loaded == expected_one_of_each(),
        "stored one record of each kind, loaded {loaded:?}"
    );

    // Metadata with every optional field absent, and the extremes of each number.
    let sparse = SessionMeta {
        session_expiry_interval: u32::MAX,
        disconnected_at_ms: None,
        assigned_client_id: None,
        alive_until_ms: None,
        protocol: ProtocolVersion::V311,
        in_flight_limit: None,
        clock: Default::default(),
    };
    let extremes = vec![
        StoreOp::SetMeta(sparse.clone()),
        StoreOp::PutOutbound {
            seq: u64::MAX,
            record: OutboundRecord::PubRel {
                packet_id: u16::MAX,
            },
        },
        StoreOp::PutInbound { packet_id: 0 },
        StoreOp::PutInbound {
            packet_id: u16::MAX,
        },
        StoreOp::PushQueue {
            seq: 0,
            message: queued(0, QoS::AtMostOnce, 8),
        },
        StoreOp::PushQueue {
            seq: 1,
            message: queued(1, QoS::AtLeastOnce, 8),
        },
    ];
    let k2 = key("round-trip-extremes");
    commit(&store, &k2, extremes).await?;
    let loaded = store.load(&k2).await?;
    ensure!(
        loaded.meta == Some(sparse),
        "sparse metadata came back as {:?}",
        loaded.meta
    );
    ensure!(
        loaded.outbound
            == vec![(
                u64::MAX,
                OutboundRecord::PubRel {
                    packet_id: u16::MAX
                }
            )],
        "outbound at u64::MAX came back as {:?}",
        loaded.outbound
    );
    ensure!(
        loaded.inbound == vec![0, u16::MAX],
        "inbound markers came back as {:?}",
        loaded.inbound
    );
    ensure!(
        loaded.queue
            == vec![
                (0, queued(0, QoS::AtMostOnce, 8)),
                (1, queued(1, QoS::AtLeastOnce, 8))
            ],
        "queue came back as {:?}",
        loaded.queue
    );
    Ok(())
}

pub(super) async fn order_survives_packet_identifier_wrap<F: StoreFactory>(f: &F) -> CheckResultOf {
    // 70,000 PUBLISH records pass through a window of 1,000; their packet identifiers wrap past
    // 65,535, and records come back in the order they were stored, never by identifier.
    const TOTAL: u64 = 70_000;
    const WINDOW: u64 = 1_000;
    const STEP: u64 = 250;
    let (store, _loc) = f.create().await?;
    let k = key("wrap");
    let id_of = |seq: u64| (seq % 65_535 + 1) as u16;
    let mut next = 0u64;
    while next < TOTAL {
        let mut ops = Vec::new();
        for seq in next..next + STEP {
            ops.push(put_publish(seq, id_of(seq)));
            if seq >= WINDOW {
                ops.push(StoreOp::RemoveOutbound { seq: seq - WINDOW });
            }
            // The queue rolls too.
            ops.push(StoreOp::PushQueue {
                seq,
                message: queued(seq, QoS::AtLeastOnce, 8),
            });
            if seq >= WINDOW {
                ops.push(StoreOp::RemoveQueue { seq: seq - WINDOW });
            }
        }
        commit(&store, &k, ops).await?;
        next += STEP;
        if next.is_multiple_of(10_000) || next == 65_750 || next == TOTAL {
            let loaded = store.load(&k).await?;
            let first = next.saturating_sub(WINDOW);
            let want: Vec<u64> = (first..next).collect();
            ensure!(
                seqs(&loaded.outbound) == want,
                "after {next} records the outbound window is not {first}..{next} in order"
            );
            ensure!(
                seqs(&loaded.queue) == want,
                "after {next} records the queue is not {first}..{next} in FIFO order"
            );
            for (seq, record) in &loaded.outbound {
                ensure!(
                    *record == OutboundRecord::Publish(publish(id_of(*seq), *seq, 16)),
                    "record {seq} came back with other contents"
                );
            }
        }
    }
    Ok(())
}

pub(super) async fn pubrel_records_keep_the_order_they_were_released_in<F: StoreFactory>(
    f: &F,
) -> CheckResultOf {
    let (store, _loc) = f.create().await?;
    let k = key("pubrel-order");
    // Five PUBLISH with identifiers that do not sort in sequence order.
    let ids = [65_000u16, 3, 64_000, 1, 2];
    commit(
        &store,
        &k,
        ids.iter()
            .enumerate()
            .map(|(seq, id)| put_publish(seq as u64, *id))
            .collect(),
    )
    .await?;
    // PUBREC arrives for the third, then the first, then the fifth: each becomes a PUBREL
    // under a new, higher sequence number, in one batch with the removal of its PUBLISH.
    for (new_seq, (old_seq, id)) in [(2u64, 64_000u16), (0, 65_000), (4, 2)]
        .into_iter()
        .enumerate()
    {
        commit(
            &store,
            &k,
            vec![
                StoreOp::RemoveOutbound { seq: old_seq },
                StoreOp::PutOutbound {
                    seq: 5 + new_seq as u64,
                    record: OutboundRecord::PubRel { packet_id: id },
                },
            ],
        )
        .await?;
    }
    let loaded = store.load(&k).await?;
    let want = vec![
        (1, OutboundRecord::Publish(publish(3, 1, 16))),
        (3, OutboundRecord::Publish(publish(1, 3, 16))),
        (5, OutboundRecord::PubRel { packet_id: 64_000 }),
        (6, OutboundRecord::PubRel { packet_id: 65_000 }),
        (7, OutboundRecord::PubRel { packet_id: 2 }),
    ];
    ensure!(
        loaded.outbound == want,
        "expected the two PUBLISH in send order, then PUBREL for 64000, 65000, 2 in release \
         order; got {:?}",
        loaded.outbound
    );
    Ok(())
}

pub(super) async fn removal_and_idempotence<F: StoreFactory>(f: &F) -> CheckResultOf {
    let (store, _loc) = f.create().await?;
    let k = key("removal");
    commit(&store, &k, one_of_each()).await?;
    let removals = vec![
        StoreOp::RemoveOutbound { seq: 1 },
        StoreOp::RemoveInbound { packet_id: 12 },
        StoreOp::RemoveQueue { seq: 3 },
        StoreOp::RemoveQueue { seq: 4 },
        StoreOp::RemoveSubscription {
            filter: "plant/+/telemetry".into(),
        },
    ];
    commit(&store, &k, removals.clone()).await?;
    let loaded = store.load(&k).await?;
    ensure!(
        seqs(&loaded.outbound) == vec![2]
            && loaded.inbound.is_empty()
            && loaded.queue.is_empty()
            && loaded.subscriptions.is_empty(),
        "after removing one record of each kind, loaded {loaded:?}"
    );
    // Removing what is not there does nothing and is no error.
    commit(&store, &k, removals).await?;
    commit(
        &store,
        &key("never-written"),
        vec![StoreOp::RemoveQueue { seq: 9 }],
    )
    .await?;
    let again = store.load(&k).await?;
    ensure!(again == loaded, "a repeated removal changed the session");
    // Putting an existing record replaces it.
    commit(
        &store,
        &k,
        vec![StoreOp::PutOutbound {
            seq: 2,
            record: OutboundRecord::PubRel { packet_id: 99 },
        }],
    )
    .await?;
    let replaced = store.load(&k).await?;
    ensure!(
        replaced.outbound == vec![(2, OutboundRecord::PubRel { packet_id: 99 })],
        "a put over an existing record did not replace it: {:?}",
        replaced.outbound
    );
    Ok(())
}

pub(super) async fn operations_apply_in_batch_order<F: StoreFactory>(f: &F) -> CheckResultOf {
    let (store, _loc) = f.create().await?;
    let k = key("batch-order");
    commit(
        &store,
        &k,
        vec![
            put_publish(1, 1),
            StoreOp::RemoveOutbound { seq: 1 },
            StoreOp::RemoveInbound { packet_id: 5 },
            StoreOp::PutInbound { packet_id: 5 },
            StoreOp::SetMeta(SessionMeta::default()),
            StoreOp::SetMeta(full_meta()),
        ],
    )
    .await?;
    let loaded = store.load(&k).await?;
    ensure!(
        loaded.outbound.is_empty(),
        "put then remove in one batch left {:?}",
        loaded.outbound
    );
    ensure!(
        loaded.inbound == vec![5],
        "remove then put in one batch left {:?}",
        loaded.inbound
    );
    ensure!(
        loaded.meta == Some(full_meta()),
        "the later of two metadata writes did not win"
    );
    Ok(())
}

/// Checks that after a failed batch the session's outbound records are those from before the
/// batch or those the whole batch would have left, never a mix.
pub(super) fn all_or_nothing(
    loaded: &StoredSession,
    before: &[u64],
    after: &[u64],
) -> Result<(), Stop> {
    let got = seqs(&loaded.outbound);
    ensure!(
        got == before || got == after,
        "after a failed batch the session holds outbound {got:?}: it must hold {before:?} (none \
         of the batch) or {after:?} (all of it), never a part"
    );
    Ok(())
}

pub(super) async fn a_failed_batch_is_all_or_nothing<F: StoreFactory>(f: &F) -> CheckResultOf {
    let (store, loc) = f.create().await?;
    let k = key("atomicity");
    commit(&store, &k, one_of_each()).await?;
    if !f.fail_next_commit(&store) {
        return Err(Stop::Skip(
            "the factory cannot make a commit fail".to_owned(),
        ));
    }
    let failed: Vec<u64> = (100..400).collect();
    let mut ops: Vec<StoreOp> = failed
        .iter()
        .map(|&seq| put_publish(seq, seq as u16))
        .collect();
    ops.push(StoreOp::RemoveOutbound { seq: 1 });
    let result = commit(&store, &k, ops).await;
    ensure!(result.is_err(), "a commit armed to fail returned Ok");
    // All of it: record 1 removed and 100..400 added. None of it: records 1 and 2.
    let mut after = vec![2];
    after.extend_from_slice(&failed);
    let check = |loaded: StoredSession| -> Result<(), Stop> {
        all_or_nothing(&loaded, &[1, 2], &after)?;
        ensure!(
            loaded.inbound == vec![12] && loaded.meta == Some(full_meta()),
            "a failed batch changed records it did not touch"
        );
        Ok(())
    };
    // The failed handle may refuse reads too (its state is unknown); what it returns, if
    // anything, must be all or nothing as well.
    if let Ok(loaded) = store.load(&k).await {
        check(loaded)?;
    }
    close_store(store).await?;
    let store = f.reopen(&loc).await?;
    check(store.load(&k).await?)
}

pub(super) async fn sessions_are_isolated<F: StoreFactory>(f: &F) -> CheckResultOf {
    let (store, _loc) = f.create().await?;
    let keys = [
        SessionKey::new("a", "x"),
        SessionKey::new("ab", "x"),
        SessionKey::new("a", "xy"),
        SessionKey::new("h:1", "c"),
        SessionKey::new("h:18", "c"),
        SessionKey::new("h:1", ""),
        SessionKey::new("", "h:1"),
        SessionKey::cluster("a", "x"),
        SessionKey::cluster("h:1", "c"),
    ];
    for (i, k) in keys.iter().enumerate() {
        let i = i as u64;
        commit(
            &store,
            k,
            vec![
                put_publish(i, i as u16 + 1),
                StoreOp::PutInbound {
                    packet_id: i as u16,
                },
                StoreOp::PushQueue {
                    seq: i,
                    message: queued(i, QoS::AtLeastOnce, 8),
                },
                StoreOp::SetMeta(SessionMeta {
                    session_expiry_interval: i as u32,
                    ..SessionMeta::default()
                }),
            ],
        )
        .await?;
    }
    for (i, k) in keys.iter().enumerate() {
        let loaded = store.load(k).await?;
        let i = i as u64;
        ensure!(
            seqs(&loaded.outbound) == vec![i]
                && loaded.inbound == vec![i as u16]
                && seqs(&loaded.queue) == vec![i]
                && loaded.meta.as_ref().map(|m| m.session_expiry_interval) == Some(i as u32),
            "session {k} sees records that are not its own: {loaded:?}"
        );
    }
    store.clear(&keys[0]).await?;
    store.clear(&keys[3]).await?;
    for (i, k) in keys.iter().enumerate() {
        let empty = store.load(k).await?.is_empty();
        ensure!(
            empty == (i == 0 || i == 3),
            "clearing {} and {} changed {k}",
            keys[0],
            keys[3]
        );
    }
    Ok(())
}
