//! Several sessions in one commit (`SessionStore::commit_sessions`), which a client forwarding
//! a message from one session to another relies on, and telling stores apart
//! (`SessionStore::storage_id`). A store that refuses such commits with
//! `StoreError::Unsupported` skips these checks: it cannot forward in one commit, but it is
//! not wrong.

use super::*;

/// A commit of two sessions: a message queued in one and an inbound marker in the other, as
/// a forward makes them.
fn forward_batches(from: &SessionKey, to: &SessionKey) -> Vec<(SessionKey, Batch)> {
    vec![
        (
            to.clone(),
            Batch::from(vec![StoreOp::PushQueue {
                seq: 7,
                message: queued(7, QoS::ExactlyOnce, 64),
            }]),
        ),
        (
            from.clone(),
            Batch::from(vec![StoreOp::PutInbound { packet_id: 42 }]),
        ),
    ]
}

fn skip_unsupported(result: Result<(), StoreError>) -> Result<bool, Stop> {
    match result {
        Ok(()) => Ok(true),
        Err(StoreError::Unsupported { what }) => {
            Err(Stop::Skip(format!("the store cannot {what}")))
        }
        Err(_) => Ok(false),
    }
}

pub(super) async fn a_commit_of_several_sessions_applies_to_each<F: StoreFactory>(
    f: &F,
) -> CheckResultOf {
    let (store, loc) = f.create().await?;
    let (from, to) = (key("forward-from"), key("forward-to"));
    commit(
        &store,
        &to,
        vec![StoreOp::PushQueue {
            seq: 6,
            message: queued(6, QoS::AtLeastOnce, 32),
        }],
    )
    .await?;
    let mut batches = forward_batches(&from, &to);
    // A second batch of one session applies after the first.
    batches.push((
        to.clone(),
        Batch::from(vec![StoreOp::RemoveQueue { seq: 6 }]),
    ));
    ensure!(
        skip_unsupported(store.commit_sessions(batches).await)?,
        "commit_sessions failed"
    );
    close_store(store).await?;
    let store = f.reopen(&loc).await?;
    let queued_to = store.load(&to).await?;
    ensure!(
        seqs(&queued_to.queue) == vec![7]
            && queued_to.queue_summary == QueueSummary::of(&queued_to.queue),
        "the session that queued holds {:?} with totals {:?}: it must hold message 7 alone, counted exactly",
        seqs(&queued_to.queue),
        queued_to.queue_summary
    );
    let acked = store.load(&from).await?;
    ensure!(
        acked.inbound == vec![42] && acked.queue.is_empty(),
        "the acking session holds markers {:?}: it must hold 42 alone",
        acked.inbound
    );
    Ok(())
}

pub(super) async fn a_failed_commit_of_several_sessions_is_all_or_nothing<F: StoreFactory>(
    f: &F,
) -> CheckResultOf {
    let (store, loc) = f.create().await?;
    let (from, to) = (key("forward-fail-from"), key("forward-fail-to"));
    commit(&store, &from, vec![StoreOp::SetMeta(full_meta())]).await?;
    // Whether this store offers it at all, on a commit that changes nothing.
    skip_unsupported(
        store
            .commit_sessions(vec![
                (
                    from.clone(),
                    Batch::from(vec![StoreOp::SetMeta(full_meta())]),
                ),
                (
                    to.clone(),
                    Batch::from(vec![StoreOp::RemoveInbound { packet_id: 1 }]),
                ),
            ])
            .await,
    )?;
    if !f.fail_next_commit(&store) {
        return Err(Stop::Skip(
            "the factory cannot make a commit fail".to_owned(),
        ));
    }
    let result = store.commit_sessions(forward_batches(&from, &to)).await;
    ensure!(result.is_err(), "a commit armed to fail returned Ok");
    close_store(store).await?;
    let store = f.reopen(&loc).await?;
    let (queued_to, acked) = (store.load(&to).await?, store.load(&from).await?);
    let all = seqs(&queued_to.queue) == vec![7] && acked.inbound == vec![42];
    let none = queued_to.queue.is_empty() && acked.inbound.is_empty();
    ensure!(
        all || none,
        "after a failed commit of two sessions one holds queue {:?} and the other markers {:?}: \
         both changes or neither",
        seqs(&queued_to.queue),
        acked.inbound
    );
    Ok(())
}

pub(super) async fn two_stores_open_at_once_have_different_storage_ids<F: StoreFactory>(
    f: &F,
) -> CheckResultOf {
    let (first, _a) = f.create().await?;
    let (second, _b) = f.create().await?;
    let (Some(one), Some(two)) = (first.storage_id(), second.storage_id()) else {
        return Err(Stop::Skip(
            "the store does not say which storage it is".to_owned(),
        ));
    };
    ensure!(
        one != two && first.storage_id() == Some(one),
        "two stores answer the same storage id ({one}): a forward between them would write a \
         session's ack into the wrong store"
    );
    Ok(())
}
