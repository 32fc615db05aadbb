//! What arrives as text on the wire, parsed once into types: the slash commands, the data of
//! every button the bot draws, and the payloads of its deep links (`/start …`).
//!
//! Every prefix lives here and nowhere else: a feature draws a button with
//! `ButtonData::….to_string()` and receives it back as the same variant, so the router
//! matches types, not strings. Button data stays within Telegram's 64 bytes (ids and codes
//! are short); the formats are the ones earlier versions drew, so buttons on cards already
//! sent keep working after an upgrade.

use std::fmt;

use crate::domain::Severity;
use crate::triage::TipCategory;

/// A slash command, by its name (case-insensitive, without the `@bot` mention).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/officer`, `/police`, `/card`: the village's contact card.
    Card,
    Help,
    /// `/start PAYLOAD` (deep links: [`StartPayload`]).
    Start,
    /// `/tip`: report in private; in a group, the nudge to report in private (or, in a
    /// station's staff group, `/tip NUMBER` shows a tip).
    Tip,
    /// `/status`: how my reports are going.
    Status,
    Cancel,
    /// `/stop`: no more relays to this chat.
    Stop,
    /// `/duty on|off`: an officer's own duty status.
    Duty,
    Whoami,
    /// `/alert`: an officer composes a warning.
    Alert,
    /// `/notice`: an officer composes a notice.
    Notice,
    Bind,
    Unbind,
    BindStation,
    /// The station staff group's commands.
    Staff(StaffCommand),
    /// Any other name: perhaps another bot's.
    Other(String),
}

/// The commands of a station's staff group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaffCommand {
    /// `/tips [today|all]`: the station's open tips.
    Tips,
    /// `/tip NUMBER`: one tip with its timeline (parsed as [`Command::Tip`], which residents
    /// use too; the staff room tells them apart by the group).
    Show,
    /// `/assign NUMBER BADGE`.
    Assign,
    /// `/resolve NUMBER NOTE`.
    Resolve,
    /// `/reject NUMBER NOTE`.
    Reject,
    /// `/merge NUMBER INTO`.
    Merge,
    /// `/reload`: the triage rules, again from disk.
    Reload,
}

impl Command {
    fn from_name(name: &str) -> Command {
        match name {
            "officer" | "police" | "card" => Command::Card,
            "help" => Command::Help,
            "start" => Command::Start,
            "tip" => Command::Tip,
            "status" => Command::Status,
            "cancel" => Command::Cancel,
            "stop" => Command::Stop,
            "duty" => Command::Duty,
            "whoami" => Command::Whoami,
            "alert" => Command::Alert,
            "notice" => Command::Notice,
            "bind" => Command::Bind,
            "unbind" => Command::Unbind,
            "bindstation" => Command::BindStation,
            "tips" => Command::Staff(StaffCommand::Tips),
            "assign" => Command::Staff(StaffCommand::Assign),
            "resolve" => Command::Staff(StaffCommand::Resolve),
            "reject" => Command::Staff(StaffCommand::Reject),
            "merge" => Command::Staff(StaffCommand::Merge),
            "reload" => Command::Staff(StaffCommand::Reload),
            other => Command::Other(other.to_string()),
        }
    }

    /// The name as the log and the audit trail write it.
    pub fn name(&self) -> &str {
        match self {
            Command::Card => "officer",
            Command::Help => "help",
            Command::Start => "start",
            Command::Tip => "tip",
            Command::Status => "status",
            Command::Cancel => "cancel",
            Command::Stop => "stop",
            Command::Duty => "duty",
            Command::Whoami => "whoami",
            Command::Alert => "alert",
            Command::Notice => "notice",
            Command::Bind => "bind",
            Command::Unbind => "unbind",
            Command::BindStation => "bindstation",
            Command::Staff(s) => s.name(),
            Command::Other(name) => name,
        }
    }

