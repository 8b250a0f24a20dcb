//! Reloading one finished turn from the log, for the commands that reopen it (reverse, label)
//! and for recovering a reversal that began after the last snapshot.

use super::{Deps, RuntimeError};
use crate::ids::{Offset, Partition, TurnId};
use crate::log::Scan;
use crate::turn::TurnState;

/// A turn's state from its events in `[from, until)` of the partition (`None` if its first event
/// is not there).
pub(crate) async fn load_turn(
    deps: &Deps,
    partition: Partition,
    turn: TurnId,
    from: u64,
    until: u64,
) -> Result<Option<TurnState>, RuntimeError> {
    let mut state = TurnState::new(turn);
    let mut scan = Scan::new(deps.events.as_ref(), partition, Offset(from));
    while scan.position().0 < until {
        let Some(batch) = scan.next_chunk(4096).await? else {
            break;
        };
        for stored in batch.into_iter().filter(|s| s.offset.0 < until) {
            let Ok(event) = deps.codecs.events.decode(&stored.value) else {
                continue;
            };
            if event.turn_id == turn {
                if let Err(e) = state.apply(&event) {
                    tracing::warn!(%partition, %turn, error = %e, "event does not apply while reloading");
                }
            }
        }
    }
    Ok(state.requested.then_some(state))
}
