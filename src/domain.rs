//! Domain types of the registry, validated once at the edge and trusted inside.
//!
//! Every value that arrives from a CSV file, a command or the CLI is parsed into one of these
//! types (`parse` returns a message that says what is wrong and how to fix it); code past the
//! edge never re-checks a badge number or a role. Each enum knows its stored (`as_str`) and
//! its Chinese spellings, so registry files may use either.

use std::fmt;

/// Parse error of a domain value: a plain-English message naming the value and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

macro_rules! code_newtype {
    ($(#[$doc:meta])* $name:ident, $what:literal, $pattern:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Accepts 1–32 ASCII letters, digits, `-` and `_` (after trimming).
            pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
                let s = raw.trim();
                if s.is_empty() {
                    return Err(InvalidValue(format!("{} is empty; fill in the {}", $what, $what)));
                }
                if s.len() > 32 || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                    return Err(InvalidValue(format!(
                        "{} {:?} is not valid; use {}",
                        $what, s, $pattern
                    )));
                }
                Ok(Self(s.to_string()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

code_newtype!(
    /// Code of a station (派出所), e.g. `HZPCS`.
    StationCode, "station code", "up to 32 letters, digits, '-' or '_'"
);
code_newtype!(
    /// Code of an office or workstation (警务室/警务工作站), e.g. `HZ01`.
    OfficeCode, "office code", "up to 32 letters, digits, '-' or '_'"
);
code_newtype!(
    /// Code of a village or grid, usually the 12-digit administrative division code.
    VillageCode, "village code", "up to 32 letters, digits, '-' or '_' (e.g. 410184101201)"
);
code_newtype!(
    /// Badge number (警号) of a police officer, or the staff number of an auxiliary or volunteer.
    BadgeNumber, "badge number", "up to 32 letters, digits, '-' or '_' (e.g. 041201)"
);

/// A phone number as residents dial it: an 11-digit mobile number, a landline with area code
/// (`0371-62581110`), or a short service number (`110`, `12345`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Phone(String);

impl Phone {
    /// Accepts spaces and dashes anywhere; stores mobiles as 11 digits and landlines as
    /// `AREA-NUMBER`.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let digits: String = raw.chars().filter(|c| !matches!(c, ' ' | '-' | '\u{3000}')).collect();
        let bad = || {
            InvalidValue(format!(
                "phone number {:?} is not valid; write an 11-digit mobile (13903710121) or a landline with its area code (0371-62581110)",
                raw.trim()
            ))
        };
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        let b = digits.as_bytes();
        if b.len() == 11 && b[0] == b'1' && (b'3'..=b'9').contains(&b[1]) {
            return Ok(Self(digits));
        }
        if b[0] == b'0' && (10..=12).contains(&b.len()) {
            // Area codes are 3 digits for the big cities (010, 02x) and 4 elsewhere.
            let area = if b[1] == b'1' || b[1] == b'2' { 3 } else { 4 };
            return Ok(Self(format!("{}-{}", &digits[..area], &digits[area..])));
        }
        if (3..=5).contains(&b.len()) && b[0] == b'1' {
            return Ok(Self(digits));
        }
        Err(bad())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! spelled_enum {
    ($(#[$doc:meta])* $name:ident, $what:literal { $($(#[$vdoc:meta])* $variant:ident = $stored:literal $(| $alias:literal)*),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vdoc])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The stored spellings of [`Self::ALL`] (for messages that list what is accepted).
            pub const CODES: &'static [&'static str] = &[$($stored),+];

            /// The spelling stored in the database and written by exports.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $stored),+ }
            }

            /// The stored spellings of every variant, in the order of the variants (the order
            /// menus, filters and counts show them in).
            pub fn codes() -> Vec<&'static str> {
                $name::ALL.iter().map(|v| v.as_str()).collect()
            }

            /// The variant stored as exactly `code` (no aliases: for values the program wrote).
            pub fn from_code(code: &str) -> Option<Self> {
                $name::ALL.iter().copied().find(|v| v.as_str() == code)
            }

            /// Accepts the stored spelling (any case) or a Chinese alias.
            pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
                let s = raw.trim();
                $(
                    if s.eq_ignore_ascii_case($stored) $(|| s == $alias)* {
                        return Ok($name::$variant);
                    }
                )+
                let accepted: Vec<String> = vec![$(
                    {
                        let aliases: &[&str] = &[$($alias),*];
                        if aliases.is_empty() { $stored.to_string() } else { format!("{} ({})", $stored, aliases.join("/")) }
                    }
                ),+];
                Err(InvalidValue(format!("unknown {} {:?}; use one of: {}", $what, s, accepted.join(", "))))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        /// Written as its stored spelling (templates and JSON compare with `"new"`).
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        /// Read back from its stored spelling (exactly, as [`Self::from_code`]).
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
                <$name>::from_code(&s).ok_or_else(|| {
                    serde::de::Error::invalid_value(serde::de::Unexpected::Str(&s), &$what)
                })
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    };
}

spelled_enum!(
    /// What kind of post an office is.
    OfficeKind, "office kind" {
        /// 警务室: a community police office.
        Office = "office" | "警务室" | "社区警务室",
        /// 警务工作站: a lighter post in a village without an office.
        Workstation = "workstation" | "警务工作站" | "工作站",
    }
);

spelled_enum!(
    /// Whether a unit of responsibility is a rural administrative village or an urban grid.
    VillageKind, "village kind" {
        /// 行政村
        Village = "village" | "行政村" | "村",
        /// 网格 (urban community grid)
        Grid = "grid" | "网格" | "社区网格",
    }
);

spelled_enum!(
    /// The geodetic datum of a set of coordinates (issue #24). Areas are indexed in WGS-84;
    /// CGCS2000 (天地图, the national surveys) differs from it by centimetres and is taken
    /// as it is; GCJ-02 (Tencent and Amap maps, every WeChat and WeCom location) is shifted
    /// by up to ~700 m and converted.
    Datum, "datum" {
        /// The GPS datum (EPSG:4326).
        Wgs84 = "WGS84" | "WGS-84" | "EPSG:4326",
        /// 国测局坐标 ("Mars coordinates") of Chinese web maps.
        Gcj02 = "GCJ02" | "GCJ-02" | "火星坐标",
        /// 2000国家大地坐标系 (EPSG:4490).
        Cgcs2000 = "CGCS2000" | "EPSG:4490" | "国家2000",
    }
);

spelled_enum!(
    /// Whether a person in the registry is sworn police, auxiliary police or a volunteer.
    OfficerKind, "officer kind" {
        /// 民警
        Police = "police" | "民警",
        /// 辅警
        Auxiliary = "auxiliary" | "辅警",
        /// 警务助理 / 治安积极分子 / 志愿者 (no police powers)
        Volunteer = "volunteer" | "志愿者" | "警务助理" | "治安积极分子",
    }
);

spelled_enum!(
    /// The role someone plays for one village. The order of the variants is the order of the
    /// duty chain: the resident officer is asked first.
    AssignmentRole, "role" {
        /// 驻村民警: stationed in the village full time.
        Resident = "resident" | "驻村民警" | "社区民警",
        /// 包村民警: from another department, at least 2 days a month in the village.
        Contact = "contact" | "包村民警",
        /// 一村一辅警: the village's auxiliary.
        Auxiliary = "auxiliary" | "辅警" | "驻村辅警",
        /// 片区警长: leads the officers of nearby villages.
        AreaChief = "area_chief" | "片区警长" | "警长",
        /// 警务助理 / 治安积极分子 / 志愿者
        Volunteer = "volunteer" | "志愿者" | "警务助理" | "治安积极分子",
    }
);

impl AssignmentRole {
    /// Whether this role takes the village's tips and questions (volunteers help but hold no
    /// police powers, so they are never routed to).
    pub fn is_on_duty_chain(self) -> bool {
        !matches!(self, AssignmentRole::Volunteer)
    }
}

spelled_enum!(
    /// A person's standing for authorisation ([`crate::authz`]), lowest first: each may do
    /// at least what the one before may. It comes from enrolment (the registry's
    /// [`OfficerKind`]) and a station [`Grant`], never from a name or a message.
    Role, "permission role" {
        /// Anyone not enrolled (and any message sent on behalf of a chat).
        Resident = "resident",
        /// 警务助理 / 志愿者: enrolled, no police powers.
        Volunteer = "volunteer",
        /// 辅警
        Auxiliary = "auxiliary",
        /// 民警
        Officer = "officer",
        /// 派出所内勤: reviews, assigns and exports the station's tips, speaks for the station.
        StationStaff = "station_staff",
        /// The station's administrator: also enrols officers and reloads the rules.
        StationAdmin = "station_admin",
        /// Runs the deployment: everything, everywhere (the CLI acts as this role).
        SystemAdmin = "system_admin",
    }
);

impl Role {
    /// The role of an enrolled officer of registry kind `kind` with the station grant
    /// `grant`, if any.
    pub fn of_officer(kind: OfficerKind, grant: Option<Grant>) -> Role {
        let by_kind = match kind {
            OfficerKind::Police => Role::Officer,
            OfficerKind::Auxiliary => Role::Auxiliary,
            OfficerKind::Volunteer => Role::Volunteer,
        };
        by_kind.max(grant.map_or(Role::Resident, Role::of_grant))
    }

    /// The role a station grant (an officer's, or a console account's role) gives.
    pub fn of_grant(grant: Grant) -> Role {
        match grant {
            Grant::System => Role::SystemAdmin,
            Grant::Admin => Role::StationAdmin,
            Grant::Staff => Role::StationStaff,
        }
    }
}

spelled_enum!(
    /// Where a tip is in its life. The order of the variants is the order people meet them
    /// (and the order of every status menu, filter and count): new, acknowledged, being
    /// worked, then the endings, a merged duplicate last.
    TipStatus, "tip status" {
        /// 待受理: nobody has taken it yet.
        New = "new" | "待受理",
        /// 已受理: an officer has taken it.
        Acknowledged = "acknowledged" | "已受理",
        /// 处理中
        InProgress = "in_progress" | "处理中",
        /// 已办结 (with a note the tipster sees)
        Resolved = "resolved" | "已办结",
        /// 不予受理 (with a note the tipster sees)
        Rejected = "rejected" | "不予受理",
        /// 已合并: a duplicate of another tip.
        Merged = "merged" | "已合并",
    }
);

impl TipStatus {
    /// Whether someone still has to work the tip.
    pub fn is_open(self) -> bool {
        matches!(self, TipStatus::New | TipStatus::Acknowledged | TipStatus::InProgress)
    }

    /// The statuses still open, in order (as stored).
    pub fn open_codes() -> Vec<&'static str> {
        TipStatus::ALL.iter().filter(|s| s.is_open()).map(|s| s.as_str()).collect()
    }

    /// The statuses the desk may move an open tip in status `self` to, in order: those
    /// after it (a merge has its own action). Empty for a closed tip.
    pub fn next_choices(self) -> Vec<TipStatus> {
        if !self.is_open() {
            return vec![];
        }
        TipStatus::ALL.iter().copied().filter(|s| *s > self && *s != TipStatus::Merged).collect()
    }
}

/// Which tips a list takes by status: those still open (the pseudo-status `open`), or those
/// in one status. Parsed where people type it (the CLI's `--status`, the console's query).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    /// New, acknowledged and in progress.
    Open,
    Is(TipStatus),
}

impl StatusFilter {
    /// `open` (any case) or a status as [`TipStatus::parse`] takes it.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let s = raw.trim();
        if s.eq_ignore_ascii_case("open") {
            return Ok(StatusFilter::Open);
        }
        TipStatus::parse(s).map(StatusFilter::Is).map_err(|e| InvalidValue(format!("{e}, or open")))
    }

    /// How it is written in a query string or on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusFilter::Open => "open",
            StatusFilter::Is(s) => s.as_str(),
        }
    }

    /// Whether a tip in `status` is listed.
    pub fn admits(self, status: TipStatus) -> bool {
        match self {
            StatusFilter::Open => status.is_open(),
            StatusFilter::Is(s) => s == status,
        }
    }

    /// The statuses listed, in order.
    pub fn statuses(self) -> Vec<TipStatus> {
        TipStatus::ALL.iter().copied().filter(|s| self.admits(*s)).collect()
    }
}

