//! Printable contact boards (警民联系牌): one A4 SVG page per village with its officers,
//! the office, the station's duty line, "紧急情况请直接拨打 110", and QR codes for the
//! village's WeChat customer-service link (with the village code as `scene_param`, so the
//! conversation starts knowing the village) and the Telegram deep link.
//!
//! The page is the template `bot-config/boards/board.svg` (all its words are there); this
//! module gathers the registry's values and draws the QR codes as one SVG path each. Each
//! board is written as SVG and as PNG (A4 at 150 dpi, drawn by resvg with the system's fonts).

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use crate::store::Store;
use crate::store::registry::VillageRow;

/// Where a board's QR codes lead.
#[derive(Debug, Clone, Default)]
pub struct Links {
    /// The customer-service account's link (`[wecom.kf] contact_url`); the village code is
    /// added as `scene_param`.
    pub wechat: Option<String>,
    /// The Telegram bot's username, for `t.me/<bot>?start=v_<code>`.
    pub telegram_bot: Option<String>,
}

impl Links {
    /// The link on `village`'s board for each platform that has one: (kind, URL).
    pub fn for_village(&self, code: &str) -> Vec<(&'static str, String)> {
        let mut links = Vec::new();
        if let Some(base) = self.wechat.as_deref().filter(|b| !b.is_empty()) {
            let sep = if base.contains('?') { '&' } else { '?' };
            let scene: String = url::form_urlencoded::byte_serialize(code.as_bytes()).collect();
            links.push(("wechat", format!("{base}{sep}scene_param={scene}")));
        }
        if let Some(bot) = self.telegram_bot.as_deref().filter(|b| !b.is_empty()) {
            links.push(("telegram", format!("https://t.me/{bot}?start=v_{code}")));
        }
        links
    }
}

/// A QR code as an SVG path of its dark modules (one unit each, with the 4-module quiet
/// zone) and the side of its square in units.
pub fn qr_path(data: &str) -> anyhow::Result<(String, usize)> {
    let code = qrcode::QrCode::with_error_correction_level(data.as_bytes(), qrcode::EcLevel::M)
        .with_context(|| format!("{data:?} does not fit in a QR code"))?;
    let width = code.width();
    let quiet = 4;
    let mut path = String::new();
    for (i, color) in code.to_colors().into_iter().enumerate() {
        if color == qrcode::Color::Dark {
            let (x, y) = (i % width + quiet, i / width + quiet);
            path.push_str(&format!("M{x} {y}h1v1h-1z"));
        }
    }
    Ok((path, width + 2 * quiet))
}

#[derive(Serialize)]
struct Qr {
    kind: &'static str,
    path: String,
    size: usize,
}

/// The board of `village` as SVG, from the template `template` (the text of board.svg).
pub async fn board(
    store: &Store,
    template: &str,
    village: &VillageRow,
    links: &Links,
    today: &str,
) -> anyhow::Result<String> {
    let officers = crate::core::card_officers(store.assigned_officers(village.id, today).await?);
    let mut qr = Vec::new();
    for (kind, url) in links.for_village(&village.code) {
        let (path, size) = qr_path(&url)?;
        qr.push(Qr { kind, path, size });
    }
    let mut env = minijinja::Environment::new();
    // Names and addresses come from the registry: escaped as XML.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    env.add_template("board.svg", template).context("the board template does not parse")?;
    let svg = env.get_template("board.svg")?.render(minijinja::context! {
        village => minijinja::context! { name => &village.name, code => &village.code },
        office => minijinja::context! {
            name => &village.office_name, address => &village.office_address,
            hours => &village.office_hours, phone => &village.office_phone,
        },
        station => minijinja::context! { name => &village.station_name, duty_phone => &village.station_duty_phone },
        officers, qr,
    })?;
    Ok(svg)
}

/// Dots per inch of the PNG boards (A4 at 150 dpi: 1240 × 1754).
const PNG_DPI: f32 = 150.0;

