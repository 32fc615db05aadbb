//! `cunjing board`: printable contact boards, from the binary on the example registry.

use std::path::Path;

use crate::app::example_dir;

const HEZHUANG: &str = "410184101201";
const KF_LINK: &str = "https://work.weixin.qq.com/kfid/kfc0123456789";

async fn cunjing(args: &[&str], db: &str) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_cunjing"))
        .env_clear()
        .env("CUNJING_CONFIG", Path::new(env!("CARGO_MANIFEST_DIR")).join("bot-config/cunjing.toml"))
        .env("DATABASE_URL", db)
        .env("CUNJING__WECOM__KF__CONTACT_URL", KF_LINK)
        .args(args)
        .output()
        .await
        .expect("the binary runs")
}

#[tokio::test]
async fn a_village_board_shows_its_officers_the_duty_line_110_and_a_wechat_code_that_knows_the_village() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("b.sqlite").display());
    let import = cunjing(&["registry", "import", example_dir().to_str().unwrap()], &db).await;
    assert!(import.status.success(), "{}", String::from_utf8_lossy(&import.stderr));
    let out = dir.path().join("boards");

    let done = cunjing(&["board", HEZHUANG, "--out", out.to_str().unwrap()], &db).await;
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let file = out.join(format!("{HEZHUANG}-和庄村.svg"));
    let svg = std::fs::read_to_string(&file).expect("the board is written");
    let lint = std::process::Command::new("xmllint").arg("--noout").arg(&file).output().expect("xmllint runs");
    assert!(lint.status.success(), "the board is well-formed XML: {}", String::from_utf8_lossy(&lint.stderr));
    for words in ["和庄村 警民联系牌", "张建国", "13903710121", "孙磊", "0371-62581110", "紧急情况请直接拨打 110"]
    {
        assert!(svg.contains(words), "the board shows {words:?}");
    }
    // The one QR code (no Telegram token here) is the WeChat link with the village code.
    let (path, _) = cunjing::boards::qr_path(&format!("{KF_LINK}?scene_param={HEZHUANG}")).unwrap();
    assert!(svg.contains(&format!("d=\"{path}\"")), "the QR code encodes the village's WeChat link");
    assert_eq!(svg.matches("<path").count(), 1);

    // The same board as PNG, A4 at 150 dpi, with ink on it (text and the QR code).
    let png = std::fs::read(out.join(format!("{HEZHUANG}-和庄村.png"))).expect("the PNG is written");
    let pixmap = resvg::tiny_skia::Pixmap::decode_png(&png).expect("a PNG");
    assert!((1239..=1242).contains(&pixmap.width()) && (1753..=1756).contains(&pixmap.height()), "A4 at 150 dpi");
    let dark = pixmap.pixels().iter().filter(|p| p.red() < 100 && p.green() < 100 && p.blue() < 100).count();
    assert!(dark * 100 > pixmap.pixels().len(), "the board is drawn, not blank ({dark} dark pixels)");

    // A station's boards: one per village; an unknown code is a clear refusal.
    let station = cunjing(&["board", "--station", "HZPCS", "--out", out.to_str().unwrap()], &db).await;
    assert!(station.status.success());
    let villages = std::fs::read_to_string(example_dir().join("villages.csv")).unwrap();
    let offices = std::fs::read_to_string(example_dir().join("offices.csv")).unwrap();
    let hz_offices: Vec<&str> =
        offices.lines().filter(|l| l.contains("HZPCS")).filter_map(|l| l.split(',').next()).collect();
    let expected =
        villages.lines().skip(1).filter(|l| hz_offices.iter().any(|o| l.split(',').any(|c| c == *o))).count();
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        2 * expected,
        "one board (SVG and PNG) per village of the station"
    );
    let unknown = cunjing(&["board", "999", "--out", out.to_str().unwrap()], &db).await;
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("No village with code \"999\""));
}
