//! `cunjing board`: the printable contact boards (警民联系牌) of a village or of every
//! village of a station, as A4 SVG and PNG with their QR codes.

use std::path::Path;
use std::process::ExitCode;

use super::{bot_username, open_store};
use crate::config::Settings;

/// `cunjing board`: the boards of a village or of a station's villages.
pub(super) async fn run(
    settings: &Settings,
    village: Option<String>,
    station: Option<String>,
    out: &Path,
) -> anyhow::Result<ExitCode> {
    let store = open_store(settings).await?;
    let all = store.all_villages().await?;
    let villages: Vec<_> = match (&village, &station) {
        (Some(code), None) => all.into_iter().filter(|v| &v.code == code).collect(),
        (None, Some(code)) => all.into_iter().filter(|v| &v.station_code == code).collect(),
        _ => {
            eprintln!("cunjing board needs a village code, or --station CODE for every village of a station.");
            return Ok(ExitCode::FAILURE);
        }
    };
    if villages.is_empty() {
        eprintln!(
            "No village with {} in the registry; `cunjing registry export DIR` lists the codes.",
            village
                .map_or_else(|| format!("station code {:?}", station.unwrap_or_default()), |v| format!("code {v:?}"))
        );
        return Ok(ExitCode::FAILURE);
    }
    let links = crate::boards::Links {
        wechat: Some(settings.file.wecom.kf.contact_url.clone()),
        telegram_bot: bot_username(settings).await,
    };
    if links.for_village("").is_empty() {
        eprintln!("Note: no QR codes: set [wecom.kf] contact_url for WeChat, TELOXIDE_TOKEN for the Telegram link.");
    }
    let template = settings.resolve(&settings.file.paths.board_template);
    let today = chrono::Utc::now().with_timezone(&settings.timezone()).date_naive().to_string();
    let files = crate::boards::write_boards(&store, &template, &villages, &links, &today, out).await?;
    for file in &files {
        println!("{}", file.display());
    }
    println!("{} board(s) written as SVG and PNG; print them on A4.", files.len() / 2);
    Ok(ExitCode::SUCCESS)
}
