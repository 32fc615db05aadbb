//! Routing: chat → village → duty chain. The one function every feature that must reach
//! "the responsible officer" calls.

use chrono::NaiveDate;

use crate::store::Store;
use crate::store::registry::{AssignedOfficer, VillageRow};

/// Who answers for a village on a day, in the order they are asked: resident officer,
/// contact officer, auxiliary, area chief; then the station's duty phone as the last resort.
#[derive(Debug, Clone)]
pub struct DutyChain {
    pub village: VillageRow,
    /// Officers reachable through the bot (enrolled and on duty), in chain order.
    pub members: Vec<AssignedOfficer>,
    /// The station's 24-hour duty phone.
    pub station_duty_phone: String,
}

/// The duty chain of a village on `day`. Volunteers are not on it (no police powers);
/// officers who are not enrolled, or who marked themselves off duty, are skipped because the
/// bot cannot reach them.
pub async fn duty_chain(store: &Store, village: VillageRow, day: NaiveDate) -> anyhow::Result<DutyChain> {
    let officers = store.assigned_officers(village.id, &day.to_string()).await?;
    let members = officers.into_iter().filter(|o| o.role.is_on_duty_chain() && o.enrolled && o.on_duty).collect();
    let station_duty_phone = village.station_duty_phone.clone();
    Ok(DutyChain { village, members, station_duty_phone })
}

/// The village a group chat is bound to, if it is bound and active.
pub async fn village_of_chat(store: &Store, platform: &str, chat_id: i64) -> anyhow::Result<Option<VillageRow>> {
    let Some(chat) = store.chat(platform, chat_id).await? else {
        return Ok(None);
    };
    match chat.village_id {
        Some(id) if chat.active => store.village_by_id(id).await,
        _ => Ok(None),
    }
}