    /// A command split from its arguments: `/bind@cunjing_bot 4101` → (`Bind`, "4101").
    /// `None` for text that is not a command, or a command addressed to another bot.
    pub fn parse<'a>(text: &'a str, bot_username: Option<&str>) -> Option<(Command, &'a str)> {
        let rest = text.trim_start().strip_prefix('/')?;
        let (head, args) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        let (name, mention) = match head.split_once('@') {
            Some((n, m)) => (n, Some(m)),
            None => (head, None),
        };
        if let (Some(m), Some(me)) = (mention, bot_username)
            && !m.eq_ignore_ascii_case(me)
        {
            return None;
        }
        if name.is_empty() {
            return None;
        }
        Some((Command::from_name(&name.to_ascii_lowercase()), args.trim()))
    }
}

impl StaffCommand {
    pub fn name(self) -> &'static str {
        match self {
            StaffCommand::Tips => "tips",
            StaffCommand::Show => "tip",
            StaffCommand::Assign => "assign",
            StaffCommand::Resolve => "resolve",
            StaffCommand::Reject => "reject",
            StaffCommand::Merge => "merge",
            StaffCommand::Reload => "reload",
        }
    }
}

/// The data of a button the bot drew.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ButtonData {
    /// `v:CODE`: a resident picked a village from the search results.
    PickVillage(String),
    /// `m:…`: the private chat's menu.
    Menu(MenuItem),
    /// `t:…`: the resident's tip conversation and the tipster's own buttons.
    Tip(TipButton),
    /// `tip:…`: an officer's tip card.
    Officer(OfficerButton),
    /// `bc:…`: an officer composing or managing a broadcast.
    Compose(ComposeButton),
    /// `ack:DELIVERY`: a resident confirms having read a warning.
    Ack(i64),
}

/// The private chat's menu, in the order residents use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MenuItem {
    Card,
    Tip,
    Status,
}

/// The tip conversation (`t:cat:`, `t:done`, …) and the tipster's buttons on notices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TipButton {
    Category(String),
    Done,
    Anonymous,
    Named,
    SkipPhone,
    Confirm,
    Cancel,
    /// `t:rate:TIP:RATING` on a resolved tip's notice.
    Rate {
        tip_id: i64,
        rating: String,
    },
    /// `t:status:TIP`: the receipt's 查询进展.
    Status(i64),
    /// `t:reply:TIP`: answer the officer.
    Reply(i64),
}

/// An officer's tip card: `tip:ACTION:TIP[:ARG]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfficerButton {
    /// 受理.
    Acknowledge(i64),
    /// 回复 the tipster.
    Reply(i64),
    /// 转派: choose whom to.
    Move(i64),
    /// 转派 to this officer.
    MoveTo { tip_id: i64, officer_id: i64 },
    /// 办结: choose a closing note.
    Done(i64),
    /// 办结 with the n-th quick note, or without one.
    Finish { tip_id: i64, note: Option<usize> },
}

impl OfficerButton {
    /// The tip the button is about.
    pub fn tip_id(self) -> i64 {
        match self {
            OfficerButton::Acknowledge(id)
            | OfficerButton::Reply(id)
            | OfficerButton::Move(id)
            | OfficerButton::Done(id)
            | OfficerButton::MoveTo { tip_id: id, .. }
            | OfficerButton::Finish { tip_id: id, .. } => id,
        }
    }

    /// Whether the button hands the tip on (authorised as assigning) rather than works it.
    pub fn hands_on(self) -> bool {
        matches!(self, OfficerButton::Move(_) | OfficerButton::MoveTo { .. })
    }
}

/// Composing a broadcast (`bc:…`) and the sender's reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComposeButton {
    /// `bc:r:ID`: the ledger of a broadcast.
    Report(i64),
    /// `bc:x:ID`: cancel a broadcast still being delivered.
    CancelSend(i64),
    /// `bc:t:…`: where to.
    Target(ComposeTarget),
    /// `bc:km:N`: the radius, in whole kilometres, around the location the officer shared.
    Radius(u32),
    /// `bc:s:SEVERITY`.
    Severity(Severity),
    /// `bc:ok`: send.
    Send,
    /// `bc:no`: drop the draft.
    Drop,
}

