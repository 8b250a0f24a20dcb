//! The edge of the execution plane, where the vault works: what an effect sends out is
//! detokenized (the model, the tools and the retriever get real values), what comes back is
//! tokenized before the state machine sees it (so nothing recorded holds a personal value).

use crate::event::{SessionTurn, ToolFailureKind};
use crate::exec::types::{Conversation, ExecFailure, ToolFailure};
use crate::turn::{Effect, Input};
use crate::vault::{Tokenized, Vault, VaultError, VaultRecord};

/// Whose values an effect carries.
pub(crate) struct Who {
    tenant: String,
    user: String,
}

fn who(effect: &Effect) -> Option<Who> {
    let (tenant, user) = match effect {
        Effect::Retrieve {
            tenant, user_id, ..
        }
        | Effect::Plan {
            tenant, user_id, ..
        } => (tenant, user_id),
        Effect::CallTool { call, .. } => (&call.tenant, &call.user_id),
        _ => return None,
    };
    Some(Who {
        tenant: tenant.clone(),
        user: user.clone(),
    })
}

fn clear(vault: &Vault, w: &Who, text: &mut String) -> Result<(), VaultError> {
    if text.contains("[pii:") {
        *text = vault.detokenize_checked(&w.tenant, &w.user, text)?;
    }
    Ok(())
}

fn clear_conversation(vault: &Vault, w: &Who, c: &mut Conversation) -> Result<(), VaultError> {
    for t in &mut c.session {
        clear_session_turn(vault, w, t)?;
    }
    for d in &mut c.documents {
        clear(vault, w, &mut d.title)?;
        clear(vault, w, &mut d.snippet)?;
    }
    clear(vault, w, &mut c.request)?;
    for s in &mut c.steps {
        if let Some(content) = &mut s.content {
            clear(vault, w, content)?;
        }
        for call in &mut s.calls {
            clear(vault, w, &mut call.args_json)?;
            match &mut call.result {
                Ok(r) | Err(r) => clear(vault, w, r)?,
            }
        }
    }
    Ok(())
}

fn clear_session_turn(vault: &Vault, w: &Who, t: &mut SessionTurn) -> Result<(), VaultError> {
    clear(vault, w, &mut t.request)?;
    if let Some(r) = &mut t.reply {
        clear(vault, w, r)?;
    }
    for c in &mut t.calls {
        clear(vault, w, &mut c.args_json)?;
        clear(vault, w, &mut c.result_json)?;
    }
    Ok(())
}

/// A copy of the effect with its tokens turned back into values, and whose they are; or why
/// the vault could not be read (the caller still holds the effect).
pub(crate) fn reveal(vault: &Vault, effect: &Effect) -> Result<(Effect, Who), VaultError> {
    let Some(w) = who(effect) else {
        return Err(VaultError::Seal);
    };
    let mut out = effect.clone();
    let result = match &mut out {
        Effect::Retrieve { query, .. } => clear(vault, &w, query),
        Effect::Plan { conversation, .. } => clear_conversation(vault, &w, conversation),
        Effect::CallTool { call, .. } => clear(vault, &w, &mut call.args_json),
        _ => Ok(()),
    };
    result.map(|()| (out, w))
}

/// What the state machine is told when a value could not be read back: the effect did not run.
pub(crate) fn unavailable(effect: &Effect, e: &VaultError) -> Input {
    let message = format!("vault unavailable, not run: {e}");
    let exec = || ExecFailure {
        message: message.clone(),
        retryable: true,
        latency_ms: 0,
    };
    match effect {
        Effect::Retrieve { .. } => Input::Retrieved(Err(exec())),
        Effect::CallTool { call, .. } => Input::ToolDone {
            call_id: call.call_id.clone(),
            attempt: call.attempt,
            result: Err(ToolFailure {
                kind: ToolFailureKind::Error,
                message,
                retryable: true,
                latency_ms: 0,
            }),
        },
        _ => Input::Planned(Err(exec())),
    }
}

fn hide(vault: &Vault, w: &Who, text: &mut String, acc: &mut Tokenized) -> Result<(), VaultError> {
    let (t, found) = vault.tokenize_text(&w.tenant, &w.user, text)?;
    if !found.kinds.is_empty() {
        *text = t;
        acc.absorb(found);
    }
    Ok(())
}

fn hide_json(
    vault: &Vault,
    w: &Who,
    text: &mut String,
    acc: &mut Tokenized,
) -> Result<(), VaultError> {
    let (t, found) = vault.tokenize_json_text(&w.tenant, &w.user, text)?;
    if !found.kinds.is_empty() {
        *text = t;
        acc.absorb(found);
    }
    Ok(())
}

/// The input with every personal value tokenized, and the records the tokens need. If the
/// vault cannot take them, the cleartext must not reach the state machine: the input becomes
/// a failure (for a tool that may have acted, "outcome unknown" — escalated, never re-run).
pub(crate) fn conceal(vault: &Vault, w: &Who, input: Input) -> (Input, Vec<VaultRecord>) {
    let mut acc = Tokenized::default();
    let mut out = input.clone();
    let result = match &mut out {
        // The query comes back as it was sent: in clear.
        Input::Retrieved(Ok(r)) => hide(vault, w, &mut r.query, &mut acc).and_then(|_| {
            r.documents.iter_mut().try_for_each(|d| {
                hide(vault, w, &mut d.title, &mut acc)?;
                hide(vault, w, &mut d.snippet, &mut acc)?;
                d.facts
                    .values_mut()
                    .try_for_each(|v| hide(vault, w, v, &mut acc))
            })
        }),
        Input::Retrieved(Err(f)) | Input::Planned(Err(f)) => {
            hide(vault, w, &mut f.message, &mut acc)
        }
        Input::Planned(Ok(p)) => {
            let content = match &mut p.content {
                Some(c) => hide(vault, w, c, &mut acc),
                None => Ok(()),
            };
            content.and_then(|_| {
                p.steps
                    .iter_mut()
                    .try_for_each(|s| hide_json(vault, w, &mut s.args_json, &mut acc))
            })
        }
        Input::ToolDone { result: Ok(ok), .. } => {
            hide_json(vault, w, &mut ok.result_json, &mut acc)
        }
        Input::ToolDone { result: Err(f), .. } => hide(vault, w, &mut f.message, &mut acc),
        _ => Ok(()),
    };
    match result {
        Ok(()) => (out, acc.records),
        Err(e) => {
            let message = format!("vault unavailable, result not kept: {e}");
            let failed = match input {
                Input::ToolDone {
                    call_id, attempt, ..
                } => Input::ToolDone {
                    call_id,
                    attempt,
                    result: Err(ToolFailure {
                        kind: ToolFailureKind::OutcomeUnknown,
                        message,
                        retryable: false,
                        latency_ms: 0,
                    }),
                },
                Input::Retrieved(_) => Input::Retrieved(Err(ExecFailure {
                    message,
                    retryable: true,
                    latency_ms: 0,
                })),
                Input::Planned(_) => Input::Planned(Err(ExecFailure {
                    message,
                    retryable: true,
                    latency_ms: 0,
                })),
                other => other,
            };
            (failed, Vec::new())
        }
    }
}
