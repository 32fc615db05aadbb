//! Tips (线索): the guided private conversation that writes one, its commit and receipt, the
//! card that reaches the responsible officer, the officer's buttons, and `/status`.
//!
//! The conversation is stored per person (not per chat) in the `conversations` table, so it
//! survives a restart and expires politely. A tip is committed before anyone is told about it.
//!
//! A tip goes to the village it was reported for (the group's, the deep link's, the one the
//! resident chose), unless it carries a location: then it goes to the village whose area
//! holds the location's first point that lies in an area, and the reporting village is kept
//! as `reported_village_id`. The place is decided when the location arrives (its datum is
//! known then) and applied on 确认提交; near a boundary the likelier area is taken rather
//! than asking, so a tip never waits on the resident (the officer there can pass it on with
//! 转派). A location sent while the draft still asks for the village answers that question
//! (with buttons near a boundary). A location sent after the tip was submitted is not added
//! to it: it is looked up like any location. Locations are kept in WGS-84 when their datum
//! is known (a WeChat point, GCJ-02, is converted); a Telegram point is kept as sent.

use serde::{Deserialize, Serialize};

use super::CoreError;
use super::handler::Core;
use super::locate::Placed;
use super::routing;
use super::wire::{ButtonData, OfficerButton, TipButton};
use super::workflow::By;
use super::{Button, ChatKind, Event, Inbound, MediaKind, Outbound, Platform, Sender};
use crate::authz::{Action, Actor, Subject};
use crate::domain::{Phone, Rating, TipSource, TipStatus};
use crate::places::Spot;
use crate::store::registry::VillageRow;
use crate::store::tips::{NewTip, StatusCheck, TipItem, TipLimit, TipOutcome, TipRoute, TipRow, summary_of};
use crate::texts::Msg;
use crate::triage::TipCategory;

/// Most of a person's own tips listed when they ask how their reports are going.
const MY_TIPS_LIMIT: i64 = 5;

/// Where a tip being written stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Step {
    /// Which village? (answered by picking one after a name search)
    Village,
    Category,
    Details,
    Anonymity,
    Phone,
    Confirm,
}

/// A tip being written.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Draft {
    step: Step,
    village_id: Option<i64>,
    category: Option<String>,
    items: Vec<TipItem>,
    anonymous: Option<bool>,
    phone: Option<String>,
    /// The village whose area holds the tip's location (the likelier one near a boundary),
    /// when it has one: the tip goes there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    located: Option<i64>,
}

/// A guided conversation in a private chat.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "conversation", rename_all = "snake_case")]
pub(super) enum Conversation {
    Tip(Draft),
    /// An officer composing a warning or notice (`/alert`, `/notice`).
    Broadcast(super::broadcast::Compose),
    /// The next message is relayed about `tip_id`: to the tipster when `officer`, to the
    /// handling officer otherwise.
    Reply {
        tip_id: i64,
        officer: bool,
    },
    /// An officer pressed 办结 on `tip_id`: the next message is the note for the tipster.
    Resolve {
        tip_id: i64,
    },
}

/// What an officer's tip card shows besides the tip row: the tipster's alias and the items.
#[derive(Clone, Copy)]
struct CardParts<'a> {
    alias: &'a str,
    items: &'a [TipItem],
}

impl Core {
    fn platform_user(&self, inbound: &Inbound) -> Option<(&'static str, i64)> {
        inbound.sender.person().map(|u| (inbound.platform.as_str(), u))
    }

    async fn load_draft(&self, inbound: &Inbound) -> anyhow::Result<Option<Draft>> {
        match self.load_conversation(inbound).await? {
            Some(Conversation::Tip(d)) => Ok(Some(d)),
            _ => Ok(None),
        }
    }

    pub(super) async fn load_conversation(&self, inbound: &Inbound) -> anyhow::Result<Option<Conversation>> {
        let Some((platform, user)) = self.platform_user(inbound) else { return Ok(None) };
        match self.store().conversation(platform, user, self.now_ms()).await? {
            Some((state, false)) => match serde_json::from_str::<Conversation>(&state) {
                Ok(c) => Ok(Some(c)),
                Err(e) => {
                    tracing::warn!(error = %e, "dropping an unreadable conversation");
                    self.store().end_conversation(platform, user).await?;
                    Ok(None)
                }
            },
            _ => Ok(None),
        }
    }

    async fn save_draft(&self, inbound: &Inbound, draft: &Draft) -> anyhow::Result<()> {
        self.save_conversation(inbound, &Conversation::Tip(draft.clone())).await
    }

    pub(super) async fn save_conversation(&self, inbound: &Inbound, conversation: &Conversation) -> anyhow::Result<()> {
        if let Some((platform, user)) = self.platform_user(inbound) {
            let state = serde_json::to_string(conversation)?;
            self.store().save_conversation(platform, user, &state, self.now_ms(), self.conversation_ttl_ms()).await?;
        }
        Ok(())
    }

    pub(super) async fn end_draft(&self, inbound: &Inbound) -> anyhow::Result<()> {
        if let Some((platform, user)) = self.platform_user(inbound) {
            self.store().end_conversation(platform, user).await?;
        }
        Ok(())
    }

    /// A polite refusal when this chat already reported the most tips allowed in an hour.
    async fn over_tip_limit(&self, platform: &str, chat_id: i64) -> anyhow::Result<Option<Outbound>> {
        let limit = self.tip_limit();
        let n = self.store().tips_reported_since(platform, chat_id, limit.since).await?;
        Ok((n >= limit.max).then(|| self.tip_limit_refusal(chat_id, n)))
    }

    /// The hourly limit, from now by the core's clock.
    fn tip_limit(&self) -> TipLimit {
        TipLimit { max: self.max_tips_per_hour(), since: self.now_ms() - 3_600_000 }
    }

    fn tip_limit_refusal(&self, chat_id: i64, n: i64) -> Outbound {
        tracing::info!(tips_last_hour = n, "tip limit reached");
        Outbound::text(chat_id, self.texts().render(Msg::TipLimit, minijinja::context! { n }))
    }

    /// Whether a tip is being written by this person.
    pub(super) async fn tip_in_progress(&self, inbound: &Inbound) -> anyhow::Result<bool> {
        Ok(self.load_draft(inbound).await?.is_some())
    }

    /// A conversation that expired is ended with a polite notice (once); `None` otherwise.
    pub(super) async fn expired_conversation_notice(&self, inbound: &Inbound) -> anyhow::Result<Option<Outbound>> {
        let Some((platform, user)) = self.platform_user(inbound) else { return Ok(None) };
        if let Some((_, true)) = self.store().conversation(platform, user, self.now_ms()).await? {
            self.store().end_conversation(platform, user).await?;
            return Ok(Some(Outbound::text(inbound.chat.id, self.texts().plain(Msg::TipTimedOut))));
        }
        Ok(None)
    }

    fn cancel_row(&self) -> Vec<Button> {
        vec![Button::Callback {
            label: self.texts().plain(Msg::TipButtonCancel),
            data: ButtonData::Tip(TipButton::Cancel).into(),
        }]
    }

    fn prompt(&self, chat_id: i64, text: String, mut buttons: Vec<Vec<Button>>) -> Outbound {
        buttons.push(self.cancel_row());
        Outbound::Message { chat_id, text, buttons, reply_to: None }
    }

