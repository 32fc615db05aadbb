//! Small maps drawn on the server as inline SVG (issue #24): a tip's area with its
//! neighbours and the tip's point, the station's areas coloured by coverage, and by tips.
//!
//! No tile service, no script, no font or stylesheet from elsewhere: the outlines come from
//! the registry's areas (WGS-84, [`crate::places::AreaIndex`]), projected with a local
//! equirectangular projection (longitude scaled by the cosine of the view's middle latitude,
//! which at a station's few kilometres is as good as any), fitted to the bounding box of what
//! the map is about with a margin, north up. Colours are classes of the console's stylesheet
//! (`console.css`, `svg.map …`): the Content-Security-Policy forbids inline styles. Names
//! are escaped; every area carries its name as a tooltip (`<title>`), and a label when the
//! name fits inside it.

use std::fmt::Write;

use geo::{BooleanOps, Coord, InteriorPoint, LineString, MultiPolygon, Rect};

/// The longer side of a map, in SVG units (the page scales it to its box).
const SIDE: f64 = 480.0;
/// The shorter side is never less than this (a long thin area gets room around it).
const MIN_SIDE: f64 = 220.0;
/// The labels' font size in SVG units (`svg.map text` in `console.css` says the same).
const FONT: f64 = 13.0;
/// From one line of a label to the next.
const LINE: f64 = 16.0;
/// Points closer than this (SVG units) to the last one drawn are left out of an outline.
const DETAIL: f64 = 0.6;

/// Escapes text for an SVG (XML) text node or attribute.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// One area on a map.
#[derive(Debug, Clone)]
pub struct Region<'a> {
    pub code: &'a str,
    pub name: &'a str,
    /// WGS-84, x = longitude.
    pub shape: &'a MultiPolygon<f64>,
    /// The stylesheet's class for its fill and outline (`area`, `near`, `gap`, `covered`,
    /// `heat-0` … `heat-4`).
    pub class: &'a str,
    /// A second line under the name (a count).
    pub note: Option<String>,
    /// More for the tooltip after the name (a state: 缺口 …).
    pub title: Option<String>,
    /// Where a click on it leads.
    pub href: Option<String>,
    /// Whether the view is fitted to it; the others (neighbours) are cut at the view's edge.
    pub fit: bool,
}

impl<'a> Region<'a> {
    pub fn new(code: &'a str, name: &'a str, shape: &'a MultiPolygon<f64>, class: &'a str) -> Region<'a> {
        Region { code, name, shape, class, note: None, title: None, href: None, fit: true }
    }
}

/// How lon/lat becomes SVG units.
struct View {
    lon0: f64,
    lat1: f64,
    k: f64,
    scale: f64,
    ox: f64,
    oy: f64,
    width: f64,
    height: f64,
}

impl View {
    /// The view of the box `min`–`max` (lon, lat) with `margin` (a fraction of its longer
    /// side) around it.
    fn fit(min: [f64; 2], max: [f64; 2], margin: f64) -> View {
        let k = ((min[1] + max[1]) / 2.0).to_radians().cos().max(0.01);
        let (w, h) = ((max[0] - min[0]) * k, max[1] - min[1]);
        // A point alone (or a degenerate box) gets about 500 m around it.
        let pad = (margin * w.max(h)).max(0.0045);
        let (w, h) = (w + 2.0 * pad, h + 2.0 * pad);
        let scale = SIDE / w.max(h);
        let (width, height) = ((w * scale).max(MIN_SIDE), (h * scale).max(MIN_SIDE));
        View {
            lon0: min[0] - pad / k,
            lat1: max[1] + pad,
            k,
            scale,
            ox: (width - w * scale) / 2.0,
            oy: (height - h * scale) / 2.0,
            width,
            height,
        }
    }

    /// SVG units of `(lon, lat)`, to a tenth (and never `-0.0`).
    fn xy(&self, lon: f64, lat: f64) -> (f64, f64) {
        let tenth = |v: f64| (v * 10.0).round() / 10.0 + 0.0;
        (tenth(self.ox + (lon - self.lon0) * self.k * self.scale), tenth(self.oy + (self.lat1 - lat) * self.scale))
    }