/// The targets offered in the compose flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComposeTarget {
    /// Every village the officer serves.
    Mine,
    Village(String),
    Office(String),
    Station(String),
    /// `bc:t:loc`: around a location the officer shares next.
    Location,
}

/// A deep link's payload, `t.me/BOT?start=PAYLOAD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartPayload {
    /// `v_CODE`: this village's card (the group card's 私聊 button).
    Village(String),
    /// `tip_CODE[_CATEGORY]`: report a tip from this village (a group where triage heard one).
    Tip { village: String, category: Option<TipCategory> },
    /// `status`: how my reports are going.
    Status,
    /// Anything else (an enrolment code, or nothing).
    Other(String),
}

fn id(s: &str) -> Option<i64> {
    s.parse().ok()
}

impl ButtonData {
    /// The button behind `data`; `None` for data the bot never draws.
    pub fn parse(data: &str) -> Option<ButtonData> {
        if let Some(code) = data.strip_prefix("v:") {
            return Some(ButtonData::PickVillage(code.to_string()));
        }
        if let Some(item) = data.strip_prefix("m:") {
            return Some(ButtonData::Menu(match item {
                "card" => MenuItem::Card,
                "tip" => MenuItem::Tip,
                "status" => MenuItem::Status,
                _ => return None,
            }));
        }
        if let Some(rest) = data.strip_prefix("tip:") {
            let mut parts = rest.splitn(3, ':');
            let (action, tip, arg) = (parts.next()?, id(parts.next()?)?, parts.next());
            return Some(ButtonData::Officer(match (action, arg) {
                ("ack", None) => OfficerButton::Acknowledge(tip),
                ("reply", None) => OfficerButton::Reply(tip),
                ("move", None) => OfficerButton::Move(tip),
                ("done", None) => OfficerButton::Done(tip),
                ("to", Some(officer)) => OfficerButton::MoveTo { tip_id: tip, officer_id: id(officer)? },
                ("fin", Some("-")) => OfficerButton::Finish { tip_id: tip, note: None },
                ("fin", Some(n)) => OfficerButton::Finish { tip_id: tip, note: Some(n.parse().ok()?) },
                _ => return None,
            }));
        }
        if let Some(rest) = data.strip_prefix("t:") {
            return Some(ButtonData::Tip(match rest {
                "done" => TipButton::Done,
                "anon" => TipButton::Anonymous,
                "named" => TipButton::Named,
                "skip" => TipButton::SkipPhone,
                "ok" => TipButton::Confirm,
                "cancel" => TipButton::Cancel,
                _ => {
                    let (kind, arg) = rest.split_once(':')?;
                    match kind {
                        "cat" => TipButton::Category(arg.to_string()),
                        "status" => TipButton::Status(id(arg)?),
                        "reply" => TipButton::Reply(id(arg)?),
                        "rate" => {
                            let (tip, rating) = arg.split_once(':')?;
                            TipButton::Rate { tip_id: id(tip)?, rating: rating.to_string() }
                        }
                        _ => return None,
                    }
                }
            }));
        }
        if let Some(rest) = data.strip_prefix("bc:") {
            return Some(ButtonData::Compose(match rest {
                "ok" => ComposeButton::Send,
                "no" => ComposeButton::Drop,
                "t:mine" => ComposeButton::Target(ComposeTarget::Mine),
                "t:loc" => ComposeButton::Target(ComposeTarget::Location),
                _ => {
                    let (kind, arg) = rest.split_once(':')?;
                    match kind {
                        "r" => ComposeButton::Report(id(arg)?),
                        "x" => ComposeButton::CancelSend(id(arg)?),
                        "s" => ComposeButton::Severity(Severity::from_code(arg)?),
                        "km" => ComposeButton::Radius(arg.parse().ok().filter(|km| *km > 0)?),
                        "t" => {
                            let (kind, code) = arg.split_once(':')?;
                            let code = code.to_string();
                            ComposeButton::Target(match kind {
                                "v" => ComposeTarget::Village(code),
                                "o" => ComposeTarget::Office(code),
                                "s" => ComposeTarget::Station(code),
                                _ => return None,
                            })
                        }
                        _ => return None,
                    }
                }
            }));
        }
        if let Some(delivery) = data.strip_prefix("ack:") {
            return Some(ButtonData::Ack(id(delivery)?));
        }
        None
    }
}

