//! The scheduler: recurring notices from `bot-config/schedule.toml` and the built-in monthly
//! jobs (the officers' duty reminder, the stations' monthly summary), on cron expressions read
//! in a time zone.
//!
//! Each run is claimed in `schedule_runs` (job, due instant) before it is done, so a run
//! happens at most once, across restarts and daemons. After downtime only the latest missed
//! run within the grace period is done; older ones are skipped.

use std::path::Path;
use std::str::FromStr;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::broadcast::Request;
use super::{Core, Outbound, Platform};
use crate::domain::{BroadcastKind, Severity};
use crate::store::broadcasts::parse_targets;
use crate::texts::{Msg, Texts};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    timezone: Option<String>,
    #[serde(default = "default_grace")]
    grace_minutes: u32,
    builtin: Builtin,
    #[serde(default)]
    notice: Vec<NoticeFile>,
}

fn default_grace() -> u32 {
    360
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Builtin {
    duty_reminder: String,
    monthly_summary: String,
    #[serde(default = "default_retention")]
    retention: String,
}

fn default_retention() -> String {
    "0 30 3 * * *".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoticeFile {
    name: String,
    cron: String,
    to: Vec<String>,
    #[serde(default = "default_kind")]
    kind: String,
    #[serde(default = "default_severity")]
    severity: String,
    template: String,
}

fn default_kind() -> String {
    BroadcastKind::Notice.as_str().into()
}

fn default_severity() -> String {
    Severity::Normal.as_str().into()
}

/// What a job does.
#[derive(Debug, Clone)]
pub enum Action {
    Notice {
        to: String,
        kind: BroadcastKind,
        severity: Severity,
        template: String,
    },
    DutyReminder,
    MonthlySummary,
    /// The nightly purge of personal data past its retention period.
    Retention,
}

#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub cron: cron::Schedule,
    pub action: Action,
}

/// The loaded schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub timezone: chrono_tz::Tz,
    pub grace_ms: i64,
    pub jobs: Vec<Job>,
}

fn parse_cron(expr: &str, what: &str) -> anyhow::Result<cron::Schedule> {
    cron::Schedule::from_str(expr).map_err(|e| {
        anyhow::anyhow!("{what}: cron expression {expr:?} does not parse ({e}); write six fields: sec min hour day month weekday, e.g. \"0 0 9 1 * *\"")
    })
}

impl Schedule {
    /// Loads and checks the schedule: cron expressions, targets, kinds and templates.
    pub fn load(path: &Path, texts: &Texts, default_tz: chrono_tz::Tz) -> anyhow::Result<Schedule> {
        let raw =
            std::fs::read_to_string(path).with_context(|| format!("Failed to read the schedule {}", path.display()))?;
        Self::parse(&raw, texts, default_tz).with_context(|| format!("In the schedule {}", path.display()))
    }

    pub fn parse(raw: &str, texts: &Texts, default_tz: chrono_tz::Tz) -> anyhow::Result<Schedule> {
        let file: File = toml::from_str(raw)?;
        let timezone = match &file.timezone {
            Some(tz) => {
                tz.parse().map_err(|_| anyhow::anyhow!("timezone {tz:?} is not an IANA zone such as Asia/Shanghai"))?
            }
            None => default_tz,
        };
        let mut jobs = vec![
            Job {
                name: "builtin.duty_reminder".into(),
                cron: parse_cron(&file.builtin.duty_reminder, "builtin.duty_reminder")?,
                action: Action::DutyReminder,
            },
            Job {
                name: "builtin.monthly_summary".into(),
                cron: parse_cron(&file.builtin.monthly_summary, "builtin.monthly_summary")?,
                action: Action::MonthlySummary,
            },
            Job {
                name: "builtin.retention".into(),
                cron: parse_cron(&file.builtin.retention, "builtin.retention")?,
                action: Action::Retention,
            },
        ];
        for n in file.notice {
            let what = format!("notice {:?}", n.name);
            anyhow::ensure!(
                !n.name.is_empty() && !n.name.starts_with("builtin."),
                "{what}: give it a name (not builtin.*)"
            );
            anyhow::ensure!(jobs.iter().all(|j| j.name != n.name), "{what}: the name is used twice");
            parse_targets(&n.to.join(" ")).map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
            let kind = BroadcastKind::from_code(&n.kind)
                .ok_or_else(|| anyhow::anyhow!("{what}: kind must be warning or notice"))?;
            let severity = Severity::from_code(&n.severity)
                .ok_or_else(|| anyhow::anyhow!("{what}: severity must be urgent, important or normal"))?;
            texts.render_named(&n.template, ()).with_context(|| format!("{what}: its template"))?;
            jobs.push(Job {
                name: n.name,
                cron: parse_cron(&n.cron, &what)?,
                action: Action::Notice { to: n.to.join(" "), kind, severity, template: n.template },
            });
        }
        Ok(Schedule { timezone, grace_ms: i64::from(file.grace_minutes) * 60_000, jobs })
    }
}