    /// The view's bounds in lon/lat.
    fn rect(&self) -> Rect<f64> {
        let lon = |x: f64| self.lon0 + (x - self.ox) / self.scale / self.k;
        let lat = |y: f64| self.lat1 - (y - self.oy) / self.scale;
        Rect::new(Coord { x: lon(0.0), y: lat(self.height) }, Coord { x: lon(self.width), y: lat(0.0) })
    }

    /// The SVG path of `shape` (rings closed, holes by the even-odd rule).
    fn path(&self, shape: &MultiPolygon<f64>) -> String {
        let mut d = String::new();
        let mut ring = |r: &LineString<f64>| {
            let mut last: Option<(f64, f64)> = None;
            let n = r.0.len();
            for (i, c) in r.0.iter().enumerate() {
                let (x, y) = self.xy(c.x, c.y);
                let near = last.is_some_and(|(lx, ly)| (x - lx).abs() < DETAIL && (y - ly).abs() < DETAIL);
                // The last coordinate closes the ring (Z does that).
                if near || (i + 1 == n && i > 0 && r.0[0] == *c) {
                    continue;
                }
                let _ = write!(d, "{}{x:.1} {y:.1}", if last.is_none() { "M" } else { " L" });
                last = Some((x, y));
            }
            if last.is_some() {
                d.push_str(" Z ");
            }
        };
        for p in &shape.0 {
            ring(p.exterior());
            p.interiors().iter().for_each(&mut ring);
        }
        d.trim_end().to_string()
    }
}

/// The bounding box of the exterior rings of `shape`.
fn bounds(shape: &MultiPolygon<f64>) -> Option<([f64; 2], [f64; 2])> {
    crate::places::bounds(shape)
}

/// Width in SVG units that `text` takes at [`FONT`] (a CJK character a square, others half).
fn text_width(text: &str) -> f64 {
    text.chars().map(|c| if c.is_ascii() { 0.6 } else { 1.0 }).sum::<f64>() * FONT
}

