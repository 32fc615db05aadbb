//! The station desk: what the web console does to tips, through the same rules and the same
//! workflow as the bot. Every action is authorised by `authz` for the console account and
//! written to the audit log; what must reach people (the officer's card, the reply to the
//! tipster, the tipster's notice) comes back as [`Outbound`] for the tip's channel.

use super::handler::Core;
use super::workflow::By;
use super::{CoreError, Outbound};
use crate::authz::{Action, Actor, Subject};
use crate::domain::TipStatus;
use crate::store::tips::TipRow;
use crate::texts::Msg;

/// What an action produced: a word for the page (the new status, the target's number…)
/// and the messages for the tip's platform.
pub type DeskResult = Result<(String, Vec<Outbound>), CoreError>;

impl Core {
    /// Decides `action` on `subject` for `actor` (no group, so no membership check) and
    /// writes it to the audit log.
    pub async fn authorize_desk(
        &self,
        actor: &Actor,
        action: Action,
        subject: Subject,
        target: &str,
    ) -> anyhow::Result<bool> {
        let allowed = actor.decide(action, subject).allowed;
        self.record_decision(actor, action, target, allowed, "").await?;
        Ok(allowed)
    }

    /// Records that `actor` was refused `action` on `target` for a rule of the console's own
    /// (`why`: an admin may not lock out their own account), as every refusal is.
    pub async fn refuse_desk(&self, actor: &Actor, action: Action, target: &str, why: &str) -> anyhow::Result<()> {
        self.record_decision(actor, action, target, false, why).await
    }

    /// The tip `number`, if `actor` may do `action` to it (audited).
    pub async fn desk_tip(&self, actor: &Actor, action: Action, number: &str) -> Result<TipRow, CoreError> {
        self.tip_for(actor, action, number).await
    }

    /// Gives the tip to the officer with `badge` (who must serve its village): the card goes
    /// to them with a new deadline.
    pub async fn desk_assign(&self, actor: &Actor, number: &str, badge: &str) -> DeskResult {
        let tip = self.tip_for(actor, Action::Assign, number).await?;
        let officer = self.store().officer_by_badge(badge.trim()).await?;
        let done = self.assign_tip(actor, By::Account, &tip, officer, "assigned").await?;
        let text = self.texts().render(
            Msg::StaffAssigned,
            minijinja::context! { number => &tip.number, name => &done.officer.name, reachable => done.reachable },
        );
        Ok((text, done.out))
    }

    /// Sets the status: acknowledged, in progress, resolved or rejected (the last two with a
    /// note the tipster sees). The tipster hears of it as from the bot.
    pub async fn desk_status(&self, actor: &Actor, number: &str, to: TipStatus, note: &str) -> DeskResult {
        // Any status an open tip can be moved to (the console's menu offers those after the
        // tip's own).
        if !TipStatus::New.next_choices().contains(&to) {
            return Err(CoreError::Invalid("status"));
        }
        let note = Some(note.trim()).filter(|n| !n.is_empty());
        if matches!(to, TipStatus::Resolved | TipStatus::Rejected) && note.is_none() {
            return Err(CoreError::Invalid("note"));
        }
        let tip = self.tip_for(actor, Action::Resolve, number).await?;
        let open: Vec<TipStatus> = TipStatus::ALL.iter().copied().filter(|s| s.is_open()).collect();
        let (updated, out) = self.set_status(actor, By::Account, &tip, &open, to, note).await?;
        Ok((updated.status.to_string(), out))
    }

    /// 签收: the station takes a new tip itself (acknowledged, in the name of the console
    /// account; no officer is credited with it). The tipster hears it was acknowledged.
    pub async fn desk_sign(&self, actor: &Actor, number: &str) -> DeskResult {
        let tip = self.tip_for(actor, Action::Resolve, number).await?;
        let (updated, out) = self.acknowledge_tip(actor, By::Account, &tip).await?;
        Ok((updated.status.to_string(), out))
    }

    /// Reopens a resolved or rejected tip (处理中 again) for `reason`, written to the
    /// timeline; the authorisation is audited like any other desk action.
    pub async fn desk_reopen(&self, actor: &Actor, number: &str, reason: &str) -> DeskResult {
        if reason.trim().is_empty() {
            return Err(CoreError::Invalid("reason"));
        }
        let tip = self.tip_for(actor, Action::Resolve, number).await?;
        let updated = self.reopen_tip(actor, &tip, reason).await?;
        Ok((updated.status.to_string(), vec![]))
    }

    /// Marks tip `number` as a duplicate of `into` (both of stations the actor may work).
    pub async fn desk_merge(&self, actor: &Actor, number: &str, into: &str) -> DeskResult {
        let tip = self.tip_for(actor, Action::Resolve, number).await?;
        let target = self.tip_for(actor, Action::Resolve, into).await?;
        let out = self.merge_tips(actor, By::Account, &tip, &target).await?;
        Ok((target.number, out))
    }

    /// A reply to the tipster, relayed by the bot without naming anyone.
    pub async fn desk_reply(&self, actor: &Actor, number: &str, text: &str) -> DeskResult {
        if text.trim().is_empty() {
            return Err(CoreError::Invalid("text"));
        }
        let tip = self.tip_for(actor, Action::Resolve, number).await?;
        self.reply_to_tipster(actor, &tip, text).await
    }

    /// An internal note on the tip's timeline (never sent to anyone).
    pub async fn desk_note(&self, actor: &Actor, number: &str, text: &str) -> DeskResult {
        if text.trim().is_empty() {
            return Err(CoreError::Invalid("text"));
        }
        let tip = self.tip_for(actor, Action::Assign, number).await?;
        self.note_tip(actor, &tip, text).await?;
        Ok((tip.number, vec![]))
    }
}