    /// The question of the step the draft is at.
    async fn step_prompt(&self, chat_id: i64, draft: &Draft) -> anyhow::Result<Outbound> {
        let t = self.texts();
        Ok(match draft.step {
            Step::Village => Outbound::text(chat_id, t.plain(Msg::TipChooseVillage)),
            Step::Category => {
                let village = match draft.village_id {
                    Some(id) => self.store().village_by_id(id).await?.map(|v| v.name),
                    None => None,
                };
                let buttons = self
                    .tip_categories()
                    .iter()
                    .map(|c| {
                        vec![Button::Callback {
                            label: t.render(Msg::CategoryLabel, minijinja::context! { code => c }),
                            data: ButtonData::Tip(TipButton::Category(c.clone())).into(),
                        }]
                    })
                    .collect();
                self.prompt(chat_id, t.render(Msg::TipChooseCategory, minijinja::context! { village }), buttons)
            }
            Step::Details => {
                let done = vec![vec![Button::Callback {
                    label: t.plain(Msg::TipButtonDone),
                    data: ButtonData::Tip(TipButton::Done).into(),
                }]];
                match (&draft.category, draft.items.is_empty()) {
                    // Started from the person's own words: say what was understood.
                    (Some(category), false) => {
                        let text =
                            t.render(Msg::TipPrefilled, minijinja::context! { category, n => draft.items.len() });
                        self.prompt(chat_id, text, done)
                    }
                    // Say which village and category were understood (from a deep link).
                    (category, _) => {
                        let village = match draft.village_id {
                            Some(id) => self.store().village_by_id(id).await?.map(|v| v.name),
                            None => None,
                        };
                        let text = t.render(Msg::TipDetailsPrompt, minijinja::context! { village, category });
                        self.prompt(chat_id, text, done)
                    }
                }
            }
            Step::Anonymity => self.prompt(
                chat_id,
                t.plain(Msg::TipAnonymityPrompt),
                vec![
                    vec![Button::Callback {
                        label: t.plain(Msg::TipButtonAnonymous),
                        data: ButtonData::Tip(TipButton::Anonymous).into(),
                    }],
                    vec![Button::Callback {
                        label: t.plain(Msg::TipButtonNamed),
                        data: ButtonData::Tip(TipButton::Named).into(),
                    }],
                ],
            ),
            Step::Phone => self.prompt(
                chat_id,
                t.plain(Msg::TipPhonePrompt),
                vec![vec![Button::Callback {
                    label: t.plain(Msg::TipButtonSkip),
                    data: ButtonData::Tip(TipButton::SkipPhone).into(),
                }]],
            ),
            Step::Confirm => {
                let village = match draft.village_id {
                    Some(id) => self.store().village_by_id(id).await?.map(|v| v.name),
                    None => None,
                };
                let place = match draft.located.filter(|l| Some(*l) != draft.village_id) {
                    Some(id) => self.store().village_by_id(id).await?.map(|v| v.name),
                    None => None,
                };
                let count = |f: fn(&TipItem) -> bool| draft.items.iter().filter(|i| f(i)).count();
                let text = t.render(
                    Msg::TipSummary,
                    minijinja::context! {
                        village,
                        place,
                        category => draft.category,
                        text => summary_of(&draft.items),
                        photos => count(|i| matches!(i, TipItem::Photo { .. })),
                        voices => count(|i| matches!(i, TipItem::Voice { .. })),
                        videos => count(|i| matches!(i, TipItem::Video { .. })),
                        locations => count(|i| matches!(i, TipItem::Location { .. })),
                        anonymous => draft.anonymous.unwrap_or(true),
                        phone => draft.phone,
                    },
                );
                self.prompt(
                    chat_id,
                    text,
                    vec![vec![Button::Callback {
                        label: t.plain(Msg::TipButtonConfirm),
                        data: ButtonData::Tip(TipButton::Confirm).into(),
                    }]],
                )
            }
        })
    }

    /// `/tip` (or the `tip_<village>` deep link) in a private chat: starts a new draft.
    pub(super) async fn start_tip(
        &self,
        inbound: &Inbound,
        village: Option<VillageRow>,
    ) -> anyhow::Result<Vec<Outbound>> {
        self.begin_draft(inbound, village, None, vec![]).await
    }

    /// The `tip_<village>_<category>` deep link of a group where triage recognised a tip.
    pub(super) async fn start_tip_in_category(
        &self,
        inbound: &Inbound,
        village: Option<VillageRow>,
        category: TipCategory,
    ) -> anyhow::Result<Vec<Outbound>> {
        self.begin_draft(inbound, village, Some(category), vec![]).await
    }

    /// A private message that triage recognised as a tip ("俺家电动车被偷了"): the
    /// conversation starts with the category filled in and the message as its first detail.
    pub(super) async fn start_tip_from_text(
        &self,
        inbound: &Inbound,
        category: TipCategory,
        text: &str,
    ) -> anyhow::Result<Vec<Outbound>> {
        self.begin_draft(inbound, None, Some(category), vec![TipItem::Text { text: text.to_string() }]).await
    }

    /// A triage category as one of the configured ones: itself, else `other`, else none (the
    /// resident is asked).
    fn configured_category(&self, category: TipCategory) -> Option<String> {
        [category.as_str(), TipCategory::Other.as_str()]
            .into_iter()
            .find(|c| self.tip_categories().iter().any(|k| k == c))
            .map(str::to_string)
    }

    async fn begin_draft(
        &self,
        inbound: &Inbound,
        village: Option<VillageRow>,
        category: Option<TipCategory>,
        items: Vec<TipItem>,
    ) -> anyhow::Result<Vec<Outbound>> {
        let chat_id = inbound.chat.id;
        if inbound.sender.person().is_none() {
            return Ok(vec![]);
        }
        if let Some(refusal) = self.over_tip_limit(inbound.platform.as_str(), chat_id).await? {
            return Ok(vec![refusal]);
        }
        let village = match village {
            Some(v) => Some(v),
            None => match self.platform_user(inbound) {
                Some((platform, user)) => match self.store().resident_village(platform, user).await? {
                    Some(id) => self.store().village_by_id(id).await?,
                    None => None,
                },
                None => None,
            },
        };
        let category = category.and_then(|c| self.configured_category(c));
        let step = match (&village, &category) {
            (None, _) => Step::Village,
            (Some(_), None) => Step::Category,
            (Some(_), Some(_)) => Step::Details,
        };
        let draft = Draft {
            step,
            village_id: village.map(|v| v.id),
            category,
            items,
            anonymous: None,
            phone: None,
            located: None,
        };
        self.save_draft(inbound, &draft).await?;
        tracing::info!("tip conversation started");
        Ok(vec![self.step_prompt(chat_id, &draft).await?])
    }

    /// A village was picked while a draft waited for one: the draft goes on.
    pub(super) async fn tip_village_chosen(
        &self,
        inbound: &Inbound,
        village: &VillageRow,
    ) -> anyhow::Result<Option<Vec<Outbound>>> {
        let Some(mut draft) = self.load_draft(inbound).await? else { return Ok(None) };
        if draft.step != Step::Village {
            return Ok(None);
        }
        draft.village_id = Some(village.id);
        draft.step = if draft.category.is_some() { Step::Details } else { Step::Category };
        self.save_draft(inbound, &draft).await?;
        Ok(Some(vec![self.step_prompt(inbound.chat.id, &draft).await?]))
    }

    /// `/cancel`: ends whatever conversation is in progress.
    pub(super) async fn cancel_conversation(&self, inbound: &Inbound) -> anyhow::Result<Vec<Outbound>> {
        let had = self.load_conversation(inbound).await?.is_some();
        self.end_draft(inbound).await?;
        let msg = if had { Msg::TipCancelled } else { Msg::NothingToCancel };
        Ok(vec![Outbound::text(inbound.chat.id, self.texts().plain(msg))])
    }