/// Draws `regions` (and `point`, a WGS-84 `(lon, lat)`, as a marker) as an inline SVG titled
/// `title`, fitted to the regions marked `fit` and the point, with `margin` (a fraction of
/// the longer side) around them. `point_title` names the marker. `None` when there is
/// nothing to draw.
pub fn draw(title: &str, regions: &[Region<'_>], point: Option<((f64, f64), &str)>, margin: f64) -> Option<String> {
    let mut min = [f64::INFINITY; 2];
    let mut max = [f64::NEG_INFINITY; 2];
    let mut grow = |lo: [f64; 2], hi: [f64; 2]| {
        min = [min[0].min(lo[0]), min[1].min(lo[1])];
        max = [max[0].max(hi[0]), max[1].max(hi[1])];
    };
    for r in regions.iter().filter(|r| r.fit) {
        if let Some((lo, hi)) = bounds(r.shape) {
            grow(lo, hi);
        }
    }
    if let Some(((lon, lat), _)) = point {
        grow([lon, lat], [lon, lat]);
    }
    let drawable = min[0] <= max[0] && min[1] <= max[1] && min.iter().chain(&max).all(|v| v.is_finite());
    if !drawable {
        return None;
    }
    let view = View::fit(min, max, margin);
    let frame = view.rect().to_polygon();
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-label=\"{t}\" viewBox=\"0 0 {w:.0} {h:.0}\" \
         class=\"map\"><title>{t}</title>",
        t = esc(title),
        w = view.width.ceil(),
        h = view.height.ceil(),
    );
    let mut labels = String::new();
    let marker = point.map(|((lon, lat), _)| view.xy(lon, lat));
    // Neighbours first, so the areas the map is about are drawn over them.
    let order = regions.iter().filter(|r| !r.fit).chain(regions.iter().filter(|r| r.fit));
    for r in order {
        let clipped;
        let shape = if r.fit {
            r.shape
        } else {
            clipped = r.shape.intersection(&frame);
            &clipped
        };
        if shape.0.is_empty() {
            continue;
        }
        let d = view.path(shape);
        if d.is_empty() {
            continue;
        }
        let tooltip = match &r.title {
            Some(more) => format!("{} {more}", r.name),
            None => r.name.to_string(),
        };
        let tooltip = match &r.note {
            Some(note) => format!("{tooltip}（{note}）"),
            None => tooltip,
        };
        let (open, close) = match &r.href {
            Some(href) => (format!("<a href=\"{}\">", esc(href)), "</a>"),
            None => (String::new(), ""),
        };
        let _ = write!(
            svg,
            "{open}<g class=\"region {class}\" data-code=\"{code}\"><title>{tooltip}</title>\
             <path d=\"{d}\" fill-rule=\"evenodd\"/></g>{close}",
            class = esc(r.class),
            code = esc(r.code),
            tooltip = esc(&tooltip),
        );
        // A label where the name fits inside the area as drawn.
        let Some((lo, hi)) = bounds(shape) else { continue };
        let ((x0, y1), (x1, y0)) = (view.xy(lo[0], lo[1]), view.xy(hi[0], hi[1]));
        let (w, h) = (x1 - x0, y1 - y0);
        let lines = if r.note.is_some() { 2.0 } else { 1.0 };
        let wide = text_width(r.name).max(r.note.as_deref().map_or(0.0, text_width));
        if w < wide + 4.0 || h < FONT * lines + 4.0 {
            continue;
        }
        let Some(at) = shape.interior_point() else { continue };
        let (x, y) = view.xy(at.x(), at.y());
        // Kept inside the area's box, so a label near an edge is not cut off.
        let x = x.clamp(x0 + wide / 2.0 + 2.0, x1 - wide / 2.0 - 2.0);
        let (top, bottom) = (y0 + FONT * lines / 2.0 + 2.0, y1 - FONT * lines / 2.0 - 2.0);
        let mut y = y.clamp(top, bottom);
        // Not over the point: below it, or above it when there is no room below.
        if let Some((px, py)) = marker
            && (px - x).abs() < wide / 2.0 + 10.0
            && (py - y).abs() < FONT * lines / 2.0 + 10.0
        {
            let below = py + FONT * lines / 2.0 + 12.0;
            y = if below <= bottom { below } else { (py - FONT * lines / 2.0 - 12.0).max(top) };
        }
        let kind = if r.fit { "label" } else { "label near" };
        match &r.note {
            None => {
                let _ = write!(
                    labels,
                    "<text class=\"{kind}\" x=\"{x:.1}\" y=\"{y:.1}\" text-anchor=\"middle\" \
                     dominant-baseline=\"middle\">{}</text>",
                    esc(r.name)
                );
            }
            Some(note) => {
                let y = y - 3.0;
                let _ = write!(
                    labels,
                    "<text class=\"{kind}\" x=\"{x:.1}\" y=\"{y:.1}\" text-anchor=\"middle\">{}\
                     <tspan class=\"note\" x=\"{x:.1}\" dy=\"{LINE}\">{}</tspan></text>",
                    esc(r.name),
                    esc(note)
                );
            }
        }
    }
    svg.push_str(&labels);
    if let Some(((lon, lat), name)) = point {
        let (x, y) = view.xy(lon, lat);
        let _ = write!(
            svg,
            "<g class=\"point\"><title>{}</title><circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"9\" class=\"halo\"/>\
             <circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"4\" class=\"dot\"/></g>",
            esc(name)
        );
    }
    svg.push_str("</svg>");
    Some(svg)
}

