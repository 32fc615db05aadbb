//! The station desk: what the web console does to tips, through the same rules and the same
//! workflow as the bot. Every action is authorised by `authz` for the console account and
//! written to the audit log; what must reach people (the officer's card, the reply to the
//! tipster, the tipster's notice) comes back as [`Outbound`] for the tip's channel.

use super::handler::Core;
use super::{Button, Outbound};
use crate::authz::{Action, Actor, Subject};
use crate::domain::TipStatus;
use crate::store::tips::TipRow;
use crate::texts::Msg;

/// Why a desk action did not happen (shown next to the form).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeskError {
    #[error("not allowed")]
    Refused,
    #[error("no such tip")]
    NoTip,
    #[error("the tip is no longer open")]
    NotOpen,
    #[error("the tip is not closed")]
    NotClosed,
    #[error("no such officer, or not serving the tip's village")]
    NoOfficer,
    #[error("{0}")]
    Invalid(&'static str),
}

/// What an action produced: messages for the tip's platform.
pub type DeskResult = Result<(String, Vec<Outbound>), DeskError>;

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

    /// The tip `number` and whether `actor` may do `action` to it.
    pub async fn desk_tip(
        &self,
        actor: &Actor,
        action: Action,
        number: &str,
    ) -> anyhow::Result<Result<TipRow, DeskError>> {
        let Some(tip) = self.store().tip_by_number(number).await? else { return Ok(Err(DeskError::NoTip)) };
        let Some(village) = self.store().village_by_id(tip.village_id).await? else { return Ok(Err(DeskError::NoTip)) };
        let subject = Subject::Village { village_id: village.id, station_id: village.station_id };
        if !self.authorize_desk(actor, action, subject, &format!("tip:{}", tip.number)).await? {
            return Ok(Err(DeskError::Refused));
        }
        Ok(Ok(tip))
    }

    /// Gives the tip to the officer with `badge` (who must serve its village): the card goes
    /// to them with a new deadline.
    pub async fn desk_assign(&self, actor: &Actor, number: &str, badge: &str) -> anyhow::Result<DeskResult> {
        let tip = match self.desk_tip(actor, Action::Assign, number).await? {
            Ok(tip) => tip,
            Err(e) => return Ok(Err(e)),
        };
        if !TipStatus::from_code(&tip.status).is_some_and(TipStatus::is_open) {
            return Ok(Err(DeskError::NotOpen));
        }
        let officer = self.store().officer_by_badge(badge.trim()).await?;
        let village = self.store().village_by_id(tip.village_id).await?;
        let (Some(officer), Some(village)) = (officer, village) else { return Ok(Err(DeskError::NoOfficer)) };
        if !self.store().officer_serves_village(officer.id, village.id, &self.today().to_string()).await? {
            return Ok(Err(DeskError::NoOfficer));
        }
        let (reachable, card) =
            self.hand_over(tip.id, officer.id, tip.escalation_level, "assigned", &village.name).await?;
        self.store().tip_event(tip.id, &actor.label(), None, "note", &format!("assigned to {}", officer.badge)).await?;
        let text = self.texts().render(
            Msg::StaffAssigned,
            minijinja::context! { number => &tip.number, name => &officer.name, reachable },
        );
        Ok(Ok((text, card)))
    }

    /// Sets the status: acknowledged, in progress, resolved or rejected (the last two with a
    /// note the tipster sees). The tipster hears of it as from the bot.
    pub async fn desk_status(&self, actor: &Actor, number: &str, to: &str, note: &str) -> anyhow::Result<DeskResult> {
        // Any status an open tip can be moved to (the console's menu offers those after the
        // tip's own).
        if !TipStatus::from_code(to).is_some_and(|s| TipStatus::New.next_choices().contains(&s)) {
            return Ok(Err(DeskError::Invalid("status")));
        }
        let note = Some(note.trim()).filter(|n| !n.is_empty());
        if matches!(to, "resolved" | "rejected") && note.is_none() {
            return Ok(Err(DeskError::Invalid("note")));
        }
        let tip = match self.desk_tip(actor, Action::Resolve, number).await? {
            Ok(tip) => tip,
            Err(e) => return Ok(Err(e)),
        };
        // The tip's officer is credited with what the desk closes for them.
        let officer = tip.assigned_officer_id;
        let open = TipStatus::open_codes();
        let Some((updated, out)) = self.set_tip_status(&tip, officer, &actor.label(), &open, to, note).await? else {
            return Ok(Err(DeskError::NotOpen));
        };
        Ok(Ok((updated.status, out)))
    }

    /// 签收: the station takes a new tip itself (acknowledged, in the name of the console
    /// account; no officer is credited with it). The tipster hears it was acknowledged.
    pub async fn desk_sign(&self, actor: &Actor, number: &str) -> anyhow::Result<DeskResult> {
        let tip = match self.desk_tip(actor, Action::Resolve, number).await? {
            Ok(tip) => tip,
            Err(e) => return Ok(Err(e)),
        };
        let new = [TipStatus::New.as_str()];
        let Some((updated, out)) = self.set_tip_status(&tip, None, &actor.label(), &new, "acknowledged", None).await?
        else {
            return Ok(Err(DeskError::NotOpen));
        };
        Ok(Ok((updated.status, out)))
    }

    /// Reopens a resolved or rejected tip (处理中 again) for `reason`, written to the
    /// timeline; the authorisation is audited like any other desk action. A merged tip stays
    /// merged: its original is the one to reopen.
    pub async fn desk_reopen(&self, actor: &Actor, number: &str, reason: &str) -> anyhow::Result<DeskResult> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Ok(Err(DeskError::Invalid("reason")));
        }
        let tip = match self.desk_tip(actor, Action::Resolve, number).await? {
            Ok(tip) => tip,
            Err(e) => return Ok(Err(e)),
        };
        if !self.store().reopen_tip(tip.id, &actor.label(), reason).await? {
            return Ok(Err(DeskError::NotClosed));
        }
        tracing::info!(tip_id = tip.id, "tip reopened at the desk");
        Ok(Ok((TipStatus::InProgress.as_str().to_string(), vec![])))
    }

    /// Marks tip `number` as a duplicate of `into` (both of stations the actor may work).
    pub async fn desk_merge(&self, actor: &Actor, number: &str, into: &str) -> anyhow::Result<DeskResult> {
        let tip = match self.desk_tip(actor, Action::Resolve, number).await? {
            Ok(tip) => tip,
            Err(e) => return Ok(Err(e)),
        };
        let target = match self.desk_tip(actor, Action::Resolve, into).await? {
            Ok(t) if t.id != tip.id => t,
            Ok(_) => return Ok(Err(DeskError::Invalid("into"))),
            Err(e) => return Ok(Err(e)),
        };
        if !self.store().merge_tip_by(tip.id, target.id, None, &actor.label()).await? {
            return Ok(Err(DeskError::NotOpen));
        }
        let updated = self.store().tip(tip.id).await?.unwrap_or(tip);
        let out = self.tipster_notice(&updated, Msg::TipMergedTipster, false).await?;
        Ok(Ok((target.number, out.into_iter().collect())))
    }

    /// A reply to the tipster, relayed by the bot without naming anyone; the tipster can
    /// answer with the button under it.
    pub async fn desk_reply(&self, actor: &Actor, number: &str, text: &str) -> anyhow::Result<DeskResult> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Err(DeskError::Invalid("text")));
        }
        let tip = match self.desk_tip(actor, Action::Resolve, number).await? {
            Ok(tip) => tip,
            Err(e) => return Ok(Err(e)),
        };
        let Some(reporter) = self.store().tip_reporter(tip.id).await? else {
            return Ok(Err(DeskError::Invalid("gone")));
        };
        let t = self.texts();
        let message = t.render(Msg::RelayToTipster, minijinja::context! { number => &tip.number, text });
        let answer = Button::Callback {
            label: t.plain(Msg::TipButtonReplyToOfficer),
            data: format!("{}{}", super::tips::TIPSTER_REPLY, tip.id),
        };
        self.store().tip_event(tip.id, &actor.label(), None, "message", text).await?;
        tracing::info!(tip_id = tip.id, "desk reply relayed");
        let out = vec![Outbound::Message {
            chat_id: reporter.chat_id,
            text: message,
            buttons: vec![vec![answer]],
            reply_to: None,
        }];
        Ok(Ok((reporter.platform, out)))
    }

    /// An internal note on the tip's timeline (never sent to anyone).
    pub async fn desk_note(&self, actor: &Actor, number: &str, text: &str) -> anyhow::Result<DeskResult> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Err(DeskError::Invalid("text")));
        }
        let tip = match self.desk_tip(actor, Action::Assign, number).await? {
            Ok(tip) => tip,
            Err(e) => return Ok(Err(e)),
        };
        self.store().tip_event(tip.id, &actor.label(), None, "note", text).await?;
        Ok(Ok((tip.number, vec![])))
    }
}