impl fmt::Display for ButtonData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ButtonData::PickVillage(code) => write!(f, "v:{code}"),
            ButtonData::Menu(MenuItem::Card) => f.write_str("m:card"),
            ButtonData::Menu(MenuItem::Tip) => f.write_str("m:tip"),
            ButtonData::Menu(MenuItem::Status) => f.write_str("m:status"),
            ButtonData::Tip(b) => match b {
                TipButton::Category(code) => write!(f, "t:cat:{code}"),
                TipButton::Done => f.write_str("t:done"),
                TipButton::Anonymous => f.write_str("t:anon"),
                TipButton::Named => f.write_str("t:named"),
                TipButton::SkipPhone => f.write_str("t:skip"),
                TipButton::Confirm => f.write_str("t:ok"),
                TipButton::Cancel => f.write_str("t:cancel"),
                TipButton::Rate { tip_id, rating } => write!(f, "t:rate:{tip_id}:{rating}"),
                TipButton::Status(tip) => write!(f, "t:status:{tip}"),
                TipButton::Reply(tip) => write!(f, "t:reply:{tip}"),
            },
            ButtonData::Officer(b) => match *b {
                OfficerButton::Acknowledge(tip) => write!(f, "tip:ack:{tip}"),
                OfficerButton::Reply(tip) => write!(f, "tip:reply:{tip}"),
                OfficerButton::Move(tip) => write!(f, "tip:move:{tip}"),
                OfficerButton::Done(tip) => write!(f, "tip:done:{tip}"),
                OfficerButton::MoveTo { tip_id, officer_id } => write!(f, "tip:to:{tip_id}:{officer_id}"),
                OfficerButton::Finish { tip_id, note: None } => write!(f, "tip:fin:{tip_id}:-"),
                OfficerButton::Finish { tip_id, note: Some(n) } => write!(f, "tip:fin:{tip_id}:{n}"),
            },
            ButtonData::Compose(b) => match b {
                ComposeButton::Report(id) => write!(f, "bc:r:{id}"),
                ComposeButton::CancelSend(id) => write!(f, "bc:x:{id}"),
                ComposeButton::Target(ComposeTarget::Mine) => f.write_str("bc:t:mine"),
                ComposeButton::Target(ComposeTarget::Village(code)) => write!(f, "bc:t:v:{code}"),
                ComposeButton::Target(ComposeTarget::Office(code)) => write!(f, "bc:t:o:{code}"),
                ComposeButton::Target(ComposeTarget::Station(code)) => write!(f, "bc:t:s:{code}"),
                ComposeButton::Target(ComposeTarget::Location) => f.write_str("bc:t:loc"),
                ComposeButton::Radius(km) => write!(f, "bc:km:{km}"),
                ComposeButton::Severity(s) => write!(f, "bc:s:{}", s.as_str()),
                ComposeButton::Send => f.write_str("bc:ok"),
                ComposeButton::Drop => f.write_str("bc:no"),
            },
            ButtonData::Ack(delivery) => write!(f, "ack:{delivery}"),
        }
    }
}

impl From<ButtonData> for String {
    fn from(data: ButtonData) -> String {
        data.to_string()
    }
}

