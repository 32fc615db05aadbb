//! The station console in a real browser: headless Chromium driven over WebDriver
//! (chromedriver, fantoccini). A member of staff logs in, filters the tips, opens one,
//! replies (and the fake Telegram receives it), sends a warning and watches its ledger fill,
//! opens the tip's print view, downloads the CSV; the pages fit a 1366×768 office screen and a
//! phone. Screenshots of the
//! main pages are saved in `target/screenshots/` to look at.
//!
//! Needs the Debian packages `chromium` and `chromium-driver` (`.ci/run` installs them).

use std::path::PathBuf;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};

use crate::app::{TestApp, eventually, free_port};
use crate::seed::seed_tips;
use crate::tips::{QIANDIAN, submit_anonymous_tip, zhang};
use crate::web::{PASSWORD, console};

/// chromedriver on a free port, stopped with the test.
struct Driver {
    child: std::process::Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_driver() -> Driver {
    let port = free_port();
    let child = std::process::Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("chromedriver runs (Debian package chromium-driver; .ci/run installs it)");
    Driver { child, port }
}

async fn browser(driver: &Driver, downloads: &std::path::Path) -> Client {
    // fantoccini's HTTP client wants a TLS provider even for http:// (chromedriver is local).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1366,768", "--lang=zh-CN"],
            "prefs": {"download.default_directory": downloads, "download.prompt_for_download": false},
        }),
    );
    let url = format!("http://127.0.0.1:{}", driver.port);
    let mut last = None;
    for _ in 0..100 {
        match ClientBuilder::rustls().expect("rustls").capabilities(caps.clone()).connect(&url).await {
            Ok(c) => return c,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no WebDriver session: {last:?}");
}

fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    assert_eq!(&png[..4], b"\x89PNG");
    std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
}