/// The run of `cron` to do at `now`: the latest due instant in (now − grace, now], if any.
pub fn due_run(cron: &cron::Schedule, tz: chrono_tz::Tz, now_ms: i64, grace_ms: i64) -> Option<i64> {
    let start = DateTime::<Utc>::from_timestamp_millis(now_ms - grace_ms.max(1))?.with_timezone(&tz);
    cron.after(&start).take_while(|t| t.timestamp_millis() <= now_ms).last().map(|t| t.timestamp_millis())
}

impl Core {
    /// Runs the jobs that are due now (each run once); returns the private reminders and
    /// staff summaries to send on `platform`. Notices become broadcasts (the workers send them).
    pub async fn run_schedule(&self, platform: Platform) -> anyhow::Result<Vec<Outbound>> {
        let Some(schedule) = self.opts.schedule.clone() else { return Ok(vec![]) };
        let now = self.now_ms();
        let mut out = Vec::new();
        for job in &schedule.jobs {
            let Some(due) = due_run(&job.cron, schedule.timezone, now, schedule.grace_ms) else { continue };
            if !self.store().claim_schedule_run(&job.name, due, now).await? {
                continue;
            }
            tracing::info!(job = %job.name, due, "scheduled job runs");
            match &job.action {
                Action::Notice { to, kind, severity, template } => {
                    let text = self.texts().render_named(template, ())?;
                    let targets = parse_targets(to).map_err(anyhow::Error::msg)?;
                    let mut req = Request::new(*kind, *severity, &text, targets, &job.name);
                    req.sender_label = self.texts().render(Msg::BroadcastEvent, minijinja::context! { kind });
                    req.schedule_job = Some(job.name.clone());
                    self.create_broadcast(req).await?;
                }
                Action::DutyReminder => out.extend(self.duty_reminders(platform, schedule.timezone).await?),
                Action::MonthlySummary => out.extend(self.monthly_summaries(platform, schedule.timezone).await?),
                Action::Retention => {
                    let r = self.opts.retention;
                    let purged = self.store().purge_expired(now, r.relay_ms, r.tips_ms, r.audit_ms).await?;
                    self.store().optimize().await?;
                    tracing::info!(
                        relays = purged.relays,
                        tips = purged.tips,
                        audit = purged.audit,
                        handled_updates = purged.handled_updates,
                        "retention purge done"
                    );
                }
            }
        }
        Ok(out)
    }

    /// Officers who have not yet published a warning to each of their villages this month.
    async fn duty_reminders(&self, platform: Platform, tz: chrono_tz::Tz) -> anyhow::Result<Vec<Outbound>> {
        let now = self.now_ms();
        let local = DateTime::<Utc>::from_timestamp_millis(now).unwrap_or_default().with_timezone(&tz);
        let month = local.format("%Y-%m").to_string();
        let (from, to) = crate::calendar::month_bounds(tz, &month)?;
        let today = local.date_naive().to_string();
        let mut out = Vec::new();
        for officer in self.store().all_officers().await? {
            let Some(account) = self.store().officer_account(officer.id, platform.as_str()).await? else { continue };
            let missing = self.store().villages_without_warning(officer.id, &today, from, to).await?;
            if missing.is_empty() {
                continue;
            }
            let villages: Vec<String> = missing.into_iter().map(|(_, name)| name).collect();
            let text = self
                .texts()
                .render(Msg::DutyReminder, minijinja::context! { name => &officer.name, villages, month => &month });
            out.push(Outbound::text(account, text));
        }
        tracing::info!(reminders = out.len(), "duty reminders");
        Ok(out)
    }