impl StartPayload {
    pub fn parse(payload: &str) -> StartPayload {
        if let Some(code) = payload.strip_prefix("v_") {
            return StartPayload::Village(code.to_string());
        }
        if let Some(rest) = payload.strip_prefix("tip_") {
            // The village code may itself hold `_`: the category is what follows the last one.
            return match rest.rsplit_once('_') {
                Some((code, c)) if TipCategory::parse(c).is_some() => {
                    StartPayload::Tip { village: code.to_string(), category: TipCategory::parse(c) }
                }
                _ => StartPayload::Tip { village: rest.to_string(), category: None },
            };
        }
        if payload == "status" {
            return StartPayload::Status;
        }
        StartPayload::Other(payload.to_string())
    }
}

impl fmt::Display for StartPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartPayload::Village(code) => write!(f, "v_{code}"),
            StartPayload::Tip { village, category: Some(c) } => write!(f, "tip_{village}_{}", c.as_str()),
            StartPayload::Tip { village, category: None } => write!(f, "tip_{village}"),
            StartPayload::Status => f.write_str("status"),
            StartPayload::Other(payload) => f.write_str(payload),
        }
    }
}

impl From<StartPayload> for String {
    fn from(payload: StartPayload) -> String {
        payload.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_addressed_to_another_bot_are_not_ours() {
        assert_eq!(Command::parse("/bind@cunjing_bot 4101", Some("cunjing_bot")), Some((Command::Bind, "4101")));
        assert_eq!(Command::parse("/help@other_bot", Some("cunjing_bot")), None);
        assert_eq!(Command::parse("/Officer", None), Some((Command::Card, "")));
        assert_eq!(
            Command::parse("/assign 20261123-7 F1", None),
            Some((Command::Staff(StaffCommand::Assign), "20261123-7 F1"))
        );
        assert_eq!(Command::parse("/weather", None), Some((Command::Other("weather".into()), "")));
        assert_eq!(Command::parse("no command", None), None);
        assert_eq!(Command::parse("民警电话", None), None);
    }

    #[test]
    fn every_button_the_bot_draws_reads_back_as_itself() {
        for data in [
            "v:410102001",
            "m:card",
            "m:tip",
            "m:status",
            "t:cat:theft",
            "t:done",
            "t:anon",
            "t:named",
            "t:skip",
            "t:ok",
            "t:cancel",
            "t:rate:17:fair",
            "t:status:17",
            "t:reply:17",
            "tip:ack:17",
            "tip:reply:17",
            "tip:move:17",
            "tip:done:17",
            "tip:to:17:4",
            "tip:fin:17:2",
            "tip:fin:17:-",
            "bc:r:9",
            "bc:x:9",
            "bc:t:mine",
            "bc:t:v:410102001",
            "bc:t:o:4101020",
            "bc:t:s:41010",
            "bc:t:loc",
            "bc:km:3",
            "bc:s:urgent",
            "bc:ok",
            "bc:no",
            "ack:123",
        ] {
            let parsed = ButtonData::parse(data).unwrap_or_else(|| panic!("{data} did not parse"));
            assert_eq!(parsed.to_string(), data);
        }
    }

    #[test]
    fn data_the_bot_never_draws_is_not_a_button() {
        for data in [
            "",
            "x",
            "tip:ack:",
            "tip:ack:x",
            "tip:to:3",
            "t:rate:3",
            "bc:s:loud",
            "bc:t:q:1",
            "bc:km:0",
            "bc:km:x",
            "ack:-",
            "m:x",
        ] {
            assert_eq!(ButtonData::parse(data), None, "{data}");
        }
    }

    #[test]
    fn deep_links_read_back_as_themselves_and_a_village_code_may_hold_an_underscore() {
        for payload in ["v_410102001", "tip_410102001", "tip_410102001_theft", "status", "", "ABCD-1234"] {
            assert_eq!(StartPayload::parse(payload).to_string(), payload);
        }
        assert_eq!(StartPayload::parse("tip_A_B"), StartPayload::Tip { village: "A_B".into(), category: None });
    }
}
