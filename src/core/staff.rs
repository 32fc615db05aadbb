//! The station staff group (派出所内勤群): bound with `/bindstation`, it receives a notice of
//! every new and every escalated tip of the station's villages, and takes the staff commands
//! `/tips [open|today|village CODE]`, `/tip NUMBER`, `/assign NUMBER BADGE`,
//! `/resolve NUMBER note`, `/reject NUMBER note`, `/merge NUMBER INTO`, and `/reload` (the
//! triage rules, police only). Only enrolled officers of that station may use them. Nothing
//! here shows who reported a tip.

use super::handler::Core;
use super::wire::{Command, StaffCommand};
use super::workflow::By;
use super::{CoreError, Inbound, Outbound, Sender};
use crate::authz::{Action, Actor, Subject};
use crate::domain::{StatusFilter, TipStatus};
use crate::store::chats::ChatRow;
use crate::store::registry::VillageRow;
use crate::store::tip_list::TipFilter;
use crate::store::tips::TipRow;
use crate::texts::Msg;

/// Most tips `/tips` lists.
const LIST_LIMIT: usize = 20;

impl Core {
    fn reply_text(&self, inbound: &Inbound, message_id: i64, text: String) -> Vec<Outbound> {
        vec![Outbound::Message { chat_id: inbound.chat.id, text, buttons: vec![], reply_to: Some(message_id) }]
    }

    /// `/bindstation STATION_CODE` in a group, by a police officer of that station.
    pub(super) async fn on_bind_station(
        &self,
        inbound: &Inbound,
        message_id: i64,
        args: &str,
    ) -> anyhow::Result<Vec<Outbound>> {
        if let Sender::Chat { .. } = inbound.sender {
            return Ok(self.reply_text(inbound, message_id, self.texts().plain(Msg::AnonymousAdminRefused)));
        }
        let code = args.split_whitespace().next().unwrap_or("");
        let station = self.store().station_id(code).await?;
        let actor = self.actor_of(inbound).await?;
        let Some(station_id) = station else {
            return Ok(self.reply_text(inbound, message_id, self.texts().plain(Msg::BindStationRefused)));
        };
        let subject = Subject::Station { station_id };
        if !self.authorize(inbound, &actor, Action::Bind, subject, &format!("station:{code}")).await? {
            return Ok(self.reply_text(inbound, message_id, self.texts().plain(Msg::BindStationRefused)));
        }
        self.store()
            .bind_chat_to_station(
                inbound.platform.as_str(),
                inbound.chat.id,
                &inbound.chat.title,
                station_id,
                actor.officer_id,
            )
            .await?;
        tracing::info!(chat_id = inbound.chat.id, station_id, "staff group bound");
        Ok(self.reply_text(
            inbound,
            message_id,
            self.texts().render(Msg::BindStationDone, minijinja::context! { code }),
        ))
    }

    /// The staff group this chat is, if it is one.
    async fn staff_group(&self, inbound: &Inbound) -> anyhow::Result<Option<ChatRow>> {
        let chat = self.store().chat(inbound.platform.as_str(), inbound.chat.id).await?;
        Ok(chat.filter(|c| c.station_id.is_some() && c.active))
    }

    /// A command in a station staff group; `None` when the chat is not one (or the command
    /// is not a staff command).
    pub(super) async fn on_staff_command(
        &self,
        inbound: &Inbound,
        message_id: i64,
        cmd: &Command,
        args: &str,
    ) -> anyhow::Result<Option<Vec<Outbound>>> {
        let cmd = match cmd {
            Command::Staff(staff) => *staff,
            Command::Tip => StaffCommand::Show,
            _ => return Ok(None),
        };
        let Some(group) = self.staff_group(inbound).await? else { return Ok(None) };
        let station_id = group.station_id.unwrap_or_default();
        let actor = self.actor_of(inbound).await?;
        let (action, subject) = match cmd {
            StaffCommand::Reload => (Action::ReloadRules, Subject::Everything),
            StaffCommand::Resolve | StaffCommand::Reject | StaffCommand::Merge => {
                (Action::Resolve, Subject::Station { station_id })
            }
            StaffCommand::Tips | StaffCommand::Show | StaffCommand::Assign => {
                (Action::Assign, Subject::Station { station_id })
            }
        };
        let target = format!("{} {}", cmd.name(), args.split_whitespace().next().unwrap_or("")).trim_end().to_string();
        let officer_id = actor.officer_id.unwrap_or_default();
        if !self.authorize(inbound, &actor, action, subject, &target).await? || actor.officer_id.is_none() {
            return Ok(Some(self.reply_text(inbound, message_id, self.texts().plain(Msg::StaffRefused))));
        }
        let mut words = args.split_whitespace();
        let out = match cmd {
            StaffCommand::Reload => {
                let text = match self.reload_triage() {
                    Ok(rules) => self.texts().render(Msg::ReloadDone, minijinja::context! { rules }),
                    Err(e) => {
                        tracing::error!(
                            error = format!("{e:#}"),
                            "triage rules not reloaded; the old rules stay in force"
                        );
                        self.texts().render(Msg::ReloadFailed, minijinja::context! { error => format!("{e:#}") })
                    }
                };
                self.reply_text(inbound, message_id, text)
            }
            StaffCommand::Tips => self.staff_list(inbound, message_id, station_id, args).await?,
            StaffCommand::Show
            | StaffCommand::Assign
            | StaffCommand::Resolve
            | StaffCommand::Reject
            | StaffCommand::Merge => {
                let Some(tip) = self.staff_tip(words.next().unwrap_or(""), station_id).await? else {
                    return Ok(Some(self.reply_text(inbound, message_id, self.texts().plain(Msg::StaffTipNotFound))));
                };
                let rest: Vec<&str> = words.collect();
                match cmd {
                    StaffCommand::Show => self.staff_show(inbound, message_id, &tip, &actor).await?,
                    StaffCommand::Assign => {
                        self.staff_assign(inbound, message_id, &tip, &actor, rest.first().copied().unwrap_or(""))
                            .await?
                    }
                    StaffCommand::Resolve | StaffCommand::Reject => {
                        let to = if cmd == StaffCommand::Resolve { TipStatus::Resolved } else { TipStatus::Rejected };
                        let note = rest.join(" ");
                        self.staff_close(inbound, message_id, &tip, &actor, officer_id, to, &note).await?
                    }
                    StaffCommand::Merge => {
                        let into = rest.first().copied().unwrap_or("");
                        self.staff_merge(inbound, message_id, &tip, &actor, officer_id, into, station_id).await?
                    }
                    // Answered above, without a tip.
                    StaffCommand::Tips | StaffCommand::Reload => vec![],
                }
            }
        };
        Ok(Some(out))
    }

