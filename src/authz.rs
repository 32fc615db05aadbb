//! Who may do what: the one place that decides every privileged action.
//!
//! A person's [`Role`] comes only from enrolment (a platform account linked to an officer of
//! the registry by a one-time code) and from a station grant (`cunjing officer grant`): never
//! from a name, a username or a message sent on behalf of a chat. Whether an action is allowed
//! depends on the role, the [`Action`] and the [`Scope`] — how the thing acted on relates to
//! the actor: one of the villages they serve, another village of their station, another
//! station, or everything (a broadcast to all stations). [`permits`] is that table; the tests
//! walk all of it. Callers resolve an [`Actor`] (see `Store::actor`), ask [`Actor::decide`]
//! and write the answer to the audit log.

use std::fmt;

pub use crate::domain::Role;

/// A privileged action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Bind or unbind a group to a village (or a staff group to a station).
    Bind,
    /// Send a warning or notice; cancel or correct one.
    Broadcast,
    /// Give a tip to an officer.
    Assign,
    /// Acknowledge, resolve, reject or merge a tip; answer its tipster.
    Resolve,
    /// List or export the tips and figures of a station.
    Export,
    /// Issue enrolment codes and grant station roles.
    Enrol,
    /// Reload the triage rules and templates.
    ReloadRules,
    /// See the phone number a tipster left.
    ViewContact,
}

impl Action {
    pub const ALL: [Action; 8] = [
        Action::Bind,
        Action::Broadcast,
        Action::Assign,
        Action::Resolve,
        Action::Export,
        Action::Enrol,
        Action::ReloadRules,
        Action::ViewContact,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Bind => "bind",
            Action::Broadcast => "broadcast",
            Action::Assign => "assign",
            Action::Resolve => "resolve",
            Action::Export => "export",
            Action::Enrol => "enrol",
            Action::ReloadRules => "reload_rules",
            Action::ViewContact => "view_contact",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the thing acted on relates to the actor, nearest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// A village the actor serves today (any role but volunteer).
    OwnVillage,
    /// Another village, an office or the whole of the actor's station.
    OwnStation,
    /// Something of another station.
    ForeignStation,
    /// Every station at once (a broadcast to `all`, the triage rules).
    Everything,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::OwnVillage, Scope::OwnStation, Scope::ForeignStation, Scope::Everything];
}

/// The table: may `role` do `action` on something at `scope`? Each role's reach is the
/// farthest scope it may act in, per action (`None`: not at all).
pub fn permits(role: Role, action: Action, scope: Scope) -> bool {
    use Action::*;
    use Role::*;
    use Scope::*;
    let reach: Option<Scope> = match (role, action) {
        (SystemAdmin, _) => Some(Everything),
        (Resident | Volunteer, _) => None,
        // Officers and auxiliaries work their own villages: bind their groups, warn them,
        // take, hand on and close their tips (the contact a tipster left is on the card).
        (Auxiliary, Bind | Broadcast | Assign | Resolve | ViewContact) => Some(OwnVillage),
        (Auxiliary, Export | Enrol | ReloadRules) => None,
        // A police officer works the tips of their own villages, and may set up groups and
        // warn any village of the station; reviewing the station's tips is the staff's job.
        (Officer, Assign | Resolve | ViewContact) => Some(OwnVillage),
        (Officer, Bind | Broadcast) => Some(OwnStation),
        (Officer, Export | Enrol | ReloadRules) => None,
        (StationStaff, Enrol | ReloadRules) => None,
        (StationStaff, _) => Some(OwnStation),
        // The triage rules are shared by every station: a station admin may reload them
        // (they only re-read the operator's file), nothing more outside the station.
        (StationAdmin, ReloadRules) => Some(Everything),
        (StationAdmin, _) => Some(OwnStation),
    };
    reach.is_some_and(|reach| scope <= reach)
}

/// Who is acting, as far as authorisation goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The enrolled officer, if any.
    pub officer_id: Option<i64>,
    /// Their badge, for the audit log.
    pub badge: Option<String>,
    /// The platform account (`telegram:12345`), for the audit log of someone not enrolled.
    pub account: Option<String>,
    pub role: Role,
    /// The station of the officer, or of the station grant.
    pub station_id: Option<i64>,
    /// The villages the officer serves today (roles on the duty chain).
    pub villages: Vec<i64>,
}

/// What an action is done to: a village, or a station's office / the station itself, or all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Village { village_id: i64, station_id: i64 },
    Station { station_id: i64 },
    Everything,
}

/// The answer, with the scope it was decided at (for the audit log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub scope: Scope,
}

impl Actor {
    /// Someone with no enrolment: a resident, or a message sent on behalf of a chat.
    pub fn resident() -> Actor {
        Actor { officer_id: None, badge: None, account: None, role: Role::Resident, station_id: None, villages: vec![] }
    }

    /// The operator at the command line.
    pub fn system() -> Actor {
        Actor {
            officer_id: None,
            badge: None,
            account: Some("cli".into()),
            role: Role::SystemAdmin,
            station_id: None,
            villages: vec![],
        }
    }