    /// A private message (text, media, location) while a draft may be in progress.
    /// `None`: no draft, or a step that does not take messages (then the message is handled
    /// as usual).
    pub(super) async fn tip_message(&self, inbound: &Inbound) -> anyhow::Result<Option<Vec<Outbound>>> {
        let mut draft = match self.load_conversation(inbound).await? {
            Some(Conversation::Tip(d)) => d,
            Some(Conversation::Reply { tip_id, officer }) => return self.relay(inbound, tip_id, officer).await,
            Some(Conversation::Resolve { tip_id }) => return self.resolve_with_written_note(inbound, tip_id).await,
            Some(Conversation::Broadcast(c)) => return self.compose_message(inbound, c).await,
            None => return Ok(None),
        };
        let chat_id = inbound.chat.id;
        if let Event::Location { latitude, longitude, datum, .. } = &inbound.event {
            let spot = self.spot(*latitude, *longitude, *datum);
            return Ok(Some(self.tip_location(inbound, draft, &spot).await?));
        }
        let item = match &inbound.event {
            Event::Text { text, .. } => Some(TipItem::Text { text: text.trim().to_string() }),
            Event::Media { kind, file_id, caption, .. } => {
                let file_id = file_id.clone();
                let media = match kind {
                    MediaKind::Photo => TipItem::Photo { file_id },
                    MediaKind::Voice => TipItem::Voice { file_id },
                    MediaKind::Video => TipItem::Video { file_id },
                };
                if let (Step::Details, Some(c)) = (draft.step, caption.as_ref().filter(|c| !c.trim().is_empty())) {
                    draft.items.push(TipItem::Text { text: c.trim().to_string() });
                }
                Some(media)
            }
            _ => None,
        };
        let Some(item) = item else { return Ok(None) };
        match draft.step {
            // A name search answers this step (the handler's usual private-text path).
            Step::Village => Ok(None),
            Step::Details => {
                if let TipItem::Text { text } = &item
                    && text.is_empty()
                {
                    return Ok(Some(vec![self.step_prompt(chat_id, &draft).await?]));
                }
                draft.items.push(item);
                self.save_draft(inbound, &draft).await?;
                let n = draft.items.len();
                let text = self.texts().render(Msg::TipItemReceived, minijinja::context! { n });
                let done = Button::Callback {
                    label: self.texts().plain(Msg::TipButtonDone),
                    data: ButtonData::Tip(TipButton::Done).into(),
                };
                Ok(Some(vec![self.prompt(chat_id, text, vec![vec![done]])]))
            }
            Step::Phone => {
                let TipItem::Text { text } = &item else {
                    return Ok(Some(vec![self.step_prompt(chat_id, &draft).await?]));
                };
                match Phone::parse(text) {
                    Ok(p) if p.as_str().len() == 11 => {
                        draft.phone = Some(p.as_str().to_string());
                        draft.step = Step::Confirm;
                        self.save_draft(inbound, &draft).await?;
                        Ok(Some(vec![self.step_prompt(chat_id, &draft).await?]))
                    }
                    _ => {
                        let skip = Button::Callback {
                            label: self.texts().plain(Msg::TipButtonSkip),
                            data: ButtonData::Tip(TipButton::SkipPhone).into(),
                        };
                        Ok(Some(vec![self.prompt(chat_id, self.texts().plain(Msg::TipPhoneInvalid), vec![vec![skip]])]))
                    }
                }
            }
            // Steps answered with buttons: say so, and show them again.
            Step::Category | Step::Anonymity | Step::Confirm => {
                let mut out = vec![Outbound::text(chat_id, self.texts().plain(Msg::TipUseButtons))];
                out.push(self.step_prompt(chat_id, &draft).await?);
                Ok(Some(out))
            }
        }
    }

    /// A location while a draft is in progress: added to the tip, and where it lies decides
    /// the village the tip goes to (see the module's documentation). While the draft asks
    /// for the village, the location answers: its area's village, or the question which
    /// near a boundary.
    async fn tip_location(&self, inbound: &Inbound, mut draft: Draft, spot: &Spot) -> anyhow::Result<Vec<Outbound>> {
        let chat_id = inbound.chat.id;
        let placed = self.place_of(spot).await?;
        // The officer's map and the desk's are drawn in WGS-84.
        let (longitude, latitude) = match spot.datum {
            Some(datum) => datum.to_wgs84(spot.lon, spot.lat),
            None => (spot.lon, spot.lat),
        };
        draft.items.push(TipItem::Location { latitude, longitude });
        match draft.step {
            Step::Village => {
                let village = match &placed {
                    Some(Placed::Inside(id)) => self.store().village_by_id(*id).await?,
                    _ => None,
                };
                if let Some(village) = village {
                    draft.village_id = Some(village.id);
                    draft.step = if draft.category.is_some() { Step::Details } else { Step::Category };
                    self.save_draft(inbound, &draft).await?;
                    return Ok(vec![self.step_prompt(chat_id, &draft).await?]);
                }
                self.save_draft(inbound, &draft).await?;
                Ok(match placed {
                    // The buttons pick the village as a name search's do: the draft goes on.
                    Some(Placed::Ambiguous(villages)) => vec![self.which_village(chat_id, &villages).await?],
                    Some(Placed::Outside { nearest }) => vec![
                        self.outside_areas(chat_id, nearest).await?,
                        Outbound::text(chat_id, self.texts().plain(Msg::TipChooseVillage)),
                    ],
                    _ => vec![Outbound::text(chat_id, self.texts().plain(Msg::TipChooseVillage))],
                })
            }
            step => {
                if draft.located.is_none() {
                    draft.located = placed.as_ref().and_then(Placed::likeliest);
                }
                self.save_draft(inbound, &draft).await?;
                if step == Step::Details {
                    let n = draft.items.len();
                    let text = self.texts().render(Msg::TipItemReceived, minijinja::context! { n });
                    let done = Button::Callback {
                        label: self.texts().plain(Msg::TipButtonDone),
                        data: ButtonData::Tip(TipButton::Done).into(),
                    };
                    return Ok(vec![self.prompt(chat_id, text, vec![vec![done]])]);
                }
                Ok(vec![
                    Outbound::text(chat_id, self.texts().plain(Msg::TipLocationAdded)),
                    self.step_prompt(chat_id, &draft).await?,
                ])
            }
        }
    }

    /// A button of the tip conversation, or the tipster's own.
    pub(super) async fn tip_button(&self, inbound: &Inbound, button: TipButton) -> anyhow::Result<Vec<Outbound>> {
        let chat_id = inbound.chat.id;
        match button {
            TipButton::Cancel => return self.cancel_conversation(inbound).await,
            TipButton::Rate { tip_id, rating } => return self.rate(inbound, tip_id, &rating).await,
            TipButton::Status(tip_id) => {
                let mine = self.store().tip_reporter(tip_id).await?.is_some_and(|r| r.chat_id == chat_id);
                return match (mine, self.store().tip(tip_id).await?) {
                    (true, Some(tip)) => Ok(vec![self.status_reply(chat_id, &tip)]),
                    _ => Ok(vec![Outbound::text(chat_id, self.texts().plain(Msg::StatusNotFound))]),
                };
            }
            TipButton::Reply(tip_id) => return self.start_tipster_reply(inbound, tip_id).await,
            _ => {}
        }
        let Some(mut draft) = self.load_draft(inbound).await? else {
            // A button of a conversation that ended (committed, cancelled or expired).
            return Ok(vec![Outbound::text(chat_id, self.texts().plain(Msg::TipNoDraft))]);
        };
        match (draft.step, button) {
            (Step::Category, TipButton::Category(code)) => {
                if !self.tip_categories().contains(&code) {
                    return Ok(vec![self.step_prompt(chat_id, &draft).await?]);
                }
                draft.category = Some(code);
                draft.step = Step::Details;
            }
            (Step::Details, TipButton::Done) => {
                if draft.items.is_empty() {
                    return Ok(vec![self.prompt(chat_id, self.texts().plain(Msg::TipNothingYet), vec![])]);
                }
                draft.step = Step::Anonymity;
            }
            (Step::Anonymity, TipButton::Anonymous) => {
                draft.anonymous = Some(true);
                draft.step = Step::Confirm;
            }
            (Step::Anonymity, TipButton::Named) => {
                draft.anonymous = Some(false);
                draft.step = Step::Phone;
            }
            (Step::Phone, TipButton::SkipPhone) => draft.step = Step::Confirm,
            (Step::Confirm, TipButton::Confirm) => return self.commit_tip(inbound, draft).await,
            // A button of an earlier step pressed again: show where the draft is.
            _ => return Ok(vec![self.step_prompt(chat_id, &draft).await?]),
        }
        self.save_draft(inbound, &draft).await?;
        Ok(vec![self.step_prompt(chat_id, &draft).await?])
    }