/// The text of the element `css`; empty while the page is still loading.
async fn text_of(c: &Client, css: &str) -> String {
    match c.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Whether the page needs no horizontal scrolling at the current window size.
async fn fits(c: &Client) -> bool {
    c.execute("return document.documentElement.scrollWidth <= window.innerWidth + 1;", vec![])
        .await
        .unwrap()
        .as_bool()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_work_a_tip_and_a_warning_in_a_real_browser() {
    let mut app = TestApp::spawn(crate::db::Engine::Sqlite).await.unwrap();
    let run = async {
        app.enrol("041201", &zhang()).await;
        let port = console(&mut app).await;
        let (chat, number, _) = submit_anonymous_tip(&app, "村口桥下有人电鱼，天天晚上来").await;
        submit_anonymous_tip(&app, "有人在村委会门口吵架").await;
        crate::desk::add_location(&app, &number, 34.4850, 113.7360).await;
        let group = -100_601;
        app.fake.group(group, "前店村村民群", true);
        let v = app.store().village_by_code(QIANDIAN).await.unwrap().unwrap();
        app.store().bind_chat_to_village("telegram", group, "前店村村民群", v.id, None).await.unwrap();

        let driver = start_driver();
        let downloads = tempfile::tempdir().unwrap();
        let c = browser(&driver, downloads.path()).await;
        let base = format!("http://127.0.0.1:{port}");

        // Log in.
        c.goto(&format!("{base}/tips")).await.unwrap();
        assert!(c.current_url().await.unwrap().path().ends_with("/login"));
        shot(&c, "login").await;
        c.find(Locator::Id("username")).await.unwrap().send_keys("neiqin").await.unwrap();
        c.find(Locator::Id("password")).await.unwrap().send_keys(PASSWORD).await.unwrap();
        c.find(Locator::Id("login")).await.unwrap().click().await.unwrap();
        c.wait().for_element(Locator::Id("tips")).await.unwrap();
        assert_eq!(text_of(&c, "#total").await, "2");
        assert!(fits(&c).await, "the tips page fits 1366×768");
        shot(&c, "tips").await;

        // Filter: only the tips of this morning's category.
        c.find(Locator::Id("f-category")).await.unwrap().select_by_value("theft").await.unwrap();
        c.find(Locator::Id("apply")).await.unwrap().click().await.unwrap();
        let filtered = |query: &'static str, total: &'static str| {
            let c = &c;
            async move {
                c.current_url().await.is_ok_and(|u| u.query().unwrap_or("").contains(query))
                    && text_of(c, "#total").await == total
            }
        };
        eventually("the category filter applied", || filtered("category=theft", "2")).await;
        let village = c.wait().for_element(Locator::Id("f-village")).await.unwrap();
        village.select_by_value("410184101205").await.unwrap();
        c.find(Locator::Id("apply")).await.unwrap().click().await.unwrap();
        eventually("another village has none", || filtered("village=410184101205", "0")).await;
        c.goto(&format!("{base}/tips")).await.unwrap();

        // Open the tip and reply.
        c.find(Locator::LinkText(&number)).await.unwrap().click().await.unwrap();
        c.wait().for_element(Locator::Id("timeline")).await.unwrap();
        assert!(text_of(&c, "#summary").await.contains("电鱼"));
        // The map of the tip's area is drawn and coloured by the stylesheet (no inline style).
        let map = "return [document.querySelector('#tip-map svg').getBoundingClientRect().width, \
                   getComputedStyle(document.querySelector('#tip-map .area path')).fill, \
                   getComputedStyle(document.querySelector('#tip-map .point .dot')).fill];";
        let map = c.execute(map, vec![]).await.unwrap();
        assert!(map[0].as_f64().unwrap() > 200.0, "{map:?}");
        assert_eq!((map[1].as_str(), map[2].as_str()), (Some("rgb(188, 211, 240)"), Some("rgb(217, 48, 37)")));
        shot(&c, "tip").await;
        c.execute("document.getElementById('tip-map').scrollIntoView();", vec![]).await.unwrap();
        shot(&c, "tip-map").await;
        c.find(Locator::Id("reply-text")).await.unwrap().send_keys("收到，今晚派人蹲守。").await.unwrap();
        let mark = app.fake.mark();
        c.find(Locator::Id("reply")).await.unwrap().click().await.unwrap();
        c.wait().for_element(Locator::Id("ok")).await.unwrap();
        let relayed = app.fake.wait_for_new(mark, |m| m.chat_id == chat).await;
        assert!(relayed.text.contains("今晚派人蹲守"), "{}", relayed.text);

        // The print view for the case file: the timeline, no forms, no navigation.
        c.find(Locator::Id("print")).await.unwrap().click().await.unwrap();
        c.wait().for_element(Locator::Id("timeline")).await.unwrap();
        let forms =
            c.execute("return document.forms.length + document.querySelectorAll('header').length;", vec![]).await;
        assert_eq!(forms.unwrap().as_i64(), Some(0), "the print view has no forms and no navigation");
        let timeline = text_of(&c, "#timeline").await;
        assert!(
            timeline.contains("派出所答复") && timeline.contains("今晚派人蹲守"),
            "the desk's reply, named as one: {timeline}"
        );
        shot(&c, "tip-print").await;

        // A warning to 前店村, previewed, sent, its ledger filling.
        c.goto(&format!("{base}/broadcasts/new")).await.unwrap();
        c.find(Locator::Css(&format!("input[value='village:{QIANDIAN}']"))).await.unwrap().click().await.unwrap();
        c.find(Locator::Id("text")).await.unwrap().send_keys("近期夜间有人电鱼，发现请及时报告。").await.unwrap();
        c.find(Locator::Id("preview-button")).await.unwrap().click().await.unwrap();
        c.wait().for_element(Locator::Id("preview")).await.unwrap();
        assert!(text_of(&c, "#preview").await.contains("1 个群"));
        shot(&c, "broadcast-preview").await;
        c.find(Locator::Id("confirm")).await.unwrap().click().await.unwrap();
        c.wait().for_element(Locator::Id("ledger")).await.unwrap();
        eventually("the group got it", || async { !app.fake.sent_to(group).is_empty() }).await;
        eventually("the ledger shows it", || async {
            c.refresh().await.unwrap();
            text_of(&c, "#sent").await == "1"
        })
        .await;
        shot(&c, "broadcast-ledger").await;

        // The Content-Security-Policy allows no inline style or script, yet the page is styled
        // from /static/console.css and the cancel button asks first, from /static/console.js.
        let background = c
            .execute("return getComputedStyle(document.querySelector('header')).backgroundColor;", vec![])
            .await
            .unwrap();
        assert_eq!(background.as_str(), Some("rgb(31, 78, 140)"), "the stylesheet applies");
        assert_eq!(text_of(&c, "#station").await, "和庄派出所", "the header names the station");
        let id: i64 = c.current_url().await.unwrap().path().rsplit('/').next().unwrap().parse().unwrap();
        c.find(Locator::Id("cancel")).await.unwrap().click().await.unwrap();
        assert!(c.get_alert_text().await.unwrap().contains("确定撤回"), "the script asks before cancelling");
        c.dismiss_alert().await.unwrap();
        let kept = app.store().broadcast(id).await.unwrap().unwrap();
        assert_ne!(kept.status, "cancelled", "answered no: nothing is taken back");

        // Download the list as CSV.
        c.goto(&format!("{base}/tips")).await.unwrap();
        c.find(Locator::Id("export-csv")).await.unwrap().click().await.unwrap();
        let file = downloads.path().join("tips.csv");
        eventually("the CSV is downloaded", || async { std::fs::metadata(&file).is_ok_and(|m| m.len() > 0) }).await;
        let csv = std::fs::read_to_string(&file).unwrap();
        assert!(csv.starts_with('\u{feff}') && csv.contains(&number), "{csv}");

        c.goto(&format!("{base}/registry")).await.unwrap();
        let covered = "return getComputedStyle(document.querySelector('#coverage-map .covered path')).fill;";
        assert_eq!(c.execute(covered, vec![]).await.unwrap().as_str(), Some("rgb(212, 236, 217)"));
        shot(&c, "registry").await;
        c.goto(&format!("{base}/figures")).await.unwrap();
        shot(&c, "figures").await;
        c.execute("document.getElementById('area-figures').scrollIntoView();", vec![]).await.unwrap();
        shot(&c, "figures-areas").await;
        c.execute("document.getElementById('warnings-chart').scrollIntoView();", vec![]).await.unwrap();
        shot(&c, "figures-charts").await;

        // On a phone the list needs no sideways scrolling either.
        c.set_window_size(390, 844).await.unwrap();
        c.goto(&format!("{base}/tips")).await.unwrap();
        assert!(fits(&c).await, "the tips page fits a phone");
        shot(&c, "tips-phone").await;
        c.close().await.unwrap();
    };
    tokio::time::timeout(Duration::from_secs(120), run).await.expect("the browser scenario finished within 120 s");
    app.stop().await;
}

/// The number of rows the list shows.
async fn rows(c: &Client) -> i64 {
    c.execute("return document.querySelectorAll('#tips tbody tr').length;", vec![]).await.unwrap().as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_page_search_and_bulk_assign_among_five_thousand_tips_in_a_real_browser() {
    let mut app = TestApp::spawn(crate::db::Engine::Sqlite).await.unwrap();
    let run = async {
        app.enrol("041201", &zhang()).await;
        let port = console(&mut app).await;
        let station = app.store().station_id("HZPCS").await.unwrap();
        let villages: Vec<i64> = app
            .store()
            .all_villages()
            .await
            .unwrap()
            .into_iter()
            .filter(|v| Some(v.station_id) == station)
            .map(|v| v.id)
            .collect();
        seed_tips(app.store(), &villages, 5000, chrono::Utc::now().timestamp_millis() - 60_000, 365 * 86_400_000).await;
        let (_chat, number, _) = submit_anonymous_tip(&app, "村口桥下有人电鱼，天天晚上来").await;

        let driver = start_driver();
        let downloads = tempfile::tempdir().unwrap();
        let c = browser(&driver, downloads.path()).await;
        let base = format!("http://127.0.0.1:{port}");
        c.goto(&format!("{base}/login")).await.unwrap();
        c.find(Locator::Id("username")).await.unwrap().send_keys("neiqin").await.unwrap();
        c.find(Locator::Id("password")).await.unwrap().send_keys(PASSWORD).await.unwrap();
        c.find(Locator::Id("login")).await.unwrap().click().await.unwrap();
        c.wait().for_element(Locator::Id("tips")).await.unwrap();

        // A page of 50 and the pager, not 5,001 rows.
        assert_eq!(text_of(&c, "#total").await, "5001");
        assert_eq!(rows(&c).await, 50);
        assert_eq!(text_of(&c, "#page-of").await, "第 1 / 101 页");
        assert!(fits(&c).await, "the list with its pager fits 1366×768");
        shot(&c, "tips-pages").await;
        c.find(Locator::Id("next")).await.unwrap().click().await.unwrap();
        eventually("page 2", || async { text_of(&c, "#page-of").await == "第 2 / 101 页" }).await;
        let jump = c.find(Locator::Id("page-jump")).await.unwrap();
        jump.clear().await.unwrap();
        jump.send_keys("101").await.unwrap();
        c.find(Locator::Id("go")).await.unwrap().click().await.unwrap();
        eventually("the last page", || async { text_of(&c, "#page-of").await == "第 101 / 101 页" }).await;
        assert_eq!(rows(&c).await, 1, "5,001 tips: one on the last page");

        // The overdue counter opens the overdue queue.
        let overdue: String = text_of(&c, "#count-overdue").await.split_whitespace().last().unwrap().to_string();
        c.find(Locator::Id("count-overdue")).await.unwrap().click().await.unwrap();
        eventually("the overdue queue", || async { text_of(&c, "#total").await == overdue }).await;

        // Search by number, then give the tip to the contact officer with the bulk action.
        c.goto(&format!("{base}/tips")).await.unwrap();
        c.find(Locator::Id("f-q")).await.unwrap().send_keys(&number).await.unwrap();
        c.find(Locator::Id("apply")).await.unwrap().click().await.unwrap();
        eventually("the search found it", || async { text_of(&c, "#total").await == "1" }).await;
        assert!(c.find(Locator::LinkText(&number)).await.is_ok());
        c.find(Locator::Id("check-all")).await.unwrap().click().await.unwrap();
        c.find(Locator::Id("bulk-badge")).await.unwrap().select_by_value("041204").await.unwrap();
        c.find(Locator::Id("bulk-assign")).await.unwrap().click().await.unwrap();
        c.wait().for_element(Locator::Id("bulk-done")).await.unwrap();
        assert!(text_of(&c, "#bulk-done").await.contains("批量转派：成功 1 条"), "{}", text_of(&c, "#bulk-done").await);
        let zhao = app.store().officer_by_badge("041204").await.unwrap().unwrap();
        let tip = app.store().tip_by_number(&number).await.unwrap().unwrap();
        assert_eq!(tip.assigned_officer_id, Some(zhao.id));

        // Two hours on, nobody has taken it: the escalation hands it on with a new deadline,
        // and it is in the overdue queue all the same.
        let before = tip.ack_deadline;
        app.advance(Duration::from_secs(121 * 60));
        eventually("handed on or reminded, with a new deadline", || async {
            app.store().tip_by_number(&number).await.unwrap().unwrap().ack_deadline != before
        })
        .await;
        c.goto(&format!("{base}/login")).await.unwrap(); // the session timed out meanwhile
        c.find(Locator::Id("username")).await.unwrap().send_keys("neiqin").await.unwrap();
        c.find(Locator::Id("password")).await.unwrap().send_keys(PASSWORD).await.unwrap();
        c.find(Locator::Id("login")).await.unwrap().click().await.unwrap();
        c.wait().for_element(Locator::Id("count-overdue")).await.unwrap();
        c.find(Locator::Id("count-overdue")).await.unwrap().click().await.unwrap();
        eventually("the overdue queue", || async {
            c.current_url().await.is_ok_and(|u| u.query().unwrap_or("").contains("overdue=1"))
        })
        .await;
        c.find(Locator::Id("f-q")).await.unwrap().send_keys(&number).await.unwrap();
        c.find(Locator::Id("apply")).await.unwrap().click().await.unwrap();
        eventually("still overdue after the escalation", || async {
            c.current_url().await.is_ok_and(|u| u.query().unwrap_or("").contains("q="))
                && text_of(&c, "#total").await == "1"
        })
        .await;
        assert!(c.find(Locator::LinkText(&number)).await.is_ok());
        let deadline = app.store().tip_by_number(&number).await.unwrap().unwrap().ack_deadline.unwrap();
        assert!(deadline > chrono::Utc::now().timestamp_millis() + 121 * 60_000, "the escalation's deadline moved on");
        c.close().await.unwrap();
    };
    tokio::time::timeout(Duration::from_secs(120), run).await.expect("the browser scenario finished within 120 s");
    app.stop().await;
}
