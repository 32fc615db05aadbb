//! Small pieces the pages share: server-side SVG bar charts and the TOTP check of the login.

use std::fmt::Write;

/// A horizontal bar chart as inline SVG: one bar per (label, value), scaled to the largest.
/// Labels and numbers are escaped; nothing here runs in the browser.
pub fn bar_chart(title: &str, rows: &[(String, i64)]) -> String {
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
    let max = rows.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    let bar_h = 22;
    let height = 30 + rows.len() * bar_h;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-label=\"{t}\" viewBox=\"0 0 560 {height}\" \
         width=\"100%\" class=\"chart\"><title>{t}</title>",
        t = esc(title)
    );
    for (i, (label, value)) in rows.iter().enumerate() {
        let y = 20 + i * bar_h;
        let w = (*value as f64 / max as f64 * 360.0).round() as i64;
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{ty}\" font-size=\"13\">{label}</text>\
             <rect x=\"150\" y=\"{y}\" width=\"{w}\" height=\"16\" fill=\"#2f6fb3\"/>\
             <text x=\"{tx}\" y=\"{ty}\" font-size=\"13\">{value}</text>",
            ty = y + 13,
            label = esc(label),
            tx = 156 + w,
        );
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
        let svg = bar_chart("线索", &[("盗窃<b>".into(), 4), ("诈骗".into(), 2)]);
        assert!(svg.contains("width=\"360\"") && svg.contains("width=\"180\""), "{svg}");
        assert!(svg.contains("盗窃&lt;b&gt;") && !svg.contains("<b>"), "{svg}");
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