    /// A tip of this station by number.
    async fn staff_tip(&self, number: &str, station_id: i64) -> anyhow::Result<Option<TipRow>> {
        let Some(tip) = self.store().tip_by_number(number).await? else { return Ok(None) };
        let village = self.store().village_by_id(tip.village_id).await?;
        Ok(village.filter(|v| v.station_id == station_id).map(|_| tip))
    }

    async fn staff_list(
        &self,
        inbound: &Inbound,
        message_id: i64,
        station_id: i64,
        args: &str,
    ) -> anyhow::Result<Vec<Outbound>> {
        let station = self.store().station_code(station_id).await?;
        let mut words = args.split_whitespace();
        let mut filter = TipFilter { station: Some(station), status: Some(StatusFilter::Open), ..TipFilter::default() };
        match words.next() {
            Some("today") => {
                filter.status = None;
                filter.since_ms = Some(crate::calendar::midnight_ms(self.timezone(), self.today()));
            }
            Some("village") => {
                filter.status = None;
                filter.village = words.next().map(str::to_string);
            }
            Some("all") => filter.status = None,
            _ => {}
        }
        let rows = self.store().list_tips(&filter).await?;
        if rows.is_empty() {
            return Ok(self.reply_text(inbound, message_id, self.texts().plain(Msg::StaffTipsNone)));
        }
        let lines: Vec<_> = rows
            .iter()
            .take(LIST_LIMIT)
            .map(|r| {
                minijinja::context! {
                    number => &r.number, village => &r.village_name, category => &r.category,
                    status => &r.status, officer => &r.officer_name,
                }
            })
            .collect();
        let text = self.texts().render(Msg::StaffTips, minijinja::context! { tips => lines, total => rows.len() });
        Ok(self.reply_text(inbound, message_id, text))
    }

    async fn staff_show(
        &self,
        inbound: &Inbound,
        message_id: i64,
        tip: &TipRow,
        actor: &Actor,
    ) -> anyhow::Result<Vec<Outbound>> {
        let village_row = self.store().village_by_id(tip.village_id).await?;
        // The phone a tipster left is shown only to whoever may see it, and each showing is
        // in the audit log.
        let phone = match (&self.store().tip_phone(tip)?, &village_row) {
            (Some(phone), Some(v)) if !tip.anonymous => {
                let subject = Subject::Village { village_id: v.id, station_id: v.station_id };
                let target = format!("tip:{}", tip.number);
                self.authorize(inbound, actor, Action::ViewContact, subject, &target).await?.then(|| phone.clone())
            }
            _ => None,
        };
        let village = village_row.map(|v| v.name).unwrap_or_default();
        let events: Vec<_> = self
            .store()
            .tip_timeline(tip.id)
            .await?
            .into_iter()
            .map(|(at, actor, badge, kind, detail)| {
                let at = chrono::DateTime::from_timestamp_millis(at)
                    .map(|t| t.with_timezone(&self.timezone()).format("%m-%d %H:%M").to_string());
                minijinja::context! { at, actor, badge, kind, detail }
            })
            .collect();
        let text = self.texts().render(
            Msg::StaffTipDetail,
            minijinja::context! {
                number => &tip.number, village, category => &tip.category, status => &tip.status,
                anonymous => tip.anonymous, phone, summary => &tip.summary, events,
            },
        );
        Ok(self.reply_text(inbound, message_id, text))
    }

