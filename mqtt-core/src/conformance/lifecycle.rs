//! The checks of a store over time and under stress: reopening, clearing, listing, purging,
//! large payloads, concurrent commits, damaged records, a failed commit, subscriptions.

use super::*;

pub(super) async fn committed_data_survives_reopen<F: StoreFactory>(f: &F) -> CheckResultOf {
    let (store, loc) = f.create().await?;
    let k = key("reopen");
    commit(&store, &k, one_of_each()).await?;
    let other = key("reopen-other");
    commit(&store, &other, vec![StoreOp::PutInbound { packet_id: 1 }]).await?;
    close_store(store).await?;
    let store = f.reopen(&loc).await?;
    let loaded = store.load(&k).await?;
    ensure!(
        loaded == expected_one_of_each(),
        "after reopening the session reads {loaded:?}"
    );
    ensure!(
        store.load(&other).await?.inbound == vec![1],
        "after reopening the second session is gone"
    );
    // The reopened store takes writes.
    commit(
        &store,
        &k,
        vec![
            StoreOp::RemoveQueue { seq: 3 },
            StoreOp::RemoveQueue { seq: 4 },
        ],
    )
    .await?;
    close_store(store).await?;
    let store = f.reopen(&loc).await?;
    ensure!(
        store.load(&k).await?.queue.is_empty(),
        "a removal after reopening did not last"
    );
    Ok(())
}

pub(super) async fn clear_removes_one_session<F: StoreFactory>(f: &F) -> CheckResultOf {
    let (store, loc) = f.create().await?;
    let (a, b) = (key("clear-a"), key("clear-b"));
    commit(&store, &a, one_of_each()).await?;
    commit(&store, &b, one_of_each()).await?;
    store.clear(&a).await?;
    store.clear(&key("clear-never-written")).await?;
    ensure!(
        store.load(&a).await?.is_empty(),
        "clear left records behind"
    );
    ensure!(
        store.load(&b).await? == expected_one_of_each(),
        "clearing one session changed another"
    );
    close_store(store).await?;
    let store = f.reopen(&loc).await?;
    ensure!(
        store.load(&a).await?.is_empty(),
        "a cleared session came back after reopening"
    );
    ensure!(
        store.sessions().await? == vec![b],
        "a cleared session is still listed"
    );
    Ok(())
}

pub(super) async fn sessions_lists_every_session<F: StoreFactory>(f: &F) -> CheckResultOf {
    let (store, _loc) = f.create().await?;
    let mut want = BTreeSet::new();
    for (i, k) in [
        key("list-b"),
        key("list-a"),
        SessionKey::new("other", "list-a"),
        SessionKey::cluster("c", "list-a"),
        key(""),
    ]
    .into_iter()
    .enumerate()
    {
        // Each session holds a different kind of record, so none is missed for lack of one.
        let op = match i % 3 {
            0 => StoreOp::PutInbound { packet_id: 1 },
            1 => put_publish(1, 1),
            _ => StoreOp::SetMeta(full_meta()),
        };
        commit(&store, &k, vec![op]).await?;
        want.insert(k);
    }
    let listed = store.sessions().await?;
    let got: BTreeSet<SessionKey> = listed.iter().cloned().collect();
    ensure!(
        got == want && listed.len() == want.len(),
        "listed {listed:?}, expected {want:?}"
    );
    Ok(())
}

