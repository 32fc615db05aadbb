//! The officer's own commands: enrolment with a one-time code, `/whoami`, and `/duty`
//! (on, off, on leave until a day).

use super::handler::Core;
use super::{Inbound, Outbound};
use crate::texts::Msg;

impl Core {
    /// Redeems an enrolment code. Every attempt is in the audit log; an account that sent
    /// more wrong codes in the last hour than allowed is refused without the code being
    /// looked at.
    pub(super) async fn enrol(&self, inbound: &Inbound, code: &str) -> anyhow::Result<Vec<Outbound>> {
        let chat_id = inbound.chat.id;
        let Some(user) = inbound.sender.person() else {
            return Ok(vec![Outbound::text(chat_id, self.texts.plain(Msg::EnrolFailed))]);
        };
        let account = format!("{}:{user}", inbound.platform.as_str());
        let now = self.now_ms();
        let wrong = self.store.audit_denials(&account, "enrol", now - 3_600_000).await?;
        if wrong >= self.opts.max_wrong_codes_per_hour {
            self.store.audit(now, &account, "enrol", "code", "denied", "too many wrong codes").await?;
            tracing::warn!("enrolment refused: too many wrong codes from one account");
            return Ok(vec![Outbound::text(chat_id, self.texts.plain(Msg::EnrolTooMany))]);
        }
        match self.store.redeem_enrolment_code(code, inbound.platform.as_str(), user).await? {
            Ok(officer) => {
                self.store.audit(now, &account, "enrol", &format!("officer:{}", officer.badge), "allowed", "").await?;
                tracing::info!(officer_id = officer.id, "officer enrolled");
                let text = self
                    .texts
                    .render(Msg::EnrolDone, minijinja::context! { name => officer.name, badge => officer.badge });
                Ok(vec![Outbound::text(chat_id, text)])
            }
            Err(why) => {
                let detail = format!("{why:?}").to_lowercase();
                self.store.audit(now, &account, "enrol", "code", "denied", &detail).await?;
                tracing::warn!(reason = ?why, "enrolment code refused");
                Ok(vec![Outbound::text(chat_id, self.texts.plain(Msg::EnrolFailed))])
            }
        }
    }

    /// `/duty on`, `/duty off`, `/duty off YYYY-MM-DD` (on leave until that day): while off
    /// duty an officer is skipped when tips are routed.
    pub(super) async fn on_duty(&self, inbound: &Inbound, args: &str) -> anyhow::Result<Vec<Outbound>> {
        let chat_id = inbound.chat.id;
        let Some(officer) = self.officer_of(inbound).await? else {
            return Ok(vec![Outbound::text(chat_id, self.texts.plain(Msg::WhoamiResident))]);
        };
        let mut words = args.split_whitespace();
        let (msg, ctx) = match (words.next(), words.next()) {
            (Some("on"), _) => {
                self.store.set_duty(officer.id, true, None).await?;
                (Msg::DutyOn, minijinja::context! {})
            }
            (Some("off"), None) => {
                self.store.set_duty(officer.id, false, None).await?;
                (Msg::DutyOff, minijinja::context! {})
            }
            (Some("off"), Some(day)) => match chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d") {
                Ok(until) if until > self.today() => {
                    self.store.set_duty(officer.id, true, Some(&until.to_string())).await?;
                    (Msg::DutyLeave, minijinja::context! { until => until.to_string() })
                }
                _ => (Msg::DutyUsage, minijinja::context! {}),
            },
            _ => (Msg::DutyUsage, minijinja::context! {}),
        };
        tracing::info!(officer_id = officer.id, "duty changed");
        Ok(vec![Outbound::text(chat_id, self.texts.render(msg, ctx))])
    }

    pub(super) async fn on_whoami(&self, inbound: &Inbound) -> anyhow::Result<Vec<Outbound>> {
        let chat_id = inbound.chat.id;
        let Some(officer) = self.officer_of(inbound).await? else {
            return Ok(vec![Outbound::text(chat_id, self.texts.plain(Msg::WhoamiResident))]);
        };
        let villages: Vec<_> = self
            .store
            .officer_villages(officer.id, &self.today().to_string())
            .await?
            .into_iter()
            .map(|(code, name, role)| minijinja::context! { code, name, role })
            .collect();
        let text = self
            .texts
            .render(Msg::WhoamiOfficer, minijinja::context! { name => officer.name, badge => officer.badge, villages });
        Ok(vec![Outbound::text(chat_id, text)])
    }
}
