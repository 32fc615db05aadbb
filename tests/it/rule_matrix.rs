//! The tip workflow's rules, driven through all four front ends — the officer's buttons, the
//! staff group's commands, the console's forms and the command line — from one table of
//! cases: each refusal is seen by the person (message, page, exit code) and leaves the tip as
//! it was; the allowed assign and close are done, as the store shows.

use reqwest::StatusCode;

use crate::app::TestApp;
use crate::app_test;
use crate::cli::{cunjing, text};
use crate::fake_telegram::{SentMessage, TgUser};
use crate::seed::seed_tips;
use crate::tips::{QIANDIAN, STAFF, staff_group, submit_anonymous_tip, zhang};
use crate::web::{Client, console};

const DAY_MS: i64 = 86_400_000;

/// The four front ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Front {
    OfficerButton,
    StaffCommand,
    ConsoleForm,
    Cli,
}

const FRONTS: [Front; 4] = [Front::OfficerButton, Front::StaffCommand, Front::ConsoleForm, Front::Cli];

/// Who acts: someone of the tip's station, or of another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Own,
    Foreign,
}

/// What is asked.
#[derive(Debug, Clone, Copy)]
enum Ask<'a> {
    Assign(&'a str),
    Close,
}

/// What the person saw: done or not, and the words.
struct Seen {
    done: bool,
    words: String,
}

impl Front {
    /// How each front end says no: in the chat's words, the console's form error or refusal
    /// page, the command line's English.
    fn refusals(self) -> &'static [&'static str] {
        match self {
            Front::OfficerButton => &["已经处理过了", "无法操作"],
            Front::StaffCommand => &["已经处理过了", "不负责", "只有本派出所的内勤"],
            Front::ConsoleForm => &["请选择负责本村（格）的民警", "不能这样操作", "403"],
            Front::Cli => &["Refused:"],
        }
    }
}

/// A tip number the seed gives tip `i`.
fn seeded(i: usize) -> String {
    format!("T{}-{:04}", 20250101 + i / 10000, i % 10000)
}

struct Bench {
    port: u16,
    card: SentMessage,
    chen: TgUser,
    chen_chat: SentMessage,
}

impl Bench {
    async fn act(&self, app: &TestApp, front: Front, who: Who, number: &str, ask: Ask<'_>) -> Seen {
        let tip = app.store().tip_by_number(number).await.unwrap().unwrap();
        match front {
            Front::OfficerButton => {
                let data = match ask {
                    Ask::Assign(badge) => {
                        let officer = app.store().officer_by_badge(badge).await.unwrap().unwrap();
                        format!("tip:to:{}:{}", tip.id, officer.id)
                    }
                    Ask::Close => format!("tip:fin:{}:-", tip.id),
                };
                let (user, msg) = match who {
                    Who::Own => (zhang(), &self.card),
                    Who::Foreign => (self.chen.clone(), &self.chen_chat),
                };
                let mark = app.fake.mark();
                app.fake.press_button(msg.chat_id, &user, msg.message_id, &data);
                let m = app.fake.wait_for_new(mark, |m| m.chat_id == msg.chat_id).await;
                let done = m.text.contains("转派给") || m.text.contains("已办结");
                Seen { done, words: m.text }
            }
            Front::StaffCommand => {
                let user = if who == Who::Own { zhang() } else { self.chen.clone() };
                let command = match ask {
                    Ask::Assign(badge) => format!("/assign {number} {badge}"),
                    Ask::Close => format!("/resolve {number} 已处理"),
                };
                let m = app.ask(STAFF, &user, &command).await;
                let done = m.text.contains("已派给") || m.text.contains("赵明") || m.text.contains("已办结");
                Seen { done, words: m.text }
            }
            Front::ConsoleForm => {
                let c = Client::logged_in(self.port, if who == Who::Own { "neiqin" } else { "waisuo" }).await;
                let csrf = c.get("/tips").await.csrf();
                let page = match ask {
                    Ask::Assign(badge) => {
                        c.post(&format!("/tips/{number}/assign"), &[("csrf", &csrf), ("badge", badge)]).await
                    }
                    Ask::Close => {
                        let form = [("csrf", csrf.as_str()), ("status", "resolved"), ("note", "已处理")];
                        c.post(&format!("/tips/{number}/status"), &form).await
                    }
                };
                let done = page.location.starts_with(&format!("/tips/{number}?ok="));
                let words = if page.status == StatusCode::FORBIDDEN { "403".to_string() } else { page.body };
                Seen { done, words }
            }
            Front::Cli => {
                let station = if who == Who::Own { "HZPCS" } else { "XZPCS" };
                let out = match ask {
                    Ask::Assign(badge) => {
                        cunjing(&["tips", "assign", number, badge, "--station", station], &app.db.url, "").await
                    }
                    Ask::Close => {
                        let args = ["tips", "close", number, "--note", "已处理", "--station", station];
                        cunjing(&args, &app.db.url, "").await
                    }
                };
                let done = out.status.success();
                if !done {
                    assert_eq!(out.status.code(), Some(1), "a refusal exits 1: {}", text(&out.stderr));
                }
                Seen { done, words: format!("{}{}", text(&out.stdout), text(&out.stderr)) }
            }
        }
    }
}