pub(super) async fn sessions_of_lists_one_clients_sessions_in_every_scope<F: StoreFactory>(
    f: &F,
) -> CheckResultOf {
    let (store, _loc) = f.create().await?;
    // Client ids that share a prefix with the one asked about, in scopes on either side.
    let mine = [
        key("of-a"),
        SessionKey::new("mqtt://another.test:1883", "of-a"),
        SessionKey::new("mqtt://z.test:1883", "of-a"),
        SessionKey::cluster("c", "of-a"),
    ];
    let others = [
        key("of-"),
        key("of-ab"),
        key("of-b"),
        SessionKey::new("mqtt://another.test:1883", "of-aa"),
        SessionKey::new("mqtt://only-others.test:1883", "of-b"),
        SessionKey::cluster("c", "of-"),
    ];
    for (i, k) in others.iter().chain(&mine).enumerate() {
        let op = match i % 2 {
            0 => StoreOp::PutInbound { packet_id: 1 },
            _ => put_publish(1, 1),
        };
        commit(&store, k, vec![op]).await?;
    }
    let listed = store.sessions_of("of-a").await?;
    let got: BTreeSet<SessionKey> = listed.iter().cloned().collect();
    let want: BTreeSet<SessionKey> = mine.iter().cloned().collect();
    ensure!(
        got == want && listed.len() == want.len(),
        "sessions_of listed {listed:?}, expected {want:?}"
    );
    store.clear(&mine[1]).await?;
    let listed = store.sessions_of("of-a").await?;
    ensure!(
        listed.len() == 3 && !listed.contains(&mine[1]),
        "sessions_of listed a cleared session: {listed:?}"
    );
    ensure!(
        store.sessions_of("nobody").await?.is_empty(),
        "sessions_of listed sessions of a client id that has none"
    );
    Ok(())
}

pub(super) async fn purge_removes_only_expired_sessions<F: StoreFactory>(f: &F) -> CheckResultOf {
    let (store, loc) = f.create().await?;
    let now = 1_700_000_000_000u64;
    let with_alive = |interval: u32, ended: Option<u64>, alive_until: Option<u64>| {
        vec![
            StoreOp::SetMeta(SessionMeta {
                session_expiry_interval: interval,
                disconnected_at_ms: ended,
                assigned_client_id: None,
                alive_until_ms: alive_until,
                protocol: ProtocolVersion::V5,
                in_flight_limit: None,
                clock: Default::default(),
            }),
            put_publish(1, 1),
        ]
    };
    let with_meta = |interval: u32, ended: Option<u64>| with_alive(interval, ended, None);
    let sessions = [
        ("expired", with_meta(60, Some(now - 60_000)), true),
        ("expired-zero", with_meta(0, Some(now - 1)), true),
        ("not-yet", with_meta(60, Some(now - 59_999)), false),
        ("never-expires", with_meta(u32::MAX, Some(0)), false),
        ("still-connected", with_meta(0, None), false),
        // Killed while connected: it ended before its alive-until time at the latest.
        (
            "killed-long-ago",
            with_alive(60, None, Some(now - 60_000)),
            true,
        ),
        (
            "killed-recently",
            with_alive(60, None, Some(now - 59_999)),
            false,
        ),
        ("no-metadata", vec![put_publish(1, 1)], false),
    ];
    for (name, ops, _) in &sessions {
        commit(&store, &key(name), ops.clone()).await?;
    }
    let mut purged = store.purge_expired(now).await?;
    purged.sort();
    let mut want: Vec<SessionKey> = sessions
        .iter()
        .filter(|(_, _, expired)| *expired)
        .map(|(name, _, _)| key(name))
        .collect();
    want.sort();
    ensure!(purged == want, "purged {purged:?}, expected {want:?}");
    close_store(store).await?;
    let store = f.reopen(&loc).await?;
    for (name, _, expired) in &sessions {
        let empty = store.load(&key(name)).await?.is_empty();
        ensure!(
            empty == *expired,
            "after the purge, session {name} is {}",
            if empty { "gone" } else { "still there" }
        );
    }
    Ok(())
}

