//! `cunjing staff add`: create or reset an account of the station console, its password
//! read from stdin, with a TOTP second factor for admins (and for staff who ask).

use std::process::ExitCode;

use anyhow::Context;

use super::{StaffCommand, open_store};
use crate::config::Settings;
use crate::domain::Grant;

/// Runs `cunjing staff …`.
pub(super) async fn run(settings: &Settings, cmd: StaffCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        StaffCommand::Add { username, station, role, totp, name } => {
            staff_add(settings, &username, station.as_deref(), role, totp, name.as_deref()).await
        }
    }
}

/// `cunjing staff add`.
async fn staff_add(
    settings: &Settings,
    username: &str,
    station: Option<&str>,
    role: Grant,
    totp: bool,
    name: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let username = username.trim();
    anyhow::ensure!(name.is_none_or(|n| n.trim().chars().count() <= 32), "the --name must be at most 32 characters");
    anyhow::ensure!(
        !username.is_empty() && username.len() <= 64 && !username.chars().any(char::is_whitespace),
        "the user name must be 1–64 characters without spaces"
    );
    let store = open_store(settings).await?;
    let station_id = match (role, station) {
        (Grant::System, None) => None,
        (Grant::System, Some(_)) => anyhow::bail!("a system account is not tied to a station: leave out --station"),
        (_, None) => anyhow::bail!("--station CODE is required for a staff or admin account"),
        (_, Some(code)) => match store.station_id(code).await? {
            Some(id) => Some(id),
            None => anyhow::bail!("no station with code {code:?} in the registry"),
        },
    };
    let mut password = String::new();
    std::io::stdin().read_line(&mut password).context("Failed to read the password from stdin")?;
    let password = password.trim_end_matches(['\r', '\n']);
    anyhow::ensure!(password.chars().count() >= 10, "the password must have at least 10 characters");
    let hash = crate::web::hash_password(password)?;
    let secret = (totp || role != Grant::Staff).then(crate::web::new_totp_secret);
    store.upsert_web_user(username, station_id, role, &hash, secret.as_deref(), crate::store::now_ms()).await?;
    store.set_web_user_display_name(username, name).await?;
    println!("Console account {username} ({role}) is ready.");
    if let Some(secret) = secret {
        println!("Second factor (TOTP, shown once): add this secret to an authenticator app:");
        println!("  {secret}");
        println!("  otpauth://totp/cunjing:{username}?secret={secret}&issuer=cunjing");
    }
    Ok(ExitCode::SUCCESS)
}
