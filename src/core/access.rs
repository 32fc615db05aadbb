//! Who the sender is and what they may do: the enrolled officer behind an account, the
//! [`Actor`] that `authz` decides for, the membership check in groups, and the audit line
//! every decision leaves.

use super::handler::Core;
use super::{ChatKind, Inbound, Platform};
use crate::authz::{Action, Actor, Subject};
use crate::store::officers::OfficerRow;
use crate::store::registry::VillageRow;

impl Core {
    /// The enrolled officer behind the sender, if any. A message sent on behalf of a chat is
    /// never an officer.
    pub(super) async fn officer_of(&self, inbound: &Inbound) -> anyhow::Result<Option<OfficerRow>> {
        let Some(user) = inbound.sender.person() else { return Ok(None) };
        let officer = self.store.officer_by_identity(inbound.platform.as_str(), user).await?;
        if let Some(officer) = &officer {
            self.note_officer_seen(officer.id, inbound.platform);
        }
        Ok(officer)
    }

    /// Remembers that the officer is on `platform` now, so cards follow them there. Written
    /// down when the platform changes, or at most every few minutes while it does not (another
    /// daemon may have seen them elsewhere meanwhile); in the background, so a slow database
    /// never holds up the message.
    fn note_officer_seen(&self, officer_id: i64, platform: Platform) {
        const REWRITE_AFTER_MS: i64 = 5 * 60_000;
        let now = self.now_ms();
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            match seen.get(&officer_id) {
                Some((p, at)) if *p == platform && now - at < REWRITE_AFTER_MS => return,
                _ => seen.insert(officer_id, (platform, now)),
            };
        }
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.note_officer_platform(officer_id, platform.as_str(), now).await {
                tracing::warn!(error = format!("{e:#}"), "could not record the platform an officer used");
            }
        });
    }

    /// Who the sender is for authorisation: their officer's role, grant and villages, or a
    /// resident (also anyone speaking on behalf of a chat). Accounts are named for the audit
    /// log only.
    pub(super) async fn actor_of(&self, inbound: &Inbound) -> anyhow::Result<Actor> {
        let mut actor = match self.officer_of(inbound).await? {
            Some(officer) => self.store.actor_of_officer(officer.id, &self.today().to_string()).await?,
            None => Actor::resident(),
        };
        if let Some(user) = inbound.sender.person() {
            actor.account = Some(format!("{}:{user}", inbound.platform.as_str()));
        }
        Ok(actor)
    }

    /// Asks the authorisation module and writes the answer to the audit log. In a group, a
    /// privileged action also needs the sender to be a member of it still (a button on an
    /// old message may be pressed by someone who has left).
    pub(super) async fn authorize(
        &self,
        inbound: &Inbound,
        actor: &Actor,
        action: Action,
        subject: Subject,
        target: &str,
    ) -> anyhow::Result<bool> {
        let decision = actor.decide(action, subject);
        let mut allowed = decision.allowed;
        let mut detail = String::new();
        if allowed
            && inbound.chat.kind != ChatKind::Private
            && actor.role != crate::authz::Role::SystemAdmin
            && let (Some(user), Some(members)) = (inbound.sender.person(), self.members(inbound.platform))
        {
            match members.is_member(inbound.chat.id, user).await {
                Ok(true) => {}
                Ok(false) => {
                    allowed = false;
                    detail = "not a member of the group".into();
                }
                Err(e) => {
                    allowed = false;
                    detail = "membership could not be checked".into();
                    tracing::warn!(error = format!("{e:#}"), "membership check failed; action refused");
                }
            }
        }
        self.record_decision(actor, action, target, allowed, &detail).await?;
        tracing::info!(role = %actor.role, action = %action, scope = ?decision.scope, allowed, "authorisation");
        Ok(allowed)
    }

    /// Writes an authorisation decision to the audit log.
    pub(super) async fn record_decision(
        &self,
        actor: &Actor,
        action: Action,
        target: &str,
        allowed: bool,
        detail: &str,
    ) -> anyhow::Result<()> {
        let result = if allowed { "allowed" } else { "denied" };
        self.store.audit(self.now_ms(), &actor.label(), action.as_str(), target, result, detail).await
    }

    /// `authorize` for an action on one village.
    pub(super) async fn authorize_village(
        &self,
        inbound: &Inbound,
        actor: &Actor,
        action: Action,
        village: &VillageRow,
    ) -> anyhow::Result<bool> {
        let subject = Subject::Village { village_id: village.id, station_id: village.station_id };
        self.authorize(inbound, actor, action, subject, &format!("village:{}", village.code)).await
    }
}