/// The tip-count class (`heat-0` … `heat-4`) of `n` tips when the most any area has is `max`.
pub fn heat_class(n: i64, max: i64) -> &'static str {
    const CLASSES: [&str; 5] = ["heat-0", "heat-1", "heat-2", "heat-3", "heat-4"];
    if n <= 0 || max <= 0 {
        return CLASSES[0];
    }
    let step = ((n as f64 / max as f64) * 4.0).ceil().clamp(1.0, 4.0) as usize;
    CLASSES[step]
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::{Contains, Point, Polygon};

    /// A rectangle from (lon, lat) spanning `w` × `h` degrees.
    fn rect(lon: f64, lat: f64, w: f64, h: f64) -> MultiPolygon<f64> {
        let ring = LineString::from(vec![(lon, lat), (lon + w, lat), (lon + w, lat + h), (lon, lat + h), (lon, lat)]);
        MultiPolygon(vec![Polygon::new(ring, vec![])])
    }

    /// The outline (first ring of the path) of the region with `code`, in SVG units.
    fn outline(svg: &str, code: &str) -> Polygon<f64> {
        let at = svg.find(&format!("data-code=\"{code}\"")).expect("the region is drawn");
        let d = &svg[at..];
        let d = &d[d.find(" d=\"").unwrap() + 4..];
        let d = &d[..d.find('"').unwrap()];
        let first = d.split('Z').next().unwrap();
        let numbers: Vec<f64> = first
            .split(|c: char| c == 'M' || c == 'L' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
        let coords: Vec<(f64, f64)> = numbers.chunks(2).map(|c| (c[0], c[1])).collect();
        Polygon::new(LineString::from(coords), vec![])
    }

    /// The centre of the marker.
    fn marker(svg: &str) -> Point<f64> {
        let at = svg.find("class=\"point\"").expect("a marker");
        let attr = |name: &str| -> f64 {
            let s = &svg[at..];
            let s = &s[s.find(&format!("{name}=\"")).unwrap() + name.len() + 2..];
            s[..s.find('"').unwrap()].parse().unwrap()
        };
        Point::new(attr("cx"), attr("cy"))
    }

    /// Reads the whole SVG as XML: an error for a tag not closed, an attribute not quoted,
    /// an `&` not escaped.
    fn well_formed(svg: &str) -> Result<usize, String> {
        let mut reader = quick_xml::Reader::from_str(svg);
        let mut depth = 0i64;
        let mut elements = 0;
        loop {
            match reader.read_event().map_err(|e| e.to_string())? {
                quick_xml::events::Event::Start(_) => {
                    depth += 1;
                    elements += 1;
                }
                quick_xml::events::Event::Empty(_) => elements += 1,
                quick_xml::events::Event::End(_) => depth -= 1,
                quick_xml::events::Event::Text(t) => {
                    t.decode().map_err(|e| e.to_string())?;
                }
                quick_xml::events::Event::Eof => break,
                _ => {}
            }
        }
        if depth != 0 { Err(format!("{depth} elements left open")) } else { Ok(elements) }
    }

    #[test]
    fn the_well_formedness_check_catches_what_it_must() {
        assert!(well_formed("<svg><g></svg>").is_err());
        assert!(well_formed("<svg><g></g>").is_err());
        assert!(well_formed("<svg>a & b</svg>").is_err());
        assert!(well_formed("<svg><a href=\"x\">&amp;</a></svg>").is_ok());
    }

    #[test]
    fn the_point_lands_inside_the_drawn_outline_of_its_area() {
        // 和庄村 and 前店村 of the example registry, and the centre of 和庄村.
        let hezhuang = rect(113.70, 34.48, 0.021795, 0.018087);
        let qiandian = rect(113.721795, 34.48, 0.021795, 0.018087);
        let regions = [
            Region::new("410184101201", "和庄村", &hezhuang, "area"),
            Region { fit: false, ..Region::new("410184101202", "前店村", &qiandian, "near") },
        ];
        let svg = draw("线索位置", &regions, Some(((113.710898, 34.489044), "位置")), 0.3).unwrap();
        let p = marker(&svg);
        assert!(outline(&svg, "410184101201").contains(&p), "{svg}");
        assert!(!outline(&svg, "410184101202").contains(&p), "{svg}");
        // North is up and east is right: 前店村 lies right of the point.
        assert!(outline(&svg, "410184101202").exterior().0.iter().all(|c| c.x > p.x()));
        // The area's name is not written under the point.
        let at = svg.find(">和庄村</text>").unwrap();
        let label = &svg[svg[..at].rfind("<text").unwrap()..at];
        let y: f64 = label.split("y=\"").nth(1).unwrap().split('"').next().unwrap().parse().unwrap();
        assert!((y - p.y()).abs() > 15.0, "{label} over the point at {p:?}");
        // A point 50 m inside, by the boundary, is still inside as drawn.
        let svg = draw("线索位置", &regions, Some(((113.72125, 34.489044), "位置")), 0.3).unwrap();
        let p = marker(&svg);
        assert!(outline(&svg, "410184101201").contains(&p) && !outline(&svg, "410184101202").contains(&p), "{svg}");
    }

    #[test]
    fn the_map_is_well_formed_svg_with_names_escaped() {
        let a = rect(113.70, 34.48, 0.05, 0.04);
        let b = rect(113.75, 34.48, 0.05, 0.04);
        let regions = [
            Region {
                note: Some("3".into()),
                href: Some("/tips?village=1&x=<2>".into()),
                ..Region::new("1", "<b>张&\"庄\"</b>", &a, "heat-4")
            },
            Region { title: Some("缺口 <无民警>".into()), ..Region::new("2", "后店村", &b, "gap") },
        ];
        let svg = draw("全所 <地图> & 缺口", &regions, None, 0.05).unwrap();
        let elements = well_formed(&svg).unwrap_or_else(|e| panic!("{e}: {svg}"));
        assert!(elements >= 8, "{svg}");
        assert!(!svg.contains("<b>") && svg.contains("&lt;b&gt;张&amp;&quot;庄&quot;&lt;/b&gt;"), "{svg}");
        assert!(svg.contains("href=\"/tips?village=1&amp;x=&lt;2&gt;\""), "{svg}");
        assert!(svg.contains("class=\"region gap\"") && svg.contains("class=\"region heat-4\""), "{svg}");
        assert!(!svg.contains("style="), "the CSP forbids inline styles: {svg}");
    }

    #[test]
    fn a_neighbour_is_cut_at_the_edge_and_a_name_that_does_not_fit_is_only_a_tooltip() {
        let small = rect(113.70, 34.48, 0.004, 0.0036);
        let huge = rect(113.704, 34.0, 1.0, 1.0);
        let regions = [
            Region::new("001", "和庄社区第一网格", &small, "area"),
            Region { fit: false, ..Region::new("002", "很大的村", &huge, "near") },
        ];
        let svg = draw("网格", &regions, None, 0.3).unwrap();
        well_formed(&svg).unwrap();
        // The huge neighbour is cut to the view: its outline stays near the frame.
        let near = outline(&svg, "002");
        assert!(near.exterior().0.iter().all(|c| c.x > -1.0 && c.x < 482.0 && c.y > -1.0 && c.y < 482.0), "{svg}");
        assert!(svg.contains(">很大的村</text>"), "the neighbour's name is written on it: {svg}");
        assert!(svg.contains("<title>和庄社区第一网格</title>"), "{svg}");
        let tiny = rect(113.70, 34.48, 0.0004, 0.0004);
        let wide = rect(113.70, 34.48, 0.02, 0.02);
        let svg = draw(
            "网格",
            &[Region::new("a", "和庄社区第一网格", &tiny, "area"), Region::new("b", "村", &wide, "area")],
            None,
            0.0,
        )
        .unwrap();
        assert!(!svg.contains(">和庄社区第一网格</text>") && svg.contains("<title>和庄社区第一网格</title>"), "{svg}");
    }

    #[test]
    fn nothing_to_draw_is_no_map_and_a_point_alone_gets_room_around_it() {
        assert!(draw("空", &[], None, 0.1).is_none());
        let svg = draw("位置", &[], Some(((113.71, 34.49), "位置")), 0.1).unwrap();
        let p = marker(&svg);
        assert!((p.x() - 240.0).abs() < 1.0 && (p.y() - 240.0).abs() < 1.0, "{svg}");
    }

    #[test]
    fn tip_counts_fall_into_five_shades() {
        assert_eq!(heat_class(0, 10), "heat-0");
        assert_eq!(heat_class(1, 10), "heat-1");
        assert_eq!(heat_class(5, 10), "heat-2");
        assert_eq!(heat_class(10, 10), "heat-4");
        assert_eq!(heat_class(3, 0), "heat-0");
    }
}