    /// Commits the tip, ends the conversation, gives the receipt and routes the tip.
    async fn commit_tip(&self, inbound: &Inbound, draft: Draft) -> anyhow::Result<Vec<Outbound>> {
        let chat_id = inbound.chat.id;
        let (Some(village_id), Some(category)) = (draft.village_id, draft.category.clone()) else {
            return Ok(vec![self.step_prompt(chat_id, &draft).await?]);
        };
        let Some(reported) = self.store().village_by_id(village_id).await? else {
            self.end_draft(inbound).await?;
            return Ok(vec![Outbound::text(chat_id, self.texts().plain(Msg::VillageGone))]);
        };
        // Routed by its location, when that lies in another village's area.
        let located = match draft.located.filter(|l| *l != village_id) {
            Some(id) => self.store().village_by_id(id).await?,
            None => None,
        };
        let (village, reported_village_id) = match located {
            Some(v) => (v, Some(village_id)),
            None => (reported, None),
        };
        let anonymous = draft.anonymous.unwrap_or(true);
        let new = NewTip {
            village_id: village.id,
            reported_village_id,
            category: category.clone(),
            source: TipSource::Private,
            anonymous,
            contact_phone: if anonymous { None } else { draft.phone.clone() },
            items: draft.items.clone(),
            reporter_platform: inbound.platform.as_str().to_string(),
            reporter_chat_id: chat_id,
            day: self.today().format("%Y%m%d").to_string(),
        };
        let platform = inbound.platform.as_str();
        let (route, account) = self.route_for_new_tip(platform, &village).await?.unzip();
        let (receipt, tip) = match self.store().create_routed_tip(&new, route.as_ref(), Some(self.tip_limit())).await? {
            TipOutcome::Created(receipt, tip) => (receipt, *tip),
            TipOutcome::OverLimit { reported } => return Ok(vec![self.tip_limit_refusal(chat_id, reported)]),
        };
        self.end_draft(inbound).await?;
        tracing::info!(
            tip_id = receipt.id,
            category = %category,
            items = new.items.len(),
            by_location = reported_village_id.is_some(),
            "tip committed"
        );
        let text = self.texts().render(
            Msg::TipReceipt,
            minijinja::context! { number => &receipt.number, password => &receipt.password, duty_phone => &village.station_duty_phone, platform },
        );
        let status = Button::Callback {
            label: self.texts().plain(Msg::TipButtonStatus),
            data: ButtonData::Tip(TipButton::Status(receipt.id)).into(),
        };
        let mut out = vec![Outbound::Message { chat_id, text, buttons: vec![vec![status]], reply_to: None }];
        let card = CardParts { alias: &receipt.alias, items: &new.items };
        out.extend(self.announce_new_tip(platform, &tip, card, &village, account).await?);
        Ok(out)
    }

    /// Who a new tip goes to: the first officer of the village's duty chain who can be
    /// reached on `platform`, with the deadline to acknowledge it (or it goes on to the next
    /// officer), and their account. Chosen before the tip is committed, so that it is written
    /// already routed, in one transaction.
    async fn route_for_new_tip(
        &self,
        platform: &str,
        village: &VillageRow,
    ) -> anyhow::Result<Option<(TipRoute, (Platform, i64))>> {
        let deadline = self.now_ms() + self.ack_timeout_ms();
        Ok(self
            .next_officer(platform, village, 0)
            .await?
            .map(|(level, officer_id, account)| (TipRoute { officer_id, level, ack_deadline: deadline }, account)))
    }

    /// Tells of a committed tip: its card (with buttons, then the media) to the officer it was
    /// routed to at `account`, and a notice to the station's staff groups, which are the only
    /// ones who can act when nobody on the chain can be reached.
    async fn announce_new_tip(
        &self,
        platform: &str,
        tip: &TipRow,
        card: CardParts<'_>,
        village: &VillageRow,
        account: Option<(Platform, i64)>,
    ) -> anyhow::Result<Vec<Outbound>> {
        let (Some(officer_id), Some((on, account))) = (tip.assigned_officer_id, account) else {
            tracing::warn!(tip_id = tip.id, village = %village.code, "no reachable officer for a tip");
            return self.staff_notices(platform, village, tip, None, false).await;
        };
        tracing::info!(tip_id = tip.id, officer_id, level = tip.escalation_level, kind = "routed", "tip handed over");
        let mut out =
            Outbound::all_on(on, self.officer_card_of(account, officer_id, tip, &village.name, false, card).await?);
        let officer = self.store().officer_by_id(officer_id).await?.map(|o| o.name);
        out.extend(self.staff_notices(platform, village, tip, officer.as_deref(), false).await?);
        Ok(out)
    }

    /// The first officer of the village's duty chain, from position `from` on, who can be
    /// reached (on `platform`, or on another platform the daemon serves): (position, officer
    /// id, where).
    async fn next_officer(
        &self,
        platform: &str,
        village: &VillageRow,
        from: usize,
    ) -> anyhow::Result<Option<(i64, i64, (Platform, i64))>> {
        let chain = routing::duty_chain(self.store(), village.clone(), self.today()).await?;
        for (level, member) in chain.members.iter().enumerate().skip(from) {
            if let Some(reach) = self.officer_reach(member.officer_id, platform).await? {
                return Ok(Some((level as i64, member.officer_id, reach)));
            }
        }
        Ok(None)
    }