    /// How `subject` relates to this actor.
    pub fn scope_of(&self, subject: Subject) -> Scope {
        match subject {
            Subject::Everything => Scope::Everything,
            Subject::Village { village_id, station_id } => {
                if self.villages.contains(&village_id) {
                    Scope::OwnVillage
                } else if self.station_id == Some(station_id) {
                    Scope::OwnStation
                } else {
                    Scope::ForeignStation
                }
            }
            Subject::Station { station_id } if self.station_id == Some(station_id) => Scope::OwnStation,
            Subject::Station { .. } => Scope::ForeignStation,
        }
    }

    pub fn decide(&self, action: Action, subject: Subject) -> Decision {
        let scope = self.scope_of(subject);
        Decision { allowed: permits(self.role, action, scope), scope }
    }

    /// `officer:BADGE`, or the role for someone without a badge, as the audit log names them.
    pub fn label(&self) -> String {
        match (&self.badge, &self.account) {
            (Some(badge), _) => format!("officer:{badge}"),
            (None, Some(account)) => account.clone(),
            (None, None) => self.role.as_str().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Grant, OfficerKind};

    /// The expected matrix, written out role by role: for each action, the farthest scope
    /// allowed ("-" for none; V own village, S own station, F foreign station, E everything).
    /// Columns: bind, broadcast, assign, resolve, export, enrol, reload_rules, view_contact.
    const EXPECTED: [(Role, [&str; 8]); 7] = [
        (Role::Resident, ["-", "-", "-", "-", "-", "-", "-", "-"]),
        (Role::Volunteer, ["-", "-", "-", "-", "-", "-", "-", "-"]),
        (Role::Auxiliary, ["V", "V", "V", "V", "-", "-", "-", "V"]),
        (Role::Officer, ["S", "S", "V", "V", "-", "-", "-", "V"]),
        (Role::StationStaff, ["S", "S", "S", "S", "S", "-", "-", "S"]),
        (Role::StationAdmin, ["S", "S", "S", "S", "S", "S", "E", "S"]),
        (Role::SystemAdmin, ["E", "E", "E", "E", "E", "E", "E", "E"]),
    ];

    fn allowed_by_reach(reach: &str, scope: Scope) -> bool {
        match reach {
            "-" => false,
            "V" => scope == Scope::OwnVillage,
            "S" => matches!(scope, Scope::OwnVillage | Scope::OwnStation),
            "E" => true,
            other => panic!("unknown reach {other}"),
        }
    }

    #[test]
    fn every_role_action_and_scope_is_decided_as_the_written_matrix_says() {
        let mut checked = 0;
        for (role, reaches) in EXPECTED {
            for (action, reach) in Action::ALL.into_iter().zip(reaches) {
                for scope in Scope::ALL {
                    let want = allowed_by_reach(reach, scope);
                    assert_eq!(permits(role, action, scope), want, "{role} {action} {scope:?}");
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, Role::ALL.len() * Action::ALL.len() * Scope::ALL.len());
    }

    #[test]
    fn a_higher_role_may_do_everything_a_lower_one_may() {
        for pair in Role::ALL.windows(2) {
            for action in Action::ALL {
                for scope in Scope::ALL {
                    if permits(pair[0], action, scope) {
                        assert!(permits(pair[1], action, scope), "{} may {action} at {scope:?}", pair[0]);
                    }
                }
            }
        }
    }

    #[test]
    fn the_subject_is_placed_relative_to_the_actor() {
        let actor = Actor {
            officer_id: Some(1),
            badge: Some("041201".into()),
            account: None,
            role: Role::Auxiliary,
            station_id: Some(10),
            villages: vec![100],
        };
        assert_eq!(actor.scope_of(Subject::Village { village_id: 100, station_id: 10 }), Scope::OwnVillage);
        assert_eq!(actor.scope_of(Subject::Village { village_id: 101, station_id: 10 }), Scope::OwnStation);
        assert_eq!(actor.scope_of(Subject::Village { village_id: 200, station_id: 20 }), Scope::ForeignStation);
        assert_eq!(actor.scope_of(Subject::Station { station_id: 10 }), Scope::OwnStation);
        assert_eq!(actor.scope_of(Subject::Everything), Scope::Everything);
        assert!(actor.decide(Action::Broadcast, Subject::Village { village_id: 100, station_id: 10 }).allowed);
        assert!(!actor.decide(Action::Broadcast, Subject::Village { village_id: 101, station_id: 10 }).allowed);
    }

    #[test]
    fn grants_raise_a_role_and_never_lower_it() {
        assert_eq!(Role::of_officer(OfficerKind::Police, None), Role::Officer);
        assert_eq!(Role::of_officer(OfficerKind::Auxiliary, Some(Grant::Staff)), Role::StationStaff);
        assert_eq!(Role::of_officer(OfficerKind::Police, Some(Grant::System)), Role::SystemAdmin);
        assert_eq!(Role::of_officer(OfficerKind::Volunteer, None), Role::Volunteer);
    }
}
