//! `cunjing officer …`: issue an officer's one-time enrolment code (with the bot's deep
//! link), and grant or revoke a station role.

use std::process::ExitCode;

use super::{OfficerCommand, bot_username, open_store};
use crate::config::Settings;
use crate::domain::Grant;

/// Runs `cunjing officer …`.
pub(super) async fn run(settings: &Settings, cmd: OfficerCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        OfficerCommand::Enrol { badge, json } => enrol(settings, &badge, json).await,
        OfficerCommand::Grant { badge, role } => grant(settings, &badge, Some(role)).await,
        OfficerCommand::Revoke { badge } => grant(settings, &badge, None).await,
    }
}

/// `cunjing officer enrol`.
async fn enrol(settings: &Settings, badge: &str, json: bool) -> anyhow::Result<ExitCode> {
    let store = open_store(settings).await?;
    let ttl_ms = i64::try_from(settings.file.enrolment.code_ttl_hours).unwrap_or(24) * 3_600_000;
    let Some(code) = store.issue_enrolment_code(badge, ttl_ms).await? else {
        eprintln!("No officer with badge {badge:?} in the registry; import it first (cunjing registry import DIR).");
        return Ok(ExitCode::FAILURE);
    };
    let username = bot_username(settings).await;
    let link = format!("https://t.me/{}?start={}", username.as_deref().unwrap_or("<bot_username>"), code.code);
    let expires = chrono::DateTime::from_timestamp_millis(code.expires_at)
        .map(|t| t.with_timezone(&settings.timezone()).to_rfc3339())
        .unwrap_or_default();
    if json {
        let out = serde_json::json!({
            "badge": code.badge, "name": code.name, "code": code.code,
            "expires_at": expires, "deep_link": link,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("Enrolment code for {} ({}): {}", code.name, code.badge, code.code);
        println!("Valid once, until {expires}.");
        println!("The officer opens {link}");
        println!("or sends the bot, in a private chat: /start {}", code.code);
    }
    Ok(ExitCode::SUCCESS)
}

/// `cunjing officer grant|revoke`.
async fn grant(settings: &Settings, badge: &str, role: Option<Grant>) -> anyhow::Result<ExitCode> {
    let store = open_store(settings).await?;
    if !store.set_grant(badge, role, crate::store::now_ms()).await? {
        eprintln!("No officer with badge {badge:?} in the registry; import it first (cunjing registry import DIR).");
        return Ok(ExitCode::FAILURE);
    }
    match role {
        Some(role) => println!("Officer {badge} is now {role}"),
        None => println!("Officer {badge} has no station role any more"),
    }
    Ok(ExitCode::SUCCESS)
}
