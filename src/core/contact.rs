//! The contact room: a village's contact card (who the officers are, the office, the
//! station's duty line), in a group or in private, and how a resident finds their village
//! (search by name, the deep link of a group's card, the private menu).

use serde::Serialize;

use super::handler::Core;
use super::routing;
use super::wire::{ButtonData, MenuItem, StartPayload};
use super::{Button, Inbound, Outbound};
use crate::domain::{AssignmentRole, OfficerKind};
use crate::store::registry::{AssignedOfficer, VillageRow};
use crate::texts::{Msg, Texts};

#[derive(Serialize)]
pub struct CardOfficer {
    role: AssignmentRole,
    name: String,
    badge: String,
    badge_shown: bool,
    phone: Option<String>,
}

/// The officers a village's card and board show: resident, contact and auxiliary (a
/// volunteer without a badge number), in duty order.
pub fn card_officers(officers: Vec<AssignedOfficer>) -> Vec<CardOfficer> {
    officers
        .into_iter()
        .filter(|o| matches!(o.role, AssignmentRole::Resident | AssignmentRole::Contact | AssignmentRole::Auxiliary))
        .map(|o| CardOfficer {
            badge_shown: o.kind != OfficerKind::Volunteer,
            role: o.role,
            name: o.name,
            badge: o.badge,
            phone: o.phone,
        })
        .collect()
}

#[derive(Serialize)]
struct CardOffice<'a> {
    name: &'a str,
    address: &'a str,
    hours: &'a str,
    phone: Option<&'a str>,
}

#[derive(Serialize)]
struct CardStation<'a> {
    name: &'a str,
    duty_phone: &'a str,
}

#[derive(Serialize)]
struct CardVillage<'a> {
    name: &'a str,
    code: &'a str,
}

#[derive(Serialize)]
struct Card<'a> {
    village: CardVillage<'a>,
    officers: Vec<CardOfficer>,
    office: CardOffice<'a>,
    station: CardStation<'a>,
}

/// The contact card of a village (the `contact_card` template): the officers residents deal
/// with (resident, contact, auxiliary; a volunteer without a badge number), the office and the
/// station's duty phone.
pub fn contact_card(texts: &Texts, village: &VillageRow, officers: Vec<AssignedOfficer>) -> String {
    let officers = card_officers(officers);
    let card = Card {
        village: CardVillage { name: &village.name, code: &village.code },
        officers,
        office: CardOffice {
            name: &village.office_name,
            address: &village.office_address,
            hours: &village.office_hours,
            phone: village.office_phone.as_deref(),
        },
        station: CardStation { name: &village.station_name, duty_phone: &village.station_duty_phone },
    };
    texts.render(Msg::ContactCard, card)
}

/// Most villages offered as buttons after a name search.
const SEARCH_LIMIT: i64 = 8;

impl Core {
    /// The short menu a private chat gets for anything the bot does not recognise.
    pub(super) fn private_menu(&self, chat_id: i64) -> Outbound {
        let button = |msg: Msg, item: MenuItem| {
            vec![Button::Callback { label: self.texts.plain(msg), data: ButtonData::Menu(item).into() }]
        };
        Outbound::Message {
            chat_id,
            text: self.texts.plain(Msg::HelpPrivate),
            buttons: vec![
                button(Msg::MenuButtonCard, MenuItem::Card),
                button(Msg::MenuButtonTip, MenuItem::Tip),
                button(Msg::MenuButtonStatus, MenuItem::Status),
            ],
            reply_to: None,
        }
    }

    /// The card of the village the group is bound to, or how to bind it.
    pub(super) async fn group_card(&self, inbound: &Inbound, reply_to: Option<i64>) -> anyhow::Result<Vec<Outbound>> {
        let platform = inbound.platform.as_str();
        let chat_id = inbound.chat.id;
        match routing::village_of_chat(&self.store, platform, chat_id).await? {
            Some(village) => {
                let text = self.render_card(&village).await?;
                let buttons = vec![vec![Button::StartPrivate {
                    label: self.texts.plain(Msg::ButtonPrivateChat),
                    payload: StartPayload::Village(village.code.clone()).into(),
                }]];
                Ok(vec![Outbound::Message { chat_id, text, buttons, reply_to }])
            }
            None => Ok(vec![Outbound::Message {
                chat_id,
                text: self.texts.plain(Msg::GroupNotBound),
                buttons: vec![],
                reply_to,
            }]),
        }
    }

    /// In a private chat: the card of the village the resident chose, or the question which.
    pub(super) async fn private_card(&self, inbound: &Inbound) -> anyhow::Result<Vec<Outbound>> {
        let chat_id = inbound.chat.id;
        let village = match inbound.sender.person() {
            Some(user) => match self.store.resident_village(inbound.platform.as_str(), user).await? {
                Some(id) => self.store.village_by_id(id).await?,
                None => None,
            },
            None => None,
        };
        match village {
            Some(v) => Ok(vec![Outbound::text(chat_id, self.render_card(&v).await?)]),
            None => Ok(vec![Outbound::text(chat_id, self.texts.plain(Msg::ChooseVillage))]),
        }
    }

    pub(super) async fn render_card(&self, village: &VillageRow) -> anyhow::Result<String> {
        let officers = self.store.assigned_officers(village.id, &self.today().to_string()).await?;
        Ok(contact_card(&self.texts, village, officers))
    }

    pub(super) async fn village_search(&self, inbound: &Inbound, query: &str) -> anyhow::Result<Vec<Outbound>> {
        let chat_id = inbound.chat.id;
        let looks_like_a_place = query.chars().count() <= 16 && self.triage().looks_like_a_place(query);
        let found = if query.is_empty() || query.chars().count() > 16 {
            vec![]
        } else {
            self.store.search_villages(query, SEARCH_LIMIT).await?
        };
        if found.is_empty() {
            if looks_like_a_place {
                let text = self.texts.render(Msg::VillageSearchNone, minijinja::context! { query => query });
                return Ok(vec![Outbound::text(chat_id, text)]);
            }
            return Ok(vec![self.private_menu(chat_id)]);
        }
        let buttons = found
            .iter()
            .map(|v| {
                vec![Button::Callback {
                    label: self
                        .texts
                        .render(Msg::VillageButton, minijinja::context! { name => &v.name, office => &v.office_name }),
                    data: ButtonData::PickVillage(v.code.clone()).into(),
                }]
            })
            .collect();
        Ok(vec![Outbound::Message {
            chat_id,
            text: self.texts.plain(Msg::VillageSearchResults),
            buttons,
            reply_to: None,
        }])
    }

    /// A resident picked a village (button or deep link): remember it and show the card.
    pub(super) async fn choose_village(&self, inbound: &Inbound, code: &str) -> anyhow::Result<Vec<Outbound>> {
        let chat_id = inbound.chat.id;
        let Some(village) = self.store.village_by_code(code).await? else {
            return Ok(vec![Outbound::text(chat_id, self.texts.plain(Msg::VillageGone))]);
        };
        if let Some(user) = inbound.sender.person() {
            self.store.set_resident_village(inbound.platform.as_str(), user, village.id).await?;
        }
        if let Some(out) = self.tip_village_chosen(inbound, &village).await? {
            return Ok(out);
        }
        Ok(vec![Outbound::text(chat_id, self.render_card(&village).await?)])
    }
}