impl std::str::FromStr for StatusFilter {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        StatusFilter::parse(s)
    }
}

spelled_enum!(
    /// A broadcast's kind; a warning comes first wherever both are offered.
    BroadcastKind, "broadcast kind" {
        /// 治安预警
        Warning = "warning" | "治安预警" | "预警",
        /// 通知
        Notice = "notice" | "通知",
    }
);

spelled_enum!(
    /// How pressing a broadcast is, most pressing first.
    Severity, "severity" {
        /// 紧急
        Urgent = "urgent" | "紧急",
        /// 重要
        Important = "important" | "重要",
        /// 一般
        Normal = "normal" | "一般",
    }
);

spelled_enum!(
    /// Where a broadcast stands as a whole (each group's delivery has a [`DeliveryState`]).
    BroadcastStatus, "broadcast status" {
        /// Waiting for its time, or being delivered.
        Scheduled = "scheduled",
        /// Every delivery settled.
        Done = "done",
        /// Stopped by its sender; what was sent is taken back.
        Cancelled = "cancelled",
    }
);

spelled_enum!(
    /// Where one group's copy of a broadcast stands.
    DeliveryState, "delivery state" {
        Pending = "pending",
        /// Claimed by a daemon's delivery worker.
        Sending = "sending",
        Sent = "sent",
        Failed = "failed",
        /// The daemon that claimed it died; it is sent again.
        Lost = "lost",
        /// Its broadcast expired before it could be sent.
        Expired = "expired",
        Cancelled = "cancelled",
    }
);