    /// Tips of `platform` not acknowledged by their deadline go to the next officer of the
    /// chain; when the chain is exhausted, everyone on it is reminded. Each round sets a new
    /// deadline, so this goes on until someone acknowledges. Deadlines live in the database:
    /// a restart loses none.
    pub async fn escalate_overdue(&self, platform: Platform) -> anyhow::Result<Vec<Outbound>> {
        let now = self.now_ms();
        let mut out = Vec::new();
        for tip in self.store().overdue_tips(platform.as_str(), now).await? {
            let Some(village) = self.store().village_by_id(tip.village_id).await? else { continue };
            let deadline = now + self.ack_timeout_ms();
            let from = usize::try_from(tip.escalation_level + 1).unwrap_or(0);
            match self.next_officer(platform.as_str(), &village, from).await? {
                Some((level, officer_id, _)) => {
                    out.extend(self.hand_over(tip.id, officer_id, level, "escalated", &village.name).await?.1);
                    let officer = self.store().officer_by_id(officer_id).await?.map(|o| o.name);
                    out.extend(self.staff_notices(platform.as_str(), &village, &tip, officer.as_deref(), true).await?);
                }
                None => {
                    self.store().set_ack_deadline(tip.id, deadline).await?;
                    self.store().tip_event(tip.id, "system", None, "reminded", "").await?;
                    tracing::warn!(tip_id = tip.id, "tip still unacknowledged at the end of the chain; reminding");
                    out.extend(self.staff_notices(platform.as_str(), &village, &tip, None, true).await?);
                    let chain = routing::duty_chain(self.store(), village.clone(), self.today()).await?;
                    for member in &chain.members {
                        if let Some((on, account)) = self.officer_reach(member.officer_id, platform.as_str()).await? {
                            let card = self.officer_card(account, member.officer_id, &tip, &village.name, true).await?;
                            out.extend(Outbound::all_on(on, card));
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// The card of a tip for the officer `officer_id` (at account `chat_id`). A phone number
    /// the tipster left is on it; that showing is written to the audit log.
    pub(super) async fn officer_card(
        &self,
        chat_id: i64,
        officer_id: i64,
        tip: &TipRow,
        village_name: &str,
        overdue: bool,
    ) -> anyhow::Result<Vec<Outbound>> {
        let alias = self.store().tip_reporter(tip.id).await?.map(|r| r.alias).unwrap_or_default();
        let items = self.store().tip_items(tip.id).await?;
        self.officer_card_of(
            chat_id,
            officer_id,
            tip,
            village_name,
            overdue,
            CardParts { alias: &alias, items: &items },
        )
        .await
    }

    /// [`Core::officer_card`] from the tipster's alias and the items already in hand.
    async fn officer_card_of(
        &self,
        chat_id: i64,
        officer_id: i64,
        tip: &TipRow,
        village_name: &str,
        overdue: bool,
        card: CardParts<'_>,
    ) -> anyhow::Result<Vec<Outbound>> {
        let t = self.texts();
        let phone = self.store().tip_phone(tip)?;
        if phone.is_some() && !tip.anonymous {
            let badge = self.store().officer_by_id(officer_id).await?.map(|o| o.badge).unwrap_or_default();
            let target = format!("tip:{}", tip.number);
            self.store()
                .audit(self.now_ms(), &format!("officer:{badge}"), "view_contact", &target, "allowed", "card")
                .await?;
        }
        let alias = card.alias;
        let reported_village = match tip.reported_village_id {
            Some(id) => self.store().village_by_id(id).await?.map(|v| v.name),
            None => None,
        };
        let text = t.render(
            Msg::TipOfficerCard,
            minijinja::context! {
                number => &tip.number,
                village => village_name,
                reported_village,
                category => &tip.category,
                anonymous => tip.anonymous,
                alias,
                phone => &phone,
                summary => &tip.summary,
                overdue,
            },
        );
        let buttons = vec![vec![
            Button::Callback {
                label: t.plain(Msg::TipButtonAck),
                data: ButtonData::Officer(OfficerButton::Acknowledge(tip.id)).into(),
            },
            Button::Callback {
                label: t.plain(Msg::TipButtonReply),
                data: ButtonData::Officer(OfficerButton::Reply(tip.id)).into(),
            },
            Button::Callback {
                label: t.plain(Msg::TipButtonReassign),
                data: ButtonData::Officer(OfficerButton::Move(tip.id)).into(),
            },
            Button::Callback {
                label: t.plain(Msg::TipButtonResolve),
                data: ButtonData::Officer(OfficerButton::Done(tip.id)).into(),
            },
        ]];
        let mut out = vec![Outbound::Message { chat_id, text, buttons, reply_to: None }];
        for item in card.items {
            let (kind, file_id) = match item {
                TipItem::Text { .. } => continue,
                TipItem::Photo { file_id } => (MediaKind::Photo, file_id),
                TipItem::Voice { file_id } => (MediaKind::Voice, file_id),
                TipItem::Video { file_id } => (MediaKind::Video, file_id),
                TipItem::Location { latitude, longitude } => {
                    out.push(Outbound::Location { chat_id, latitude: *latitude, longitude: *longitude });
                    continue;
                }
            };
            out.push(Outbound::Media { chat_id, kind, file_id: file_id.clone(), caption: None });
        }
        Ok(out)
    }

    /// 受理 / 办结 on an officer's card.
    pub(super) async fn officer_tip_button(
        &self,
        inbound: &Inbound,
        button: OfficerButton,
    ) -> anyhow::Result<Vec<Outbound>> {
        let tip = self.store().tip(button.tip_id()).await?;
        let (Some(tip), Some(officer)) = (tip, self.officer_of(inbound).await?) else {
            return Ok(vec![Outbound::text(inbound.chat.id, self.texts().plain(Msg::TipNotYours))]);
        };
        // Whoever works a tip must be allowed to today: an auxiliary who has left the village
        // (a re-import ended the assignment) is told so, even on a card sent to them before.
        let actor = self.actor_of(inbound).await?;
        let village = self.store().village_by_id(tip.village_id).await?;
        let action = if button.hands_on() { Action::Assign } else { Action::Resolve };
        let allowed = match &village {
            Some(v) => {
                let subject = Subject::Village { village_id: v.id, station_id: v.station_id };
                self.authorize(inbound, &actor, action, subject, &format!("tip:{}", tip.number)).await?
            }
            None => false,
        };
        if !allowed {
            return Ok(vec![Outbound::text(inbound.chat.id, self.texts().plain(Msg::TipNotYours))]);
        }
        match button {
            OfficerButton::Move(_) => return self.reassign_choices(inbound, &tip, officer.id).await,
            OfficerButton::MoveTo { officer_id, .. } => {
                return self.reassign(inbound, &actor, officer.id, &tip, Some(officer_id)).await;
            }
            OfficerButton::Reply(_) => {
                self.save_conversation(inbound, &Conversation::Reply { tip_id: tip.id, officer: true }).await?;
                let text = self.texts().render(Msg::ReplyPromptOfficer, minijinja::context! { number => &tip.number });
                return Ok(vec![Outbound::text(inbound.chat.id, text)]);
            }
            OfficerButton::Done(_) => return self.ask_resolution_note(inbound, &tip).await,
            OfficerButton::Finish { note, .. } => {
                // The n-th quick note, or none.
                let choice = note.and_then(|n| self.resolution_choices().into_iter().nth(n));
                self.end_draft(inbound).await?;
                return self.officer_closes(inbound, &tip, officer.id, choice.as_deref()).await;
            }
            OfficerButton::Acknowledge(_) => {}
        }
        match self.acknowledge_tip(&actor, By::Officer(officer.id), &tip).await {
            Ok((_, notice)) => {
                let mut out = vec![Outbound::text(
                    inbound.chat.id,
                    self.texts().render(Msg::TipAcknowledgedOfficer, minijinja::context! { number => &tip.number }),
                )];
                out.extend(notice);
                Ok(out)
            }
            Err(e) => self.officer_refusal(inbound.chat.id, &tip, e),
        }
    }

    /// A workflow refusal in the officer's words; a failure is handed on.
    fn officer_refusal(&self, chat_id: i64, tip: &TipRow, e: CoreError) -> anyhow::Result<Vec<Outbound>> {
        match e {
            CoreError::Unexpected(e) => Err(e),
            CoreError::Refused | CoreError::NotFound => {
                Ok(vec![Outbound::text(chat_id, self.texts().plain(Msg::TipNotYours))])
            }
            _ => Ok(vec![self.already_handled(chat_id, tip)]),
        }
    }

    fn already_handled(&self, chat_id: i64, tip: &TipRow) -> Outbound {
        Outbound::text(
            chat_id,
            self.texts().render(Msg::TipAlreadyHandled, minijinja::context! { number => &tip.number }),
        )
    }

    /// The quick notes an officer may close a tip with, in the order of the template.
    fn resolution_choices(&self) -> Vec<String> {
        self.texts()
            .plain(Msg::ResolveChoices)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// 办结: asks for the note the tipster will read, with the quick notes as buttons; the
    /// officer's next message is taken as the note.
    async fn ask_resolution_note(&self, inbound: &Inbound, tip: &TipRow) -> anyhow::Result<Vec<Outbound>> {
        if !tip.status.is_open() {
            return Ok(vec![self.already_handled(inbound.chat.id, tip)]);
        }
        self.save_conversation(inbound, &Conversation::Resolve { tip_id: tip.id }).await?;
        let mut buttons: Vec<Vec<Button>> = self
            .resolution_choices()
            .into_iter()
            .enumerate()
            .map(|(n, label)| {
                vec![Button::Callback {
                    label,
                    data: ButtonData::Officer(OfficerButton::Finish { tip_id: tip.id, note: Some(n) }).into(),
                }]
            })
            .collect();
        buttons.push(vec![Button::Callback {
            label: self.texts().plain(Msg::ResolveNoNote),
            data: ButtonData::Officer(OfficerButton::Finish { tip_id: tip.id, note: None }).into(),
        }]);
        let text = self.texts().render(Msg::ResolvePrompt, minijinja::context! { number => &tip.number });
        Ok(vec![Outbound::Message { chat_id: inbound.chat.id, text, buttons, reply_to: None }])
    }

    /// The officer's message after 办结: the note, and the tip is closed.
    async fn resolve_with_written_note(&self, inbound: &Inbound, tip_id: i64) -> anyhow::Result<Option<Vec<Outbound>>> {
        let Event::Text { text, .. } = &inbound.event else { return Ok(None) };
        self.end_draft(inbound).await?;
        let (Some(tip), Some(officer)) = (self.store().tip(tip_id).await?, self.officer_of(inbound).await?) else {
            return Ok(Some(vec![Outbound::text(inbound.chat.id, self.texts().plain(Msg::TipNotYours))]));
        };
        let note = text.trim();
        Ok(Some(self.officer_closes(inbound, &tip, officer.id, Some(note).filter(|n| !n.is_empty())).await?))
    }

    /// The officer closes `tip` as resolved with `note` for the tipster.
    async fn officer_closes(
        &self,
        inbound: &Inbound,
        tip: &TipRow,
        officer_id: i64,
        note: Option<&str>,
    ) -> anyhow::Result<Vec<Outbound>> {
        let actor = self.actor_of(inbound).await?;
        match self.close_tip(&actor, By::Officer(officer_id), tip, TipStatus::Resolved, note).await {
            Ok((_, notice)) => {
                let mut out = vec![Outbound::text(
                    inbound.chat.id,
                    self.texts().render(Msg::TipResolvedOfficer, minijinja::context! { number => &tip.number, note }),
                )];
                out.extend(notice);
                Ok(out)
            }
            Err(e) => self.officer_refusal(inbound.chat.id, tip, e),
        }
    }

    /// Moves `tip` from one of `from` to `to` with `note` (shown to the tipster and by
    /// `/status`), and tells the tipster: the store step of the tip workflow
    /// (`core/workflow.rs`, which checks the rules first). `officer_id` is credited when an officer does
    /// it; `actor` names who did in the timeline. `None` when the tip was no longer in `from`.
    pub(super) async fn set_tip_status(
        &self,
        tip: &TipRow,
        officer_id: Option<i64>,
        actor: &str,
        from: &[TipStatus],
        to: TipStatus,
        note: Option<&str>,
    ) -> anyhow::Result<Option<(TipRow, Vec<Outbound>)>> {
        if !self.store().change_tip_status_by(tip.id, officer_id, actor, from, to, note).await? {
            return Ok(None);
        }
        tracing::info!(tip_id = tip.id, ?officer_id, status = to.as_str(), "tip status changed");
        let updated = self.store().tip(tip.id).await?.unwrap_or_else(|| tip.clone());
        let tipster = match to {
            TipStatus::Acknowledged => Some((Msg::TipAcknowledgedTipster, false)),
            TipStatus::Resolved => Some((Msg::TipResolvedTipster, true)),
            TipStatus::Rejected => Some((Msg::TipRejectedTipster, false)),
            _ => None,
        };
        let notice = match tipster {
            Some((msg, rate)) => self.tipster_notice(&updated, msg, rate).await?.into_iter().collect(),
            None => vec![],
        };
        Ok(Some((updated, notice)))
    }

    /// 转派: the other officers of the village's duty chain, as buttons.
    async fn reassign_choices(&self, inbound: &Inbound, tip: &TipRow, me: i64) -> anyhow::Result<Vec<Outbound>> {
        let Some(village) = self.store().village_by_id(tip.village_id).await? else { return Ok(vec![]) };
        let chain = routing::duty_chain(self.store(), village, self.today()).await?;
        let buttons: Vec<Vec<Button>> = chain
            .members
            .iter()
            .filter(|m| m.officer_id != me)
            .map(|m| {
                vec![Button::Callback {
                    label: self
                        .texts()
                        .render(Msg::ReassignButton, minijinja::context! { name => &m.name, role => &m.role }),
                    data: ButtonData::Officer(OfficerButton::MoveTo { tip_id: tip.id, officer_id: m.officer_id })
                        .into(),
                }]
            })
            .collect();
        let msg = if buttons.is_empty() { Msg::ReassignNobody } else { Msg::ReassignChoose };
        let text = self.texts().render(msg, minijinja::context! { number => &tip.number });
        Ok(vec![Outbound::Message { chat_id: inbound.chat.id, text, buttons, reply_to: None }])
    }

    /// Hands a tip to another officer of the village: the card goes to them with a new
    /// acknowledgement deadline.
    async fn reassign(
        &self,
        inbound: &Inbound,
        actor: &Actor,
        me: i64,
        tip: &TipRow,
        target: Option<i64>,
    ) -> anyhow::Result<Vec<Outbound>> {
        let officer = match target {
            Some(id) => self.store().officer_by_id(id).await?,
            None => None,
        };
        let Some(officer) = officer else { return Ok(vec![]) };
        match self.assign_tip(actor, By::Officer(me), tip, Some(officer), "reassigned").await {
            Ok(done) => {
                let ctx = minijinja::context! { number => &tip.number, name => &done.officer.name };
                let mut out = vec![Outbound::text(inbound.chat.id, self.texts().render(Msg::ReassignDone, ctx))];
                out.extend(done.out);
                Ok(out)
            }
            Err(e) => self.officer_refusal(inbound.chat.id, tip, e),
        }
    }

    /// Gives a tip to an officer (`kind`: routed, escalated, reassigned, assigned) at position
    /// `level` of the duty chain, with a new acknowledgement deadline, and sends them the card
    /// (marked overdue after an escalation) if they can be reached on the tip's platform.
    /// Returns whether they could, and the card.
    pub(super) async fn hand_over(
        &self,
        tip_id: i64,
        officer_id: i64,
        level: i64,
        kind: &str,
        village_name: &str,
    ) -> anyhow::Result<(bool, Vec<Outbound>)> {
        let deadline = self.now_ms() + self.ack_timeout_ms();
        self.store().tip_routed(tip_id, officer_id, level, deadline, kind).await?;
        tracing::info!(tip_id, officer_id, level, kind, "tip handed over");
        if kind == "escalated" {
            self.metrics().escalations.inc();
        }
        let Some(tip) = self.store().tip(tip_id).await? else { return Ok((false, vec![])) };
        match self.officer_reach(officer_id, &tip.platform).await? {
            Some((on, account)) => {
                let card = self.officer_card(account, officer_id, &tip, village_name, kind == "escalated").await?;
                Ok((true, Outbound::all_on(on, card)))
            }
            None => Ok((false, vec![])),
        }
    }

    /// Tells the tipster (if still reachable) that their tip moved; after resolution the
    /// tipster is asked to rate the officers' work.
    pub(super) async fn tipster_notice(
        &self,
        tip: &TipRow,
        msg: Msg,
        ask_rating: bool,
    ) -> anyhow::Result<Option<Outbound>> {
        let Some(reporter) = self.store().tip_reporter(tip.id).await? else { return Ok(None) };
        if reporter.platform != tip.platform {
            return Ok(None);
        }
        let text = self.texts().render(msg, minijinja::context! { number => &tip.number, note => &tip.public_note });
        let buttons = if ask_rating {
            vec![
                Rating::ALL
                    .iter()
                    .map(|r| Button::Callback {
                        label: self.texts().render(Msg::RatingLabel, minijinja::context! { rating => r.as_str() }),
                        data: ButtonData::Tip(TipButton::Rate { tip_id: tip.id, rating: r.as_str().to_string() })
                            .into(),
                    })
                    .collect(),
            ]
        } else {
            vec![]
        };
        let notice = Outbound::Message { chat_id: reporter.chat_id, text, buttons, reply_to: None };
        Ok(Some(match Platform::parse(&tip.platform) {
            Some(on) => Outbound::on(on, notice),
            None => notice,
        }))
    }

    /// Relays the message of a `Reply` conversation: officer → tipster under the tip's number,
    /// tipster → handling officer under the alias. Text and media alike; never a forward, so
    /// no sender is revealed.
    async fn relay(&self, inbound: &Inbound, tip_id: i64, from_officer: bool) -> anyhow::Result<Option<Vec<Outbound>>> {
        let chat_id = inbound.chat.id;
        let (text, media) = match &inbound.event {
            Event::Text { text, .. } => (Some(text.trim().to_string()), None),
            Event::Media { kind, file_id, caption, .. } => (caption.clone(), Some((*kind, file_id.clone()))),
            _ => return Ok(None),
        };
        self.end_draft(inbound).await?;
        let (Some(tip), Some(reporter)) = (self.store().tip(tip_id).await?, self.store().tip_reporter(tip_id).await?)
        else {
            return Ok(Some(vec![Outbound::text(chat_id, self.texts().plain(Msg::RelayGone))]));
        };
        let t = self.texts();
        let body = text.clone().unwrap_or_default();
        let (target, message, buttons, done, actor, officer_id) = if from_officer {
            let officer = self.officer_of(inbound).await?;
            let header = t.render(Msg::RelayToTipster, minijinja::context! { number => &tip.number, text => &body });
            let answer = Button::Callback {
                label: t.plain(Msg::TipButtonReplyToOfficer),
                data: ButtonData::Tip(TipButton::Reply(tip_id)).into(),
            };
            (
                Platform::parse(&reporter.platform).map(|on| (on, reporter.chat_id)),
                header,
                vec![vec![answer]],
                Msg::RelayDoneOfficer,
                "officer",
                officer.map(|o| o.id),
            )
        } else {
            let target = match tip.assigned_officer_id {
                Some(id) => self.officer_reach(id, inbound.platform.as_str()).await?,
                None => None,
            };
            let header = t.render(
                Msg::RelayToOfficer,
                minijinja::context! { number => &tip.number, alias => &reporter.alias, text => &body },
            );
            let answer = Button::Callback {
                label: t.plain(Msg::TipButtonReply),
                data: ButtonData::Officer(OfficerButton::Reply(tip_id)).into(),
            };
            (target, header, vec![vec![answer]], Msg::RelayDoneTipster, "resident", None)
        };
        let Some((on, target)) = target else {
            return Ok(Some(vec![Outbound::text(chat_id, t.plain(Msg::RelayGone))]));
        };
        // WeChat customer service may not send now: the message waits, and the officer is told.
        let done = if on == Platform::Wechat && !self.store().wechat_window_has_room(target, self.now_ms()).await? {
            Msg::RelayHeldOfficer
        } else {
            done
        };
        let mut out =
            vec![Outbound::on(on, Outbound::Message { chat_id: target, text: message, buttons, reply_to: None })];
        // A file id is the platform's own: media cross only within one platform.
        if let (Some((kind, file_id)), true) = (&media, on == inbound.platform) {
            out.push(Outbound::Media { chat_id: target, kind: *kind, file_id: file_id.clone(), caption: None });
        }
        let detail = match (&text, &media) {
            (Some(t), _) if !t.is_empty() => t.clone(),
            (_, Some((kind, _))) => format!("[{kind:?}]"),
            _ => String::new(),
        };
        self.store().tip_event(tip_id, actor, officer_id, "message", &detail).await?;
        // An officer talking with the tipster about an acknowledged tip is working on it.
        if let (true, Some(officer_id)) = (from_officer, officer_id) {
            self.store()
                .change_tip_status(tip_id, officer_id, &[TipStatus::Acknowledged], TipStatus::InProgress, None)
                .await?;
        }
        tracing::info!(tip_id, from_officer, "message relayed");
        out.push(Outbound::text(chat_id, t.render(done, minijinja::context! { number => &tip.number })));
        Ok(Some(out))
    }

    /// The tipster's 回复民警 button.
    async fn start_tipster_reply(&self, inbound: &Inbound, tip_id: i64) -> anyhow::Result<Vec<Outbound>> {
        let reporter = self.store().tip_reporter(tip_id).await?.map(|r| (tip_id, r));
        match reporter {
            Some((tip_id, r)) if r.chat_id == inbound.chat.id && r.platform == inbound.platform.as_str() => {
                self.save_conversation(inbound, &Conversation::Reply { tip_id, officer: false }).await?;
                Ok(vec![Outbound::text(inbound.chat.id, self.texts().plain(Msg::ReplyPromptTipster))])
            }
            _ => Ok(vec![Outbound::text(inbound.chat.id, self.texts().plain(Msg::RelayGone))]),
        }
    }

    /// The tipster rates a resolved tip, once.
    async fn rate(&self, inbound: &Inbound, tip_id: i64, rating: &str) -> anyhow::Result<Vec<Outbound>> {
        let mine = self.store().tip_reporter(tip_id).await?.is_some_and(|r| r.chat_id == inbound.chat.id);
        let Some(rating) = Rating::from_code(rating).filter(|_| mine) else {
            return Ok(vec![Outbound::text(inbound.chat.id, self.texts().plain(Msg::RelayGone))]);
        };
        let msg = if self.store().rate_tip(tip_id, rating).await? { Msg::RatingThanks } else { Msg::RatingAlready };
        Ok(vec![Outbound::text(inbound.chat.id, self.texts().plain(msg))])
    }

    /// `/stop`: the tipster's chat is forgotten for every tip it reported; no more relays.
    pub(super) async fn stop_relays(&self, inbound: &Inbound) -> anyhow::Result<Vec<Outbound>> {
        let n = self.store().forget_reporter(inbound.platform.as_str(), inbound.chat.id).await?;
        self.end_draft(inbound).await?;
        tracing::info!(mappings = n, "tipster asked to be forgotten");
        Ok(vec![Outbound::text(inbound.chat.id, self.texts().plain(Msg::StopDone))])
    }

    /// `/tip [text]` in a group. The group is public: the bot says so and offers a private
    /// chat for this village. Text given with the command is recorded at once as a named
    /// (not anonymous) tip and routed; its receipt, with the password, goes to the sender's
    /// private chat, never to the group.
    pub(super) async fn group_tip(
        &self,
        inbound: &Inbound,
        message_id: i64,
        text: &str,
    ) -> anyhow::Result<Vec<Outbound>> {
        let platform = inbound.platform.as_str();
        let village = routing::village_of_chat(self.store(), platform, inbound.chat.id).await?;
        let payload = format!("tip_{}", village.as_ref().map(|v| v.code.as_str()).unwrap_or_default());
        let buttons = vec![vec![Button::StartPrivate { label: self.texts().plain(Msg::ButtonPrivateTip), payload }]];
        let mut out = Vec::new();
        let mut number = None;
        if let (Some(village), Some(user), false) = (village, inbound.sender.person(), text.trim().is_empty()) {
            // Filed under the category triage reads in the text (其他 when it reads none).
            let category = match self.triage().classify(text.trim()).intent {
                crate::triage::Intent::Tip(c) => c,
                _ => TipCategory::Other,
            };
            let new = NewTip {
                village_id: village.id,
                reported_village_id: None,
                category: category.as_str().into(),
                source: TipSource::Group,
                anonymous: false,
                contact_phone: None,
                items: vec![TipItem::Text { text: text.trim().to_string() }],
                reporter_platform: platform.to_string(),
                reporter_chat_id: user,
                day: self.today().format("%Y%m%d").to_string(),
            };
            let (route, account) = self.route_for_new_tip(platform, &village).await?.unzip();
            let (receipt, tip) =
                match self.store().create_routed_tip(&new, route.as_ref(), Some(self.tip_limit())).await? {
                    TipOutcome::Created(receipt, tip) => (receipt, *tip),
                    TipOutcome::OverLimit { reported } => return Ok(vec![self.tip_limit_refusal(user, reported)]),
                };
            tracing::info!(tip_id = receipt.id, "group tip committed");
            out.push(Outbound::text(
                user,
                self.texts().render(
                    Msg::TipReceipt,
                    minijinja::context! { number => &receipt.number, password => &receipt.password, duty_phone => &village.station_duty_phone, platform },
                ),
            ));
            number = Some(receipt.number.clone());
            let bot_admin = self.store().chat(platform, inbound.chat.id).await?.is_some_and(|c| c.bot_admin);
            if self.delete_group_tips() && bot_admin {
                out.push(Outbound::DeleteMessage { chat_id: inbound.chat.id, message_id });
            }
            let card = CardParts { alias: &receipt.alias, items: &new.items };
            out.extend(self.announce_new_tip(platform, &tip, card, &village, account).await?);
        }
        let text = self.texts().render(Msg::GroupTipPointer, minijinja::context! { number });
        out.insert(0, Outbound::Message { chat_id: inbound.chat.id, text, buttons, reply_to: Some(message_id) });
        Ok(out)
    }

    /// A group message that triage recognised as a tip: the group is public, so the bot says
    /// so and offers a private chat that starts the tip in this village and category. Nothing
    /// is recorded from the group message.
    pub(super) async fn group_tip_noticed(
        &self,
        inbound: &Inbound,
        message_id: i64,
        category: TipCategory,
    ) -> anyhow::Result<Vec<Outbound>> {
        let village = routing::village_of_chat(self.store(), inbound.platform.as_str(), inbound.chat.id).await?;
        let payload = match &village {
            Some(v) => format!("tip_{}_{}", v.code, category.as_str()),
            None => "tip_".to_string(),
        };
        let label = self.texts().plain(Msg::ButtonPrivateTip);
        let text = self.texts().render(Msg::GroupTipNoticed, minijinja::context! { category => category.as_str() });
        Ok(vec![Outbound::Message {
            chat_id: inbound.chat.id,
            text,
            buttons: vec![vec![Button::StartPrivate { label, payload }]],
            reply_to: Some(message_id),
        }])
    }

    /// "How is my report going" in a private chat: the person's latest tips, each with its
    /// status button, or how to ask with a number and password.
    pub(super) async fn my_tips(&self, inbound: &Inbound) -> anyhow::Result<Vec<Outbound>> {
        let chat_id = inbound.chat.id;
        let Some(user) = inbound.sender.person() else { return Ok(vec![]) };
        let tips = self.store().tips_of_reporter(inbound.platform.as_str(), user, MY_TIPS_LIMIT).await?;
        if tips.is_empty() {
            return Ok(vec![Outbound::text(chat_id, self.texts().plain(Msg::StatusUsage))]);
        }
        let listed: Vec<_> = tips
            .iter()
            .map(|t| minijinja::context! { number => &t.number, status => &t.status, category => &t.category })
            .collect();
        let buttons = tips
            .iter()
            .map(|t| {
                vec![Button::Callback {
                    label: self.texts().render(Msg::StatusButton, minijinja::context! { number => &t.number }),
                    data: ButtonData::Tip(TipButton::Status(t.id)).into(),
                }]
            })
            .collect();
        let text = self.texts().render(Msg::StatusMine, minijinja::context! { tips => listed });
        Ok(vec![Outbound::Message { chat_id, text, buttons, reply_to: None }])
    }

    fn status_reply(&self, chat_id: i64, tip: &TipRow) -> Outbound {
        let ctx = minijinja::context! { number => &tip.number, status => &tip.status, note => &tip.public_note };
        Outbound::text(chat_id, self.texts().render(Msg::StatusReply, ctx))
    }

    /// `/status T20261123-0007 123456`.
    pub(super) async fn on_status(&self, inbound: &Inbound, args: &str) -> anyhow::Result<Vec<Outbound>> {
        let chat_id = inbound.chat.id;
        let mut words = args.split_whitespace();
        let (Some(number), Some(password)) = (words.next(), words.next()) else {
            return Ok(vec![Outbound::text(chat_id, self.texts().plain(Msg::StatusUsage))]);
        };
        // Wrong passwords are limited per account (in the audit log, without the tip's
        // number, so that no record links a person to a tip) and per tip (counted on the tip).
        let now = self.now_ms();
        let account = format!("{}:{}", inbound.platform.as_str(), inbound.sender.person().unwrap_or(chat_id));
        let store = self.store();
        let too_many = || Ok(vec![Outbound::text(chat_id, self.texts().plain(Msg::StatusTooMany))]);
        if store.audit_denials(&account, "status", now - 3_600_000).await? >= self.opts.max_wrong_status_per_hour {
            store.audit(now, &account, "status", "tip", "denied", "too many wrong passwords from this account").await?;
            tracing::warn!("status query refused: too many wrong passwords from one account");
            return too_many();
        }
        let per_tip = self.opts.max_wrong_status_per_tip;
        match store.check_tip_password(number, password, per_tip, now).await? {
            StatusCheck::Found(tip) => Ok(vec![self.status_reply(chat_id, &tip)]),
            StatusCheck::Locked => {
                store.audit(now, &account, "status", "tip", "denied", "tip locked after wrong passwords").await?;
                tracing::warn!("status query refused: the tip had too many wrong passwords this hour");
                too_many()
            }
            outcome => {
                store.audit(now, &account, "status", "tip", "denied", "unknown number or wrong password").await?;
                if matches!(outcome, StatusCheck::NowLocked) {
                    let number = number.trim().to_ascii_uppercase();
                    let detail = format!("{per_tip} wrong passwords within an hour: status locked for the hour");
                    store.audit(now, "system", "status_lock", &format!("tip:{number}"), "denied", &detail).await?;
                    tracing::warn!("a tip's status is locked for an hour after wrong passwords");
                }
                tracing::info!("status query with an unknown number or a wrong password");
                Ok(vec![Outbound::text(chat_id, self.texts().plain(Msg::StatusNotFound))])
            }
        }
    }

    /// Whether the tip conversation applies to this update at all.
    pub(super) fn is_private_person(inbound: &Inbound) -> bool {
        inbound.chat.kind == ChatKind::Private && matches!(inbound.sender, Sender::User { is_bot: false, .. })
    }
}
