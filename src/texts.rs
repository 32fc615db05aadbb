//! Everything residents and officers read, rendered from the templates in
//! `bot-config/templates/<locale>.toml` (Simplified Chinese by default, English beside it).
//!
//! Each template is a [minijinja] string under a key; [`Msg`] lists the keys the code uses,
//! and loading fails — naming the file and the key — when one is missing or does not parse,
//! so a broken translation stops the daemon at start, not in front of a resident.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, anyhow};
use minijinja::Environment;
use serde::Serialize;

macro_rules! messages {
    ($($(#[$doc:meta])* $variant:ident = $key:literal),+ $(,)?) => {
        /// The key of one template.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Msg { $($(#[$doc])* $variant),+ }

        impl Msg {
            pub const ALL: &'static [Msg] = &[$(Msg::$variant),+];

            pub fn key(self) -> &'static str {
                match self { $(Msg::$variant => $key),+ }
            }
        }
    };
}

messages! {
    /// A command that only works in a private chat, sent in a group.
    PrivateOnly = "private_only",
    /// `/alert` or `/notice` by someone who may not broadcast (or to a target they do not serve).
    BroadcastRefused = "broadcast_refused",
    /// Compose: which villages? (`kind`; buttons follow)
    BroadcastChooseTargets = "broadcast_choose_targets",
    /// Compose: the "all my villages" button.
    BroadcastAllMyVillages = "broadcast_all_my_villages",
    /// Compose: how the chosen target is described (`villages`, `all_mine`, `label`).
    BroadcastTargetLabel = "broadcast_target_label",
    /// Compose: how urgent? (`target`; buttons follow)
    BroadcastChooseSeverity = "broadcast_choose_severity",
    /// The label of a severity (`severity`: urgent, important, normal).
    SeverityLabel = "severity_label",
    /// Compose: send the text (and a photo).
    BroadcastAskText = "broadcast_ask_text",
    /// Compose: a message while a button was expected.
    BroadcastUseButtons = "broadcast_use_buttons",
    /// Compose: the preview (`message`, `target`, `groups`, `photo`) with confirm/cancel.
    BroadcastPreview = "broadcast_preview",
    /// Compose: the confirm button.
    BroadcastConfirmButton = "broadcast_confirm_button",
    /// A cancel button.
    ButtonCancel = "button_cancel",
    /// Compose: the buttons of an earlier step were pressed after the conversation ended.
    ConversationExpired = "conversation_expired",
    /// Compose: queued for sending (`id`, `targets`).
    BroadcastQueued = "broadcast_queued",
    /// The CAP event name of a broadcast made without one (`kind`).
    BroadcastEvent = "broadcast_event",
    /// The message groups get (`kind`, `severity`, `event`, `text`, `sender`, `correction`, `test`).
    BroadcastMessage = "broadcast_message",
    /// The same for WeCom group robots, in WeCom markdown.
    BroadcastWecom = "broadcast_wecom",
    /// The "收到" button under a warning.
    BroadcastAckButton = "broadcast_ack_button",
    /// Answer to a first "收到" press.
    BroadcastAcked = "broadcast_acked",
    /// Answer to a second press by the same person.
    BroadcastAckedAgain = "broadcast_acked_again",
    /// The sender's progress and final report (`id`, `done`, `status`, `kind`, `event`,
    /// `counts`: targets pending sending sent failed lost expired cancelled acks).
    BroadcastProgress = "broadcast_progress",
    /// Button under the report: the ledger by group.
    BroadcastLedgerButton = "broadcast_ledger_button",
    /// Button under the report: cancel the broadcast.
    BroadcastCancelButton = "broadcast_cancel_button",
    /// The ledger by group (`id`, `rows`, `counts`).
    BroadcastLedger = "broadcast_ledger",
    /// A broadcast was cancelled (`id`, `cancelled`: false when it already was).
    BroadcastCancelled = "broadcast_cancelled",
    /// Posted as a reply to a cancelled broadcast that can no longer be deleted.
    BroadcastRetracted = "broadcast_retracted",
    /// The compose flow's "by location" target button.
    BroadcastByLocationButton = "broadcast_by_location_button",
    /// "By location" pressed (or something else sent): share a location.
    BroadcastAskLocation = "broadcast_ask_location",
    /// A location shared: choose the radius.
    BroadcastChooseRadius = "broadcast_choose_radius",
    /// One radius button (`km`, `villages`, `groups` it reaches).
    BroadcastRadiusButton = "broadcast_radius_button",
    /// The radius chosen reaches no village's area.
    BroadcastNothingNear = "broadcast_nothing_near",
    /// The radius chosen reaches villages the officer may not warn.
    BroadcastBeyondReach = "broadcast_beyond_reach",
    /// A place target by name: `name` and its neighbours (`area:`), or `km` around a point (`near:`).
    BroadcastPlaceName = "broadcast_place_name",
    /// The CAP `areaDesc` of a broadcast to every village.
    CapAreaAll = "cap_area_all",
    /// The private reminder on the reminder day (`name`, `villages`, `month`).
    DutyReminder = "duty_reminder",
    /// The monthly summary to a station's staff group (`station`, `month`, `rows`).
    MonthlySummary = "monthly_summary",
    /// The village's contact card (警民联系卡).
    ContactCard = "contact_card",
    /// Button under the card in a group: opens a private chat with the bot for that village.
    ButtonPrivateChat = "button_private_chat",
    /// A group that is not bound to a village yet: how an officer binds it.
    GroupNotBound = "group_not_bound",
    /// Greeting when the bot is added to a group.
    GroupGreeting = "group_greeting",
    /// `/bind` done.
    BindDone = "bind_done",
    /// `/bind` refused: the sender is not an enrolled officer of that village or station.
    BindRefused = "bind_refused",
    /// `/bind` with a code that is not in the registry.
    BindUnknownVillage = "bind_unknown_village",
    /// `/bind` without a code.
    BindUsage = "bind_usage",
    /// `/bind`, `/unbind` sent on behalf of a channel or as an anonymous admin.
    AnonymousAdminRefused = "anonymous_admin_refused",
    /// `/unbind` done.
    UnbindDone = "unbind_done",
    /// `/unbind` refused.
    UnbindRefused = "unbind_refused",
    /// A group-only command sent in a private chat.
    GroupOnly = "group_only",
    /// Welcome in a private chat.
    PrivateWelcome = "private_welcome",
    /// Private chat: the resident has not chosen a village yet.
    ChooseVillage = "choose_village",
    /// Private chat: name search found these villages (buttons follow).
    VillageSearchResults = "village_search_results",
    /// Label of a village's button after a name search.
    VillageButton = "village_button",
    /// Private chat: name search found nothing.
    VillageSearchNone = "village_search_none",
    /// Enrolment succeeded.
    EnrolDone = "enrol_done",
    /// Enrolment code unknown, used or expired.
    EnrolFailed = "enrol_failed",
    EnrolTooMany = "enrol_too_many",
    /// `/whoami` for an enrolled officer.
    WhoamiOfficer = "whoami_officer",
    /// `/whoami` for anyone else.
    WhoamiResident = "whoami_resident",
    /// `/help` in a group.
    HelpGroup = "help_group",
    /// `/help` in a private chat.
    HelpPrivate = "help_private",
    /// A deep link or button whose village no longer exists.
    VillageGone = "village_gone",
    /// Something went wrong inside; the resident is pointed to 110 and the duty phone.
    InternalError = "internal_error",
    /// `/tip` in a group: the group is public; the private button.
    GroupTipPointer = "group_tip_pointer",
    /// Button that opens a private chat to write a tip.
    ButtonPrivateTip = "button_private_tip",
    /// A photo or location sent in a private chat with no tip in progress (a location when
    /// no areas are imported).
    MediaOutsideTip = "media_outside_tip",
    /// A location near a boundary between villages (or of unknown datum): which village is
    /// it? (`n`: how many villages are offered as buttons)
    LocationChooseVillage = "location_choose_village",
    /// A location in no area: 110, and the duty line of the nearest area's station
    /// (`station`, `duty_phone`; both none when unknown).
    LocationOutside = "location_outside",
    /// Tip: a location sent at a step that waits for a button; it is added to the tip.
    TipLocationAdded = "tip_location_added",
    /// A tip conversation expired.
    TipTimedOut = "tip_timed_out",
    /// Tip: which village? (name search follows)
    TipChooseVillage = "tip_choose_village",
    /// The label of a tip category (`code`).
    CategoryLabel = "category_label",
    /// Tip: choose the category.
    TipChooseCategory = "tip_choose_category",
    /// Tip: tell what happened.
    TipDetailsPrompt = "tip_details_prompt",
    /// Tip: button when the details are complete.
    TipButtonDone = "tip_button_done",
    /// Tip: one part received (`n`).
    TipItemReceived = "tip_item_received",
    /// Tip: done pressed with nothing sent.
    TipNothingYet = "tip_nothing_yet",
    /// Tip: anonymous or not?
    TipAnonymityPrompt = "tip_anonymity_prompt",
    /// Tip: button for anonymous.
    TipButtonAnonymous = "tip_button_anonymous",
    /// Tip: button for leaving a phone number.
    TipButtonNamed = "tip_button_named",
    /// Tip: ask for the phone number.
    TipPhonePrompt = "tip_phone_prompt",
    /// Tip: button to skip the phone number.
    TipButtonSkip = "tip_button_skip",
    /// Tip: the phone number is not a mobile number.
    TipPhoneInvalid = "tip_phone_invalid",
    /// Tip: the summary to confirm.
    TipSummary = "tip_summary",
    /// Tip: confirm button.
    TipButtonConfirm = "tip_button_confirm",
    /// Tip: cancel button.
    TipButtonCancel = "tip_button_cancel",
    /// Tip: a step that is answered with buttons got text.
    TipUseButtons = "tip_use_buttons",
    /// A tip button pressed after the conversation ended.
    TipNoDraft = "tip_no_draft",
    /// Tip committed: number and password.
    TipReceipt = "tip_receipt",
    /// Tip conversation cancelled.
    TipCancelled = "tip_cancelled",
    /// `/cancel` with nothing in progress.
    NothingToCancel = "nothing_to_cancel",
    /// The card of a new tip in the officer's private chat.
    TipOfficerCard = "tip_officer_card",
    /// Officer's button: acknowledge.
    TipButtonAck = "tip_button_ack",
    /// Officer's button: resolve.
    TipButtonResolve = "tip_button_resolve",
    /// To the officer: acknowledged.
    TipAcknowledgedOfficer = "tip_acknowledged_officer",
    /// To the tipster: an officer acknowledged the tip.
    TipAcknowledgedTipster = "tip_acknowledged_tipster",
    /// To the officer: resolved.
    TipResolvedOfficer = "tip_resolved_officer",
    /// To the tipster: the tip was resolved.
    TipResolvedTipster = "tip_resolved_tipster",
    /// 办结: asks the officer for the note the tipster will read (`number`).
    ResolvePrompt = "resolve_prompt",
    /// 办结: the quick notes, one a line, in the order they are offered.
    ResolveChoices = "resolve_choices",
    /// 办结: the button that closes without a note.
    ResolveNoNote = "resolve_no_note",
    /// A tip button pressed twice.
    TipAlreadyHandled = "tip_already_handled",
    /// A tip button pressed by someone who does not serve the village.
    TipNotYours = "tip_not_yours",
    /// `/status`: the tip's status and public note.
    StatusReply = "status_reply",
    /// `/status`: unknown number or wrong password.
    StatusNotFound = "status_not_found",
    /// `/status`: too many wrong passwords (from this account, or for this tip) in an hour.
    StatusTooMany = "status_too_many",
    /// `/status` without number and password.
    StatusUsage = "status_usage",
    /// A group message triage took for a tip: the group is public, here is a private button.
    GroupTipNoticed = "group_tip_noticed",
    /// A matter for the 12345 hotline (`topic`: the rule's topic code).
    NonPoliceHint = "non_police_hint",
    /// "How is my report going" asked in a group: ask privately.
    StatusInGroup = "status_in_group",
    /// Button under it: opens the private chat at the person's own reports.
    ButtonPrivateStatus = "button_private_status",
    /// A person's own latest tips (`tips`: number, status, category).
    StatusMine = "status_mine",
    /// Button of one tip in that list.
    StatusButton = "status_button",
    /// Buttons of the private menu.
    MenuButtonCard = "menu_button_card",
    MenuButtonTip = "menu_button_tip",
    MenuButtonStatus = "menu_button_status",
    /// A tip started from the person's own words: what was understood, and what next.
    TipPrefilled = "tip_prefilled",
    /// `/reload` in the staff group: the rules in force now.
    ReloadDone = "reload_done",
    /// `/reload` with a bad rules file: nothing changed, and why.
    ReloadFailed = "reload_failed",
    /// Description of /tip in the command menu.
    CommandTip = "command_tip",
    /// Description of /status in the command menu.
    CommandStatus = "command_status",
    /// Description of /cancel in the command menu.
    CommandCancel = "command_cancel",
    /// Officer's button: reply to the tipster.
    TipButtonReply = "tip_button_reply",
    /// Tipster's button: answer the officer.
    TipButtonReplyToOfficer = "tip_button_reply_to_officer",
    /// To the officer: send what to tell the tipster.
    ReplyPromptOfficer = "reply_prompt_officer",
    /// To the tipster: send what to tell the officer.
    ReplyPromptTipster = "reply_prompt_tipster",
    /// Header of an officer's message relayed to the tipster.
    RelayToTipster = "relay_to_tipster",
    /// Header of a tipster's message relayed to the officer (alias only).
    RelayToOfficer = "relay_to_officer",
    /// To the officer: the message was passed on.
    RelayDoneOfficer = "relay_done_officer",
    /// To the officer: the tipster's platform may not send now (WeChat's 48-hour window); the
    /// message waits for the tipster's next message (`number`).
    RelayHeldOfficer = "relay_held_officer",
    /// To the tipster: the message was passed on.
    RelayDoneTipster = "relay_done_tipster",
    /// The other side can no longer be reached about this tip.
    RelayGone = "relay_gone",
    /// Label of a rating button (`rating`).
    RatingLabel = "rating_label",
    /// Thanks for the rating.
    RatingThanks = "rating_thanks",
    /// The tip was already rated.
    RatingAlready = "rating_already",
    /// `/stop`: the tipster's contact mapping was deleted.
    StopDone = "stop_done",
    /// Description of /stop in the command menu.
    CommandStop = "command_stop",
    /// `/bindstation` done.
    BindStationDone = "bindstation_done",
    /// `/bindstation` refused (unknown station, or not a police officer of it).
    BindStationRefused = "bindstation_refused",
    /// A staff command from someone who is not an enrolled officer of the station.
    StaffRefused = "staff_refused",
    /// A staff command naming a tip this station does not have.
    StaffTipNotFound = "staff_tip_not_found",
    /// `/tips`: the list (`tips`, `total`).
    StaffTips = "staff_tips",
    /// `/tips`: nothing matches.
    StaffTipsNone = "staff_tips_none",
    /// `/tip NUMBER`: the tip and its timeline (never the tipster).
    StaffTipDetail = "staff_tip_detail",
    /// `/assign` with an unknown badge.
    StaffUnknownBadge = "staff_unknown_badge",
    /// `/assign` to an officer who does not serve the tip's village (`badge`, `village`).
    StaffNotTheirVillage = "staff_not_their_village",
    /// `/assign` done (`reachable`: whether the officer was notified).
    StaffAssigned = "staff_assigned",
    /// `/reject` done.
    StaffRejected = "staff_rejected",
    /// To the tipster: the tip was not taken up (`note`).
    TipRejectedTipster = "tip_rejected_tipster",
    /// To the staff group: a new tip.
    StaffNewTipNotice = "staff_new_tip_notice",
    /// To the staff group: a tip was not acknowledged in time.
    StaffEscalatedNotice = "staff_escalated_notice",
    /// Description of /bindstation in the command menu.
    CommandBindStation = "command_bindstation",
    /// A sticker, file … sent while writing a tip.
    TipUnsupported = "tip_unsupported",
    /// Too many tips in an hour (`n`).
    TipLimit = "tip_limit",
    /// `/duty on`.
    DutyOn = "duty_on",
    /// `/duty off`.
    DutyOff = "duty_off",
    /// `/duty off DATE` (`until`).
    DutyLeave = "duty_leave",
    /// `/duty` usage.
    DutyUsage = "duty_usage",
    /// Description of /duty in the command menu.
    CommandDuty = "command_duty",
    /// Officer's button: hand the tip to another officer.
    TipButtonReassign = "tip_button_reassign",
    /// 转派: choose the officer (buttons follow).
    ReassignChoose = "reassign_choose",
    /// 转派: nobody else of the village can be reached.
    ReassignNobody = "reassign_nobody",
    /// Label of an officer to hand a tip to (`name`, `role`).
    ReassignButton = "reassign_button",
    /// 转派 done.
    ReassignDone = "reassign_done",
    /// `/merge` done (`number`, `into`).
    StaffMerged = "staff_merged",
    /// To the tipster: the tip is handled together with another.
    TipMergedTipster = "tip_merged_tipster",
    /// The receipt's button to see how the tip is going.
    TipButtonStatus = "tip_button_status",
    /// An emergency: whom to call, now (`kind`: police, fire, medical, traffic).
    EmergencyReply = "emergency_reply",
    /// The same message again in a group: a pointer to the earlier answer (`kind`: the
    /// emergency's, if it was one).
    RepeatPointer = "repeat_pointer",
    /// To the village's officers and the staff group: an emergency was reported.
    EmergencyAlert = "emergency_alert",
    /// Description of /officer in the command menu.
    CommandOfficer = "command_officer",
    /// Description of /help in the command menu.
    CommandHelp = "command_help",
    /// Description of /bind in the command menu.
    CommandBind = "command_bind",
    /// Description of /unbind in the command menu.
    CommandUnbind = "command_unbind",
    /// Description of /start in the command menu.
    CommandStart = "command_start",
    /// Description of /whoami in the command menu.
    CommandWhoami = "command_whoami",
}

/// The loaded templates of one locale.
#[derive(Debug)]
pub struct Texts {
    env: Environment<'static>,
    locale: String,
}

impl Texts {
    /// Loads `<dir>/<locale>.toml` and checks that every [`Msg`] is there and parses.
    pub fn load(dir: &Path, locale: &str) -> anyhow::Result<Texts> {
        let path = dir.join(format!("{locale}.toml"));
        let raw = std::fs::read_to_string(&path)
            .with_context(|| format!("Failed to read the templates {}", path.display()))?;
        Self::from_toml(&raw, locale).with_context(|| format!("In the templates {}", path.display()))
    }

    fn from_toml(raw: &str, locale: &str) -> anyhow::Result<Texts> {
        let table: BTreeMap<String, String> =
            toml::from_str(raw).context("the file is not a TOML table of key = \"template\"")?;
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.add_filter("phone_or", |v: Option<String>, fallback: String| {
            v.filter(|s| !s.is_empty()).unwrap_or(fallback)
        });
        env.add_filter("thousands", |n: i64| thousands(n));
        let known: Vec<&str> = Msg::ALL.iter().map(|m| m.key()).collect();
        for (key, source) in table {
            // `_name` templates hold what the others share (labels, macros) through `import`.
            // `schedule_name` templates are the texts of scheduled notices (`schedule.toml`).
            if !known.contains(&key.as_str()) && !key.starts_with('_') && !key.starts_with("schedule_") {
                return Err(anyhow!("unknown template key {key:?}; the keys are: {}", known.join(", ")));
            }
            env.add_template_owned(key.clone(), source).map_err(|e| anyhow!("template {key:?} does not parse: {e}"))?;
        }
        for m in Msg::ALL {
            if env.get_template(m.key()).is_err() {
                return Err(anyhow!("template {:?} is missing; add it (see zh-CN.toml for the wording)", m.key()));
            }
        }
        Ok(Texts { env, locale: locale.to_string() })
    }

    pub fn locale(&self) -> &str {
        &self.locale
    }

    /// Renders one template. A rendering error (a variable the code did not pass) is a bug:
    /// it is logged and the key itself is returned, so the resident still gets an answer.
    pub fn render<S: Serialize>(&self, msg: Msg, ctx: S) -> String {
        let tmpl = self.env.get_template(msg.key()).expect("checked at load");
        match tmpl.render(ctx) {
            Ok(s) => s.trim().to_string(),
            Err(e) => {
                tracing::error!(template = msg.key(), error = %e, "template rendering failed");
                format!("[{}]", msg.key())
            }
        }
    }

    /// Renders a template and says why it fails (for checks at start).
    pub fn check<S: Serialize>(&self, msg: Msg, ctx: S) -> anyhow::Result<()> {
        let tmpl = self.env.get_template(msg.key()).expect("checked at load");
        tmpl.render(ctx).map(drop).map_err(|e| anyhow!("template {:?}: {e}", msg.key()))
    }

    /// Renders a template named in configuration (a scheduled notice's), or says why not.
    pub fn render_named<S: Serialize>(&self, key: &str, ctx: S) -> anyhow::Result<String> {
        let tmpl =
            self.env.get_template(key).map_err(|_| anyhow!("there is no template {key:?} in {}.toml", self.locale))?;
        Ok(tmpl.render(ctx).map_err(|e| anyhow!("template {key:?}: {e}"))?.trim().to_string())
    }

    /// The source of template `key` (other template sets share `_labels` through it).
    pub fn source(&self, key: &str) -> Option<String> {
        self.env.get_template(key).ok().map(|t| t.source().to_string())
    }

    /// Renders a template that takes no variables.
    pub fn plain(&self, msg: Msg) -> String {
        self.render(msg, ())
    }
}

/// 4987 → "4,987": long counts the way residents and staff read them.
pub fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_written_with_thousands_separators() {
        assert_eq!(thousands(4987), "4,987");
        assert_eq!(thousands(46000), "46,000");
        assert_eq!(thousands(13), "13");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }

    #[test]
    fn every_shipped_locale_has_every_template() {
        for locale in ["zh-CN", "en"] {
            Texts::load(Path::new("bot-config/templates"), locale).unwrap();
        }
    }

    #[test]
    fn a_missing_template_is_named_at_load() {
        let err = Texts::from_toml("contact_card = \"x\"", "xx").unwrap_err();
        assert!(err.to_string().contains("is missing"), "{err}");
    }

    #[test]
    fn a_broken_template_names_its_key() {
        let err = Texts::from_toml("contact_card = \"{{ oops \"", "xx").unwrap_err();
        assert!(err.to_string().contains("contact_card"), "{err}");
    }
}
