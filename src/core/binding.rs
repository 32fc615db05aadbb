//! Binding a group to its village (`/bind CODE`, `/unbind`): who may, and what the group
//! is told. (A station's staff group is bound in the staff room, `/bindstation`.)

use super::handler::Core;
use super::routing;
use super::{Inbound, Outbound, Sender};
use crate::authz::Action;
use crate::texts::Msg;

impl Core {
    pub(super) async fn on_bind(
        &self,
        inbound: &Inbound,
        message_id: i64,
        args: &str,
    ) -> anyhow::Result<Vec<Outbound>> {
        let chat_id = inbound.chat.id;
        if let Sender::Chat { .. } = inbound.sender {
            return Ok(self.reply(chat_id, message_id, Msg::AnonymousAdminRefused, ()));
        }
        let actor = self.actor_of(inbound).await?;
        let code = args.split_whitespace().next().unwrap_or("");
        if actor.officer_id.is_none() {
            // Refused before anything is looked up; the attempt is on record.
            let target = format!("village:{code}");
            self.store
                .audit(self.now_ms(), &actor.label(), Action::Bind.as_str(), &target, "denied", "not enrolled")
                .await?;
            tracing::info!("bind refused: sender is not an enrolled officer");
            return Ok(self.reply(chat_id, message_id, Msg::BindRefused, ()));
        }
        if code.is_empty() {
            return Ok(self.reply(chat_id, message_id, Msg::BindUsage, ()));
        }
        let Some(village) = self.store.village_by_code(code).await? else {
            return Ok(self.reply(chat_id, message_id, Msg::BindUnknownVillage, minijinja::context! { code }));
        };
        if !self.authorize_village(inbound, &actor, Action::Bind, &village).await? {
            return Ok(self.reply(chat_id, message_id, Msg::BindRefused, ()));
        }
        self.store
            .bind_chat_to_village(inbound.platform.as_str(), chat_id, &inbound.chat.title, village.id, actor.officer_id)
            .await?;
        tracing::info!(chat_id, village = %village.code, "group bound");
        Ok(self.reply(
            chat_id,
            message_id,
            Msg::BindDone,
            minijinja::context! { village_name => village.name, village_code => village.code },
        ))
    }

    pub(super) async fn on_unbind(&self, inbound: &Inbound, message_id: i64) -> anyhow::Result<Vec<Outbound>> {
        let chat_id = inbound.chat.id;
        if let Sender::Chat { .. } = inbound.sender {
            return Ok(self.reply(chat_id, message_id, Msg::AnonymousAdminRefused, ()));
        }
        let platform = inbound.platform.as_str();
        let Some(village) = routing::village_of_chat(&self.store, platform, chat_id).await? else {
            return Ok(self.reply(chat_id, message_id, Msg::GroupNotBound, ()));
        };
        let actor = self.actor_of(inbound).await?;
        if !self.authorize_village(inbound, &actor, Action::Bind, &village).await? {
            return Ok(self.reply(chat_id, message_id, Msg::UnbindRefused, ()));
        }
        self.store.unbind_chat(platform, chat_id).await?;
        tracing::info!(chat_id, village = %village.code, "group unbound");
        Ok(self.reply(chat_id, message_id, Msg::UnbindDone, minijinja::context! { village_name => village.name }))
    }
}
