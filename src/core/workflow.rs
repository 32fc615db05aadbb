//! The one tip workflow: assign (or hand on), acknowledge (签收), reply to the tipster, write
//! a note, set the status with a note (resolve, reject), merge and reopen. The officer's
//! buttons, the staff group, the console and the command line parse their input, call these,
//! and say the outcome (or the [`CoreError`] refusal) in their own words.
//!
//! One rule set for every front end: the actor must be allowed the action on the tip's
//! village by `authz` (its station scope included); only an open tip is worked (only a
//! closed one reopened); a tip goes only to an officer who serves its village today. Front
//! ends that authorise in their own way first (a group's membership check) have written the
//! audit line; [`Core::tip_for`] writes it for the others. What must reach people comes back
//! as [`Outbound`].

use super::handler::Core;
use super::wire::{ButtonData, TipButton};
use super::{Button, CoreError, Outbound};
use crate::authz::{Action, Actor, Subject};
use crate::domain::TipStatus;
use crate::store::officers::OfficerRow;
use crate::store::registry::VillageRow;
use crate::store::tips::TipRow;
use crate::texts::Msg;

/// Who the timeline names and which officer is credited with the work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    /// An enrolled officer in a chat (their card's buttons, the staff group): credited, and
    /// named "officer" in the timeline.
    Officer(i64),
    /// A console account or the operator at the command line: named by their audit label;
    /// the tip's own officer is credited with what they close.
    Account,
}

/// A tip given to an officer.
#[derive(Debug)]
pub struct Assigned {
    pub officer: OfficerRow,
    /// Whether the card reached the officer on the tip's platform.
    pub reachable: bool,
    /// The card.
    pub out: Vec<Outbound>,
}

type Done<T> = Result<T, CoreError>;

impl Core {
    /// The tip `number` and its village, if `actor` may do `action` to it (the decision is
    /// written to the audit log).
    pub async fn tip_for(&self, actor: &Actor, action: Action, number: &str) -> Done<TipRow> {
        let Some(tip) = self.store().tip_by_number(number.trim()).await? else { return Err(CoreError::NotFound) };
        let village = self.tip_village(&tip).await?;
        let subject = Subject::Village { village_id: village.id, station_id: village.station_id };
        if !self.authorize_desk(actor, action, subject, &format!("tip:{}", tip.number)).await? {
            return Err(CoreError::Refused);
        }
        Ok(tip)
    }

    async fn tip_village(&self, tip: &TipRow) -> Done<VillageRow> {
        self.store().village_by_id(tip.village_id).await?.ok_or(CoreError::NotFound)
    }

    /// The rule every step starts with: `actor` may do `action` on the tip's village (its
    /// station scope included). Already audited by the front end; this is the check itself.
    async fn permitted(&self, actor: &Actor, action: Action, tip: &TipRow) -> Done<VillageRow> {
        let village = self.tip_village(tip).await?;
        let subject = Subject::Village { village_id: village.id, station_id: village.station_id };
        if !actor.decide(action, subject).allowed {
            return Err(CoreError::Refused);
        }
        Ok(village)
    }

    fn timeline_name(actor: &Actor, by: By) -> String {
        match by {
            By::Officer(_) => "officer".to_string(),
            By::Account => actor.label(),
        }
    }

    /// Gives an open tip to `officer` (`kind`: assigned, reassigned), who must serve its
    /// village today: the card goes to them with a new deadline.
    pub async fn assign_tip(
        &self,
        actor: &Actor,
        by: By,
        tip: &TipRow,
        officer: Option<OfficerRow>,
        kind: &str,
    ) -> Done<Assigned> {
        let village = self.permitted(actor, Action::Assign, tip).await?;
        if !tip.status.is_open() {
            return Err(CoreError::NotOpen);
        }
        let Some(officer) = officer else { return Err(CoreError::NoOfficer) };
        if !self.store().officer_serves_village(officer.id, village.id, &self.today().to_string()).await? {
            return Err(CoreError::NoOfficer);
        }
        let (reachable, out) = self.hand_over(tip.id, officer.id, tip.escalation_level, kind, &village.name).await?;
        if by == By::Account {
            let detail = format!("assigned to {}", officer.badge);
            self.store().tip_event(tip.id, &actor.label(), None, "note", &detail).await?;
        }
        Ok(Assigned { officer, reachable, out })
    }