app_test!(every_front_end_refuses_and_allows_the_same_tip_actions, |app| {
    app.enrol("041201", &zhang()).await;
    app.enrol("041204", &TgUser::new(6002, "赵明")).await;
    let port = console(&mut app).await;
    staff_group(&app).await;
    // 陈静 serves none of 前店村 and moves to 新庄派出所, with the staff role there.
    let chen = TgUser::new(6006, "陈静");
    let code = app.store().issue_enrolment_code("041206", 3_600_000).await.unwrap().unwrap();
    let chen_chat = app.fake.private_chat(chen.clone());
    let chen_chat = app.ask(chen_chat, &chen, &format!("/start {}", code.code)).await;
    let xz = app.store().station_id("XZPCS").await.unwrap().unwrap();
    sqlx::query("UPDATE officers SET station_id = $1 WHERE badge = '041206'")
        .bind(xz)
        .execute(app.store().writer())
        .await
        .unwrap();
    assert!(app.store().set_grant("041206", Some(cunjing::domain::Grant::Staff), 0).await.unwrap());
    let (_chat, _number, card) = submit_anonymous_tip(&app, "村口变压器冒烟了").await;
    let qiandian = app.store().village_by_code(QIANDIAN).await.unwrap().unwrap().id;
    seed_tips(app.store(), &[qiandian], 24, chrono::Utc::now().timestamp_millis(), DAY_MS).await;
    let bench = Bench { port, card, chen, chen_chat };

    // Seeded statuses: i % 8 == 0 new, 1 acknowledged, 2 rejected, 3 in progress, else resolved.
    // Per front end: (open tip to assign and close, foreign actor's open tip, closed tips).
    let tips = [(0, 16, 2, 4), (1, 17, 10, 5), (3, 19, 18, 6), (8, 9, 12, 7)];
    let zhao = "041204";
    for (front, (open, foreign_open, rejected, resolved)) in FRONTS.into_iter().zip(tips) {
        let (open, foreign_open, rejected, resolved) =
            (seeded(open), seeded(foreign_open), seeded(rejected), seeded(resolved));
        let cases: [(&str, Who, &str, Ask, bool); 6] = [
            ("assign to an officer of another station", Who::Own, &open, Ask::Assign("041206"), false),
            ("assign a closed tip", Who::Own, &rejected, Ask::Assign(zhao), false),
            ("close an already closed tip", Who::Own, &resolved, Ask::Close, false),
            ("an actor of another station closes the tip", Who::Foreign, &foreign_open, Ask::Close, false),
            ("assign the open tip within its village", Who::Own, &open, Ask::Assign(zhao), true),
            ("close the open tip", Who::Own, &open, Ask::Close, true),
        ];
        for (what, who, number, ask, allowed) in cases {
            let before = app.store().tip_by_number(number).await.unwrap().unwrap();
            let seen = bench.act(&app, front, who, number, ask).await;
            let after = app.store().tip_by_number(number).await.unwrap().unwrap();
            assert_eq!(seen.done, allowed, "{front:?}, {what}: {}", seen.words);
            if allowed {
                match ask {
                    Ask::Assign(_) => {
                        let officer = app.store().officer_by_badge(zhao).await.unwrap().unwrap();
                        assert_eq!(after.assigned_officer_id, Some(officer.id), "{front:?}, {what}");
                    }
                    Ask::Close => assert_eq!(after.status, "resolved", "{front:?}, {what}"),
                }
            } else {
                let said = front.refusals().iter().any(|w| seen.words.contains(w));
                assert!(said, "{front:?}, {what}: the refusal is said: {}", seen.words);
                assert_eq!(
                    (after.status.as_str(), after.assigned_officer_id, after.ack_deadline, after.public_note.clone()),
                    (
                        before.status.as_str(),
                        before.assigned_officer_id,
                        before.ack_deadline,
                        before.public_note.clone()
                    ),
                    "{front:?}, {what}: the tip is unchanged"
                );
            }
        }
    }
});

app_test!(a_tip_worked_at_the_command_line_reaches_the_officer_and_the_tipster_through_the_running_daemon, |app| {
    app.enrol("041201", &zhang()).await;
    let zhao = TgUser::new(6002, "赵明");
    app.enrol("041204", &zhao).await;
    let (tipster_chat, number, _) = submit_anonymous_tip(&app, "村口有人推销假药").await;

    let mark = app.fake.mark();
    let out = cunjing(&["tips", "assign", &number, "041204", "--station", "HZPCS"], &app.db.url, "").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("queued"), "{}", text(&out.stdout));
    // The daemon's next timer round sends the officer's card.
    app.advance(std::time::Duration::ZERO);
    let card = app.fake.wait_for_new(mark, |m| m.chat_id == zhao.id && m.text.contains(&number)).await;
    assert!(!card.text.contains("王大娘"), "the tip is anonymous: {}", card.text);

    let mark = app.fake.mark();
    let out =
        cunjing(&["tips", "close", &number, "--note", "已查明并处理", "--station", "HZPCS"], &app.db.url, "").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    app.advance(std::time::Duration::ZERO);
    let notice = app.fake.wait_for_new(mark, |m| m.chat_id == tipster_chat && m.text.contains(&number)).await;
    assert!(notice.text.contains("已查明并处理"), "{}", notice.text);
    let queued: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM queued_outbound").fetch_one(app.store().pool()).await.unwrap();
    assert_eq!(queued, 0, "each queued message is sent once and leaves the queue");
});