    /// Last month's figures to each station's staff groups.
    async fn monthly_summaries(&self, platform: Platform, tz: chrono_tz::Tz) -> anyhow::Result<Vec<Outbound>> {
        let month = crate::calendar::previous_month(tz, self.now_ms());
        let (from, to) = crate::calendar::month_bounds(tz, &month)?;
        let mut out = Vec::new();
        for (station_id, name) in self.store().stations().await? {
            let chats = self.store().station_chats(station_id, platform.as_str()).await?;
            if chats.is_empty() {
                continue;
            }
            let rows = self.store().officer_figures(from, to, Some(station_id)).await?;
            let text = self
                .texts()
                .render(Msg::MonthlySummary, minijinja::context! { station => name, month => &month, rows });
            out.extend(chats.into_iter().map(|c| Outbound::text(c, text.clone())));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(tz: chrono_tz::Tz, y: i32, m: u32, d: u32, h: u32, min: u32) -> i64 {
        tz.with_ymd_and_hms(y, m, d, h, min, 0).unwrap().timestamp_millis()
    }

    #[test]
    fn a_monthly_job_is_due_in_its_own_time_zone_not_in_utc() {
        let tz = chrono_tz::Asia::Shanghai;
        let cron = parse_cron("0 0 9 1 * *", "t").unwrap();
        // 09:05 in Shanghai is 01:05 UTC.
        let now = at(tz, 2026, 12, 1, 9, 5);
        assert_eq!(due_run(&cron, tz, now, 3_600_000), Some(at(tz, 2026, 12, 1, 9, 0)));
        // 08:59 Shanghai: not yet.
        assert_eq!(due_run(&cron, tz, at(tz, 2026, 12, 1, 8, 59), 3_600_000), None);
    }

    #[test]
    fn a_run_missed_by_more_than_the_grace_period_is_skipped() {
        let tz = chrono_tz::Asia::Shanghai;
        let cron = parse_cron("0 0 9 1 * *", "t").unwrap();
        let six_hours = 6 * 3_600_000;
        assert_eq!(due_run(&cron, tz, at(tz, 2026, 12, 1, 14, 59), six_hours), Some(at(tz, 2026, 12, 1, 9, 0)));
        assert_eq!(due_run(&cron, tz, at(tz, 2026, 12, 1, 15, 1), six_hours), None);
    }

    #[test]
    fn after_a_long_outage_only_the_latest_missed_run_is_due() {
        let tz = chrono_tz::Asia::Shanghai;
        let hourly = parse_cron("0 0 * * * *", "t").unwrap();
        let now = at(tz, 2026, 12, 1, 12, 30);
        assert_eq!(due_run(&hourly, tz, now, 5 * 3_600_000), Some(at(tz, 2026, 12, 1, 12, 0)));
    }

    #[test]
    fn a_schedule_with_a_bad_cron_expression_names_the_job() {
        let texts = Texts::load(Path::new("bot-config/templates"), "zh-CN").unwrap();
        let raw = "[builtin]\nduty_reminder = \"0 0 10 25 * *\"\nmonthly_summary = \"0 0 9 1 * *\"\n\
                   [[notice]]\nname = \"x\"\ncron = \"every day\"\nto = [\"all\"]\ntemplate = \"schedule_anti_fraud\"\n";
        let err = format!("{:#}", Schedule::parse(raw, &texts, chrono_tz::Asia::Shanghai).unwrap_err());
        assert!(err.contains("notice \"x\"") && err.contains("every day"), "{err}");
    }

    #[test]
    fn the_shipped_schedule_loads() {
        let texts = Texts::load(Path::new("bot-config/templates"), "zh-CN").unwrap();
        let s = Schedule::load(Path::new("bot-config/schedule.toml"), &texts, chrono_tz::UTC).unwrap();
        assert_eq!(s.timezone, chrono_tz::Asia::Shanghai);
        assert!(s.jobs.iter().any(|j| j.name == "anti-fraud-monthly"));
    }
}