    /// Moves the tip from one of `from` to `to` with `note` (shown to the tipster and by
    /// `/status`), and tells the tipster. `NotOpen` when it was no longer in `from`.
    pub async fn set_status(
        &self,
        actor: &Actor,
        by: By,
        tip: &TipRow,
        from: &[TipStatus],
        to: TipStatus,
        note: Option<&str>,
    ) -> Done<(TipRow, Vec<Outbound>)> {
        // The tip's officer is credited with what an account moves on for them.
        let credit = match by {
            By::Officer(id) => Some(id),
            By::Account => tip.assigned_officer_id,
        };
        self.move_tip(actor, by, credit, tip, from, to, note).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn move_tip(
        &self,
        actor: &Actor,
        by: By,
        credit: Option<i64>,
        tip: &TipRow,
        from: &[TipStatus],
        to: TipStatus,
        note: Option<&str>,
    ) -> Done<(TipRow, Vec<Outbound>)> {
        self.permitted(actor, Action::Resolve, tip).await?;
        let note = note.map(str::trim).filter(|n| !n.is_empty());
        let name = Self::timeline_name(actor, by);
        self.set_tip_status(tip, credit, &name, from, to, note).await?.ok_or(CoreError::NotOpen)
    }

    /// 签收 / 受理: a new tip acknowledged, by an officer (credited) or by the station itself
    /// (no officer credited).
    pub async fn acknowledge_tip(&self, actor: &Actor, by: By, tip: &TipRow) -> Done<(TipRow, Vec<Outbound>)> {
        let credit = match by {
            By::Officer(id) => Some(id),
            By::Account => None,
        };
        self.move_tip(actor, by, credit, tip, &[TipStatus::New], TipStatus::Acknowledged, None).await
    }

    /// Closes an open tip as `to` (resolved or rejected) with `note`.
    pub async fn close_tip(
        &self,
        actor: &Actor,
        by: By,
        tip: &TipRow,
        to: TipStatus,
        note: Option<&str>,
    ) -> Done<(TipRow, Vec<Outbound>)> {
        if !matches!(to, TipStatus::Resolved | TipStatus::Rejected) {
            return Err(CoreError::Invalid("status"));
        }
        let open: Vec<TipStatus> = TipStatus::ALL.iter().copied().filter(|s| s.is_open()).collect();
        self.set_status(actor, by, tip, &open, to, note).await
    }

    /// Reopens a resolved or rejected tip (处理中 again) for `reason`, written to the timeline.
    /// A merged tip stays merged: its original is the one to reopen.
    pub async fn reopen_tip(&self, actor: &Actor, tip: &TipRow, reason: &str) -> Done<TipRow> {
        self.permitted(actor, Action::Resolve, tip).await?;
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(CoreError::Invalid("reason"));
        }
        if !self.store().reopen_tip(tip.id, &actor.label(), reason).await? {
            return Err(CoreError::NotClosed);
        }
        tracing::info!(tip_id = tip.id, "tip reopened");
        Ok(self.store().tip(tip.id).await?.unwrap_or_else(|| tip.clone()))
    }

    /// Marks an open `tip` as a duplicate of `into` (both must be the actor's to work); the
    /// tipster is told.
    pub async fn merge_tips(&self, actor: &Actor, by: By, tip: &TipRow, into: &TipRow) -> Done<Vec<Outbound>> {
        self.permitted(actor, Action::Resolve, tip).await?;
        self.permitted(actor, Action::Resolve, into).await?;
        if into.id == tip.id {
            return Err(CoreError::Invalid("into"));
        }
        let credit = match by {
            By::Officer(id) => Some(id),
            By::Account => None,
        };
        if !self.store().merge_tip_by(tip.id, into.id, credit, &Self::timeline_name(actor, by)).await? {
            return Err(CoreError::NotOpen);
        }
        let updated = self.store().tip(tip.id).await?.unwrap_or_else(|| tip.clone());
        Ok(self.tipster_notice(&updated, Msg::TipMergedTipster, false).await?.into_iter().collect())
    }

    /// A reply to the tipster, relayed by the bot without naming anyone; the tipster can
    /// answer with the button under it. Returns the tipster's platform and the message.
    pub async fn reply_to_tipster(&self, actor: &Actor, tip: &TipRow, text: &str) -> Done<(String, Vec<Outbound>)> {
        self.permitted(actor, Action::Resolve, tip).await?;
        let text = text.trim();
        if text.is_empty() {
            return Err(CoreError::Invalid("text"));
        }
        let Some(reporter) = self.store().tip_reporter(tip.id).await? else {
            return Err(CoreError::Invalid("gone"));
        };
        let t = self.texts();
        let message = t.render(Msg::RelayToTipster, minijinja::context! { number => &tip.number, text });
        let answer = Button::Callback {
            label: t.plain(Msg::TipButtonReplyToOfficer),
            data: ButtonData::Tip(TipButton::Reply(tip.id)).into(),
        };
        self.store().tip_event(tip.id, &actor.label(), None, "message", text).await?;
        tracing::info!(tip_id = tip.id, "reply relayed to the tipster");
        let out = vec![Outbound::Message {
            chat_id: reporter.chat_id,
            text: message,
            buttons: vec![vec![answer]],
            reply_to: None,
        }];
        Ok((reporter.platform, out))
    }

    /// An internal note on the tip's timeline (never sent to anyone).
    pub async fn note_tip(&self, actor: &Actor, tip: &TipRow, text: &str) -> Done<()> {
        self.permitted(actor, Action::Assign, tip).await?;
        let text = text.trim();
        if text.is_empty() {
            return Err(CoreError::Invalid("text"));
        }
        self.store().tip_event(tip.id, &actor.label(), None, "note", text).await?;
        Ok(())
    }
}
