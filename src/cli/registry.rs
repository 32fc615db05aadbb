//! `cunjing registry …`: import the station → office → village → officer CSVs and the areas (all or
//! nothing), export them in the same format, set a village's or office's WeCom robot, and
//! print the coverage gaps.

use std::process::ExitCode;

use super::{RegistryCommand, open_store, today};
use crate::config::Settings;
use crate::registry::{self, ImportError};

/// Runs `cunjing registry …`.
pub(super) async fn run(settings: &Settings, cmd: RegistryCommand) -> anyhow::Result<ExitCode> {
    let store = open_store(settings).await?;
    match cmd {
        RegistryCommand::Import { dir } => match registry::import_dir(&store, &dir, today(settings)).await {
            Ok(summary) => {
                println!("{summary}");
                Ok(ExitCode::SUCCESS)
            }
            Err(ImportError::Invalid(errors)) => {
                for e in &errors {
                    eprintln!("{e}");
                }
                eprintln!(
                    "{} error(s); nothing was imported. Fix the lines and features above and run the import again.",
                    errors.len()
                );
                Ok(ExitCode::FAILURE)
            }
            Err(e) => Err(e.into()),
        },
        RegistryCommand::Export { dir } => {
            registry::export_dir(&store, &dir).await?;
            println!("Registry written to {}", dir.display());
            Ok(ExitCode::SUCCESS)
        }
        RegistryCommand::Wecom { target, url } => {
            let url = url.filter(|u| !u.is_empty());
            if let Some(u) = &url {
                let parsed = url::Url::parse(u)
                    .map_err(|e| anyhow::anyhow!("{u:?} is not a URL ({e}): give the robot's webhook address"))?;
                anyhow::ensure!(
                    matches!(parsed.scheme(), "https" | "http"),
                    "the webhook URL must start with https://"
                );
            }
            let found = match crate::store::broadcasts::Target::parse(&target).map_err(anyhow::Error::msg)? {
                crate::store::broadcasts::Target::Village(code) => {
                    store.set_village_wecom(&code, url.as_deref()).await?
                }
                crate::store::broadcasts::Target::Office(code) => store.set_office_wecom(&code, url.as_deref()).await?,
                _ => anyhow::bail!("a robot belongs to a village or an office: write village:CODE or office:CODE"),
            };
            anyhow::ensure!(found, "{target} is not in the registry");
            println!("{} {target}", if url.is_some() { "WeCom robot set for" } else { "WeCom robot removed from" });
            Ok(ExitCode::SUCCESS)
        }
        RegistryCommand::Check { json } => {
            let report =
                registry::check(&store, today(settings), settings.file.registry.max_villages_per_officer).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{report}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