pub(super) async fn payloads_of_0_bytes_1_mib_and_16_mib<F: StoreFactory>(f: &F) -> CheckResultOf {
    let (store, loc) = f.create().await?;
    let k = key("payloads");
    let sizes = [0usize, 1 << 20, 16 << 20];
    let make = |i: usize, len: usize| {
        let payload = Bytes::from(
            (0..len)
                .map(|b| (b % 251) as u8 ^ i as u8)
                .collect::<Vec<_>>(),
        );
        let mut p = Publish::new("conformance/big", payload);
        p.qos = QoS::ExactlyOnce;
        p.packet_id = i as u16 + 1;
        encode(p)
    };
    for (i, &len) in sizes.iter().enumerate() {
        commit(
            &store,
            &k,
            vec![
                StoreOp::PutOutbound {
                    seq: i as u64,
                    record: OutboundRecord::Publish(make(i, len)),
                },
                StoreOp::PushQueue {
                    seq: 10 + i as u64,
                    message: QueuedPublish {
                        qos: QoS::AtLeastOnce,
                        packet: make(i + 10, len),
                        expires_at_ms: None,
                        accepted_at_ms: None,
                    },
                },
            ],
        )
        .await?;
    }
    close_store(store).await?;
    let store = f.reopen(&loc).await?;
    let loaded = store.load(&k).await?;
    for (i, &len) in sizes.iter().enumerate() {
        let want = OutboundRecord::Publish(make(i, len));
        ensure!(
            loaded.outbound.get(i).map(|(_, r)| r) == Some(&want),
            "the PUBLISH with a {len}-byte payload did not come back byte-exact"
        );
        ensure!(
            loaded.queue.get(i).map(|(_, q)| &q.packet) == Some(&make(i + 10, len)),
            "the queued message with a {len}-byte payload did not come back byte-exact"
        );
    }
    Ok(())
}

