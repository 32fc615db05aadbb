//! The location room (issue #24): a resident who shares a location finds the officer of the
//! village or grid whose area holds it.
//!
//! In a private chat with no conversation in progress, a location is looked up among the
//! imported areas ([`crate::places::AreaIndex::locate`], with `[places] confirm_within_m` as
//! the margin):
//!
//! - in one area, far enough from every other: that village's contact card, and the village
//!   is remembered as the resident's (as when they pick it after a search);
//! - near a boundary, or sent without its datum so that it may be GCJ-02 and fall in another
//!   area: one short question with a button per candidate village (the likelier first; the
//!   button is the one a village search draws, so pressing it remembers the village and
//!   shows its card), and the resident may still type a village name;
//! - in no area: 110 for emergencies and the duty line of the nearest area's station;
//! - no areas imported: what a location got before areas existed (how to report with /tip).
//!
//! A tip's location is placed the same way, in `tips` (see [`Placed`]). The resident's
//! location is never logged.

use super::handler::Core;
use super::wire::ButtonData;
use super::{Button, Inbound, Outbound};
use crate::places::{Located, Spot};
use crate::texts::Msg;

/// Where a point lies among the areas, by village id (owned: the index may be rebuilt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Placed {
    /// In this village's area, and near no other.
    Inside(i64),
    /// Near a boundary or of unknown datum: these villages, the likelier first.
    Ambiguous(Vec<i64>),
    /// In no area; the village of the nearest area.
    Outside { nearest: Option<i64> },
}

impl Placed {
    /// The village a tip with this location goes to: the area that holds it, or the likelier
    /// of two near a boundary; `None` outside every area.
    pub(super) fn likeliest(&self) -> Option<i64> {
        match self {
            Placed::Inside(v) => Some(*v),
            Placed::Ambiguous(v) => v.first().copied(),
            Placed::Outside { .. } => None,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Placed::Inside(_) => "inside",
            Placed::Ambiguous(_) => "ambiguous",
            Placed::Outside { .. } => "outside",
        }
    }
}

impl Core {
    /// Where `spot` lies among the imported areas; `None` when no areas are imported.
    pub(super) async fn place_of(&self, spot: &Spot) -> anyhow::Result<Option<Placed>> {
        let index = self.store().area_index().await?;
        if index.is_empty() {
            return Ok(None);
        }
        let placed = match index.locate(spot, self.confirm_within_m()) {
            Located::Inside(area) => Placed::Inside(area.village_id),
            Located::Ambiguous(areas) => Placed::Ambiguous(areas.iter().map(|a| a.village_id).collect()),
            Located::Outside { nearest } => Placed::Outside { nearest: nearest.map(|a| a.village_id) },
        };
        tracing::info!(outcome = placed.kind(), datum_known = spot.datum.is_some(), "location placed");
        Ok(Some(placed))
    }

    /// A location sent in a private chat with no conversation in progress.
    pub(super) async fn location_found(&self, inbound: &Inbound, spot: &Spot) -> anyhow::Result<Vec<Outbound>> {
        let chat_id = inbound.chat.id;
        let Some(placed) = self.place_of(spot).await? else {
            return Ok(vec![Outbound::text(chat_id, self.texts().plain(Msg::MediaOutsideTip))]);
        };
        match placed {
            Placed::Inside(village_id) => match self.store().village_by_id(village_id).await? {
                Some(village) => self.choose_village(inbound, &village.code).await,
                None => Ok(vec![Outbound::text(chat_id, self.texts().plain(Msg::VillageGone))]),
            },
            Placed::Ambiguous(villages) => Ok(vec![self.which_village(chat_id, &villages).await?]),
            Placed::Outside { nearest } => Ok(vec![self.outside_areas(chat_id, nearest).await?]),
        }
    }

    /// The question which of `villages` a location is in, a button for each (a village
    /// search's buttons: pressing one remembers it and goes on).
    pub(super) async fn which_village(&self, chat_id: i64, villages: &[i64]) -> anyhow::Result<Outbound> {
        let mut buttons = Vec::with_capacity(villages.len());
        for id in villages {
            if let Some(v) = self.store().village_by_id(*id).await? {
                buttons.push(vec![Button::Callback {
                    label: self
                        .texts()
                        .render(Msg::VillageButton, minijinja::context! { name => &v.name, office => &v.office_name }),
                    data: ButtonData::PickVillage(v.code.clone()).into(),
                }]);
            }
        }
        let text = self.texts().render(Msg::LocationChooseVillage, minijinja::context! { n => buttons.len() });
        Ok(Outbound::Message { chat_id, text, buttons, reply_to: None })
    }

    /// A location in no area: 110, and the duty line of the station of the nearest area.
    pub(super) async fn outside_areas(&self, chat_id: i64, nearest: Option<i64>) -> anyhow::Result<Outbound> {
        let village = match nearest {
            Some(id) => self.store().village_by_id(id).await?,
            None => None,
        };
        let text = self.texts().render(
            Msg::LocationOutside,
            minijinja::context! {
                station => village.as_ref().map(|v| v.station_name.clone()),
                duty_phone => village.as_ref().map(|v| v.station_duty_phone.clone()),
            },
        );
        Ok(Outbound::text(chat_id, text))
    }
}