    /// A workflow refusal in the staff group's words; a failure is handed on.
    fn staff_refusal(
        &self,
        inbound: &Inbound,
        message_id: i64,
        tip: &TipRow,
        e: CoreError,
    ) -> anyhow::Result<Vec<Outbound>> {
        let text = match e {
            CoreError::Unexpected(e) => return Err(e),
            CoreError::Refused => self.texts().plain(Msg::StaffRefused),
            CoreError::NotFound | CoreError::Invalid(_) => self.texts().plain(Msg::StaffTipNotFound),
            CoreError::NotOpen | CoreError::NotClosed | CoreError::NoOfficer => {
                self.texts().render(Msg::TipAlreadyHandled, minijinja::context! { number => &tip.number })
            }
        };
        Ok(self.reply_text(inbound, message_id, text))
    }

    async fn staff_assign(
        &self,
        inbound: &Inbound,
        message_id: i64,
        tip: &TipRow,
        actor: &Actor,
        badge: &str,
    ) -> anyhow::Result<Vec<Outbound>> {
        let Some(officer) = self.store().officer_by_badge(badge).await? else {
            return Ok(self.reply_text(
                inbound,
                message_id,
                self.texts().render(Msg::StaffUnknownBadge, minijinja::context! { badge }),
            ));
        };
        let (badge, name) = (officer.badge.clone(), officer.name.clone());
        let officer_id = actor.officer_id.unwrap_or_default();
        match self.assign_tip(actor, By::Officer(officer_id), tip, Some(officer), "assigned").await {
            Ok(done) => {
                let ctx = minijinja::context! { number => &tip.number, name, reachable => done.reachable };
                let mut out = self.reply_text(inbound, message_id, self.texts().render(Msg::StaffAssigned, ctx));
                out.extend(done.out);
                Ok(out)
            }
            Err(CoreError::NoOfficer) => {
                let village = self.store().village_by_id(tip.village_id).await?.map(|v| v.name).unwrap_or_default();
                let ctx = minijinja::context! { badge, village };
                Ok(self.reply_text(inbound, message_id, self.texts().render(Msg::StaffNotTheirVillage, ctx)))
            }
            Err(e) => self.staff_refusal(inbound, message_id, tip, e),
        }
    }

    /// `/merge NUMBER INTO`: NUMBER is a duplicate of INTO and is handled with it.
    #[allow(clippy::too_many_arguments)]
    async fn staff_merge(
        &self,
        inbound: &Inbound,
        message_id: i64,
        tip: &TipRow,
        actor: &Actor,
        officer_id: i64,
        into: &str,
        station_id: i64,
    ) -> anyhow::Result<Vec<Outbound>> {
        let Some(target) = self.staff_tip(into, station_id).await?.filter(|t| t.id != tip.id) else {
            return Ok(self.reply_text(inbound, message_id, self.texts().plain(Msg::StaffTipNotFound)));
        };
        match self.merge_tips(actor, By::Officer(officer_id), tip, &target).await {
            Ok(notice) => {
                let ctx = minijinja::context! { number => &tip.number, into => &target.number };
                let mut out = self.reply_text(inbound, message_id, self.texts().render(Msg::StaffMerged, ctx));
                out.extend(notice);
                Ok(out)
            }
            Err(e) => self.staff_refusal(inbound, message_id, tip, e),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn staff_close(
        &self,
        inbound: &Inbound,
        message_id: i64,
        tip: &TipRow,
        actor: &Actor,
        officer_id: i64,
        to: TipStatus,
        note: &str,
    ) -> anyhow::Result<Vec<Outbound>> {
        let note = Some(note.trim()).filter(|n| !n.is_empty());
        match self.close_tip(actor, By::Officer(officer_id), tip, to, note).await {
            Ok((_, notice)) => {
                let staff_msg = if to == TipStatus::Resolved { Msg::TipResolvedOfficer } else { Msg::StaffRejected };
                let text = self.texts().render(staff_msg, minijinja::context! { number => &tip.number, note });
                let mut out = self.reply_text(inbound, message_id, text);
                out.extend(notice);
                Ok(out)
            }
            Err(e) => self.staff_refusal(inbound, message_id, tip, e),
        }
    }

    /// Notices to the staff groups of the village's station on `platform`.
    pub(super) async fn staff_notices(
        &self,
        platform: &str,
        village: &VillageRow,
        tip: &TipRow,
        officer: Option<&str>,
        escalated: bool,
    ) -> anyhow::Result<Vec<Outbound>> {
        let msg = if escalated { Msg::StaffEscalatedNotice } else { Msg::StaffNewTipNotice };
        let text = self.texts().render(
            msg,
            minijinja::context! { number => &tip.number, village => &village.name, category => &tip.category, officer },
        );
        Ok(self
            .station_chats_everywhere(village.station_id, platform)
            .await?
            .into_iter()
            .map(|(on, chat_id)| Outbound::on(on, Outbound::text(chat_id, text.clone())))
            .collect())
    }
}