pub(super) async fn concurrent_commits_to_many_sessions<F: StoreFactory>(f: &F) -> CheckResultOf {
    const TASKS: u64 = 8;
    const COMMITS: u64 = 25;
    let (store, loc) = f.create().await?;
    let store = Arc::new(store);
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..TASKS {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            let k = key(&format!("concurrent-{t}"));
            for c in 0..COMMITS {
                commit(&*store, &k, vec![put_publish(c, c as u16 + 1)]).await?;
            }
            Ok::<(), StoreError>(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.map_err(|e| Stop::Fail(format!("a committing task failed: {e}")))??;
    }
    close_store(store).await?;
    let store = f.reopen(&loc).await?;
    for t in 0..TASKS {
        let loaded = store.load(&key(&format!("concurrent-{t}"))).await?;
        ensure!(
            seqs(&loaded.outbound) == (0..COMMITS).collect::<Vec<_>>(),
            "task {t} committed {COMMITS} records, {} are stored",
            loaded.outbound.len()
        );
    }
    Ok(())
}

pub(super) async fn concurrent_commits_to_one_session<F: StoreFactory>(f: &F) -> CheckResultOf {
    const TASKS: u64 = 8;
    const COMMITS: u64 = 25;
    let (store, loc) = f.create().await?;
    let store = Arc::new(store);
    let k = key("concurrent-shared");
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..TASKS {
        let store = Arc::clone(&store);
        let k = k.clone();
        tasks.spawn(async move {
            for c in 0..COMMITS {
                let seq = t * COMMITS + c;
                // Each batch writes two records that must appear together.
                commit(
                    &*store,
                    &k,
                    vec![
                        put_publish(seq, seq as u16 + 1),
                        StoreOp::PushQueue {
                            seq,
                            message: queued(seq, QoS::AtLeastOnce, 8),
                        },
                    ],
                )
                .await?;
            }
            Ok::<(), StoreError>(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.map_err(|e| Stop::Fail(format!("a committing task failed: {e}")))??;
    }
    close_store(store).await?;
    let store = f.reopen(&loc).await?;
    let loaded = store.load(&k).await?;
    let all: Vec<u64> = (0..TASKS * COMMITS).collect();
    ensure!(
        seqs(&loaded.outbound) == all && seqs(&loaded.queue) == all,
        "{} tasks committed {} batches to one session; {} outbound and {} queued records are \
         stored",
        TASKS,
        TASKS * COMMITS,
        loaded.outbound.len(),
        loaded.queue.len()
    );
    Ok(())
}

async fn damaged_record_is_an_error<F: StoreFactory>(f: &F, damage: Damage) -> CheckResultOf {
    let (store, loc) = f.create().await?;
    let k = key("damaged");
    commit(&store, &k, one_of_each()).await?;
    close_store(store).await?;
    if !f.damage(&loc, &k, damage).await? {
        return Err(Stop::Skip("the factory cannot damage a record".to_owned()));
    }
    // Refusing to open the store, or refusing to load the session, are both correct.
    let store = match f.reopen(&loc).await {
        Ok(store) => store,
        Err(_) => return Ok(()),
    };
    match store.load(&k).await {
        Err(StoreError::Corrupt {
            session, record, ..
        }) => {
            ensure!(
                session.contains("damaged") && !record.is_empty(),
                "the error names session {session:?} and record {record:?}, not the damaged one"
            );
            Ok(())
        }
        Err(_) => Ok(()),
        Ok(loaded) => Err(Stop::Fail(format!(
            "a session with a {damage:?} record loaded without error as {loaded:?}"
        ))),
    }
}

pub(super) async fn a_flipped_bit_is_an_error<F: StoreFactory>(f: &F) -> CheckResultOf {
    damaged_record_is_an_error(f, Damage::FlipBit).await
}

pub(super) async fn a_truncated_record_is_an_error<F: StoreFactory>(f: &F) -> CheckResultOf {
    damaged_record_is_an_error(f, Damage::Truncate).await
}

pub(super) async fn a_zero_filled_record_is_an_error<F: StoreFactory>(f: &F) -> CheckResultOf {
    damaged_record_is_an_error(f, Damage::ZeroFill).await
}

pub(super) async fn a_failed_commit_refuses_later_writes<F: StoreFactory>(f: &F) -> CheckResultOf {
    let (store, loc) = f.create().await?;
    let k = key("poisoned");
    commit(&store, &k, vec![put_publish(1, 1)]).await?;
    if !f.fail_next_commit(&store) {
        return Err(Stop::Skip(
            "the factory cannot make a commit fail".to_owned(),
        ));
    }
    let failed: Vec<u64> = (10..20).collect();
    let result = commit(
        &store,
        &k,
        failed
            .iter()
            .map(|&seq| put_publish(seq, seq as u16))
            .collect(),
    )
    .await;
    ensure!(result.is_err(), "a commit armed to fail returned Ok");
    let later = commit(&store, &k, vec![put_publish(30, 30)]).await;
    ensure!(
        matches!(later, Err(StoreError::Poisoned { .. })),
        "the commit after a failed one returned {later:?}, not StoreError::Poisoned"
    );
    let cleared = store.clear(&k).await;
    ensure!(cleared.is_err(), "clear after a failed commit was accepted");
    close_store(store).await?;
    let store = f.reopen(&loc).await?;
    let after: Vec<u64> = std::iter::once(1).chain(failed.iter().copied()).collect();
    all_or_nothing(&store.load(&k).await?, &[1], &after)?;
    // The reopened store takes writes again.
    commit(&store, &k, vec![put_publish(40, 40)]).await?;
    let last = seqs(&store.load(&k).await?.outbound);
    ensure!(
        last.last() == Some(&40) && !last.contains(&30),
        "after reopening, the session holds {last:?}"
    );
    Ok(())
}

pub(super) async fn subscriptions_are_kept_per_filter_replaced_and_removed<F: StoreFactory>(
    f: &F,
) -> CheckResultOf {
    let (store, _loc) = f.create().await?;
    let k = key("subscriptions");
    // Filters that begin one another, a wildcard, a shared one and one beyond ASCII.
    let filters = ["a", "a/#", "a/+", "ab", "$share/g/a", "usine/température"];
    let ops = filters
        .iter()
        .zip(1..)
        .map(|(filter, id)| StoreOp::PutSubscription(subscription(filter, id)))
        .collect();
    commit(&store, &k, ops).await?;
    commit(
        &store,
        &key("subscriptions-other"),
        vec![StoreOp::PutSubscription(subscription("a", 99))],
    )
    .await?;
    commit(
        &store,
        &k,
        vec![
            StoreOp::PutSubscription(subscription("a", 50)),
            StoreOp::RemoveSubscription {
                filter: "a/+".into(),
            },
            StoreOp::RemoveSubscription {
                filter: "never/subscribed".into(),
            },
        ],
    )
    .await?;
    let loaded = store.load(&k).await?;
    let mut expected = vec![
        subscription("a", 50),
        subscription("a/#", 2),
        subscription("ab", 4),
        subscription("$share/g/a", 5),
        subscription("usine/température", 6),
    ];
    expected.sort_by(|x, y| x.filter.as_bytes().cmp(y.filter.as_bytes()));
    ensure!(
        loaded.subscriptions == expected,
        "expected {expected:?}, loaded {:?}",
        loaded.subscriptions
    );
    let sessions = store.sessions().await?;
    ensure!(
        sessions.len() == 2,
        "two sessions hold subscriptions, listed {sessions:?}"
    );
    Ok(())
}

/// The idempotency keys a subscriber keeps: in ascending number whatever order they were put
/// in, any text (slashes, beyond ASCII, empty), apart per session, removed one by one, kept
/// across a reopen, gone with the session.
pub(super) async fn seen_keys_are_kept_in_number_order_removed_and_cleared<F: StoreFactory>(
    f: &F,
) -> CheckResultOf {
    let (store, loc) = f.create().await?;
    let k = key("seen-keys");
    let other = key("seen-keys-other");
    let keys = [
        "gw/00000000000000ff/1",
        "",
        "usine/température/9",
        "gw/0/256",
    ];
    let at = |seq: u64| 1_700_000_000_000 + seq % 1_000;
    let put = |seq: u64, text: &str| StoreOp::PutSeenKey {
        seq,
        seen: seen(text, at(seq)),
    };
    // Numbers across a byte boundary, put out of order.
    let numbers = [256u64, 1, 255, u64::MAX];
    let ops = numbers.iter().zip(keys).map(|(&n, t)| put(n, t)).collect();
    commit(&store, &k, ops).await?;
    commit(&store, &other, vec![put(1, "other")]).await?;
    commit(
        &store,
        &k,
        vec![
            StoreOp::RemoveSeenKey { seq: 255 },
            StoreOp::RemoveSeenKey { seq: 7 },
            put(2, "late"),
        ],
    )
    .await?;
    let expected = vec![
        (1, seen("", at(1))),
        (2, seen("late", at(2))),
        (256, seen("gw/00000000000000ff/1", at(256))),
        (u64::MAX, seen("gw/0/256", at(u64::MAX))),
    ];
    let loaded = store.load(&k).await?;
    ensure!(
        loaded.seen_keys == expected,
        "expected {expected:?}, loaded {:?}",
        loaded.seen_keys
    );
    let resumed = store.resume(&k, crate::store::QueueWindow::NONE).await?;
    ensure!(
        resumed.seen_keys == expected,
        "resume returned {:?}",
        resumed.seen_keys
    );
    drop(store);
    let store = f.reopen(&loc).await?;
    let loaded = store.load(&k).await?;
    ensure!(
        loaded.seen_keys == expected,
        "after reopening: {:?}",
        loaded.seen_keys
    );
    ensure!(
        store.sessions().await?.len() == 2,
        "sessions holding only keys are listed"
    );
    store.clear(&k).await?;
    ensure!(store.load(&k).await?.is_empty(), "cleared, yet keys remain");
    let kept = store.load(&other).await?.seen_keys;
    ensure!(
        kept == vec![(1, seen("other", at(1)))],
        "clearing one session touched another's keys: {kept:?}"
    );
    Ok(())
}
