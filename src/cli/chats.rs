//! `cunjing chat …`: bind a group chat to a village, unbind it, and list the chats the bot
//! knows with their villages.

use std::process::ExitCode;

use anyhow::Context;

use super::{ChatCommand, open_store};
use crate::config::Settings;
use crate::core::Platform;

/// Runs `cunjing chat …`.
pub(super) async fn run(settings: &Settings, cmd: ChatCommand) -> anyhow::Result<ExitCode> {
    let store = open_store(settings).await?;
    match cmd {
        ChatCommand::Bind { chat_id, village_code, platform } => {
            let platform = Platform::parse(&platform)
                .with_context(|| format!("unknown platform {platform:?}; use telegram or console"))?;
            let Some(village) = store.village_by_code(&village_code).await? else {
                eprintln!("No village with code {village_code:?} in the registry.");
                return Ok(ExitCode::FAILURE);
            };
            let title = store.chat(platform.as_str(), chat_id).await?.map(|c| c.title).unwrap_or_default();
            store.bind_chat_to_village(platform.as_str(), chat_id, &title, village.id, None).await?;
            println!("Chat {chat_id} ({platform}) bound to {} ({})", village.name, village.code);
            Ok(ExitCode::SUCCESS)
        }
        ChatCommand::Unbind { chat_id, platform } => {
            if store.unbind_chat(&platform, chat_id).await? {
                println!("Chat {chat_id} ({platform}) unbound");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("The bot does not know chat {chat_id} on {platform}.");
                Ok(ExitCode::FAILURE)
            }
        }
        ChatCommand::List { json } => {
            let chats = store.list_chats(None).await?;
            if json {
                // Each chat with its village's code and name beside the internal ids.
                let mut rows = Vec::with_capacity(chats.len());
                for c in &chats {
                    let village = match c.village_id {
                        Some(id) => store.village_by_id(id).await?,
                        None => None,
                    };
                    let mut row = serde_json::to_value(c)?;
                    row["village_code"] = serde_json::json!(village.as_ref().map(|v| v.code.clone()));
                    row["village_name"] = serde_json::json!(village.as_ref().map(|v| v.name.clone()));
                    rows.push(row);
                }
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for c in chats {
                    let village = match c.village_id {
                        Some(id) => store.village_by_id(id).await?.map(|v| format!("{} ({})", v.name, v.code)),
                        None => None,
                    };
                    println!(
                        "{:<9} {:>16}  {:<8} {:<24} {}",
                        c.platform,
                        c.chat_id,
                        if c.active { "active" } else { "inactive" },
                        village.unwrap_or_else(|| "(not bound)".into()),
                        c.title
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