spelled_enum!(
    /// CAP 1.2 `<status>`: how an alert is to be handled; only `Actual` reaches real groups.
    CapStatus, "CAP status" {
        Actual = "Actual",
        Exercise = "Exercise",
        System = "System",
        Test = "Test",
        Draft = "Draft",
    }
);

spelled_enum!(
    /// A grant on top of an officer's own role, or a console account's role: the station's
    /// staff, its administrator, or the system's.
    Grant, "grant" {
        /// 内勤: works the station's desk.
        Staff = "staff" | "内勤",
        /// 所领导 / 管理员: the station's accounts and figures too.
        Admin = "admin" | "管理员",
        /// Every station (a city's or province's operators).
        System = "system" | "系统管理员",
    }
);

spelled_enum!(
    /// Where a tip was reported.
    TipSource, "tip source" {
        /// In a private chat with the bot.
        Private = "private",
        /// Noticed in a village group.
        Group = "group",
    }
);

spelled_enum!(
    /// The tipster's rating of a resolved tip, best first.
    Rating, "rating" {
        /// 满意
        Satisfied = "satisfied" | "满意",
        /// 基本满意
        Fair = "fair" | "基本满意",
        /// 不满意
        Dissatisfied = "dissatisfied" | "不满意",
    }
);
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mobile_and_landline_numbers_are_normalised() {
        assert_eq!(Phone::parse("139 0371 0121").unwrap().as_str(), "13903710121");
        assert_eq!(Phone::parse("037162581110").unwrap().as_str(), "0371-62581110");
        assert_eq!(Phone::parse("010-12345678").unwrap().as_str(), "010-12345678");
        assert_eq!(Phone::parse("110").unwrap().as_str(), "110");
    }

    #[test]
    fn a_bad_phone_number_says_what_a_good_one_looks_like() {
        let err = Phone::parse("12345abc").unwrap_err();
        assert!(err.0.contains("11-digit mobile"), "{err}");
        assert!(Phone::parse("1390371012").is_err(), "10 digits is not a mobile");
    }

    #[test]
    fn roles_accept_english_and_chinese_spellings() {
        assert_eq!(AssignmentRole::parse("resident").unwrap(), AssignmentRole::Resident);
        assert_eq!(AssignmentRole::parse("包村民警").unwrap(), AssignmentRole::Contact);
        assert_eq!(AssignmentRole::parse("Area_Chief").unwrap(), AssignmentRole::AreaChief);
        let err = AssignmentRole::parse("boss").unwrap_err();
        assert!(err.0.contains("resident (驻村民警/社区民警)"), "{err}");
    }

    #[test]
    fn codes_reject_spaces_and_empty_values() {
        assert!(VillageCode::parse("").is_err());
        assert!(VillageCode::parse("41 01").is_err());
        assert_eq!(VillageCode::parse(" 410184101201 ").unwrap().as_str(), "410184101201");
    }

    #[test]
    fn statuses_kinds_and_severities_come_in_the_order_people_use_them() {
        let statuses = TipStatus::codes();
        assert_eq!(statuses, ["new", "acknowledged", "in_progress", "resolved", "rejected", "merged"]);
        assert_eq!(BroadcastKind::codes(), ["warning", "notice"]);
        assert_eq!(Severity::codes(), ["urgent", "important", "normal"]);
        assert_eq!(Severity::from_code("important"), Some(Severity::Important));
        assert_eq!(Severity::from_code("重要"), None, "stored values are codes");
        assert_eq!(TipStatus::open_codes(), ["new", "acknowledged", "in_progress"]);
    }

    #[test]
    fn the_next_status_of_a_tip_is_the_one_after_where_it_stands() {
        use TipStatus::*;
        assert_eq!(New.next_choices(), [Acknowledged, InProgress, Resolved, Rejected]);
        assert_eq!(Acknowledged.next_choices(), [InProgress, Resolved, Rejected]);
        assert_eq!(InProgress.next_choices(), [Resolved, Rejected]);
        assert!(Resolved.next_choices().is_empty() && Merged.next_choices().is_empty());
        assert_eq!(TipStatus::parse("已合并").unwrap(), Merged);
    }

    #[test]
    fn a_status_filter_is_open_or_one_status() {
        assert_eq!(StatusFilter::parse(" Open ").unwrap(), StatusFilter::Open);
        assert_eq!(StatusFilter::parse("resolved").unwrap(), StatusFilter::Is(TipStatus::Resolved));
        assert!(StatusFilter::parse("closed").unwrap_err().0.contains("or open"));
        assert_eq!(StatusFilter::Open.statuses(), [TipStatus::New, TipStatus::Acknowledged, TipStatus::InProgress]);
        assert!(StatusFilter::Is(TipStatus::Merged).admits(TipStatus::Merged));
        assert!(!StatusFilter::Open.admits(TipStatus::Rejected));
    }
}
