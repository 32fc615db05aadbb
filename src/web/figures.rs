//! Small pieces the pages share: server-side SVG bar charts and the TOTP check of the login.

use std::fmt::Write;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A horizontal bar chart as inline SVG: one bar per (label, value), scaled to `scale` (charts
/// meant to be compared share one) or else to the largest value. The title is the SVG's
/// accessible name; the page shows it as a heading too. Labels and numbers are escaped;
/// nothing here runs in the browser.
pub fn bar_chart(title: &str, rows: &[(String, i64)], scale: Option<i64>) -> String {
    let max = scale.unwrap_or_else(|| rows.iter().map(|(_, v)| *v).max().unwrap_or(0)).max(1);
    let bar_h = 26;
    let height = 12 + rows.len() * bar_h;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-label=\"{t}\" viewBox=\"0 0 480 {height}\" \
         width=\"100%\" class=\"chart\"><title>{t}</title>",
        t = esc(title)
    );
    for (i, (label, value)) in rows.iter().enumerate() {
        let y = 6 + i * bar_h;
        let w = (*value as f64 / max as f64 * 260.0).round() as i64;
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{ty}\" font-size=\"15\">{label}</text>\
             <rect x=\"150\" y=\"{y}\" width=\"{w}\" height=\"18\" fill=\"#2f6fb3\"/>\
             <text x=\"{tx}\" y=\"{ty}\" font-size=\"15\">{value}</text>",
            ty = y + 15,
            label = esc(label),
            tx = 156 + w,
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A column chart of a trend (one column per (label, value), e.g. the last 12 months), scaled
/// to `scale` or else to the largest value; every second label is written when they are many.
pub fn column_chart(title: &str, columns: &[(String, i64)], scale: Option<i64>) -> String {
    let max = scale.unwrap_or_else(|| columns.iter().map(|(_, v)| *v).max().unwrap_or(0)).max(1);
    let (plot_h, step) = (120.0, 40);
    let width = 10 + columns.len() * step;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-label=\"{t}\" viewBox=\"0 0 {width} 175\" \
         width=\"100%\" class=\"chart\"><title>{t}</title>",
        t = esc(title)
    );
    for (i, (label, value)) in columns.iter().enumerate() {
        let h = (*value as f64 / max as f64 * plot_h).round() as i64;
        let x = 10 + i * step;
        let top = 20 + plot_h as i64 - h;
        let _ = write!(
            svg,
            "<rect x=\"{x}\" y=\"{top}\" width=\"28\" height=\"{h}\" fill=\"#2f6fb3\"/>\
             <text x=\"{cx}\" y=\"{vy}\" font-size=\"13\" text-anchor=\"middle\">{value}</text>",
            cx = x + 14,
            vy = top - 4,
        );
        if columns.len() <= 6 || i % 2 == columns.len() % 2 {
            let _ = write!(
                svg,
                "<text x=\"{cx}\" y=\"165\" font-size=\"13\" text-anchor=\"middle\">{label}</text>",
                cx = x + 14,
                label = esc(label)
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// A TOTP generator (RFC 6238: SHA-1, 6 digits, 30 s) for the base32 `secret`.
pub fn totp(secret: &str) -> Option<totp_rs::TOTP> {
    let bytes = totp_rs::Secret::Encoded(secret.to_string()).to_bytes().ok()?;
    totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, bytes).ok()
}

/// Whether `code` is the TOTP of `secret` at `now_ms` (one step of clock skew allowed).
pub fn totp_matches(secret: &str, code: &str, now_ms: i64) -> bool {
    match totp(secret) {
        Some(t) => t.check(code, u64::try_from(now_ms / 1000).unwrap_or(0)),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_scales_its_bars_and_escapes_its_labels() {
        let svg = bar_chart("线索", &[("盗窃<b>".into(), 4), ("诈骗".into(), 2)], None);
        assert!(svg.contains("width=\"260\"") && svg.contains("width=\"130\""), "{svg}");
        assert!(svg.contains("盗窃&lt;b&gt;") && !svg.contains("<b>"), "{svg}");
    }

    #[test]
    fn charts_given_one_scale_draw_the_same_value_the_same_size() {
        let small = bar_chart("前店村", &[("盗窃".into(), 2)], Some(8));
        let big = bar_chart("和庄村", &[("盗窃".into(), 2), ("诈骗".into(), 8)], Some(8));
        assert!(small.contains("width=\"65\"") && big.contains("width=\"65\""), "{small}\n{big}");
        let trend = column_chart("近 12 个月", &[("1月".into(), 3), ("2月".into(), 6)], Some(12));
        assert!(trend.contains("height=\"30\"") && trend.contains("height=\"60\""), "{trend}");
    }

    #[test]
    fn the_code_of_the_moment_passes_and_an_old_one_does_not() {
        let secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
        let now = 1_763_880_000_000;
        let code = totp(secret).unwrap().generate(now as u64 / 1000);
        assert!(totp_matches(secret, &code, now));
        assert!(!totp_matches(secret, &code, now + 5 * 60_000));
        assert!(!totp_matches(secret, "000000x", now));
    }
}