/// The renderer's options with the system's fonts (loaded once for many boards), and whether
/// one of the fonts the board names is among them (without one the PNG's text is left out).
pub fn png_options() -> (resvg::usvg::Options<'static>, bool) {
    let mut options = resvg::usvg::Options::default();
    options.fontdb_mut().load_system_fonts();
    let fonts = ["WenQuanYi Micro Hei", "Noto Sans CJK SC", "Microsoft YaHei", "SimHei"]
        .iter()
        .any(|name| options.fontdb.faces().any(|f| f.families.iter().any(|(family, _)| family == name)));
    (options, fonts)
}

/// The board drawn as PNG, A4 at [`PNG_DPI`].
pub fn board_png(svg: &str, options: &resvg::usvg::Options) -> anyhow::Result<Vec<u8>> {
    use resvg::{tiny_skia, usvg};
    let tree = usvg::Tree::from_str(svg, options).context("the board is not SVG the renderer reads")?;
    // The SVG's user unit is the millimetre of its viewBox; usvg sizes it at 96 dpi.
    let scale = PNG_DPI / 96.0;
    let size = tree.size().to_int_size().scale_by(scale).context("a board of no size")?;
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height()).context("a board too large to draw")?;
    resvg::render(&tree, tiny_skia::Transform::from_scale(scale, scale), &mut pixmap.as_mut());
    pixmap.encode_png().context("Failed to encode the PNG")
}

/// Writes the boards of `villages` into `dir` as `<code>-<name>.svg` and `.png`; returns the
/// files.
pub async fn write_boards(
    store: &Store,
    template_file: &Path,
    villages: &[VillageRow],
    links: &Links,
    today: &str,
    dir: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    let template = std::fs::read_to_string(template_file)
        .with_context(|| format!("Failed to read the board template {}", template_file.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("Failed to create {}", dir.display()))?;
    let (options, fonts) = png_options();
    if !fonts {
        tracing::warn!(
            "no Chinese font found for the PNG boards (install fonts-wqy-microhei); their text is missing, the SVG has it"
        );
    }
    let mut files = Vec::new();
    for village in villages {
        let svg = board(store, &template, village, links, today).await?;
        let file = dir.join(format!("{}-{}.svg", village.code, village.name));
        std::fs::write(&file, &svg).with_context(|| format!("Failed to write {}", file.display()))?;
        files.push(file);
        let png = board_png(&svg, &options)?;
        let file = dir.join(format!("{}-{}.png", village.code, village.name));
        std::fs::write(&file, png).with_context(|| format!("Failed to write {}", file.display()))?;
        files.push(file);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_village_board_links_to_wechat_with_the_village_code_and_to_telegram() {
        let links = Links {
            wechat: Some("https://work.weixin.qq.com/kfid/kfc123".into()),
            telegram_bot: Some("cunjing_bot".into()),
        };
        assert_eq!(
            links.for_village("410184101201"),
            vec![
                ("wechat", "https://work.weixin.qq.com/kfid/kfc123?scene_param=410184101201".to_string()),
                ("telegram", "https://t.me/cunjing_bot?start=v_410184101201".to_string()),
            ]
        );
        assert!(Links::default().for_village("1").is_empty(), "no links, no QR codes");
    }

    #[test]
    fn a_qr_path_draws_every_dark_module_inside_its_quiet_zone() {
        let (path, size) = qr_path("https://t.me/cunjing_bot?start=v_410184101201").unwrap();
        let code = qrcode::QrCode::with_error_correction_level(
            b"https://t.me/cunjing_bot?start=v_410184101201",
            qrcode::EcLevel::M,
        )
        .unwrap();
        let dark = code.to_colors().iter().filter(|c| **c == qrcode::Color::Dark).count();
        assert_eq!(path.matches('M').count(), dark);
        assert_eq!(size, code.width() + 8);
    }
}
